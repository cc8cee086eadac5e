"""Benchmark results as JSON, and their markdown.

Every benchmark script ends with :func:`save`: ``benchmarks/results/NAME.json`` holds the
command line, the machine, the date, the package version and commit, and the
measurements as raw numbers in tables (each column says how its cells print), plus the
rows it contributes to the summary of targets. ``python benchmarks/render.py`` turns
those files into the generated sections of ``docs/results.md`` (:func:`render`); nothing
in a generated section is pasted by hand.

A table is ``{"columns": [{"name", "fmt", "align"}], "rows": [[cell, ...]]}``: a cell is
a string, a number, a list of numbers (``fmt`` has one field per number) or null (empty);
``fmt`` is a :meth:`str.format` template (``""`` for strings), ``align`` the markdown
separator (``---``, ``:--``, ``--:``). A summary row is ``{"issue", "target", "measured",
"met"}`` with optional ``fmt`` (for a numeric ``measured``), ``note`` (printed after the
value, in brackets) and ``status`` (the status cell, when ``met``/``missed`` says too
little).
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PAGE = "docs/results.md"  # where a result's section is, unless it names another page


def command_line() -> str:
    """The command that is running, as a user would type it."""
    return "python " + " ".join(shlex.quote(a) for a in sys.argv)


def machine() -> dict[str, Any]:
    """CPU model, physical cores and hardware threads of this machine."""
    model, cores = platform.processor() or platform.machine(), set()
    try:
        core: dict[str, str] = {}
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = (s.strip() for s in line.partition(":"))
            if key == "model name":
                model = value
            elif key in ("physical id", "core id"):
                core[key] = value
            elif not key and core:
                cores.add((core.get("physical id"), core.get("core id")))
                core = {}
    except OSError:
        pass
    threads = os.cpu_count() or 1
    return {"cpu": model, "cores": len(cores) or threads, "threads": threads}


def version() -> dict[str, str | None]:
    """The package version and the git commit of the checkout, ``+dirty`` when code that
    runs (src, benchmarks, the build files) differs from it; results and docs don't
    count."""
    try:
        pkg = metadata.version("compactnn")
    except metadata.PackageNotFoundError:
        pkg = None
    git = ["git", "-C", str(ROOT)]
    try:
        commit = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, check=True).stdout.strip()
        changed = subprocess.run(
            [*git, "status", "--porcelain", "--untracked-files=no", "--", "src", "benchmarks",
             ":(exclude)benchmarks/results", "setup.py", "pyproject.toml", "Makefile"],
            capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return {"version": pkg, "commit": None}
    return {"version": pkg, "commit": commit + ("-dirty" if changed else "")}


def table(columns: list[tuple[str, str, str]], rows: list[list[Any]],
          title: str | None = None, caption: str | None = None) -> dict[str, Any]:
    """A results table: ``columns`` as ``(name, fmt, align)``, ``rows`` of raw cells;
    ``title`` prints as a heading above it, ``caption`` as a paragraph."""
    out: dict[str, Any] = {"columns": [{"name": n, "fmt": f, "align": a} for n, f, a in columns],
                           "rows": rows}
    if title:
        out["title"] = title
    if caption:
        out["caption"] = caption
    return out


def record(name: str, tables: list[dict[str, Any]], *, text: str | None = None,
           summary: list[dict[str, Any]] | None = None, raw: Any = None,
           output: str | None = None, page: str = PAGE) -> dict[str, Any]:
    """One run's results with its metadata (what :func:`save` writes).

    ``text`` is a line printed above the tables (the backend, the rounds), ``summary``
    this benchmark's rows of the summary of targets, ``raw`` any further measurements,
    ``output`` a program's output shown verbatim after the tables, ``page`` the page
    (relative to the repository) whose section ``NAME`` shows it.
    """
    data = {"name": name, "command": command_line(), "machine": machine(),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            **version(), "text": text, "tables": tables, "summary": summary or []}
    if output is not None:
        data["output"] = output
    if page != PAGE:
        data["page"] = page
    if raw is not None:
        data["raw"] = raw
    return data


def save(name: str, tables: list[dict[str, Any]], *, text: str | None = None,
         summary: list[dict[str, Any]] | None = None, raw: Any = None,
         output: str | None = None, page: str = PAGE,
         directory: str | Path = RESULTS) -> dict[str, Any]:
    """Write ``directory/NAME.json`` (see :func:`record`) and return what it holds.

    ``summary=None`` is for a benchmark whose targets need a person's reading (such as a
    sweep's best point): it keeps the summary rows already in the file.
    """
    path = Path(directory) / f"{name}.json"
    if summary is None and path.exists():
        summary = json.loads(path.read_text())["summary"]
    data = record(name, tables, text=text, summary=summary, raw=raw, output=output, page=page)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=1, ensure_ascii=False, default=_plain) + "\n")
    tmp.replace(path)
    return data


def _plain(obj: Any) -> Any:
    """numpy scalars and arrays as JSON numbers and lists."""
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


def cell(value: Any, fmt: str) -> str:
    """One table cell as printed."""
    if value is None:
        return ""
    if isinstance(value, list):
        return fmt.format(*value)
    return fmt.format(value) if fmt else str(value)


def render_table(t: dict[str, Any]) -> str:
    """Markdown for one table."""
    cols = t["columns"]
    lines = [f"### {t['title']}\n"] if t.get("title") else []
    if t.get("caption"):
        lines.append(t["caption"] + "\n")
    lines.append("| " + " | ".join(c["name"] for c in cols) + " |")
    lines.append("|" + "|".join(c["align"] for c in cols) + "|")
    for row in t["rows"]:
        lines.append("| " + " | ".join(cell(v, c["fmt"]) for v, c in zip(row, cols, strict=True))
                     + " |")
    return "\n".join(lines)


def describe(data: dict[str, Any]) -> str:
    """Where and when the measurements were made, in one line."""
    m = data["machine"]
    where = f"{m['cpu']} ({m['cores']} cores, {m['threads']} threads)"
    return (f"Measured {data['date'][:10]} on {where}, compactnn {data['version']} at "
            f"{data['commit'] or 'an unknown commit'}.")


def render(data: dict[str, Any]) -> str:
    """The generated section of one benchmark's results."""
    parts = [f"Command: `{data['command']}`", describe(data)]
    if data.get("text"):
        parts.append(data["text"])
    parts += [render_table(t) for t in data["tables"]]
    if data.get("output") is not None:
        parts.append(f"```\n{data['output']}\n```")
    return "\n\n".join(parts)


def summary_row(r: dict[str, Any]) -> str:
    """One row of the summary of targets."""
    measured = cell(r["measured"], r.get("fmt", "")) if not isinstance(r["measured"], str) \
        else r["measured"]
    if r.get("note"):
        measured += f" ({r['note']})"
    status = r.get("status") or {True: "met", False: "**missed**", None: "reported"}[r["met"]]
    return f"| {r['issue']} | {r['target']} | {measured} | {status} |"


def render_summary(results: list[dict[str, Any]]) -> str:
    """The summary of targets: every benchmark's summary rows, in the given order."""
    lines = ["| issue | target | measured | status |", "|---|---|---|---|"]
    lines += [summary_row(r) for data in results for r in data["summary"]]
    return "\n".join(lines)


def publish(page: str | Path) -> None:
    """Rebuild the generated sections of ``page`` from the results files (``--docs``)."""
    from render import main

    main(["--page", str(page)])
