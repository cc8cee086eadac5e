"""Rebuild every generated section of docs/results.md (and README.md) from
benchmarks/results/*.json.

Each ``NAME.json`` (written by a benchmark script through ``_docs.save``) fills the
section of its page (``docs/results.md`` unless the file names another) between
``<!-- generated: NAME -->`` and ``<!-- end generated: NAME -->``; the
``summary`` section is the summary of targets, the rows of every file in ``SUMMARY``
order (a file without tables, such as a sweep whose tables live on its own page under
docs/results/, adds only its summary rows). The output depends on the JSON files alone
(no clock, no machine), so running it twice gives the same page.

Usage: python benchmarks/render.py [--check] [--page docs/results.md]
(``--check``: change nothing, exit 1 if a page differs from what the JSON gives;
``--page``: that page only)
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

if str(Path(__file__).resolve().parent) not in sys.path:  # imported from elsewhere (tests)
    sys.path.append(str(Path(__file__).resolve().parent))

from _docs import PAGE, RESULTS, ROOT, render, render_summary  # noqa: E402

# The order of the summary of targets (the order the issues were worked on).
SUMMARY = ("formats_targets", "formats_speed", "pipeline_lenet300", "pipeline_lenet5",
           "pipeline_diabetes",
           "pipeline_lenet300-issue", "structured_mpd-tune", "structured_counts_mpd_permuted",
           "structured_speed", "end_to_end", "demo", "lossless_float",
           "codecs_lenet300", "codecs_lenet5", "search_lenet300", "search_lenet5", "vgg19",
           "hostile",
           "kernels", "model_speed", "minilm", "scale", "any_model")


def load(directory: Path = RESULTS) -> dict[str, dict]:
    """Every results file, by name."""
    return {p.stem: json.loads(p.read_text()) for p in sorted(directory.glob("*.json"))}


def sections(results: dict[str, dict]) -> dict[str, dict[str, str]]:
    """Each generated section's body, by page and section name."""
    unknown = sorted(n for n, d in results.items() if d["summary"] and n not in SUMMARY)
    if unknown:
        raise SystemExit(f"error: {', '.join(unknown)} have summary rows but are not in "
                         "render.SUMMARY")
    pages: dict[str, dict[str, str]] = {PAGE: {}}
    for name, data in results.items():
        if data["tables"] or data.get("output") is not None:
            pages.setdefault(data.get("page", PAGE), {})[name] = render(data)
    pages[PAGE]["summary"] = render_summary([results[n] for n in SUMMARY if n in results])
    return pages


def rebuild(text: str, bodies: dict[str, str]) -> str:
    """``text`` with every generated section replaced; every section must be marked, and
    every marked section must have results."""
    empty = sorted(set(re.findall(r"<!-- generated: (\S+) -->", text)) - set(bodies))
    if empty:
        raise SystemExit(f"error: no results for the marked section(s) {', '.join(empty)} "
                         "(run the benchmark, or remove the marker)")
    for name, body in bodies.items():
        begin, end = f"<!-- generated: {name} -->", f"<!-- end generated: {name} -->"
        if text.count(begin) != 1 or text.count(end) != 1:
            raise SystemExit(f"error: the page must mark section {name!r} once "
                             f"({begin} ... {end})")
        head, rest = text.split(begin)
        text = head + f"{begin}\n\n{body.strip()}\n\n{end}" + rest.split(end)[1]
    return text


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", type=Path, default=ROOT, help="the repository (pages are in it)")
    ap.add_argument("--results", type=Path, default=RESULTS)
    ap.add_argument("--check", action="store_true", help="exit 1 if a page is out of date")
    ap.add_argument("--page", type=Path, help="rebuild this page only")
    args = ap.parse_args(argv)
    stale = []
    for page, bodies in sections(load(args.results)).items():
        path = args.root / page
        if args.page and args.page.resolve() != path.resolve():
            continue
        old = path.read_text()
        new = rebuild(old, bodies)
        if new != old:
            stale.append(page)
            if not args.check:
                path.write_text(new)
    if args.check and stale:
        print(f"out of date: {', '.join(stale)}: run python benchmarks/render.py",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
