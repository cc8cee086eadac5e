"""Structured methods: permuted-feature layers and MPDCompress block masks.

Sections (everything measured in this process, on 1 thread):

1. ``counts``: VGG16 (224x224, 1000 classes) parameter count with one base sequence per
   hidden FC layer and the last layer dense, from the architecture alone.
2. ``mpd``: LeNet-300-100 on Fashion-MNIST, trained from scratch with N-block masks on
   every layer (rescaled initialisation), N in {2, 4, 8, 10, 16}, and N = 10 with the
   classifier dense, against the dense baseline trained the same way;
   each masked model is then converted to block-diagonal layers (fused permutations)
   and evaluated again; storage is the ``blockdiag`` format (seeded) plus the biases.
3. ``permuted``: LeNet-300-100 with permuted-feature hidden layers (classifier dense),
   G in {1, 2, 4, 8, 16, 32}: *seeded* (trained from scratch like the baseline) and
   *data-derived* (converted from the trained baseline, then fine-tuned); parameters
   counted without and with the stored permutations, and ``permseq`` bytes.
4. ``speed``: 4096x4096 layer, N = 8 blocks / G = 1 sequence, batch 1 and 256: dense
   ``nn.Linear`` vs ``BlockDiagLinear`` (torch.bmm) and the ``blockdiag`` format
   (numpy), and ``PermutedLinear`` (weight gather + F.linear) vs the per-row input
   gather it replaces and the ``permseq`` format. Median of repeats after warm-up;
   every timed result is checked against a float64 reference.
5. ``mpd-tune`` (not in the default set): MPD N = ``--tune-blocks`` under training
   variants (epochs, lr, label smoothing, knowledge distillation from the dense model),
   each against a dense baseline trained with the same epochs, lr and label smoothing.

The results go to ``benchmarks/results/structured_<sections>.json`` (the digest and the
summary rows, shown in docs/results.md section 3) and, for the sections with full tables,
``structured_<sections>_full.json`` (docs/results/structured.md); ``--results`` writes
them elsewhere.

Usage: python benchmarks/structured.py [--sections counts,mpd,permuted,speed]
       [--epochs 10] [--lr 1e-3] [--finetune-epochs 3] [--json results.json]
       python benchmarks/structured.py --sections mpd-tune --seeds 0,1,2 --jobs 3 \
           --variants "epochs=10;epochs=10,lr=5e-3"
"""

from __future__ import annotations

import os

# numba's OpenMP workers busy-wait after a parallel kernel (the seeded permutations are
# one), which slows every later torch call on a loaded machine ~10x; let them sleep.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import copy  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from _docs import RESULTS, save, table  # noqa: E402
from torch import nn  # noqa: E402

from compactnn.bench import threads, time_call  # noqa: E402
from compactnn.nn.blockdiag import BlockDiagLinear  # noqa: E402
from compactnn.nn.permuted import PermutedLinear  # noqa: E402
from compactnn.train import evaluate, fit  # noqa: E402
from compactnn.transforms import MPD, Permute, mpd_, permute_  # noqa: E402
from compactnn.transforms.mpd import block_mask_, to_block_diagonal_  # noqa: E402
from compactnn.transforms.permuted import parameter_count, projected_parameter_count  # noqa: E402
from compactnn.transforms.prune import bake_  # noqa: E402
from compactnn.zoo import build, load_dataset  # noqa: E402

MPD_BLOCKS = (2, 4, 8, 10, 16)
GROUPS = (1, 2, 4, 8, 16, 32)


def vgg16(num_classes: int = 1000) -> nn.Sequential:
    """VGG16 (configuration D, Simonyan & Zisserman 2015) for 224x224 inputs."""
    cfg = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
           512, 512, 512, "M"]
    layers: list[nn.Module] = []
    c = 3
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(2))
        else:
            layers += [nn.Conv2d(c, v, 3, padding=1), nn.ReLU()]
            c = v
    layers += [nn.Flatten(), nn.Linear(512 * 7 * 7, 4096), nn.ReLU(), nn.Dropout(),
               nn.Linear(4096, 4096), nn.ReLU(), nn.Dropout(), nn.Linear(4096, num_classes)]
    return nn.Sequential(*layers)


def section_counts() -> dict:
    with torch.device("meta"):
        net = vgg16()
    dense = parameter_count(net)
    perm = projected_parameter_count(net, groups=1, last_dense=True)
    perm_idx = projected_parameter_count(net, groups=1, last_dense=True, count_permutations=True)
    print("\n## VGG16: one base sequence per hidden FC layer, last layer dense\n")
    print("| count | parameters | reduction |\n|---|---:|---:|")
    print(f"| dense VGG16 | {dense:,} | 1.00x |")
    print(f"| permuted, permutations not counted (seeded) | {perm:,} | {dense / perm:.2f}x |")
    print(f"| permuted, + stored indices (data-derived) | {perm_idx:,} | {dense / perm_idx:.2f}x |")
    return {"dense": dense, "permuted": perm, "permuted_with_indices": perm_idx}


