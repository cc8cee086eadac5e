"""Resource bounds: the hostile corpus (``tests/io/corpus.py``) measured in child
processes by real peak RSS and wall time, canonical index dtypes against the compile
bomb, atomic-write hygiene, and ``save`` refusing what ``load`` refuses."""

from __future__ import annotations

import os
import stat
import time

import numpy as np
import pytest
import torch

from compactnn import formats, zoo
from compactnn.formats.dtypes import KERNEL_INDEX_DTYPES, KERNEL_POINTER_DTYPES
from compactnn.io import CompactFileError, load, save
from compactnn.io.files import check_writable, write_atomic
from compactnn.kernels import cer as cer_kernels
from compactnn.nn import CompactLinear, to_compact
from tests.io import corpus
from tests.io.helpers import constrain_

RSS_LIMIT = 256 * 2**20  # beyond the file's own size


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    return corpus.build(tmp_path_factory.mktemp("corpus"))


def test_corpus_errors_and_resources(cases):
    results = corpus.measure(cases, timeout=60)
    assert len(results) == len(cases)
    lines = []
    for c, r in zip(cases, results, strict=True):
        lines.append(f"{c.name:18s} {r['outcome']:8s} {r['seconds']:6.2f} s "
                     f"{r['rss'] / 2**20:7.1f} MB")
        assert r["outcome"] == c.expect, (c.name, r)
        if c.expect == "error":
            assert "\n" not in r["message"] and r["message"].startswith(c.path), (c.name, r)
        size = os.path.getsize(c.path) if os.path.isfile(c.path) and not os.path.islink(
            c.path) else 0
        assert r["rss"] < RSS_LIMIT + min(size, 2**20), (c.name, r)
    print("\n" + "\n".join(lines))


def test_compile_bomb_reaches_few_dtype_combinations(cases, tmp_path):
    bomb = next(c for c in cases if c.name == "compile-bomb")
    before = {k: len(getattr(cer_kernels, k).signatures) for k in ("cer_matvec", "cer_matmul")}
    t0 = time.perf_counter()
    model = load(bomb.path)
    with torch.no_grad():
        model(torch.zeros(1, 6))
        model(torch.zeros(4, 6))
    print(f"\ncompile bomb: load + forward b=1 and b=4 in {time.perf_counter() - t0:.2f} s")
    combos = set()
    for m in model.modules():
        if isinstance(m, CompactLinear):
            M = m.matrix
            combos.add(tuple(getattr(M, a).dtype.str for a in
                             ("col_idx", "omega_ptr", "row_ptr", "omega_idx")))
            assert M.col_idx.dtype in KERNEL_INDEX_DTYPES
            assert M.omega_idx.dtype in KERNEL_INDEX_DTYPES
            assert M.omega_ptr.dtype in KERNEL_POINTER_DTYPES
            assert M.row_ptr.dtype in KERNEL_POINTER_DTYPES
    assert len(combos) == 1, combos  # 60 layers, 4**4 stored combinations, one at run time
    for k, n in before.items():
        assert len(getattr(cer_kernels, k).signatures) <= n + 1, k
    # files written by the package keep their bytes through load and save
    out = tmp_path / "again.cnn"
    save(model, out)
    direct = tmp_path / "direct.cnn"
    save(load(out), direct)
    assert out.read_bytes() == direct.read_bytes()


@pytest.mark.parametrize("fid", formats.available())
def test_canonical_dtypes_round_trip_by_bytes(fid):
    rng = np.random.default_rng(3)
    W = np.where(rng.random((9, 300)) < 0.7, 0, rng.integers(-3, 4, (9, 300))).astype(np.float32)
    M = formats.get(fid).from_dense(W)
    bufs, attrs = M.to_buffers()
    index = set(M.pointer_arrays) | set(M._index_bounds())
    wide = {k: (v.astype(np.uint64) if k in index else v) for k, v in bufs.items()}
    back = formats.get(fid).from_buffers(wide, attrs)
    again, _ = back.to_buffers()
    for k, v in bufs.items():
        assert again[k].dtype == v.dtype and again[k].tobytes() == v.tobytes(), k
    assert back.nbytes == M.nbytes
    for a in type(back).pointer_arrays:
        assert getattr(back, a).dtype in KERNEL_POINTER_DTYPES


def test_write_atomic_keeps_mode_and_removes_stale_temps(tmp_path):
    target = tmp_path / "m.cnn"
    target.write_bytes(b"old")
    os.chmod(target, 0o600)
    stale = tmp_path / ".m.cnn.999999999.0123abcd.compactnn-tmp"
    stale.write_bytes(b"partial")
    alive = tmp_path / f".m.cnn.{os.getpid()}.0123abce.compactnn-tmp"
    alive.write_bytes(b"in use")
    other = tmp_path / ".other.cnn.999999999.0123abcd.compactnn-tmp"
    other.write_bytes(b"not ours")
    write_atomic(target, b"new")
    assert target.read_bytes() == b"new"
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o600
    assert not stale.exists() and alive.exists() and other.exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_check_writable_read_only_folder(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    os.chmod(ro, 0o500)
    try:
        with pytest.raises(OSError, match="cannot write"):
            check_writable(ro / "x.cnn")
    finally:
        os.chmod(ro, 0o700)


def test_check_writable(tmp_path):
    check_writable(tmp_path / "x.cnn")
    assert not list(tmp_path.iterdir())
    with pytest.raises(OSError, match="does not exist"):
        check_writable(tmp_path / "missing" / "x.cnn")
    with pytest.raises(OSError, match="is a directory"):
        check_writable(tmp_path)


def test_save_refuses_what_load_refuses(tmp_path):
    torch.manual_seed(0)
    model = constrain_(zoo.build("lenet300", in_features=16), 0)
    cm = to_compact(model, "csr")
    cm.get_submodule("1").bias[2] = float("nan")
    path = tmp_path / "nan.cnn"
    with pytest.raises(ValueError) as saved:
        save(cm, path, zoo=("lenet300", {"in_features": 16}))
    assert not path.exists()
    assert "state tensor '1.bias' has NaN or Inf" in str(saved.value)
    # the same file forged past save: load says the same
    from tests.io.helpers import reforge

    good = tmp_path / "good.cnn"
    cm.get_submodule("1").bias[2] = 0.0
    save(cm, good, zoo=("lenet300", {"in_features": 16}))

    def edit(arrays, desc):
        arrays["1.bias"][2] = np.nan

    path.write_bytes(reforge(good.read_bytes(), edit))
    with pytest.raises(CompactFileError) as loaded:
        load(path)
    assert str(loaded.value).split(": ", 1)[1] == str(saved.value).split(": ", 1)[1]
