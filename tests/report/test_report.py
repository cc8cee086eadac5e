"""compactnn.report on a small real file: a LeNet-300-100 for 8x8 digits, pruned and
weight-shared, saved with ``storage="auto"`` and measured by ``collect``."""

from __future__ import annotations

import base64
import math
import re
from html.parser import HTMLParser

import numpy as np
import pytest
import torch

from compactnn import load, save, to_compact, zoo
from compactnn.coding import entropy_bits
from compactnn.io import inspect
from compactnn.nn import to_dense
from compactnn.report import collect, render_html, write_report
from compactnn.train import evaluate

from ..io.helpers import constrain_

SECTIONS = ["Baseline vs compact", "Layers in the file", "Size per layer and format (bytes)",
            "Product time per layer and format (batch 1, microseconds)", "accuracy vs size",
            "Notes"]
VOID = {"meta", "img", "br", "hr", "link", "input"}


class Page(HTMLParser):
    """Checks that tags nest and close; collects headings, cell texts and images."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.h2: list[str] = []
        self.cells: list[str] = []
        self.images: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs)["src"])
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack.pop() != tag:
            self.errors.append(f"unexpected </{tag}>")

    def handle_data(self, data):
        self.text.append(data)
        if self.stack and self.stack[-1] == "h2":
            self.h2.append(data)
        if self.stack and self.stack[-1] == "td":
            self.cells.append(data)


def parse(page: str) -> Page:
    p = Page()
    p.feed(page)
    p.close()
    assert p.errors == [] and p.stack == [], (p.errors, p.stack)
    return p


@pytest.fixture(scope="module")
def digits_file(tmp_path_factory):
    _, test = zoo.load_dataset("digits")
    torch.manual_seed(0)
    model = constrain_(zoo.build("lenet300", in_features=64), seed=1, sparsity=0.85).eval()
    path = tmp_path_factory.mktemp("report") / "lenet.cnn"
    save(to_compact(model, "smallest", storage="auto"), path,
         zoo=("lenet300", {"in_features": 64}))
    return path, test


@pytest.fixture(scope="module")
def report(digits_file):
    path, test = digits_file
    return collect(path, test, batch_sizes=(1, 8), repeats=2)


def test_layers_table_is_the_file(digits_file, report):
    path, _ = digits_file
    info = inspect(path)
    rows = {r["layer"]: r for r in report.layers_table}
    for li in info.layers:
        r = rows[li.name]
        assert (r["format"], r["bytes"]) == (li.format, li.stored_bytes)
        assert r["shape"] == f"{li.shape[0]}x{li.shape[1]}"
        assert r["bits/weight"] == round(li.bits_per_weight, 3)
    assert rows["file"]["bytes"] == path.stat().st_size == info.file_bytes
    assert rows["plain tensors + header"]["bytes"] == info.state_bytes + info.header_bytes


def test_summary_measures_the_file(digits_file, report):
    path, test = digits_file
    compact, twin = report.summary
    assert compact["model"] == "compact file" and compact["bytes"] == path.stat().st_size
    assert compact["accuracy"] == round(evaluate(load(path), test)["accuracy"], 5)
    dense = to_dense(load(path)).state_dict().values()
    assert twin["model"] == "dense twin (float32)"
    assert twin["bytes"] == 4 * sum(v.numel() for v in dense)
    assert compact["ratio"] == 1.0 and twin["ratio"] == round(compact["bytes"] / twin["bytes"], 2)
    for row in report.summary:
        for b in (1, 8):
            assert row[f"latency b={b} (ms)"] > 0 and row[f"throughput b={b} (/s)"] > 0
    assert [p.bytes for p in report.points] == [r["bytes"] for r in report.summary]
    assert any("agree" in n for n in report.notes)


def test_sizes_are_the_layers_in_each_format(digits_file, report):
    model = load(digits_file[0])
    layers = {name: m.matrices[0].to_dense() for name, m in model.named_modules()
              if hasattr(m, "matrices")}
    assert set(report.sizes) == set(layers) == set(report.times)
    for name, W in layers.items():
        row = report.sizes[name]
        assert row["dense"] == W.nbytes
        assert row["entropy bound"] == math.ceil(entropy_bits(W) / 8)
        assert row["archive"] <= row["dense"]
        assert all(t > 0 for t in report.times[name].values())


def test_html_is_well_formed_with_every_section(digits_file, report, tmp_path):
    page = render_html(report)
    p = parse(page)
    assert p.h2 == SECTIONS
    text = " ".join(p.text)
    assert not re.search(r"\bnan\b|\binf\b", text, re.I)
    assert str(digits_file[0].stat().st_size) in p.cells
    assert str(report.summary[0]["accuracy"]) in p.cells
    assert len(p.images) == 3  # bytes per format, time per format, accuracy vs size
    for src in p.images:
        assert src.startswith("data:image/png;base64,")
        png = base64.b64decode(src.split(",", 1)[1], validate=True)
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 1000
    out = tmp_path / "report.html"
    write_report(report, out)
    written = out.read_text()
    assert written.startswith("<!DOCTYPE html>") and parse(written).h2 == SECTIONS


def test_escapes_names(report):
    from dataclasses import replace

    page = render_html(replace(report, title="<script>x</script> & co"))
    assert "<script>x" not in page and "&lt;script&gt;x&lt;/script&gt; &amp; co" in page


def test_collect_needs_a_zoo_file(tmp_path):
    model = constrain_(torch.nn.Sequential(torch.nn.Linear(8, 4)))
    path = tmp_path / "plain.cnn"
    save(to_compact(model, "csr"), path)
    with pytest.raises(ValueError, match="reports need a zoo model file"):
        collect(path)


def test_without_test_data_no_metric_rows(digits_file):
    data = collect(digits_file[0], repeats=1)
    assert data.summary == [] and data.points == []
    p = parse(render_html(data))
    assert "accuracy vs size" not in p.h2 and len(p.images) == 2
    assert np.isfinite([v for row in data.times.values() for v in row.values()]).all()