def train_eval(net: nn.Module, train, test, epochs: int, lr: float = 1e-3) -> float:
    fit(net, train, epochs=epochs, lr=lr, batch_size=128, progress=False)
    return evaluate(net, test)["accuracy"]


def baseline(train, test, epochs: int, seed: int, lr: float) -> tuple[nn.Module, float]:
    torch.manual_seed(seed)
    net = build("lenet300")
    t = time.perf_counter()
    acc = train_eval(net, train, test, epochs, lr)
    print(f"\ndense LeNet-300-100: accuracy {100 * acc:.2f}% ({epochs} epochs, lr {lr:g}, "
          f"{time.perf_counter() - t:.0f} s)", flush=True)
    return net, acc


def mpd_row(train, test, epochs: int, seed: int, lr: float, N: int,
            last_dense: bool) -> dict:
    """Train LeNet-300-100 with N-block masks, convert it to block-diagonal layers and
    measure both (one row of the ``mpd`` section)."""
    dense_w = sum(m.weight.numel() for m in build("lenet300").modules() if isinstance(m, nn.Linear))
    dense_bytes = 4 * parameter_count(build("lenet300"))
    torch.manual_seed(seed)
    net = build("lenet300")
    mpd_(net, MPD(blocks=N, seed=seed, last_dense=last_dense, rescale_init=True))
    t = time.perf_counter()
    acc = train_eval(net, train, test, epochs, lr)
    secs = time.perf_counter() - t
    bake_(net)
    layers = to_block_diagonal_(net, fuse=True)
    acc_bd = evaluate(net, test)["accuracy"]
    mats = [layer.to_blockdiag() for layer in layers.values()]
    dense_rest = [m for m in net.modules() if isinstance(m, nn.Linear)]
    kept = sum(M.data.size for M in mats) + sum(m.weight.numel() for m in dense_rest)
    nbytes = (sum(M.nbytes for M in mats) + 4 * sum(p.numel() for m in dense_rest
                                                     for p in m.parameters())
              + 4 * sum(layer.bias.numel() for layer in layers.values()))
    row = {"N": N, "last_dense": last_dense, "accuracy": acc,
           "block_diagonal_accuracy": acc_bd, "kept_weights": kept,
           "weight_compression": dense_w / kept, "bytes": nbytes,
           "size_reduction": dense_bytes / nbytes, "seconds": secs}
    print(f"MPD N={N}{' (classifier dense)' if last_dense else ''}: accuracy "
          f"{100 * acc:.2f}%, block-diagonal {100 * acc_bd:.2f}%, {secs:.0f} s", flush=True)
    return row


def fit_tuned(net: nn.Module, train, epochs: int, lr: float, seed: int,
              label_smoothing: float = 0.0, teacher_logits: torch.Tensor | None = None,
              temperature: float = 4.0, alpha: float = 0.9) -> None:
    """``compactnn.train.fit``'s loop (Adam, cosine decay to 0, batch 128, seeded
    shuffling) with label smoothing and knowledge distillation: the loss is
    ``alpha * T**2 * KL(softmax(t/T) || softmax(s/T)) + (1 - alpha) * CE`` (Hinton et al.
    2015) for precomputed teacher logits ``t``."""
    import math

    import torch.nn.functional as F

    x, y = train.tensors
    opt = torch.optim.Adam(net.parameters(), lr)
    n, bs = len(x), 128
    steps = math.ceil(n / bs)
    total = epochs * steps
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))
    gen = torch.Generator().manual_seed(seed)
    net.train()
    for _ in range(epochs):
        order = torch.randperm(n, generator=gen)
        for b in range(steps):
            idx = order[b * bs:(b + 1) * bs]
            out = net(x[idx])
            loss = F.cross_entropy(out, y[idx], label_smoothing=label_smoothing)
            if teacher_logits is not None:
                T = temperature
                kd = F.kl_div(F.log_softmax(out / T, 1), F.log_softmax(teacher_logits[idx] / T, 1),
                              reduction="batchmean", log_target=True)
                loss = alpha * T * T * kd + (1 - alpha) * loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    net.eval()


