"""Real datasets as in-memory ``TensorDataset`` pairs ``(train, test)``.

Images come as float32 ``(N, C, H, W)`` standardised with the training set's mean and
standard deviation (one per channel); classification targets are int64 class ids and
regression targets float32 ``(N, 1)`` standardised with the training set's mean and
standard deviation (so an MSE of 1.0 is the error of always predicting the mean).

Sources:

- ``fashion-mnist`` / ``mnist``: the IDX files (``train-images-idx3-ubyte[.gz]`` ...)
  read directly from ``data_dir`` (Fashion-MNIST default: ``/usr/share/datasets/
  fashion-mnist``, from Debian's ``dataset-fashion-mnist``), or torchvision's copy in
  ``data_dir`` when torchvision is installed.
- ``cifar10``: torchvision's ``CIFAR10(data_dir)`` (torchvision needed; no pickles are
  read here).
- ``digits`` (8x8 images, 10 classes) and ``diabetes`` (10 features, regression):
  scikit-learn's bundled copies, split 75/25 with a fixed seed.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset

from compactnn.errors import UserError

__all__ = ["DatasetError", "DATASETS", "load_dataset", "read_idx"]

DEFAULT_DIRS = {
    "fashion-mnist": "/usr/share/datasets/fashion-mnist",
    "mnist": "/usr/share/datasets/mnist",
}
_IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
DATASETS = ("fashion-mnist", "mnist", "cifar10", "digits", "diabetes")


class DatasetError(FileNotFoundError, UserError):
    """A dataset is missing or malformed; the message says how to get it."""


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (optionally gzip-compressed) into a numpy array."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DatasetError(f"{path} is not an IDX file (bad magic number)")
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    ndim = raw[3]
    header = 4 + 4 * ndim
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", ndim, 4))
    count = int(np.prod(shape, dtype=np.int64))
    if len(raw) != header + count * dtype.itemsize:
        raise DatasetError(f"{path}: size {len(raw)} does not match IDX shape {shape}")
    return np.frombuffer(raw, dtype, count, header).reshape(shape)


def _find_idx(directory: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (directory / name).is_file():
            return directory / name
    return None


def _load_idx_pair(name: str, directory: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    out = {}
    for split, (img, lab) in _IDX_FILES.items():
        paths = [_find_idx(directory, img), _find_idx(directory, lab)]
        if None in paths:
            return {}
        out[split] = (read_idx(paths[0]), read_idx(paths[1]))
    return out


def _torchvision_split(name: str, directory: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    try:
        import torchvision.datasets as tvd
    except ImportError:
        return {}
    cls = {"fashion-mnist": tvd.FashionMNIST, "mnist": tvd.MNIST, "cifar10": tvd.CIFAR10}[name]
    out = {}
    try:
        for split in ("train", "test"):
            ds = cls(str(directory), train=split == "train", download=False)
            x = ds.data.numpy() if isinstance(ds.data, torch.Tensor) else np.asarray(ds.data)
            out[split] = (x, np.asarray(ds.targets))
    except (RuntimeError, OSError):
        return {}
    return out


def _missing(name: str, directory: Path) -> DatasetError:
    hints = {
        "fashion-mnist": "install Debian's dataset-fashion-mnist (apt install "
        "dataset-fashion-mnist) or put the four IDX files (train-images-idx3-ubyte.gz, ...) "
        "from https://github.com/zalandoresearch/fashion-mnist in a folder and pass "
        "data_dir=/that/folder (--data DIR)",
        "mnist": "put the four MNIST IDX files (train-images-idx3-ubyte.gz, ...) in a folder "
        "and pass data_dir=/that/folder (--data DIR), or install torchvision and run "
        "torchvision.datasets.MNIST(DIR, download=True) once",
        "cifar10": "install torchvision and run torchvision.datasets.CIFAR10(DIR, "
        "download=True) once, then pass data_dir=DIR (--data DIR)",
    }
    return DatasetError(f"{name} not found in {directory}: {hints[name]}")


def _standardise_images(train: np.ndarray, test: np.ndarray, scale: float):
    """(N, H, W) or (N, H, W, C) integer images -> float32 (N, C, H, W), standardised."""
    xs = []
    for x in (train, test):
        x = np.asarray(x, np.float32) / scale
        x = x[:, None] if x.ndim == 3 else x.transpose(0, 3, 1, 2)
        xs.append(np.ascontiguousarray(x))
    mean = xs[0].mean(axis=(0, 2, 3), keepdims=True)
    std = xs[0].std(axis=(0, 2, 3), keepdims=True)
    return [(x - mean) / std for x in xs]


def _image_dataset(name: str, data_dir: str | os.PathLike | None):
    directory = Path(data_dir) if data_dir is not None else Path(DEFAULT_DIRS.get(name, "."))
    splits = {} if name == "cifar10" else _load_idx_pair(name, directory)
    if not splits:
        splits = _torchvision_split(name, directory)
    if not splits:
        raise _missing(name, directory)
    (xtr, ytr), (xte, yte) = splits["train"], splits["test"]
    xtr, xte = _standardise_images(xtr, xte, 255.0)
    return (xtr, np.asarray(ytr, np.int64)), (xte, np.asarray(yte, np.int64))


def _sklearn_dataset(name: str, seed: int):
    from sklearn.datasets import load_diabetes, load_digits
    from sklearn.model_selection import train_test_split

    if name == "digits":
        x, y = load_digits(return_X_y=True)
        x = x.reshape(-1, 8, 8)
        xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.25, random_state=seed,
                                              stratify=y)
        xtr, xte = _standardise_images(xtr, xte, 16.0)
        return (xtr, ytr.astype(np.int64)), (xte, yte.astype(np.int64))
    x, y = load_diabetes(return_X_y=True, scaled=False)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.25, random_state=seed)
    mu, sd = xtr.mean(0), xtr.std(0)
    ymu, ysd = ytr.mean(), ytr.std()
    xtr, xte = [((v - mu) / sd).astype(np.float32) for v in (xtr, xte)]
    ytr, yte = [((v - ymu) / ysd).astype(np.float32)[:, None] for v in (ytr, yte)]
    return (xtr, ytr), (xte, yte)


def load_dataset(name: str, data_dir: str | os.PathLike | None = None, *,
                 seed: int = 0) -> tuple[TensorDataset, TensorDataset]:
    """Load a dataset as ``(train, test)`` ``TensorDataset`` s of ``(inputs, targets)``.

    Args:
        name: one of ``DATASETS``.
        data_dir: folder holding the files (image datasets only); ``None`` uses the
            default location (``/usr/share/datasets/fashion-mnist`` for Fashion-MNIST).
        seed: seed of the train/test split of the scikit-learn datasets.

    Raises:
        DatasetError: the files are missing (the message says how to get them).
        ValueError: unknown dataset name.

    >>> train, test = load_dataset("digits")
    >>> len(train), len(test), tuple(train.tensors[0].shape[1:])
    (1347, 450, (1, 8, 8))
    """
    if name not in DATASETS:
        raise UserError(f"unknown dataset {name!r}; available: {', '.join(DATASETS)}")
    if name in ("digits", "diabetes"):
        tr, te = _sklearn_dataset(name, seed)
    else:
        tr, te = _image_dataset(name, data_dir)
    return tuple(TensorDataset(torch.from_numpy(x), torch.from_numpy(y)) for x, y in (tr, te))
