"""Rebuild every generated section of docs/results.md from benchmarks/results/*.json.

Each ``NAME.json`` (written by a benchmark script through ``_docs.save``) fills the
section between ``<!-- generated: NAME -->`` and ``<!-- end generated: NAME -->``; the
``summary`` section is the summary of targets, the rows of every file in ``SUMMARY``
order (a file without tables, such as a sweep whose tables live on its own page under
docs/results/, adds only its summary rows). The output depends on the JSON files alone
(no clock, no machine), so running it twice gives the same page.

Usage: python benchmarks/render.py [--check] [--page docs/results.md]
(``--check``: change nothing, exit 1 if the page differs from what the JSON gives)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _docs import RESULTS, ROOT, render, render_summary  # noqa: E402

# The order of the summary of targets (the order the issues were worked on).
SUMMARY = ("formats_targets", "formats_speed", "pipeline_lenet300", "pipeline_lenet5",
           "pipeline_lenet300-issue", "structured_mpd-tune", "structured_counts_mpd_permuted",
           "structured_speed", "end_to_end", "minilm_generated", "lossless_float",
           "codecs_lenet300", "codecs_lenet5", "hostile", "kernels", "model_speed", "minilm")


def load(directory: Path = RESULTS) -> dict[str, dict]:
    """Every results file, by name."""
    return {p.stem: json.loads(p.read_text()) for p in sorted(directory.glob("*.json"))}


def sections(results: dict[str, dict]) -> dict[str, str]:
    """Each generated section's body, by section name."""
    unknown = sorted(n for n, d in results.items() if d["summary"] and n not in SUMMARY)
    if unknown:
        raise SystemExit(f"error: {', '.join(unknown)} have summary rows but are not in "
                         "render.SUMMARY")
    out = {name: render(data) for name, data in results.items() if data["tables"]}
    out["summary"] = render_summary([results[n] for n in SUMMARY if n in results])
    return out


def rebuild(text: str, bodies: dict[str, str]) -> str:
    """``text`` with every generated section replaced; every section must be marked."""
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
    ap.add_argument("--page", type=Path, default=ROOT / "docs" / "results.md")
    ap.add_argument("--results", type=Path, default=RESULTS)
    ap.add_argument("--check", action="store_true", help="exit 1 if the page is out of date")
    args = ap.parse_args(argv)
    old = args.page.read_text()
    new = rebuild(old, sections(load(args.results)))
    if args.check:
        if new != old:
            print(f"{args.page} is out of date: run python benchmarks/render.py",
                  file=sys.stderr)
            return 1
        return 0
    if new != old:
        args.page.write_text(new)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