def _variant(spec: str) -> dict:
    """``"epochs=20,lr=3e-3,ls=0.1,kd=4:0.9"`` -> settings (unset keys: the defaults)."""
    out = {"epochs": 10, "lr": 1e-3, "ls": 0.0, "kd": None}
    for item in filter(None, spec.split(",")):
        key, _, val = item.partition("=")
        if key not in out:
            raise SystemExit(f"unknown variant key {key!r} in {spec!r}")
        out[key] = (tuple(float(v) for v in val.split(":")) if key == "kd"
                    else int(val) if key == "epochs" else float(val))
    return out


def section_mpd_tune(train, test, variants: list[str], blocks: int, seed: int) -> list[dict]:
    """MPD N = ``blocks`` (all layers, rescaled init) against a dense baseline trained with
    the same epochs, lr and label smoothing; ``kd`` distils the MPD model from that
    baseline (the baseline itself is trained without distillation)."""
    from compactnn.train import predict

    dense_cache: dict[tuple, tuple[float, torch.Tensor]] = {}
    rows = []
    print(f"\n## MPD N = {blocks} training variants (LeNet-300-100 / Fashion-MNIST)\n")
    print("| variant | dense accuracy | MPD accuracy | vs dense | time |\n"
          "|---|---:|---:|---:|---:|")
    for spec in variants:
        v = _variant(spec)
        key = (v["epochs"], v["lr"], v["ls"])
        t = time.perf_counter()
        if key not in dense_cache:
            torch.manual_seed(seed)
            net = build("lenet300")
            fit_tuned(net, train, v["epochs"], v["lr"], seed, v["ls"])
            dense_cache[key] = (evaluate(net, test)["accuracy"], predict(net, train.tensors[0]))
        dense_acc, logits = dense_cache[key]
        torch.manual_seed(seed)
        net = build("lenet300")
        mpd_(net, MPD(blocks=blocks, seed=seed, rescale_init=True))
        kd = v["kd"]
        fit_tuned(net, train, v["epochs"], v["lr"], seed, v["ls"],
                  teacher_logits=None if kd is None else logits,
                  **({} if kd is None else {"temperature": kd[0], "alpha": kd[1]}))
        acc = evaluate(net, test)["accuracy"]
        secs = time.perf_counter() - t
        rows.append({"variant": spec, **{k: v[k] for k in ("epochs", "lr", "ls")},
                     "kd": kd, "dense_accuracy": dense_acc, "accuracy": acc, "seconds": secs})
        print(f"| {spec or 'default'} | {100 * dense_acc:.2f}% | {100 * acc:.2f}% | "
              f"{100 * (acc - dense_acc):+.2f} | {secs:.0f} s |", flush=True)
    return rows


def permuted_bytes(net: nn.Module) -> int:
    """permseq bytes of the permuted layers + float32 bytes of every other parameter."""
    total = 0
    for m in net.modules():
        if isinstance(m, PermutedLinear):
            total += m.to_permseq().nbytes + 4 * m.bias.numel()
        elif isinstance(m, nn.Linear):
            total += 4 * (m.weight.numel() + m.bias.numel())
    return total


def permuted_row(train, test, epochs: int, ft_epochs: int, seed: int, lr: float,
                 kind: str, G: int, trained: nn.Module) -> dict:
    """One row of the ``permuted`` section: a *seeded* model trained from scratch, or a
    *data*-derived one converted from ``trained`` and fine-tuned."""
    dense_params = parameter_count(trained)
    t = time.perf_counter()
    if kind == "seeded":
        torch.manual_seed(seed)
        net = build("lenet300")
        permute_(net, Permute(groups=G, kind="seeded", seed=seed))
        before = None
        acc = train_eval(net, train, test, epochs, lr)
    else:
        net = copy.deepcopy(trained)
        permute_(net, Permute(groups=G, kind="data", seed=seed))
        before = evaluate(net, test)["accuracy"]
        acc = train_eval(net, train, test, ft_epochs)
    secs = time.perf_counter() - t
    params = parameter_count(net)
    params_idx = parameter_count(net, count_permutations=True)
    nbytes = permuted_bytes(net)
    print(f"permuted {kind} G={G}: accuracy {100 * acc:.2f}%, {secs:.0f} s", flush=True)
    return {"kind": kind, "G": G, "accuracy": acc, "before_finetune": before,
            "parameters": params, "reduction": dense_params / params,
            "parameters_with_permutations": params_idx,
            "reduction_with_permutations": dense_params / params_idx,
            "bytes": nbytes, "size_reduction": 4 * dense_params / nbytes, "seconds": secs}


_SHARED: dict = {}  # what the forked workers of --jobs read: the data and the baseline


