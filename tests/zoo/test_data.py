"""Datasets: IDX reader, sklearn datasets, Fashion-MNIST when installed, clear errors."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from compactnn import zoo
from compactnn.train import task_of
from compactnn.zoo.data import DEFAULT_DIRS


def write_idx(path: Path, arr: np.ndarray, code: int) -> None:
    header = bytes([0, 0, code, arr.ndim]) + np.array(arr.shape, ">u4").tobytes()
    data = header + arr.tobytes()
    if path.suffix == ".gz":
        data = gzip.compress(data)
    path.write_bytes(data)


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_read_idx_roundtrip(tmp_path, suffix):
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / f"a{suffix}", arr, 0x08)
    np.testing.assert_array_equal(zoo.read_idx(tmp_path / f"a{suffix}"), arr)


def test_read_idx_rejects_bad_files(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(zoo.DatasetError, match="magic"):
        zoo.read_idx(tmp_path / "bad")
    arr = np.zeros((2, 2), np.uint8)
    write_idx(tmp_path / "short", arr, 0x08)
    (tmp_path / "short").write_bytes((tmp_path / "short").read_bytes()[:-1])
    with pytest.raises(zoo.DatasetError, match="does not match"):
        zoo.read_idx(tmp_path / "short")


def test_idx_folder_is_loaded_and_standardised(tmp_path):
    rng = np.random.default_rng(0)
    for stem, n in (("train", 50), ("t10k", 20)):
        write_idx(tmp_path / f"{stem}-images-idx3-ubyte.gz",
                  rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), 0x08)
        write_idx(tmp_path / f"{stem}-labels-idx1-ubyte",
                  rng.integers(0, 10, n, dtype=np.uint8), 0x08)
    train, test = zoo.load_dataset("mnist", tmp_path)
    x, y = train.tensors
    assert x.shape == (50, 1, 28, 28) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert abs(x.mean().item()) < 1e-4 and abs(x.std().item() - 1) < 1e-2
    assert len(test) == 20


def test_missing_dataset_says_how_to_get_it(tmp_path):
    with pytest.raises(zoo.DatasetError, match="dataset-fashion-mnist"):
        zoo.load_dataset("fashion-mnist", tmp_path)
    with pytest.raises(zoo.DatasetError, match="torchvision"):
        zoo.load_dataset("cifar10", tmp_path)
    with pytest.raises(ValueError, match="unknown dataset"):
        zoo.load_dataset("imagenet")


def test_digits_and_diabetes():
    train, test = zoo.load_dataset("digits")
    assert train.tensors[0].shape == (1347, 1, 8, 8) and len(test) == 450
    assert task_of(train) == "classification"
    assert set(train.tensors[1].tolist()) == set(range(10))
    train, test = zoo.load_dataset("diabetes")
    assert train.tensors[0].shape == (331, 10) and test.tensors[1].shape == (111, 1)
    assert task_of(train) == "regression"
    y = train.tensors[1]
    assert abs(y.mean().item()) < 1e-5 and abs(y.std(unbiased=False).item() - 1) < 1e-4
    a, _ = zoo.load_dataset("diabetes", seed=1)
    assert not torch.equal(a.tensors[1], y)


@pytest.mark.skipif(not Path(DEFAULT_DIRS["fashion-mnist"]).is_dir(),
                    reason="Debian's dataset-fashion-mnist is not installed")
def test_fashion_mnist_from_debian_package():
    train, test = zoo.load_dataset("fashion-mnist")
    assert train.tensors[0].shape == (60000, 1, 28, 28) and len(test) == 10000
    assert torch.bincount(test.tensors[1]).tolist() == [1000] * 10


def test_torchvision_copy_is_used_when_present(tmp_path, monkeypatch):
    """CIFAR-10 (and MNIST without IDX files) come from torchvision's dataset classes."""
    import sys
    import types

    class FakeCIFAR10:
        def __init__(self, root, train, download):
            assert root == str(tmp_path) and download is False
            n = 6 if train else 4
            self.data = np.full((n, 32, 32, 3), 7 if train else 9, np.uint8)
            self.data[0, 0, 0] = 200  # non-constant channels
            self.targets = list(range(n))

    fake = types.ModuleType("torchvision.datasets")
    fake.CIFAR10 = FakeCIFAR10
    fake.MNIST = fake.FashionMNIST = FakeCIFAR10
    monkeypatch.setitem(sys.modules, "torchvision", types.ModuleType("torchvision"))
    monkeypatch.setitem(sys.modules, "torchvision.datasets", fake)
    train, test = zoo.load_dataset("cifar10", tmp_path)
    assert train.tensors[0].shape == (6, 3, 32, 32) and test.tensors[1].tolist() == [0, 1, 2, 3]
    assert torch.allclose(train.tensors[0].mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5)
