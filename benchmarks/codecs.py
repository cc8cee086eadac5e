"""Side by side: compactnn's smallest file and NNCodec (DeepCABAC) on the same
constrained LeNet-300-100 or LeNet-5, with general-purpose compressors as a floor.

The model (``--model``) is LeNet-300-100 or LeNet-5 on Fashion-MNIST, trained and
compressed with its recipe (``compactnn.zoo.presets.RECIPES``) exactly as
``benchmarks/end_to_end.py`` does, sharing its checkpoints in ``--work``. Its
constrained weights and biases (the dense twin of the compact model, bit-identical)
are then stored four ways, and each is decoded and evaluated on the test set:

- compactnn: ``to_compact(policy="smallest", storage="auto")`` and ``save``, in the
  safetensors layout and in the packed layout (``save(..., pack=True)``: compressed
  description, entropy-coded biases); each file is loaded back and run (everything
  counted: description, tables, biases);
- gzip -9, xz -9e and zstd -19 (when the ``zstd`` program exists) of the float32
  safetensors file of the same weights (lossless);
- NNCodec (the reference software of ISO/IEC 15938-17, DeepCABAC), only with
  ``--nncodec-venv DIR``: ``nncodec.nnc.compression.compress`` with
  ``codebook_mode=1`` at each ``--qps`` value on the numpy dict of the same weights
  and biases, then ``decompress``; the decoded tensors are loaded into the model and
  evaluated; the same again with the weights alone (biases kept exact), to compare
  the weight coding by itself. NNCodec is never a dependency of compactnn: if ``DIR``
  has no NNCodec, a virtual environment is made there with numpy, pybind11 and setuptools, the sdist
  of ``nncodec==--nncodec-version`` is fetched with ``pip download --no-deps`` and
  built with ``pip install --no-deps --no-build-isolation`` (a C++ compiler is needed).
  Its ``framework`` package (torch/tensorflow adapters) is replaced by empty modules;
  only the numpy path is used.

Usage: python benchmarks/codecs.py [--model lenet300|lenet5] [--work DIR]
       [--nncodec-venv DIR] [--qps -38,-34,-30] [--data DIR] [--threads 1]
"""

from __future__ import annotations

import argparse
import gzip
import json
import lzma
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _docs import render, table
from _docs import save as save_results
from safetensors.torch import save as st_save

from compactnn import load, save, to_compact, train, zoo
from compactnn.bench import threads
from compactnn.io import inspect
from compactnn.nn import to_dense
from compactnn.train.checkpoint import dense_file_bytes
from compactnn.zoo.presets import model_kwargs

sys.path.insert(0, str(Path(__file__).parent))
from end_to_end import baseline, compressed  # noqa: E402  (the same checkpoints)

EPOCHS = {"lenet300": 20, "lenet5": 12}  # end_to_end.py's defaults