def _row(task: tuple) -> dict:
    """One training of the ``mpd`` or ``permuted`` section (``--jobs`` worker)."""
    torch.set_num_threads(1)
    sh, (what, *rest) = _SHARED, task
    if what == "mpd":
        return mpd_row(sh["train"], sh["test"], sh["epochs"], sh["seed"], sh["lr"], *rest)
    return permuted_row(sh["train"], sh["test"], sh["epochs"], sh["ft_epochs"], sh["seed"],
                        sh["lr"], *rest, sh["trained"])


def run_parallel(fn, tasks: list, jobs: int) -> list:
    """``[fn(t) for t in tasks]`` in ``jobs`` forked processes (in order)."""
    if jobs <= 1:
        return [fn(t) for t in tasks]
    import multiprocessing as mp
    with mp.get_context("fork").Pool(min(jobs, len(tasks))) as pool:
        return pool.map(fn, tasks, chunksize=1)


def cpu_median(fn, repeats: int) -> float:
    """Median CPU time of the calling thread per call (1-thread code: robust to other
    processes competing for the cores, unlike wall time)."""
    samples = []
    for _ in range(repeats):
        t = time.thread_time()
        fn()
        samples.append(time.thread_time() - t)
    return float(np.median(samples))


def check(got: np.ndarray, ref: np.ndarray, what: str) -> None:
    err = np.abs(got - ref).max() / (np.abs(ref).max() + 1e-30)
    if not err < 1e-4:
        raise AssertionError(f"{what}: relative error {err:.2e}")


def section_speed(repeats: int, size: int = 4096) -> list[dict]:
    m = n = size
    N, G = 8, 1
    torch.manual_seed(0)
    dense = nn.Linear(n, m)
    masked = copy.deepcopy(dense)
    block_mask_(masked, N, seed=0)
    bd = BlockDiagLinear.from_linear(masked)
    bd_fmt = bd.to_blockdiag()
    Wm = bd.dense_weight().numpy().astype(np.float64)
    perm = PermutedLinear(n, m, groups=G, seed=0)
    ps_fmt = perm.to_permseq()
    Wp = perm.weight.detach().numpy().astype(np.float64)
    rows_perm = ps_fmt.permutations.astype(np.int64)
    base = perm.base.detach()[0]

    def input_gather(x: torch.Tensor, chunk: int = 64) -> torch.Tensor:
        """The alternative forward: gather the input per row, one dot product per row."""
        out = torch.empty(x.shape[0], m)
        idx = torch.from_numpy(rows_perm)
        for r0 in range(0, m, chunk):
            out[:, r0:r0 + chunk] = x[:, idx[r0:r0 + chunk]] @ base
        return out

    Wd = dense.weight.detach().numpy().astype(np.float64)
    load_before = os.getloadavg()[0]
    print(f"\n## Speed: {m}x{n}, 1 thread, median of repeats (load average before: "
          f"{load_before:.1f})\n")
    print("| batch | method | wall ms | CPU ms | vs dense (wall) | vs dense (CPU) |\n"
          "|---:|---|---:|---:|---:|---:|")
    results = []
    with threads(1), torch.no_grad():
        for B in (1, 256):
            x = torch.randn(B, n)
            X = np.ascontiguousarray(x.numpy().T)
            xv = X[:, 0].copy()
            cases = [
                ("dense nn.Linear", lambda x=x: dense(x), Wd, dense.bias),
                (f"BlockDiagLinear N={N} (torch.bmm)", lambda x=x: bd(x), Wm, bd.bias),
                (f"blockdiag format N={N} (numpy)",
                 (lambda xv=xv: bd_fmt.matvec(xv)) if B == 1 else (lambda X=X: bd_fmt.matmul(X)),
                 Wm, None),
                (f"PermutedLinear G={G} (weight gather + F.linear)", lambda x=x: perm(x), Wp,
                 perm.bias),
                (f"PermutedLinear G={G} input gather per row", lambda x=x: input_gather(x), Wp,
                 None),
                (f"permseq format G={G} (numba)",
                 (lambda xv=xv: ps_fmt.matvec(xv)) if B == 1 else (lambda X=X: ps_fmt.matmul(X)),
                 Wp, None),
            ]
            base_t = base_c = None
            for name, fn, W, bias in cases:
                out = fn()  # (B, m) tensor, or the format's (m,) / (m, B) array
                if isinstance(out, torch.Tensor):
                    out = out.numpy()
                else:
                    out = out.reshape(1, -1) if out.ndim == 1 else out.T
                ref = (W @ X).T
                if bias is not None:
                    ref = ref + bias.detach().numpy().astype(np.float64)
                check(out, ref, f"{name}, batch {B}")
                slow = "input gather" in name and B > 1
                st = time_call(fn, repeats=2 if slow else repeats, warmup=0 if slow else 3,
                               max_total_s=20)
                cpu = cpu_median(fn, 2 if slow else repeats)
                base_t, base_c = base_t or st.median, base_c or cpu
                results.append({"batch": B, "method": name, "wall_s": st.median, "cpu_s": cpu,
                                "speedup_wall": base_t / st.median, "speedup_cpu": base_c / cpu})
                print(f"| {B} | {name} | {1e3 * st.median:.3f} | {1e3 * cpu:.3f} | "
                      f"{base_t / st.median:.2f}x | {base_c / cpu:.2f}x |", flush=True)
    load_after = os.getloadavg()[0]
    print(f"\nload average after: {load_after:.1f} (a shared 2-core machine: run it "
          "alone, e.g. under a lock, for clean timings)")
    return {"size": size, "blocks": N, "groups": G, "repeats": repeats,
            "load_before": load_before, "load_after": load_after, "rows": results}


