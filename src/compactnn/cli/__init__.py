"""The ``compactnn`` command line: thin subcommands over the library.

``train`` a zoo model on a dataset, ``compress`` it with a recipe (fine-tuning
included), ``convert`` it to a compact file with a policy, ``inspect`` the file,
``eval`` it, ``bench`` it against its dense twin, write an HTML ``report``, or run the
whole ``demo``. A user error (``compactnn.errors.UserError``) prints one line on
stderr and exits with status 2; anything else is a bug and prints its traceback
(status 1); Ctrl-C at any moment prints one line (status 130). Outputs are written
atomically, so a failed command leaves no partial file.

Each command is one module of ``compactnn.cli.commands`` registered in
``compactnn.cli.registry``; this module only builds the parser and runs ``main``.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import traceback
from collections.abc import Sequence
from typing import NoReturn

from compactnn import _early_interrupt
from compactnn.cli import commands  # noqa: F401  (registers every command)
from compactnn.cli.memory import lean_allocator
from compactnn.cli.registry import COMMANDS
from compactnn.errors import UserError

__all__ = ["main", "run", "build_parser", "COMMANDS"]

EXIT_USAGE = 2
EXIT_BUG = 1
EXIT_INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every registered command."""
    parser = _Parser(prog="compactnn", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser,
                                metavar="COMMAND")
    for cmd in COMMANDS.values():
        cmd.arguments(sub.add_parser(cmd.name, help=cmd.help, description=cmd.description))
    return parser


def _message(exc: UserError) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        text = f"{exc.filename}: {exc.strerror}" if exc.filename else exc.strerror
    else:
        text = str(exc)
    return " ".join(text.split())


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit status: 0, 2 on a user error (one line), 1 on a
    bug (its traceback), 130 when interrupted with Ctrl-C, at any moment."""
    command = "compactnn"
    if signal.getsignal(signal.SIGINT) is _early_interrupt:
        signal.signal(signal.SIGINT, _on_interrupt)
    try:
        parser = build_parser()
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:
            return int(exc.code or 0)
        command = f"compactnn {args.command}"
        if COMMANDS[args.command].lean_memory:
            lean_allocator()  # freed memory goes back to the system (compactnn.cli.memory)
        COMMANDS[args.command].run(args)
    except KeyboardInterrupt:
        _interrupted(command)
        return EXIT_INTERRUPTED
    except UserError as exc:
        try:
            sys.stderr.write(f"{command}: error: {_message(exc)}\n")
        except KeyboardInterrupt:
            return EXIT_INTERRUPTED
        return EXIT_USAGE
    except Exception:
        try:
            traceback.print_exc()
            sys.stderr.write(f"{command}: internal error (a bug in compactnn; the traceback "
                             "above says where)\n")
        except KeyboardInterrupt:
            return EXIT_INTERRUPTED
        return EXIT_BUG
    return 0


def _on_interrupt(signum, frame) -> None:
    """Ctrl-C: KeyboardInterrupt (so ``finally`` blocks remove temporary files), except
    while a module is being imported: an exception raised there can land inside an
    extension's C++ initialisation (torch's pybind11) and abort the process, and an
    import has written nothing, so the process exits at once with one line and 130."""
    f = frame
    while f is not None:
        if f.f_code.co_filename.startswith("<frozen importlib"):
            _early_interrupt(signum, frame)
        f = f.f_back
    raise KeyboardInterrupt


def _interrupted(command: str) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C cannot interrupt this
    sys.stderr.write(f"{command}: interrupted\n")


def run() -> NoReturn:
    """The ``compactnn`` command: :func:`main` on ``sys.argv``, then exit with its status.

    A rank of several (``torchrun``: ``WORLD_SIZE`` > 1) ends with ``os._exit`` once
    ``main`` has returned, its output flushed and its file written: with torch 2.13,
    DistributedDataParallel leaves the gloo group's threads alive after
    ``destroy_process_group``, and at interpreter exit they abort a rank now and then
    ("terminate called without an active exception"; 1 run in 20 of a 2-rank compress
    here), which torchrun reports as a failed rank (docs/architecture/streaming.md).
    """
    code = main()
    try:
        ranks = int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        ranks = 1
    if ranks > 1:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
