"""Seed 001's VGG19 result reproduced on Fashion-MNIST: a VGG19-style network (zoo
``vgg19``) whose fully connected layers are pruned 99% and weight-shared with 32, 32
and 2 values (``compactnn.zoo.presets.RECIPES["vgg19"]``), beside the paper's number
(about 165x smaller FC layers at no accuracy loss, Marinò et al.; ψ = 0.006).

The training set is split as ``benchmarks/ratio_search.py`` splits it (fixed
permutation, seed 0: a fit part and ``--val`` held-out images). The dense baseline is
trained on the fit part (Adam, cosine decay from 1e-3, batch 128, seed 0, ``--epochs``),
compressed with the recipe on the fit part (the convolutions stay dense float32 and are
fine-tuned with the rest), converted with ``to_compact(policy="smallest",
storage="auto")`` and saved packed (``save(..., pack=True)``), then reloaded from the
file and measured. During the compression the dropout rate is lowered to
``dropout·sqrt(kept fraction)`` (Han et al.'s rule for retraining a pruned net: 0.05
for 0.5 at 1% kept); the saved model names that rate, which does not change inference.

The FC layers' ratio is their float32 bytes (weights and biases) over their stored
bytes in the file, everything of those layers counted (codes, positions, codebooks and
coding tables of the weight arrays, and the biases as stored); the file's description
and the other tensors are counted in the whole-file ratio. "No loss": the compact
model's test accuracy is no more than one binomial standard error of a 10,000-image
accuracy (``sqrt(p (1 - p) / n)``, about 0.27 points at 92%) below the dense
baseline's; the validation accuracies are shown beside. Checkpoints are cached in
``--work``.

Usage: python benchmarks/vgg19.py [--work DIR] [--epochs 8] [--width 0.125]
       [--hidden 1024] [--val 10000] [--threads 1] [--data DIR]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch
from _docs import render, table
from _docs import save as save_results
from torch import nn

from compactnn import load, save, to_compact, train, zoo
from compactnn.bench.compare import predictions_agree
from compactnn.io import inspect
from compactnn.io.load import read_description
from compactnn.train.checkpoint import dense_file_bytes
from compactnn.transforms import Recipe, compress_
from compactnn.zoo.checkpoint import load_checkpoint, save_checkpoint
from compactnn.zoo.presets import RECIPES, model_kwargs

sys.path.insert(0, str(Path(__file__).parent))
from ratio_search import split  # noqa: E402  (the same fit / validation split)

PAPER_RATIO = 165.0  # seed 001: VGG19's FC layers, 99% pruned, 32/32/2 shared values
FC = ("classifier.fc1", "classifier.fc2", "classifier.fc3")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def retrain_dropout(model: nn.Module, keep: float) -> float:
    """Set every dropout rate ``p`` to ``p·sqrt(keep)`` (Han et al.); the new rate."""
    rate = 0.0
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.p = rate = m.p * math.sqrt(keep)
    return rate


def baseline(fit, kwargs: dict, epochs: int, work: Path) -> nn.Module:
    """The dense network trained on the fit part (cached in ``work``)."""
    path = work / "vgg19_baseline.safetensors"
    if path.exists():
        model, _, kw, info = load_checkpoint(path)
        if info.get("epochs") == epochs and kw == kwargs:
            return model.eval()
    torch.manual_seed(0)
    model = zoo.build("vgg19", **kwargs)
    t = time.perf_counter()
    train.fit(model, fit, epochs, lr=1e-3, batch_size=128, progress=False)
    log(f"vgg19: baseline trained in {time.perf_counter() - t:.0f} s")
    save_checkpoint(model, path, "vgg19", kwargs, epochs=epochs)
    return model.eval()


def constrained(base: nn.Module, fit, kwargs: dict, work: Path) -> tuple[nn.Module, dict]:
    """The baseline compressed with ``RECIPES["vgg19"]`` (cached in ``work``) and the
    constructor arguments it is saved with (the retraining dropout rate)."""
    path = work / "vgg19_compressed.safetensors"
    recipe = Recipe.from_list(RECIPES["vgg19"])
    if path.exists():
        model, _, kw, info = load_checkpoint(path)
        stored = info.get("recipe")
        if (isinstance(stored, list) and Recipe.from_list(stored).to_list() == recipe.to_list()
                and info.get("base") == kwargs):
            return model.eval(), kw
    model = zoo.build("vgg19", **kwargs)
    model.load_state_dict(base.state_dict())
    kw = {**kwargs, "dropout": retrain_dropout(model, 1 - RECIPES["vgg19"][0]["p"] / 100)}
    t = time.perf_counter()
    report = compress_(model, recipe, fit, progress=False)
    log(f"vgg19: compressed in {time.perf_counter() - t:.0f} s\n{report.table()}")
    save_checkpoint(model, path, "vgg19", kw, recipe=recipe.to_list(), base=kwargs)
    return model.eval(), kw


def fc_summary(ratio: float, dense_acc: float, compact_acc: float, n: int,
               setting: str) -> dict:
    """The summary row: met when the FC layers are >= ``PAPER_RATIO`` x smaller and the
    test accuracy is at most one binomial standard error of an ``n``-image accuracy
    below the dense one's."""
    se = 100 * math.sqrt(dense_acc * (1 - dense_acc) / n)
    change = 100 * (compact_acc - dense_acc)
    return {"issue": 15, "target": "VGG19-style FC layers >= 165x at no accuracy loss "
            "(seed 001)", "measured": ratio, "fmt": "{:.1f}x",
            "met": bool(ratio >= PAPER_RATIO and change >= -se),
            "note": f"{setting}; test {100 * compact_acc:.2f}% vs dense {100 * dense_acc:.2f}% "
                    f"({change:+.2f} points; no loss: within one standard error, "
                    f"{se:.2f})"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", default="/tmp/compactnn-vgg19", type=Path)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--width", type=float, default=0.125)
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--val", type=int, default=10000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--data", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    args.work.mkdir(parents=True, exist_ok=True)
    tr, te = zoo.load_dataset("fashion-mnist", args.data)
    fit, val = split(tr, args.val)
    kwargs = {**model_kwargs("vgg19", tr), "width": args.width, "hidden": args.hidden}
    base = baseline(fit, kwargs, args.epochs, args.work)
    model, saved_kw = constrained(base, fit, kwargs, args.work)
    cm = to_compact(model, "smallest", storage="auto")
    path = args.work / "vgg19.cnn"
    size = save(cm, path, zoo=("vgg19", saved_kw), pack=True)
    back = load(path)
    resaved = args.work / "vgg19_resaved.cnn"
    save(back, resaved, zoo=("vgg19", saved_kw), pack=True)
    identical = resaved.read_bytes() == path.read_bytes()
    x = te.tensors[0]
    agree, total = predictions_agree(back, model, x)
    acc = {k: {"dense": train.evaluate(base, d)["accuracy"],
               "compact": train.evaluate(back, d)["accuracy"]}
           for k, d in (("val", val), ("test", te))}

    _, _, _, stored, _ = read_description(path)
    formats = {li.name: li for li in inspect(path).layers}
    params = dict(model.named_parameters())
    layers, tot_f32, tot_stored = [], 0, 0
    for name in FC:
        w = model.get_submodule(name).weight.detach()
        nz = w[w != 0]
        f32 = 4 * (w.numel() + params[f"{name}.bias"].numel())
        weight_b = sum(b for k, b in stored.items() if k.startswith(f"{name}.weight."))
        bias_b = stored[f"{name}.bias"]
        li = formats[name]
        layers.append([name.split(".")[1], "x".join(map(str, w.shape)), int(nz.numel()),
                       100 * (1 - nz.numel() / w.numel()), int(torch.unique(nz).numel()),
                       f"{li.format} ({li.storage}" + (f", {li.coder})" if li.coder != "-"
                                                        else ")"),
                       weight_b, bias_b, f32, f32 / (weight_b + bias_b)])
        tot_f32 += f32
        tot_stored += weight_b + bias_b
    ratio = tot_f32 / tot_stored
    dense = dense_file_bytes(base)
    p = acc["test"]["dense"]
    change = 100 * (acc["test"]["compact"] - p)
    layers.append(["FC layers", "", sum(r[2] for r in layers), None, None, "",
                   sum(r[6] for r in layers), sum(r[7] for r in layers), tot_f32, ratio])
    pct = "{:.2f}%"
    tables = [
        table([("", "", ":---"), ("FC layers x smaller", "{:.1f}x", "---:"),
               ("whole file x smaller", "{:.1f}x", "---:"), ("dense test accuracy", pct, "---:"),
               ("compact test accuracy", pct, "---:"), ("change (points)", "{:+.2f}", "---:")],
              [["seed 001 (Marinò et al.): VGG19 on MNIST, 99% pruned, 32/32/2 values",
                PAPER_RATIO, None, None, None, None],
               [f"compactnn: VGG19-style (width {args.width:g}, FC {args.hidden}) on "
                "Fashion-MNIST, the same recipe", ratio, dense / size,
                100 * p, 100 * acc["test"]["compact"], change]],
              caption=f"Whole file: {size:,} B packed against the {dense:,} B float32 "
                      f"state dict (the convolutions are stored dense). Validation "
                      f"({args.val:,} held-out training images): dense "
                      f"{100 * acc['val']['dense']:.2f}%, compact "
                      f"{100 * acc['val']['compact']:.2f}%. Predictions of the reloaded "
                      f"file equal to the constrained dense model's: {agree}/{total}; "
                      f"saving the reloaded model again gives "
                      f"{'the same bytes' if identical else 'different bytes'}."),
        table([("layer", "", ":---"), ("shape", "", ":---"), ("non-zeros", "{:,}", "---:"),
               ("pruned", "{:.2f}%", "---:"), ("distinct", "{}", "---:"),
               ("format (storage, coder)", "", ":---"), ("weight bytes", "{:,}", "---:"),
               ("bias bytes", "{:,}", "---:"), ("float32 bytes", "{:,}", "---:"),
               ("x smaller", "{:.1f}x", "---:")], layers,
              caption="Weight bytes: every stored array of the layer's matrix (archive "
                      "stream or runtime arrays, codebook and tables included); bias "
                      "bytes: the bias as the packed file stores it (float32, coded by the "
                      "adaptive float coder where smaller)."),
    ]
    summary = [fc_summary(ratio, p, acc["test"]["compact"], len(te),
                          f"Fashion-MNIST, width {args.width:g}, FC {args.hidden}")]
    results = save_results(
        "vgg19", tables, summary=summary,
        raw={"accuracy": acc, "file_bytes": size, "dense_bytes": dense, "agree": agree,
             "resaved_identical": identical, "kwargs": saved_kw, "recipe": RECIPES["vgg19"],
             "wall_s": time.perf_counter() - t0})
    print(render(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