def _tune_seed(job: tuple[list[str], int, int]) -> list[dict]:
    """``section_mpd_tune`` for one seed (a worker process of ``--jobs``)."""
    variants, blocks, seed = job
    torch.set_num_threads(1)
    train, test = load_dataset("fashion-mnist")
    return section_mpd_tune(train, test, variants, blocks, seed)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sections", default="counts,mpd,permuted,speed")
    ap.add_argument("--epochs", type=int, default=10, help="training epochs from scratch")
    ap.add_argument("--lr", type=float, default=1e-3,
                    help="learning rate of every training from scratch (the dense baseline, "
                         "MPD, seeded permuted); fine-tuning keeps 1e-3")
    ap.add_argument("--finetune-epochs", type=int, default=3,
                    help="fine-tuning epochs after a data-derived conversion")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--seeds", help="mpd-tune: ','-separated seeds (default: --seed)")
    ap.add_argument("--jobs", type=int, default=1,
                    help="trainings (mpd, permuted: the models; mpd-tune: the seeds) run in "
                         "this many processes of one thread each")
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--size", type=int, default=4096, help="speed: the layer is size x size")
    ap.add_argument("--variants", default="",
                    help="mpd-tune: ';'-separated variants, each 'epochs=E,lr=L,ls=S,kd=T:A'")
    ap.add_argument("--tune-blocks", type=int, default=10, help="mpd-tune: N")
    ap.add_argument("--json", help="also write all results to this file")
    ap.add_argument("--results", default=str(RESULTS),
                    help="folder of the results files (default benchmarks/results)")
    args = ap.parse_args()
    sections = set(args.sections.split(","))
    torch.set_num_threads(1)
    out: dict = {"args": vars(args)}
    if "counts" in sections:
        out["counts"] = section_counts()
    if sections & {"mpd", "permuted"}:
        train, test = load_dataset("fashion-mnist")
        trained, base_acc = baseline(train, test, args.epochs, args.seed, args.lr)
        out["baseline_accuracy"] = base_acc
        _SHARED.update(train=train, test=test, epochs=args.epochs, seed=args.seed, lr=args.lr,
                       ft_epochs=args.finetune_epochs, trained=trained)
        tasks = ([("mpd", N, False) for N in MPD_BLOCKS] + [("mpd", 10, True)]
                 if "mpd" in sections else [])
        if "permuted" in sections:
            tasks += [("permuted", kind, G) for kind in ("seeded", "data") for G in GROUPS]
        rows = run_parallel(_row, tasks, args.jobs)
        if "mpd" in sections:
            out["mpd"] = [r for r in rows if "N" in r]
        if "permuted" in sections:
            out["permuted"] = [r for r in rows if "G" in r]
    if "mpd-tune" in sections:
        seeds = [int(s) for s in (args.seeds or str(args.seed)).split(",")]
        per_seed = run_parallel(_tune_seed, [(args.variants.split(";"), args.tune_blocks, s)
                                             for s in seeds], args.jobs)
        out["mpd_tune"] = [{"seed": s, "rows": rows}
                           for s, rows in zip(seeds, per_seed, strict=True)]
    if "speed" in sections:
        out["speed"] = section_speed(args.repeats, args.size)
    name = "structured_" + "_".join(sorted(sections))
    digest, full, summary = docs(out, args)
    save(name, digest, summary=summary, raw=out, directory=args.results)
    if full:
        save(name + "_full", full, page="docs/results/structured.md", directory=args.results)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


# ---- the results pages: tables and summary rows from the measurements above ----------

PCT, PTS, X = "{:.2%}", "{:+.2f}", "{:.2f}x"


