"""Write a benchmark's generated section into a results page.

A section lives between ``<!-- generated: NAME -->`` and ``<!-- end generated: NAME -->``;
writing it again replaces only that span (text around it is kept), and a missing
section is appended. The command that produced it is written with it.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path


def command_line() -> str:
    """The command that is running, as a user would type it."""
    return "python " + " ".join(shlex.quote(a) for a in sys.argv)


def write_section(path: str | Path, name: str, body: str) -> None:
    """Replace (or append) the generated section ``name`` of ``path`` with ``body``."""
    path = Path(path)
    begin, end = f"<!-- generated: {name} -->", f"<!-- end generated: {name} -->"
    block = f"{begin}\n\nCommand: `{command_line()}`\n\n{body.strip()}\n\n{end}"
    text = path.read_text() if path.exists() else ""
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(text)
