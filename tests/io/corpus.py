"""The project's hostile corpus and a runner that measures each case in a forked child.

``build(folder)`` writes every case and returns ``[Case]``; ``measure(cases)`` loads each
file (``compactnn.load``, then one forward pass when it loads) in a child process forked
after the imports, and reports the outcome, wall time and the child's peak RSS above its
RSS at the start (``/proc/self/status``, peak reset through ``/proc/self/clear_refs``).
Used by ``tests/io/test_hostile.py`` and ``benchmarks/hostile.py``.
"""

from __future__ import annotations

import json
import os
import select
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from compactnn import zoo
from compactnn.io import save
from compactnn.io.container import canonical_json, crc32, decode_file, encode_file
from compactnn.nn import to_compact
from tests.io.helpers import constrain_, parts, raw_file

KW = {"in_features": 16}


@dataclass
class Case:
    """One hostile input: ``expect`` is ``"error"`` (a ``CompactFileError``) or ``"ok"``
    (a valid file that must load and run within the resource targets)."""

    name: str
    path: str
    expect: str
    note: str
    input_shape: tuple[int, ...] = (1, 16)


def _base(policy="csr", storage="raw", kwargs=None, name="lenet300", seed=0) -> bytes:
    torch.manual_seed(seed)
    kwargs = dict(KW if kwargs is None else kwargs)
    model = constrain_(zoo.build(name, **kwargs), seed, sparsity=0.9)
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "m.cnn"
        save(to_compact(model, policy, storage=storage), p, zoo=(name, kwargs))
        return p.read_bytes()


def reforge(raw: bytes, edit) -> bytes:
    arrays, desc = decode_file(raw)
    arrays = {k: np.array(v) for k, v in arrays.items()}
    edit(arrays, desc)
    return encode_file(arrays, desc)


def resign(raw: bytes, edit_desc) -> bytes:
    """Edit the description JSON text and recompute its checksum (so the file passes
    the checksum checks and only the semantic checks can catch the edit)."""
    _, head, desc, data = parts(raw)
    text = edit_desc(desc)
    if not isinstance(text, str):
        body = {k: v for k, v in desc.items() if k != "crc32"}
        body["crc32"] = crc32(canonical_json(body).encode("ascii"))
        text = canonical_json(body)
    head["__metadata__"]["compactnn"] = text
    return raw_file(head, data)


def _with_crc(text: str) -> str:
    """A canonical description text (without ``crc32``) with its checksum inserted
    where canonical key order puts it (right after ``compactnn``)."""
    head = '{"compactnn":1'
    assert text.startswith(head + ",")
    return head + f',"crc32":"{crc32(text.encode("ascii"))}"' + text[len(head):]


def _replace_leaf(desc, set_leaf, replacement: str) -> str:
    """The description with one leaf (set to ``"@"`` by ``set_leaf``) replaced by raw
    JSON text ``replacement``, checksum recomputed."""
    set_leaf(desc)
    body = {k: v for k, v in desc.items() if k != "crc32"}
    return _with_crc(canonical_json(body).replace('"@"', replacement))


def _compile_bomb() -> bytes:
    """60 tiny CSER layers, each storing another combination of index dtypes."""
    torch.manual_seed(0)
    hidden = [6] * 59
    kw = {"in_features": 6, "hidden": hidden, "out_features": 6}
    model = constrain_(zoo.build("mlp", **kw), 0, sparsity=0.5)
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "m.cnn"
        save(to_compact(model, "cser", storage="raw"), p, zoo=("mlp", kw))
        raw = p.read_bytes()
    dts = [np.uint8, np.uint16, np.uint32, np.uint64]

    def edit(arrays, desc):
        for i, name in enumerate(sorted(desc["layers"])):
            for j, a in enumerate(("col_idx", "omega_ptr", "row_ptr", "omega_idx")):
                key = f"{name}.weight.{a}"
                arrays[key] = arrays[key].astype(dts[(i >> (2 * j)) % 4 if j else i % 4])
    return reforge(raw, edit)