def docs(out: dict, args) -> tuple[list[dict], list[dict], list[dict]]:
    """The digest tables (docs/results.md), the full tables (docs/results/structured.md)
    and the summary rows of the sections in ``out``."""
    digest, full, summary = [], [], []
    rows: list[list] = []  # the digest's "experiment | accuracy | vs dense | reduction"
    base = out.get("baseline_accuracy")
    if "mpd" in out:
        rows.append([f"dense LeNet-300-100 (lr {args.lr:g}, {args.epochs} epochs)", base, None,
                     "1.00x"])
        for r in out["mpd"]:
            label = f"MPD N = {r['N']}" + (", classifier dense" if r["last_dense"] else "")
            rows.append([label, r["accuracy"], 100 * (r["accuracy"] - base),
                         f"{r['size_reduction']:.2f}x file, {r['weight_compression']:.2f}x "
                         "weights"])
        full.append(mpd_table(out["mpd"], base, args))
    if "permuted" in out:
        best = best_permuted(out["permuted"], base)
        for kind, r in best.items():
            if r is None:
                rows.append([f"permuted, {kind}: no G within 1 point", None, None, None])
                continue
            rows.append([f"permuted, {kind}: largest reduction within 1 point, G = {r['G']}",
                         r["accuracy"], 100 * (r["accuracy"] - base),
                         f"{r['reduction']:.1f}x parameters, "
                         f"{r['reduction_with_permutations']:.2f}x counting the permutations"])
        full += permuted_tables(out["permuted"], base, best, args)
        s, d = best["seeded"], best["data-derived"]
        summary.append({"issue": 4, "target": "permuted features: largest reduction within "
                        "1 point", "met": None, "measured": "; ".join(
                            f"{k} " + ("none" if r is None else f"G={r['G']}: "
                                       f"{r['reduction']:.1f}x" + (
                                           "" if k == "seeded" else " uncounted / "
                                           f"{r['reduction_with_permutations']:.1f}x with "
                                           "stored permutations"))
                            for k, r in (("seeded", s), ("data-derived", d)))})
    if "counts" in out:
        c = out["counts"]
        ratio = c["dense"] / c["permuted"]
        rows.append([f"VGG16 parameters, one base sequence per hidden FC layer "
                     f"({c['dense']:,} -> {c['permuted']:,})", None, None, f"{ratio:.2f}x"])
        full.insert(0, table(
            [("count", "", "---"), ("parameters", "{:,}", "--:"), ("reduction", X, "--:")],
            [["dense VGG16", c["dense"], 1.0],
             ["permuted, permutations not counted (seeded)", c["permuted"], ratio],
             ["permuted, + stored indices (data-derived)", c["permuted_with_indices"],
              c["dense"] / c["permuted_with_indices"]]],
            title="VGG16 parameter check (architecture only, no ImageNet)",
            caption="One base sequence per hidden FC layer (25088->4096, 4096->4096), "
                    "classifier dense."))
        summary.append({"issue": 4, "target": "VGG16: about 7.3x fewer parameters",
                        "measured": ratio, "fmt": X, "met": round(ratio, 1) == 7.3})
    if rows:
        digest.append(table([("experiment", "", "---"), ("accuracy", PCT, "--:"),
                             ("vs dense (points)", PTS, "--:"), ("reduction", "", "--:")],
                            rows, caption=None if base is None else
                            f"LeNet-300-100 on Fashion-MNIST, seed {args.seed}, 1 thread; "
                            "reductions against the dense model's float32 size."))
    if "mpd_tune" in out:
        digest += tune_tables(out["mpd_tune"], args)
        summary.append(tune_summary(out["mpd_tune"], args))
    if "speed" in out:
        d, f, row = speed_tables(out["speed"])
        digest.append(d)
        full.append(f)
        summary.append(row)
    return digest, full, summary


def mpd_table(mpd: list[dict], base: float, args) -> dict:
    dense = build("lenet300")
    dense_w = sum(m.weight.numel() for m in dense.modules() if isinstance(m, nn.Linear))
    rows = [["1 (dense)", base, 0.0, None, dense_w, 1.0, 4 * parameter_count(dense), 1.0, None]]
    for r in mpd:
        rows.append([f"{r['N']}" + (", classifier dense" if r["last_dense"] else ""),
                     r["accuracy"], 100 * (r["accuracy"] - base), r["block_diagonal_accuracy"],
                     r["kept_weights"], r["weight_compression"], r["bytes"],
                     r["size_reduction"], r["seconds"]])
    return table([("N", "", "--:"), ("accuracy", PCT, "--:"), ("vs dense", PTS, "--:"),
                  ("block-diagonal accuracy", PCT, "--:"), ("kept weights", "{:,}", "--:"),
                  ("weight compression", X, "--:"), ("bytes (blockdiag + bias)", "{:,}", "--:"),
                  ("size reduction", X, "--:"), ("training s", "{:.0f}", "--:")], rows,
                 title=f"MPD on LeNet-300-100 / Fashion-MNIST, lr {args.lr:g}",
                 caption="Masks on every layer (the last row: classifier dense), trained from "
                 f"scratch for {args.epochs} epochs with the rescaled initialisation, then "
                 "baked, converted to block-diagonal layers with fused permutations and "
                 "evaluated again. Bytes: the `blockdiag` format in seeded mode (blocks "
                 "only) plus float32 biases.")


