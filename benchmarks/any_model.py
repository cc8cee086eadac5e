"""Issue 13 target: a GPT-2-architecture and a ViT-architecture model (>= 50 M parameters,
random weights from a config) through the CLI end to end on the CPU: ``compress`` (prune +
GPTQ-calibrated weight sharing + one distillation epoch), ``convert``, ``eval``, ``bench``;
wall time, CPU time (user + system: the honest number on a shared machine) and peak
resident memory of each command (a fresh process each, measured with
``os.wait4``), against the float32 size of the model.

    nice -n 19 python benchmarks/any_model.py --threads 2 [--kind gpt2|vit] [--out DIR]

Targets: under 10 minutes per model in all, peak memory under 3x the float32 size.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _docs import save

RECIPE = """\
- {method: prune, p: 50}
- {method: cws, k: 16, calibrate: 16}
- {method: finetune, epochs: 1, lr: 0.00001, batch_size: 8}
"""
WORDS = 8192


def _gpt2(path: Path, data: Path, samples: int, width: int = 768, layers: int = 7) -> int:
    import torch
    import transformers as tf
    from tokenizers import Tokenizer, models, pre_tokenizers

    words = [f"w{i}" for i in range(WORDS - 4)]
    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "[BOS]", "[EOS]", *words])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tf.PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]",
                               bos_token="[BOS]", eos_token="[EOS]").save_pretrained(path)
    torch.manual_seed(0)
    config = tf.GPT2Config(vocab_size=WORDS, n_embd=width, n_layer=layers, n_head=width // 64,
                           n_positions=256, bos_token_id=2, eos_token_id=3, pad_token_id=0)
    model = tf.GPT2LMHeadModel(config)
    model.save_pretrained(path)
    rng = np.random.default_rng(0)
    data.write_text("\n".join(" ".join(rng.choice(words, size=64)) for _ in range(samples))
                    + "\n")
    return sum(p.numel() for p in model.parameters())


def _vit(path: Path, data: Path, samples: int, width: int = 768, layers: int = 7) -> int:
    import torch
    import transformers as tf

    torch.manual_seed(0)
    config = tf.ViTConfig(hidden_size=width, num_hidden_layers=layers,
                          num_attention_heads=width // 64, intermediate_size=4 * width,
                          image_size=224, patch_size=16, num_labels=1000)
    model = tf.ViTForImageClassification(config)
    model.save_pretrained(path)
    rng = np.random.default_rng(0)
    np.save(data, rng.standard_normal((samples, 3, 224, 224)).astype(np.float32))
    return sum(p.numel() for p in model.parameters())


def _run(argv: list[str], threads: int) -> dict[str, float]:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "NUMBA_NUM_THREADS": str(threads),
           "MKL_NUM_THREADS": str(threads)}
    t0 = time.perf_counter()
    p = subprocess.Popen([sys.executable, "-W", "ignore", "-m", "compactnn.cli", *argv],
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = p.stdout.read()
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{out[-3000:]}")
    print(out.strip().splitlines()[-1] if out.strip() else "", flush=True)
    return {"seconds": round(wall, 1), "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 1),
            "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
            "output": out.strip().splitlines()[-6:]}


def bench_kind(kind: str, root: Path, threads: int, samples: int, width: int = 768,
               layers: int = 7) -> dict:
    """Build the model folder, then time each CLI command on it."""
    folder = root / kind
    data = root / (f"{kind}.txt" if kind == "gpt2" else f"{kind}.npy")
    params = (_gpt2 if kind == "gpt2" else _vit)(folder, data, samples, width, layers)
    recipe = root / "recipe.yaml"
    recipe.write_text(RECIPE)
    dense, compact = root / f"{kind}-dense.cnn", root / f"{kind}.cnn"
    steps = {
        "compress": ["compress", folder, "--recipe", recipe, "--data", data, "-o", dense],
        "convert": ["convert", dense, "-o", compact],
        "eval": ["eval", compact, "--data", data],
        "bench": ["bench", compact, "--data", data, "--batch-sizes", "1,8",
                  "--threads", str(threads)],
    }
    result = {"kind": kind, "parameters": params, "float32_mb": round(4 * params / 2**20, 1),
              "samples": samples, "threads": threads, "steps": {}}
    for name, argv in steps.items():
        print(f"[{kind}] {name} ...", flush=True)
        result["steps"][name] = _run([str(a) for a in argv], threads)
    result["total_seconds"] = round(sum(s["seconds"] for s in result["steps"].values()), 1)
    result["total_cpu_seconds"] = round(sum(s["cpu_seconds"] for s in result["steps"].values()),
                                        1)
    peak = max(s["peak_rss_mb"] for s in result["steps"].values())
    result["peak_rss_mb"] = peak
    result["peak_over_float32"] = round(peak / result["float32_mb"], 2)
    result["file_bytes"] = compact.stat().st_size
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kind", choices=["gpt2", "vit", "all"], default="all")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--samples", type=int, default=32, help="calibration/distillation samples")
    ap.add_argument("--width", type=int, default=768, help="hidden size (a multiple of 64)")
    ap.add_argument("--layers", type=int, default=7, help="transformer layers")
    ap.add_argument("--out", help="folder for the models and files (default: a temp folder)")
    ap.add_argument("--json", help="write the results here")
    a = ap.parse_args()
    kinds = ["gpt2", "vit"] if a.kind == "all" else [a.kind]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(a.out or tmp)
        root.mkdir(parents=True, exist_ok=True)
        results = [bench_kind(k, root, a.threads, a.samples, a.width, a.layers) for k in kinds]
    for r in results:
        print(json.dumps({k: v for k, v in r.items() if k != "steps"}))
        for name, s in r["steps"].items():
            print(f"  {name}: {s['seconds']} s wall, {s['cpu_seconds']} s CPU, "
                  f"peak {s['peak_rss_mb']} MB")
    name = "any_model" if a.kind == "all" else f"any_model_{a.kind}"
    if (a.width, a.layers) != (768, 7):
        name += f"_{a.width}x{a.layers}"
    save(name, [], summary=None, raw=results)
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
