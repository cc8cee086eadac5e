"""The docs: generated sections equal what the benchmark results give, the results files
carry their metadata, and no page holds pasted warnings or shell noise."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.append(str(ROOT / "benchmarks"))  # after everything else: nothing is shadowed

import _docs  # noqa: E402
import render  # noqa: E402

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]

# What a pasted terminal leaves behind: Python warnings and tracebacks, exit-status
# echoes, shell prompts, colour codes.
NOISE = re.compile(r"\w*Warning\b|\bTraceback\b|\brc=|^\s*\$ |\x1b\[", re.M)


def noise(text: str) -> list[str]:
    """The lines of ``text`` that look like pasted terminal output, numbered."""
    return [f"{i}: {line.strip()[:120]}" for i, line in enumerate(text.splitlines(), 1)
            if NOISE.search(line)]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_page_has_no_shell_noise(page):
    assert noise(page.read_text()) == []


@pytest.mark.parametrize("line", [
    "/work/main/benchmarks/formats.py:111: UserWarning: Sparse CSR tensor support is in beta",
    "Traceback (most recent call last):",
    "rc=0",
    "$ compactnn demo --out demo_out",
    "Warning: the machine was busy",
    "  RuntimeWarning: overflow encountered",
    "\x1b[32mok\x1b[0m",
])
def test_noise_check_catches(line):
    assert noise(f"prose\n{line}\nprose") == [f"2: {line.strip()[:120]}"]


def test_generated_sections_equal_the_results():
    assert render.main(["--check"]) == 0, "run python benchmarks/render.py"


RESULT_PAGES = [ROOT / "docs" / "results.md", *sorted((ROOT / "docs" / "results").glob("*.md"))]

def hand_tables(text: str) -> list[str]:
    """Table lines of ``text`` outside its generated sections, numbered."""
    out, inside = [], False
    for i, line in enumerate(text.splitlines(), 1):
        if line.startswith("<!-- generated: "):
            inside = True
        elif line.startswith("<!-- end generated: "):
            inside = False
        elif line.lstrip().startswith("|") and not inside:
            out.append(f"{i}: {line.strip()[:120]}")
    return out


@pytest.mark.parametrize("page", RESULT_PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_results_tables_are_generated(page):
    assert hand_tables(page.read_text()) == [], "a results table must come from a benchmark's JSON"


def test_hand_table_check_catches():
    page = "| a |\n|---|\n<!-- generated: x -->\n| b |\n<!-- end generated: x -->\n  | c |\n"
    assert hand_tables(page) == ["1: | a |", "2: |---|", "6: | c |"]


def test_results_come_from_runs():
    """No results file holds numbers typed in from a page."""
    assert [n for n, d in render.load().items() if d.get("converted")] == []


def test_every_benchmark_writes_results():
    scripts = [p for p in (ROOT / "benchmarks").glob("*.py") if not p.name.startswith("_")
               and p.name != "render.py"]
    assert scripts
    for p in scripts:
        assert re.search(r"^from _docs import .*\bsave\b", p.read_text(), re.M), p.name


def test_summary_rows_come_from_listed_results():
    results = render.load()
    assert {n for n, d in results.items() if d["summary"]} <= set(render.SUMMARY)
    for data in results.values():
        for row in data["summary"]:
            assert {"issue", "target", "measured", "met"} <= set(row)
            assert row["met"] in (True, False, None)


def test_save_records_metadata_and_renders(tmp_path):
    t = _docs.table([("case", "", ":--"), ("bytes", "{:,}", "--:"), ("ms", "{:.2f}", "--:"),
                     ("cell", "{} B {:.1f}x", "---")],
                    [["a", 1234567, 0.125, [10, 2.0]], ["b", 5, None, [3, 0.25]]], title="T")
    summary = [{"issue": 1, "target": "x >= 2", "measured": 2.5, "fmt": "{:.1f}x",
                "met": True, "note": "case a"}]
    data = _docs.save("demo_case", [t], text="one line", summary=summary, raw={"n": 1},
                      directory=tmp_path)
    stored = json.loads((tmp_path / "demo_case.json").read_text())
    assert stored == data
    assert stored["command"].startswith("python ")
    assert set(stored["machine"]) == {"cpu", "cores", "threads"}
    assert stored["machine"]["threads"] >= stored["machine"]["cores"] >= 1
    assert stored["date"][:2] == "20" and "version" in stored and "commit" in stored
    body = _docs.render(stored)
    assert body == _docs.render(json.loads(json.dumps(stored)))  # from the JSON alone
    assert ("| case | bytes | ms | cell |\n|:--|--:|--:|---|\n"
            "| a | 1,234,567 | 0.12 | 10 B 2.0x |\n| b | 5 |  | 3 B 0.2x |") in body
    assert _docs.render_summary([stored]).endswith("| 1 | x >= 2 | 2.5x (case a) | met |")
    # a later run without summary rows keeps the reviewed ones
    _docs.save("demo_case", [t], summary=None, directory=tmp_path)
    assert json.loads((tmp_path / "demo_case.json").read_text())["summary"] == summary


def test_rebuild_replaces_only_marked_sections():
    page = "intro\n<!-- generated: a -->\nold\n<!-- end generated: a -->\nkept\n"
    assert render.rebuild(page, {"a": "new"}) == (
        "intro\n<!-- generated: a -->\n\nnew\n\n<!-- end generated: a -->\nkept\n")
    with pytest.raises(SystemExit, match="must mark section 'b'"):
        render.rebuild(page, {"a": "new", "b": "x"})
    with pytest.raises(SystemExit, match="no results for the marked section"):
        render.rebuild(page + "<!-- generated: c -->\n<!-- end generated: c -->\n", {"a": "new"})