def best_permuted(rows: list[dict], base: float) -> dict[str, dict | None]:
    """Per kind, the row with the largest parameter reduction within 1 point of ``base``."""
    out = {}
    for kind, label in (("seeded", "seeded"), ("data", "data-derived")):
        ok = [r for r in rows if r["kind"] == kind and base - r["accuracy"] <= 0.01]
        out[label] = max(ok, key=lambda r: r["reduction"]) if ok else None
    return out


def permuted_tables(perm: list[dict], base: float, best: dict, args) -> list[dict]:
    rows = [[r["kind"], r["G"], r["accuracy"], 100 * (r["accuracy"] - base),
             r["before_finetune"], r["parameters"], r["reduction"],
             r["parameters_with_permutations"], r["reduction_with_permutations"], r["bytes"],
             r["size_reduction"], r["seconds"]] for r in perm]
    main = table([("kind", "", "---"), ("G", "", "--:"), ("accuracy", PCT, "--:"),
                  ("vs dense", PTS, "--:"), ("before fine-tuning", PCT, "--:"),
                  ("parameters", "{:,}", "--:"), ("reduction", "{:.1f}x", "--:"),
                  ("+ permutations", "{:,}", "--:"), ("reduction", X, "--:"),
                  ("bytes (permseq)", "{:,}", "--:"), ("size reduction", X, "--:"),
                  ("s", "{:.0f}", "--:")], rows,
                 title=f"Permuted features on LeNet-300-100 / Fashion-MNIST, lr {args.lr:g}",
                 caption="Hidden layers permuted, classifier dense. *seeded*: trained from "
                 f"scratch like the baseline ({args.epochs} epochs). *data*: converted from "
                 "the trained baseline, then fine-tuned "
                 f"{args.finetune_epochs} epochs at lr 1e-3. \"+ permutations\" counts the "
                 "stored indices of a data-derived layer and the seed of a seeded one. "
                 "Bytes: the `permseq` format plus the other parameters as float32.")
    b = table([("kind", "", "---"), ("G", "", "--:"), ("accuracy", PCT, "--:"),
               ("vs dense", PTS, "--:"), ("reduction", "{:.1f}x", "--:"),
               ("counting permutations", X, "--:"), ("file", X, "--:")],
              [[k, None, None, None, None, None, None] if r is None else
               [k, r["G"], r["accuracy"], 100 * (r["accuracy"] - base), r["reduction"],
                r["reduction_with_permutations"], r["size_reduction"]]
               for k, r in best.items()],
              title=f"Largest reduction within 1 point of the dense baseline ({base:.2%})")
    return [main, b]


def tune_tables(runs: list[dict], args) -> list[dict]:
    """Per variant, the mean over seeds; per seed, every model's accuracy."""
    specs = [r["variant"] for r in runs[0]["rows"]]
    by = {(run["seed"], r["variant"]): r for run in runs for r in run["rows"]}
    seeds = [run["seed"] for run in runs]

    def mean(spec: str, key: str) -> float:
        return float(np.mean([by[s, spec][key] for s in seeds]))

    N = args.tune_blocks
    variants = table(
        [("variant", "", "---"), ("dense accuracy", PCT, "--:"), (f"MPD N = {N}", PCT, "--:"),
         ("vs dense (points)", PTS, "--:"), ("s per seed", "{:.0f}", "--:")],
        [[spec or "default", mean(spec, "dense_accuracy"), mean(spec, "accuracy"),
          100 * (mean(spec, "accuracy") - mean(spec, "dense_accuracy")),
          mean(spec, "seconds")] for spec in specs],
        title=f"MPD N = {N} against a dense model trained the same way "
              f"(mean over seeds {', '.join(map(str, seeds))})",
        caption="Each variant trains MPD N = "
        f"{N} (all layers, rescaled init) and a dense LeNet-300-100 with the same epochs, "
        "lr and label smoothing (Adam, cosine decay, batch 128), on Fashion-MNIST; "
        "`kd=T:A` distils the MPD model from that dense model.")
    cols = [("seed", "", "--:")]
    cols += [(f"dense, {spec or 'default'}", PCT, "--:") for spec in specs]
    cols += [(f"MPD N = {N}, {spec or 'default'}", PCT, "--:") for spec in specs]
    rows: list[list] = [[s] + [by[s, spec]["dense_accuracy"] for spec in specs]
                        + [by[s, spec]["accuracy"] for spec in specs] for s in seeds]
    rows.append(["mean"] + [mean(spec, "dense_accuracy") for spec in specs]
                + [mean(spec, "accuracy") for spec in specs])
    return [variants, table(cols, rows, title="Per seed")]


