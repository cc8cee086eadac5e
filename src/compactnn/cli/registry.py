"""The command registry: one ``Command`` per subcommand module (``cli/commands/``).

A command module defines its arguments and its ``run`` and ends with
``register(Command(...))``; ``cli/commands/__init__.py`` imports it (one line), and
``compactnn.cli.build_parser`` builds the parser from :data:`COMMANDS` in that order.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Command", "COMMANDS", "register"]


@dataclass(frozen=True)
class Command:
    """One subcommand: its name, one-line ``help`` (in ``compactnn --help``), longer
    ``description`` (in ``compactnn NAME --help``), the function that adds its
    arguments to its subparser, and ``run(args)``, which raises ``UserError`` for
    anything the user can fix. ``lean_memory``: the command is bound by memory, not
    speed, so it runs with ``cli.memory.lean_allocator`` (freed blocks go back to the
    system; every block of 256 KiB or more is mapped on its own, which costs page
    faults in a loop of inferences)."""

    name: str
    help: str
    description: str
    arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], None]
    lean_memory: bool = False


COMMANDS: dict[str, Command] = {}


def register(command: Command) -> Command:
    """Add ``command`` to :data:`COMMANDS` (a second command of the same name is a bug)."""
    if command.name in COMMANDS:
        raise RuntimeError(f"command {command.name!r} registered twice")
    COMMANDS[command.name] = command
    return command
