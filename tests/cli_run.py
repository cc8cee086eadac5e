"""Run the command line in-process, as the CLI tests do."""

from __future__ import annotations

from compactnn.cli import main


def run(capsys, *argv) -> tuple[int, str, str]:
    """``main(argv)`` (each argument as a string): its exit code, stdout and stderr,
    without what was printed before."""
    capsys.readouterr()
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err