def build(folder: str | os.PathLike) -> list[Case]:
    """Write the corpus into ``folder``."""
    d = Path(folder)
    d.mkdir(parents=True, exist_ok=True)
    cases: list[Case] = []

    def add(name: str, data: bytes | None, expect: str, note: str, **kw) -> None:
        p = d / f"{name}.cnn"
        if data is not None:
            p.write_bytes(data)
        cases.append(Case(name, str(p), expect, note, **kw))

    base = _base({"1": "csr", "3": "sham", "5": "cer"})
    arch = _base("smallest", "archive")
    add("valid", base, "ok", "a valid 3-layer file (csr, sham, cer), for comparison")
    fifo = d / "fifo.cnn"
    if not fifo.exists():
        os.mkfifo(fifo)
    add("fifo", None, "error", "a FIFO with no writer")
    for dev in ("zero", "urandom"):
        link = d / f"dev-{dev}.cnn"
        if not link.is_symlink():
            link.symlink_to(f"/dev/{dev}")
        add(f"dev-{dev}", None, "error", f"a symlink to /dev/{dev}")
    (d / "folder.cnn").mkdir(exist_ok=True)
    add("folder", None, "error", "a directory")
    with open(d / "huge-header.cnn", "wb") as f:  # sparse: no disk blocks
        f.write((2**63).to_bytes(8, "little"))
        f.truncate(2 * 2**30)
    add("huge-header", None, "error", "2 GiB sparse file, header length 2**63")
    add("empty", b"", "error", "0 bytes")
    add("truncated", base[: len(base) // 2], "error", "the first half of a valid file")
    add("zeros", bytes(1 << 20), "error", "1 MiB of zero bytes")
    add("compile-bomb", _compile_bomb(), "ok",
        "60 CSER layers, each with other index dtypes (uint8..uint64)", input_shape=(2, 6))

    def zoo_kwargs(kwargs, name="lenet300"):
        def edit(desc):
            desc["model"]["zoo"] = {"name": name, "kwargs": kwargs}
        return edit

    add("zoo-bomb", resign(base, zoo_kwargs({"in_features": 7_000_000})), "error",
        "names lenet300(in_features=7e6), holds the 16-feature layers")
    add("zoo-minilm", resign(base, zoo_kwargs({}, "minilm")), "error",
        "names the MiniLM zoo model, holds LeNet layers")
    add("zoo-mlp-deep", resign(base, zoo_kwargs({"in_features": 16, "hidden": [1] * 1300},
                                                  "mlp")), "error",
        "names an MLP of 1301 layers, holds LeNet layers")
    def entropy(desc):
        return _replace_leaf(desc, lambda x: x["layers"]["1"].update(entropy_bits="@"),
                             "1" + "0" * 400)

    add("entropy-overflow", resign(base, entropy), "error", "entropy_bits = 10**400")

    def shape(desc):
        desc["layers"]["1"]["shape"] = [10**200, 10**200]

    add("shape-overflow", resign(base, shape), "error", "a layer of shape [1e200, 1e200]")
    def deep(desc):
        return _replace_leaf(desc, lambda x: x.update(metadata={"x": "@"}),
                             "[" * 600 + "]" * 600)

    add("deep-metadata", resign(base, deep), "error", "metadata nested 600 deep")

    def nan_bias(arrays, desc):
        arrays["1.bias"] = arrays["1.bias"].copy()
        arrays["1.bias"][3] = np.nan

    add("nan-bias", reforge(base, nan_bias), "error", "a NaN in a bias (checksums valid)")

    def archive_huge(arrays, desc):
        e = desc["layers"]["1"]
        e["shape"] = [46000, 46000]
    add("archive-huge", reforge(arch, archive_huge), "error",
        "an archive layer declaring 46000x46000 (2.1e9 entries)")

    _, head, desc, data = parts(base)
    head2 = dict(head)
    first = next(k for k in head if k != "__metadata__")
    head2[first] = {"dtype": "U8", "shape": [2**40], "data_offsets": [0, 2**40]}
    add("tensor-2^40", raw_file(head2, data), "error", "a tensor entry of 2**40 bytes")
    return cases


# ---- the runner ---------------------------------------------------------------------------


def _status(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return 0


def _child(case: Case, out: int) -> None:
    from compactnn.io import CompactFileError, load

    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset the peak RSS to the current RSS
    except OSError:
        pass
    start = _status("VmRSS")
    t0 = time.perf_counter()
    res: dict = {}
    try:
        model = load(case.path)
        with torch.no_grad():
            model(torch.zeros(case.input_shape))
        res["outcome"] = "ok"
    except CompactFileError as exc:
        res["outcome"] = "error"
        res["message"] = str(exc)
    except BaseException as exc:  # noqa: BLE001 - reported, not hidden
        res["outcome"] = f"raw {type(exc).__name__}"
        res["message"] = str(exc)[:300]
    res["seconds"] = time.perf_counter() - t0
    res["rss"] = max(_status("VmHWM") - start, 0)
    os.write(out, json.dumps(res).encode())
    os._exit(0)


def _measure_one(case: Case, timeout: float) -> dict:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        os.close(r)
        _child(case, w)
    os.close(w)
    ready, _, _ = select.select([r], [], [], timeout)
    if not ready:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(r)
        return {"outcome": "timeout", "seconds": timeout, "rss": 0, "message": ""}
    chunks = []
    while True:
        b = os.read(r, 65536)
        if not b:
            break
        chunks.append(b)
    os.close(r)
    os.waitpid(pid, 0)
    if not chunks:
        return {"outcome": "crash", "seconds": 0.0, "rss": 0, "message": ""}
    return json.loads(b"".join(chunks))


def measure(cases: list[Case], timeout: float = 60.0) -> list[dict]:
    """Per case: outcome (``ok``, ``error``, ``raw <Exception>``, ``timeout`` or
    ``crash``), message, seconds and peak RSS in bytes of ``load`` plus a forward pass.

    Runs in a fresh interpreter (``python -m tests.io.corpus``) that imports the
    package once and forks a child per case before any thread pool exists."""
    import subprocess
    import sys

    root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(Path(root) / "src"), root, os.environ.get("PYTHONPATH", "")]))
    args = json.dumps({"timeout": timeout, "cases": [c.__dict__ for c in cases]})
    proc = subprocess.run([sys.executable, "-m", "tests.io.corpus"], input=args, text=True,
                          capture_output=True, env=env, cwd=root,
                          timeout=timeout * len(cases) + 120)
    if proc.returncode:
        raise RuntimeError(f"corpus runner failed: {proc.stderr[-2000:]}")
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


if __name__ == "__main__":  # the runner process
    import sys

    import compactnn.io  # noqa: F401 - imported once, before the children fork

    spec = json.loads(sys.stdin.read())
    for c in spec["cases"]:
        c["input_shape"] = tuple(c["input_shape"])
        print(json.dumps(_measure_one(Case(**c), spec["timeout"])), flush=True)
