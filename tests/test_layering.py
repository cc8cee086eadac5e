"""The import contract of docs/architecture.md ("Layer order"), checked on the source.

Every import statement in ``src/compactnn`` (module level and inside functions,
absolute and relative, plus ``importlib.import_module`` with a literal name) may name
only its own package or packages to its left in ``LAYERS``; the bottom modules
(``BOTTOM``) and the package root import no package at all. Module-level imports form
no cycle between modules. The checker is run on synthetic trees below to show that it
reports an upward import and a cycle.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = "compactnn"
SRC = Path(__file__).resolve().parents[1] / "src" / ROOT

#: left to right: a package may import only itself and the packages before it
LAYERS = ("kernels", "coding", "formats", "cost", "nn", "io", "train", "transforms",
          "zoo", "stream", "bench", "report", "cli", "__main__")
#: modules directly in compactnn/ below every package (the package root counts as one)
BOTTOM = ("_validate", "errors")


@dataclass(frozen=True)
class Edge:
    """One import statement: ``source`` module imports ``target`` module."""

    source: str
    target: str
    file: str
    line: int
    top_level: bool  # runs when ``source`` is imported (not inside a function)
    verb: str = "imports"  # or "names" (the module named in a string, imported later)


def module_names(src: Path, root: str = ROOT) -> dict[str, Path]:
    """Dotted module name -> file for every ``.py`` file under ``src``."""
    names = {}
    for path in sorted(src.rglob("*.py")):
        parts = [root, *path.relative_to(src).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def rank(module: str, root: str = ROOT) -> int:
    """Position of ``module`` in the layer order (-1 for the bottom modules and the root)."""
    parts = module.split(".")
    if parts[0] != root:
        raise ValueError(f"{module} is not in {root}")
    if len(parts) == 1 or parts[1] in BOTTOM:
        return -1
    if parts[1] not in LAYERS:
        raise ValueError(f"{module}: package {parts[1]!r} has no place in the layer order "
                         f"(add it to LAYERS and docs/architecture.md)")
    return LAYERS.index(parts[1])


def _resolve(base: str, name: str | None, known: dict[str, Path]) -> str:
    """The module ``from base import name`` loads: ``base.name`` if that is a module."""
    if name is not None and f"{base}.{name}" in known:
        return f"{base}.{name}"
    return base


def edges(src: Path, root: str = ROOT) -> list[Edge]:
    """Every import of a ``root`` module by a module under ``src``."""
    known = module_names(src, root)
    found: list[Edge] = []
    for module, path in known.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        is_package = path.name == "__init__.py"
        package = module if is_package else module.rpartition(".")[0]
        nested = {id(n) for fn in ast.walk(tree)
                  if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
                  for n in ast.walk(fn) if n is not fn}

        docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                      if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef,
                                        ast.AsyncFunctionDef))
                      and n.body and isinstance(n.body[0], ast.Expr)
                      and isinstance(n.body[0].value, ast.Constant)}
        targets: list[tuple[str, ast.AST, bool, str]] = []  # module, node, at import, verb
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets += [(a.name, node, id(node) not in nested, "imports")
                            for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    parts = package.split(".")
                    keep = len(parts) - (node.level - 1)
                    if keep < 1:
                        raise ValueError(f"{path}:{node.lineno}: relative import above {root}")
                    base = ".".join(parts[:keep] + ([node.module] if node.module else []))
                else:
                    base = node.module or ""
                targets += [(_resolve(base, a.name, known), node, id(node) not in nested,
                             "imports") for a in node.names]
            elif (isinstance(node, ast.Constant) and isinstance(node.value, str)
                  and id(node) not in docstrings and module != root):
                # a module named in a string ("compactnn.x.y" or "compactnn.x.y:attr"):
                # importlib.import_module, a table of providers to import later
                name = node.value.partition(":")[0]
                if name in known and name != root:
                    targets.append((name, node, False, "names"))
        found += [Edge(module, t, str(path.relative_to(src.parent)), n.lineno, top, verb)
                  for t, n, top, verb in targets if t == root or t.startswith(root + ".")]
    return found


def upward(found: list[Edge], root: str = ROOT) -> list[str]:
    """One line per import of a package to the importer's right (for a bottom module
    or the root: of any package)."""
    bad: list[str] = []
    for e in found:
        a, b = rank(e.source, root), rank(e.target, root)
        if b > a:
            bad.append(f"{e.file}:{e.line}: {e.source} {e.verb} {e.target} "
                       f"({_layer(e.source)} may not import {_layer(e.target)})")
    return list(dict.fromkeys(bad))


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def cycles(found: list[Edge]) -> list[list[str]]:
    """Groups of modules that import each other in a circle at module level.

    Importing ``a.b.c`` first runs the ``__init__`` of ``a.b``, so an import also counts
    as one of each enclosing package of the target that does not enclose the importer
    (a module importing a sibling through its own package's ``__init__`` is normal)."""
    graph: dict[str, set[str]] = {}
    for e in found:
        if not e.top_level:
            continue
        parts = e.target.split(".")
        targets = {e.target} | {".".join(parts[:i]) for i in range(2, len(parts))}
        for t in targets:
            if t != e.source and not (e.source + ".").startswith(t + "."):
                graph.setdefault(e.source, set()).add(t)
                graph.setdefault(t, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's algorithm
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(groups)


# ----------------------------------------------------------------------------- the source


def test_every_package_has_a_layer() -> None:
    for module in module_names(SRC):
        rank(module)  # raises for a package missing from LAYERS


def test_no_upward_import() -> None:
    bad = upward(edges(SRC))
    assert not bad, "imports against the layer order:\n" + "\n".join(bad)


def test_no_import_cycle() -> None:
    found = cycles(edges(SRC))
    assert not found, "module-level import cycles:\n" + "\n".join(" <-> ".join(g) for g in found)


def test_docs_state_the_same_order() -> None:
    text = (SRC.parents[1] / "docs" / "architecture.md").read_text()
    assert " < ".join(LAYERS) in text


# ---------------------------------------------------------------------- the checker itself


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    src = tmp_path / "compactnn"
    for name, body in files.items():
        path = src / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(body)
    for folder in [src, *(p for p in src.rglob("*") if p.is_dir())]:
        (folder / "__init__.py").touch()
    return src


@pytest.mark.parametrize("statement", [
    "from ..nn import layers",                       # relative, module level
    "import compactnn.nn.layers",                    # absolute
    "from compactnn.nn.layers import CompactLinear",
    "def f():\n    from ..nn.layers import X\n",      # inside a function
    "def f():\n    import importlib\n    return importlib.import_module('compactnn.nn')\n",
    "from .. import nn",
])
def test_checker_reports_an_upward_import(tmp_path: Path, statement: str) -> None:
    src = _tree(tmp_path, {"formats/base.py": "", "formats/csr.py": statement + "\n",
                           "nn/layers.py": "from ..formats import base\n"})
    bad = upward(edges(src))
    assert len(bad) == 1 and re.search(r"compactnn\.formats\.csr (imports|names) compactnn\.nn",
                                       bad[0]), bad
    assert "formats may not import nn" in bad[0]


def test_checker_allows_downward_and_same_package(tmp_path: Path) -> None:
    src = _tree(tmp_path, {"formats/base.py": "from ..kernels import csr\nfrom . import csr\n",
                           "formats/csr.py": "import compactnn.kernels.csr\n",
                           "kernels/csr.py": "", "cli/main.py": "from compactnn import nn, io\n",
                           "_validate.py": "import math\n"})
    assert upward(edges(src)) == []


def test_checker_reports_a_bottom_module_importing_a_package(tmp_path: Path) -> None:
    src = _tree(tmp_path, {"_validate.py": "from .formats import base\n", "formats/base.py": ""})
    assert len(upward(edges(src))) == 1


def test_checker_reports_a_cycle_but_not_a_lazy_one(tmp_path: Path) -> None:
    src = _tree(tmp_path, {"nn/a.py": "from . import b\n", "nn/b.py": "from .a import x\n",
                           "nn/c.py": "from . import d\n",
                           "nn/d.py": "def f():\n    from . import c\n"})
    assert cycles(edges(src)) == [["compactnn.nn.a", "compactnn.nn.b"]]


def test_checker_reports_a_module_named_in_a_string(tmp_path: Path) -> None:
    src = _tree(tmp_path, {"io/adapters.py": '"""Docstring naming compactnn.zoo.models."""\n'
                                             'PROVIDERS = {"zoo": "compactnn.zoo.models:build"}\n',
                           "zoo/models.py": "", "__init__.py": 'LAZY = {"x": "compactnn.zoo"}\n'})
    bad = upward(edges(src))
    assert len(bad) == 1 and "compactnn.io.adapters names compactnn.zoo.models" in bad[0], bad


def test_checker_rejects_an_unplaced_package(tmp_path: Path) -> None:
    src = _tree(tmp_path, {"extras/thing.py": ""})
    with pytest.raises(ValueError, match="no place in the layer order"):
        [rank(m) for m in module_names(src)]