WORKER = r'''
import json, sys, types
import numpy as np
fw = types.ModuleType("nncodec.framework")  # torch/tensorflow adapters: not needed
for sub in ("tensorflow_model", "pytorch_model", "use_case_init"):
    mod = types.ModuleType("nncodec.framework." + sub)
    setattr(fw, sub, mod)
    sys.modules[mod.__name__] = mod
sys.modules["nncodec.framework"] = fw
from nncodec.nnc import compression

src, out, qps = sys.argv[1], sys.argv[2], [int(q) for q in sys.argv[3].split(",")]
params = {k: np.ascontiguousarray(v, np.float32) for k, v in np.load(src).items()}
results, decoded = [], {}
for qp in qps:
    bs = compression.compress(params, bitstream_path=out + ".nnc", qp=qp, codebook_mode=1,
                              return_bitstream=True, verbose=False)
    dec = compression.decompress(bs)
    results.append({"qp": qp, "bytes": len(bs)})
    decoded.update({f"{qp}/{k}": np.asarray(dec[k], np.float32) for k in params})
np.savez(out, **decoded)
print(json.dumps(results))
'''


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def ensure_nncodec(venv: Path, version: str) -> Path:
    """The python of a virtual environment holding NNCodec, built there if missing."""
    py = venv / "bin" / "python"
    if py.exists() and subprocess.run([str(py), "-m", "pip", "show", "nncodec"],
                                      capture_output=True).returncode == 0:
        return py
    log(f"building NNCodec {version} from its sdist into {venv}")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(py), "-m", "pip", "install", "-q"]
    subprocess.run(pip + ["numpy", "pybind11", "setuptools", "wheel"], check=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([str(py), "-m", "pip", "download", "-q", "--no-deps", "--no-binary",
                        ":all:", f"nncodec=={version}", "-d", tmp], check=True)
        sdist = next(Path(tmp).glob("nncodec-*"))
        subprocess.run(pip + ["--no-deps", "--no-build-isolation", str(sdist)], check=True)
    return py


def with_params(model: torch.nn.Module, params: dict[str, np.ndarray]) -> torch.nn.Module:
    """A copy of the plain model with ``params`` loaded (same names and shapes)."""
    import copy

    m = copy.deepcopy(model)
    state = m.state_dict()
    state.update({k: torch.from_numpy(np.ascontiguousarray(v).reshape(state[k].shape))
                  for k, v in params.items()})
    m.load_state_dict(state)
    return m.eval()


def floors(plain: torch.nn.Module) -> dict[str, int]:
    """Sizes of the float32 safetensors file of ``plain`` and its general-purpose
    compressions."""
    raw = st_save({k: v.contiguous() for k, v in plain.state_dict().items()})
    out = {"float32 safetensors": len(raw), "gzip -9": len(gzip.compress(raw, 9, mtime=0)),
           "xz -9e": len(lzma.compress(raw, preset=9 | lzma.PRESET_EXTREME))}
    if shutil.which("zstd"):
        z = subprocess.run(["zstd", "-19", "-q", "-c"], input=raw, capture_output=True,
                           check=True).stdout
        out["zstd -19"] = len(z)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="lenet300", choices=sorted(EPOCHS))
    ap.add_argument("--work", default="/tmp/compactnn-e2e")
    ap.add_argument("--data", default=None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--nncodec-venv", default=None, type=Path)
    ap.add_argument("--nncodec-version", default="2.1.3")
    ap.add_argument("--qps", default="-38,-34,-30")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    torch.set_num_threads(args.threads)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    tr, te = zoo.load_dataset("fashion-mnist", args.data)
    name = args.model
    base = baseline(name, tr, te, EPOCHS[name], work)
    constrained = compressed(name, base, tr, te, work)
    with threads(args.threads):
        cm = to_compact(constrained, "smallest", storage="auto")
    spec = (name, model_kwargs(name, tr))
    path, ppath = work / f"codecs_{name}.cnn", work / f"codecs_{name}_packed.cnn"
    plain_size = save(cm, path, zoo=spec)
    size = save(cm, ppath, zoo=spec, pack=True)
    back, pback = load(path), load(ppath)
    plain = to_dense(back)  # the constrained weights, bit-identical, as plain layers
    for k, v in to_dense(pback).state_dict().items():
        if not torch.equal(v, plain.state_dict()[k]):
            raise SystemExit(f"packed file decodes {k} differently")
    rows = [("float32 baseline (dense, unconstrained)", dense_file_bytes(base),
             train.evaluate(base, te)["accuracy"])]
    acc_constrained = train.evaluate(plain, te)["accuracy"]
    rows += [(f"constrained, {k}", b, acc_constrained) for k, b in floors(plain).items()]
    rows.append(("compactnn smallest/auto (.cnn)", plain_size,
                 train.evaluate(back, te)["accuracy"]))
    rows.append(("compactnn smallest/auto, packed (.cnn)", size,
                 train.evaluate(pback, te)["accuracy"]))
    detail = []
    layers_bytes = sum(li.stored_bytes for li in inspect(ppath).layers)
    for label, p in (("safetensors layout", path), ("packed layout", ppath)):
        info = inspect(p)
        detail.append(
            f"compactnn file, {label}: {info.file_bytes} bytes = layers "
            f"{sum(li.stored_bytes for li in info.layers)} + plain tensors "
            f"{info.state_bytes} + header/description {info.header_bytes}; "
            + ", ".join(f"{li.name} {li.format}/{li.storage}/{li.coder} {li.stored_bytes} B"
                        for li in info.layers))
    if args.nncodec_venv is not None:
        py = ensure_nncodec(args.nncodec_venv.resolve(), args.nncodec_version)
        params = {k: v.detach().numpy() for k, v in plain.state_dict().items()}
        weights = {k: v for k, v in params.items() if k.endswith(".weight")}
        worker = work / "nncodec_worker.py"
        worker.write_text(WORKER)
        for tag, subset in (("", params), (" (weights only)", weights)):
            src, out = work / "nncodec_in.npz", work / "nncodec_out"
            np.savez(src, **subset)
            res = subprocess.run([str(py), str(worker), str(src), str(out), args.qps],
                                 capture_output=True, text=True, cwd=work)
            if res.returncode:
                raise SystemExit(f"NNCodec failed:\n{res.stderr[-2000:]}")
            decoded = np.load(str(out) + ".npz")
            for r in json.loads(res.stdout.strip().splitlines()[-1]):
                dec = {k: decoded[f"{r['qp']}/{k}"] for k in subset}
                err = max(float(np.abs(dec[k] - subset[k]).max()) for k in subset)
                acc = train.evaluate(with_params(plain, dec), te)["accuracy"]
                rows.append((f"NNCodec {args.nncodec_version} codebook_mode=1 qp={r['qp']}{tag}",
                             r["bytes"], acc))
                detail.append(f"NNCodec qp={r['qp']}{tag}: largest weight change {err:.3g}")
        nnc_w = [b for label, b, _ in rows if label.endswith("(weights only)")]
        detail.append(f"weights alone: compactnn archives {layers_bytes} B, smallest NNCodec "
                      f"weights-only stream {min(nnc_w)} B, ratio {layers_bytes / min(nnc_w):.3f}")
    dense = rows[0][1]
    nnc = [b for label, b, _ in rows if label.startswith("NNCodec") and "only" not in label]
    summary = [{"issue": 15, "target": f"compactnn's file <= 0.9x NNCodec's stream, same "
                f"weights ({name})", "measured": size / min(nnc), "fmt": "{:.3f}x",
                "met": size / min(nnc) <= 0.9,
                "note": f"packed {size:,} vs {min(nnc):,} B; weights alone "
                        f"{layers_bytes / min(nnc_w):.3f}x"}] if nnc else []
    results = save_results(
        f"codecs_{name}", [table([("model / coder", "", ":---"), ("bytes", "{}", "---:"),
                                  ("x vs float32 baseline", "{:.1f}x", "---:"),
                                  ("test accuracy", "{:.2f}%", "---:")],
                                 [[label, b, dense / b, 100 * acc] for label, b, acc in rows])],
        summary=summary, raw={"detail": detail, "wall_s": time.perf_counter() - t0})
    print(render(results) + "\n\n" + "\n".join(detail))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
