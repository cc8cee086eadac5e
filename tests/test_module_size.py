"""Issue 17's size rule: no module in ``src/`` over ``LIMIT`` lines unless it holds one
class or one format (one thing per module). A module over the limit must be listed in
``ALLOWED`` with the reason, and must define exactly one top-level class; an entry
that is no longer needed (the module shrank or is gone) is an error too, so the list
stays the true set of exceptions. The checker is run on synthetic trees below to show
that it reports each case.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
LIMIT = 450

#: module (relative to src/) -> why it may be longer than LIMIT: it must hold one class
#: (or one format, whose class is its one top-level class)
ALLOWED: dict[str, str] = {}


def line_count(path: Path) -> int:
    """Lines of a file, as ``wc -l`` counts them."""
    return path.read_bytes().count(b"\n")


def top_level_classes(path: Path) -> list[str]:
    """Names of the classes defined at the top level of a module."""
    tree = ast.parse(path.read_text(), filename=str(path))
    return [n.name for n in tree.body if isinstance(n, ast.ClassDef)]


def problems(src: Path, allowed: dict[str, str], limit: int = LIMIT) -> list[str]:
    """One line per module over ``limit`` lines that is not allowed, per allowed module
    that does not hold exactly one top-level class or has no reason, and per allowed
    module that is missing or within the limit."""
    out = []
    for path in sorted(src.rglob("*.py")):
        rel = path.relative_to(src).as_posix()
        n = line_count(path)
        if n > limit and rel not in allowed:
            out.append(f"{rel}: {n} lines, more than {limit}: split it by job (or list it "
                       "in ALLOWED with the reason, if it holds one class or one format)")
    for rel, why in allowed.items():
        path = src / rel
        if not path.is_file():
            out.append(f"{rel}: listed in ALLOWED but missing")
            continue
        if not why.strip():
            out.append(f"{rel}: listed in ALLOWED without a reason")
        classes = top_level_classes(path)
        if len(classes) != 1:
            out.append(f"{rel}: listed in ALLOWED as one class, but defines "
                       f"{len(classes)} top-level classes {classes}")
        if line_count(path) <= limit:
            out.append(f"{rel}: listed in ALLOWED but has only {line_count(path)} lines: "
                       "remove the entry")
    return out


def test_no_src_module_over_the_limit():
    assert problems(SRC, ALLOWED) == []


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return tmp_path


def test_checker_reports_a_long_module(tmp_path):
    src = _tree(tmp_path, {"pkg/short.py": "x = 1\n" * 5, "pkg/long.py": "x = 1\n" * 6})
    assert problems(src, {}, limit=5) == [
        "pkg/long.py: 6 lines, more than 5: split it by job (or list it in ALLOWED with "
        "the reason, if it holds one class or one format)"]


def test_checker_accepts_a_long_module_of_one_class(tmp_path):
    body = "class A:\n" + "    x = 1\n" * 10
    src = _tree(tmp_path, {"pkg/one.py": body})
    assert problems(src, {"pkg/one.py": "one class: A"}, limit=5) == []


def test_checker_rejects_a_bad_allow_list_entry(tmp_path):
    two = "class A:\n    pass\n\n\nclass B:\n    pass\n"
    src = _tree(tmp_path, {"pkg/two.py": two, "pkg/small.py": "class C:\n    pass\n"})
    got = problems(src, {"pkg/two.py": "one class", "pkg/small.py": "",
                         "pkg/gone.py": "one format"}, limit=5)
    assert got == [
        "pkg/two.py: listed in ALLOWED as one class, but defines 2 top-level classes "
        "['A', 'B']",
        "pkg/small.py: listed in ALLOWED without a reason",
        "pkg/small.py: listed in ALLOWED but has only 2 lines: remove the entry",
        "pkg/gone.py: listed in ALLOWED but missing",
    ]
