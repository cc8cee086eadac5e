"""Benchmarks compute their summary rows and digests from the measurements: ``met``
follows the numbers (calibration, structured, end_to_end on made-up runs)."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.append(str(ROOT / "benchmarks"))  # after everything else: nothing is shadowed

import calibration  # noqa: E402
import end_to_end  # noqa: E402
import structured  # noqa: E402
import vgg19  # noqa: E402


def tune_runs(mpd_lr5: float) -> list[dict]:
    return [{"seed": s, "rows": [
        {"variant": "epochs=10", "dense_accuracy": 0.894, "accuracy": 0.870, "seconds": 1.0},
        {"variant": "epochs=10,lr=5e-3", "dense_accuracy": 0.892, "accuracy": mpd_lr5,
         "seconds": 1.0}]} for s in (0, 1, 2)]


@pytest.mark.parametrize("mpd, met", [(0.8856, True), (0.8830, False)])
def test_mpd_tune_target_against_the_best_dense(mpd, met):
    row = structured.tune_summary(tune_runs(mpd), types.SimpleNamespace(tune_blocks=10))
    assert row["met"] is met
    assert row["measured"] == pytest.approx(100 * (mpd - 0.894))  # the best dense: lr 1e-3
    assert "`epochs=10,lr=5e-3`" in row["note"] and "3-seed" in row["note"]


def test_mpd_tune_tables_average_the_seeds():
    variants, per_seed = structured.tune_tables(tune_runs(0.885),
                                                types.SimpleNamespace(tune_blocks=10))
    assert [r[0] for r in per_seed["rows"]] == [0, 1, 2, "mean"]
    assert variants["rows"][1][2] == pytest.approx(0.885)


def speed(layer: float) -> dict:
    rows = [{"batch": b, "method": m, "wall_s": 1.0, "cpu_s": 1.0, "speedup_wall": x,
             "speedup_cpu": x}
            for b in (1, 256) for m, x in (("dense nn.Linear", 1.0),
                                           ("BlockDiagLinear N=8 (torch.bmm)", layer),
                                           ("blockdiag format N=8 (numpy)", 7.0))]
    return {"size": 64, "blocks": 8, "groups": 1, "repeats": 3, "load_before": 1.0,
            "load_after": 1.0, "rows": rows}


@pytest.mark.parametrize("layer, met", [(4.2, True), (3.9, False)])
def test_block_diagonal_speed_target(layer, met):
    digest, full, row = structured.speed_tables(speed(layer))
    assert row["met"] is met and row["measured"] == layer
    assert [r[0] for r in digest["rows"]] == ["BlockDiagLinear N=8 (torch.bmm)",
                                              "blockdiag format N=8 (numpy)"]
    assert len(full["rows"]) == 6


def test_permuted_best_is_within_one_point():
    rows = [{"kind": k, "G": g, "accuracy": a, "reduction": 100 / g}
            for k in ("seeded", "data") for g, a in ((1, 0.870), (8, 0.881), (32, 0.890))]
    best = structured.best_permuted(rows, 0.89)
    assert best["seeded"]["G"] == 8 and best["data-derived"]["G"] == 8
    assert structured.best_permuted(rows, 0.95) == {"seeded": None, "data-derived": None}


def e2e_result(name: str, ratio: float, acc: float, fastest_ms: float) -> dict:
    files = {key: {"ratio": ratio, "accuracy": acc, "agree": 10000, "total": 10000}
             for key, *_ in end_to_end.CONVERSIONS}
    lat = {"dense torch baseline": 0.1, "compact smallest": 0.15, "compact fastest": fastest_ms,
           "compact fastest-compact": 0.12}
    return {"baseline_accuracy": 0.90, "files": files,
            "rows": [{"label": k, "latency_ms": {"1": v}} for k, v in lat.items()]}


def test_end_to_end_summary_follows_the_measurements():
    rows = end_to_end.summary({"lenet300": e2e_result("lenet300", 54.0, 0.898, 0.09),
                               "lenet5": e2e_result("lenet5", 39.0, 0.899, 0.11)})
    by = {r["target"]: r for r in rows}
    assert by["LeNet-300-100 file >= 50x at <= 0.5 points"]["met"] is True
    assert by["LeNet-5 file >= 40x at <= 0.5 points"]["met"] is False
    assert by["compact predictions = constrained dense, whole test set"]["met"] is True
    latency = by["batch-1 latency no worse than dense torch"]
    assert latency["met"] is False  # LeNet-5's fastest is slower than dense torch
    rows = end_to_end.summary({"lenet300": e2e_result("lenet300", 54.0, 0.898, 0.09)})
    latency = rows[-1]
    assert latency["met"] is True and latency["status"] == "met with `fastest`"


def test_calibration_digest_counts_gptq_ahead():
    def pt(method, k, near, gptq):
        return {"model": "lenet300", "start": "dense", "method": method, "k": k,
                "nearest": {"acc": near, "acc_ft": near, "bits": 1.0, "seconds": 0.0},
                "gptq": {"acc": gptq, "acc_ft": gptq, "bits": 1.0, "seconds": 0.5}}
    counts, extremes = calibration.digest([pt("uq", 2, 0.40, 0.85), pt("cws", 2, 0.78, 0.779),
                                           pt("cws", 4, 0.86, 0.88)])
    assert counts["rows"] == [["LeNet-300-100, dense", 3, 2, 3, [0.5, 0.5]]]
    assert [r[2] for r in extremes["rows"]] == ["UQ k=2", "CWS k=2"]


@pytest.mark.parametrize("one, two, met", [(80.0, 49.0, True), (80.0, 51.0, False)])
def test_scale_summary_reads_the_speedup_as_json_keeps_it(one, two, met):
    import scale

    speed = {"1": one, "2": two, "load_before": "1.0 1.0 1.0"}
    full = ["3b", 26, 26, 3426.5, 12.8, 3470.7, 2498.3, 1902.6, 20.1, "1.0"]
    rows = scale.summary([full], speed)
    assert rows[0]["met"] is True and rows[0]["measured"] == 2498.3
    assert rows[1]["met"] is met and rows[1]["measured"] == pytest.approx(one / two)


@pytest.mark.parametrize("ratio, compact, met", [(170.0, 0.9180, True), (170.0, 0.9160, False),
                                                 (160.0, 0.9300, False)])
def test_vgg19_target_needs_the_ratio_and_no_loss(ratio, compact, met):
    row = vgg19.fc_summary(ratio, 0.92, compact, 10000, "x")  # one standard error: 0.27
    assert row["met"] is met and row["measured"] == ratio
