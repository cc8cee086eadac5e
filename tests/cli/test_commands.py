"""The command registry and the error contract of ``compactnn.cli.main``: a
``UserError`` is one line and exit status 2, anything else a bug with its traceback
and exit status 1."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

from compactnn.cli import COMMANDS, main, models
from compactnn.cli.registry import Command, register
from compactnn.errors import PathError, UserError

SRC = Path(__file__).resolve().parents[2] / "src"
COMMANDS_DIR = SRC / "compactnn" / "cli" / "commands"


def test_registry_lists_every_command_module():
    modules = {p.stem for p in COMMANDS_DIR.glob("*.py") if p.stem != "__init__"}
    assert set(COMMANDS) == modules
    assert list(COMMANDS)[:3] == ["train", "compress", "convert"]  # the --help order
    for name, cmd in COMMANDS.items():
        assert cmd.name == name and cmd.run.__module__ == f"compactnn.cli.commands.{name}"


def test_help_lists_every_command(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name, cmd in COMMANDS.items():
        assert f"    {name}" in out and cmd.help in out, name


def test_a_command_registered_twice_is_a_bug():
    with pytest.raises(RuntimeError, match="registered twice"):
        register(dataclasses.replace(COMMANDS["inspect"]))


def _with_run(monkeypatch, name: str, run) -> None:
    monkeypatch.setitem(COMMANDS, name, dataclasses.replace(COMMANDS[name], run=run))


@pytest.mark.parametrize("exc", [TypeError("unsupported operand"), KeyError("layer"),
                                 ValueError("plain ValueError"), OSError(5, "I/O error")])
def test_a_bug_inside_a_command_shows_its_traceback(monkeypatch, capsys, tmp_path, exc):
    def run(a):
        raise exc

    _with_run(monkeypatch, "inspect", run)
    code = main(["inspect", str(tmp_path / "m.cnn")])
    err = capsys.readouterr().err
    assert code == 1, err
    assert err.startswith("Traceback (most recent call last):") and "in run" in err, err
    assert type(exc).__name__ in err
    assert err.splitlines()[-1].startswith("compactnn inspect: internal error")


@pytest.mark.parametrize("exc,line", [
    (UserError("model.cnn: no such file"), "model.cnn: no such file"),
    (PathError(13, "cannot write to /ro (Permission denied)"),
     "cannot write to /ro (Permission denied)"),
])
def test_a_user_error_is_one_line(monkeypatch, capsys, tmp_path, exc, line):
    def run(a):
        raise exc

    _with_run(monkeypatch, "inspect", run)
    code = main(["inspect", str(tmp_path / "m.cnn")])
    err = capsys.readouterr().err
    assert code == 2 and err == f"compactnn inspect: error: {line}\n"


def test_library_user_errors_are_user_errors():
    from compactnn.io import CompactFileError
    from compactnn.nn.layers import UnsupportedLayerError
    from compactnn.transforms import RecipeError
    from compactnn.zoo import CorpusError, DatasetError
    from compactnn.zoo.hf import HFError

    for cls in (CompactFileError, RecipeError, DatasetError, CorpusError, HFError,
                UnsupportedLayerError, PathError):
        assert issubclass(cls, UserError), cls
    assert issubclass(PathError, OSError) and issubclass(DatasetError, FileNotFoundError)


def test_the_console_script_exits_1_on_a_bug(tmp_path):
    code = ("import dataclasses, sys\nfrom compactnn.cli import COMMANDS, main\n"
            "def run(a):\n    return 1 + None\n"
            "COMMANDS['eval'] = dataclasses.replace(COMMANDS['eval'], run=run)\n"
            "sys.exit(main(['eval', 'x.cnn']))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=tmp_path, env=dict(os.environ, PYTHONPATH=str(SRC)))
    assert done.returncode == 1, done.stderr
    assert "Traceback" in done.stderr and "TypeError: unsupported operand" in done.stderr
    assert done.stderr.splitlines()[-1].startswith("compactnn eval: internal error")


def test_every_file_entry_has_one_kind():
    assert models.of_entry({"zoo": {"name": "minilm", "kwargs": {}}}).name == "minilm"
    assert models.of_entry({"zoo": {"name": "lenet300", "kwargs": {}}}).name == "zoo"
    assert models.of_entry({"hf": {"architecture": "GPT2LMHeadModel"}}).name == "hf"
    assert models.of_entry({"class": "Sequential"}) is None
    assert [k.name for k in models.KINDS] == ["minilm", "hf", "zoo"]


def test_a_kind_refuses_what_it_does_not_do(capsys, tmp_path):
    code = main(["bench", str(tmp_path)])  # a folder: no kind names it, not a file
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "is a directory" in err, err
    with pytest.raises(UserError, match="eval does not take"):
        models.Kind().evaluate(None, None, None)


def test_a_new_command_is_one_registration(monkeypatch, capsys):
    def arguments(p):
        p.add_argument("--n", type=int, default=3)

    def run(a):
        print("hello " * a.n)

    monkeypatch.setitem(COMMANDS, "hello", Command("hello", "say hello", "Say hello.",
                                                   arguments, run))
    assert main(["hello", "--n", "2"]) == 0
    assert capsys.readouterr().out == "hello hello \n"


@pytest.mark.parametrize("argv,match", [
    (["train", "--model", "lenet300", "--dataset", "digits", "--batch-size", "0"],
     "argument --batch-size: expected an integer >= 1, got '0'"),
    (["train", "--model", "lenet300", "--dataset", "digits", "--lr", "-1"],
     "argument --lr: expected a number > 0, got '-1'"),
    (["train", "--model", "lenet300", "--dataset", "digits", "--lr", "nan"],
     "argument --lr: expected a number > 0"),
    (["train", "--model", "lenet300", "--dataset", "digits", "--epochs", "-2"],
     "argument --epochs: expected an integer >= 0"),
    (["bench", "m.cnn", "--threads", "0"], "argument --threads: expected an integer >= 1"),
    (["report", "m.cnn", "--repeats", "0"], "argument --repeats: expected an integer >= 1"),
    (["convert", "c.st", "--batch-size", "x"], "argument --batch-size: expected an integer"),
    (["compress", "minilm", "--recipe", "minilm", "--sentences", "0"],
     "argument --sentences: expected an integer >= 1"),
    (["demo", "--epochs", "0"], "argument --epochs: expected an integer >= 1"),
])
def test_bad_numbers_are_usage_errors_before_any_work(capsys, tmp_path, argv, match):
    out = [] if argv[0] in ("bench", "demo") else ["-o", str(tmp_path / "out")]
    code = main([*argv, *out])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and match in err, err
    assert list(tmp_path.iterdir()) == []


def test_importing_the_cli_loads_no_torch():
    """``compactnn --help`` and Ctrl-C during start-up need a light ``compactnn.cli``:
    each command imports what it runs inside ``run``."""
    code = "import sys, compactnn.cli\nprint('torch' in sys.modules, 'tqdm' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=str(SRC)), check=True)
    assert done.stdout.split() == ["False", "False"]
