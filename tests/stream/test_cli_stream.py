"""``compactnn compress FOLDER --stream``: the file ``compress`` + ``convert`` write, in
one pass, with one-line errors."""

from __future__ import annotations

import pytest

from tests.anymodel.conftest import make_model_dir
from tests.cli_run import run

# data-free pruning, then GPTQ sharing: every data-aware step sees the blocks before it in
# their final state in both runs, so the files are the same bytes (padded samples too)
RECIPE = "- {method: prune, p: 50}\n- {method: cws, k: 8, calibrate: 16}\n"



@pytest.mark.parametrize("kind", ["llama", "gpt2"])
def test_stream_cli_equals_compress_then_convert(kind, tmp_path, capsys):
    pytest.importorskip("transformers")
    path, data = make_model_dir(kind, tmp_path / kind)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(RECIPE)
    code, out, err = run(capsys, "compress", path, "--recipe", recipe, "--data", data,
                         "--stream", "-o", tmp_path / "s.cnn")
    assert code == 0, err
    assert "tail" in out and "peak RSS" in out and "x smaller" in out
    assert run(capsys, "compress", path, "--recipe", recipe, "--data", data,
               "-o", tmp_path / "d.cnn")[0] == 0
    assert run(capsys, "convert", tmp_path / "d.cnn", "-o", tmp_path / "c.cnn")[0] == 0
    assert (tmp_path / "s.cnn").read_bytes() == (tmp_path / "c.cnn").read_bytes()


def test_stream_errors_are_one_line(tmp_path, capsys):
    pytest.importorskip("transformers")
    path, data = make_model_dir("llama", tmp_path / "l")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- {method: prune, p: 50, scope: global}\n")
    code, _, err = run(capsys, "compress", path, "--recipe", bad, "--data", data,
                       "--stream", "-o", tmp_path / "x.cnn")
    assert code == 2 and "cannot be streamed: global pruning" in err
    assert len(err.strip().splitlines()) == 1
    code, _, err = run(capsys, "compress", path, "--recipe", bad, "--data", data,
                       "--resume", "-o", tmp_path / "x.cnn")
    assert code == 2 and "--resume needs --stream" in err
    ok = tmp_path / "ok.yaml"
    ok.write_text(RECIPE)
    code, _, err = run(capsys, "compress", path, "--recipe", ok, "--data", data,
                       "--stream", "--resume", "-o", tmp_path / "x.cnn")
    assert code == 2 and "nothing to resume" in err
    assert not (tmp_path / "x.cnn").exists()


def test_workers_need_stream(tmp_path, capsys):
    pytest.importorskip("transformers")
    path, data = make_model_dir("llama", tmp_path / "l")
    ok = tmp_path / "ok.yaml"
    ok.write_text(RECIPE)
    code, _, err = run(capsys, "compress", path, "--recipe", ok, "--data", data,
                       "--workers", "2", "-o", tmp_path / "x.cnn")
    assert code == 2 and "--workers needs --stream" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "x.cnn").exists()