def tune_summary(runs: list[dict], args) -> dict:
    """MPD's best variant (mean over seeds) against the best dense model and against the
    dense model trained like it."""
    specs = [r["variant"] for r in runs[0]["rows"]]
    mean = {(spec, key): float(np.mean([r[key] for run in runs for r in run["rows"]
                                        if r["variant"] == spec]))
            for spec in specs for key in ("accuracy", "dense_accuracy")}
    mpd = max(specs, key=lambda s: mean[s, "accuracy"])
    dense = max(specs, key=lambda s: mean[s, "dense_accuracy"])
    vs_best = 100 * (mean[mpd, "accuracy"] - mean[dense, "dense_accuracy"])
    vs_matched = 100 * (mean[mpd, "accuracy"] - mean[mpd, "dense_accuracy"])
    return {"issue": 4, "target": f"MPD N = {args.tune_blocks} within 1 point of dense",
            "measured": vs_best, "fmt": PTS,
            "note": f"{len(runs)}-seed mean of `{mpd}` vs the best dense, `{dense}`; "
                    f"{vs_matched:+.2f} vs matched training",
            "met": vs_best >= -1 and vs_matched >= -1}


def speed_tables(speed: dict) -> tuple[dict, dict, dict]:
    """The digest (speed-ups against dense per method), the full table, the summary row."""
    rows = speed["rows"]
    where = (f"{speed['size']}x{speed['size']}, 1 thread, median of {speed['repeats']} "
             f"repeats after 3 warm-up calls (the input gather at batch 256: 2 calls); CPU: "
             f"the calling thread's CPU time. Load average {speed['load_before']:.1f} before, "
             f"{speed['load_after']:.1f} after (2 cores, shared).")
    full = table([("batch", "", "--:"), ("method", "", "---"), ("wall ms", "{:.3f}", "--:"),
                  ("CPU ms", "{:.3f}", "--:"), ("vs dense (wall)", X, "--:"),
                  ("vs dense (CPU)", X, "--:")],
                 [[r["batch"], r["method"], 1e3 * r["wall_s"], 1e3 * r["cpu_s"],
                   r["speedup_wall"], r["speedup_cpu"]] for r in rows],
                 title=f"Speed: {speed['size']}x{speed['size']}, N = {speed['blocks']} / "
                       f"G = {speed['groups']}", caption=where + " Every timed result was "
                 "checked against a float64 reference.")
    methods = [r["method"] for r in rows if r["batch"] == 1][1:]
    up = {(r["batch"], r["method"]): r for r in rows}
    digest = table([("method", "", "---"), ("batch 1, wall", X, "--:"),
                    ("batch 1, CPU", X, "--:"), ("batch 256, wall", X, "--:"),
                    ("batch 256, CPU", X, "--:")],
                   [[m, up[1, m]["speedup_wall"], up[1, m]["speedup_cpu"],
                     up[256, m]["speedup_wall"], up[256, m]["speedup_cpu"]] for m in methods],
                   caption="Speed-up over dense `nn.Linear` by wall time and by the calling "
                   "thread's CPU time (the steadier measure on a loaded machine), " + where)

    def low(r: dict) -> float:  # the lower of the wall and CPU speed-ups
        return min(r["speedup_wall"], r["speedup_cpu"])

    layer = next(r for r in rows if r["batch"] == 256 and r["method"].startswith("BlockDiag"))
    fmt = next(r for r in rows if r["batch"] == 256 and r["method"].startswith("blockdiag"))
    need = speed["blocks"] / 2
    summary = {"issue": 4, "target": f"block-diagonal >= N/2 = {need:g}x faster than dense at "
               "batch 256", "measured": low(layer), "fmt": "{:.1f}x",
               "note": f"layer, the lower of wall and CPU time; format {low(fmt):.1f}x; load "
                       f"average {speed['load_before']:.1f}",
               "met": low(layer) >= need}
    return digest, full, summary


if __name__ == "__main__":
    main()
