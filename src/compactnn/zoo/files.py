"""Datasets from the user's files, as ``torch.utils.data`` datasets of ``(input, target)``.

- :class:`ImageFolder`: one subfolder per class (``root/cat/*.png``, ``root/dog/*.jpg``;
  classes in sorted order), images read lazily through Pillow at ``__getitem__`` (so a
  ``DataLoader`` with ``num_workers`` decodes them in parallel), as float32
  ``(channels, height, width)`` in [0, 1] (``mode`` ``"RGB"`` or ``"L"``), resized to
  ``size`` when given (else every image must have the first one's size, checked from the
  headers when the folder is opened).
- :func:`npz_dataset`: a ``.npz`` file's ``x`` / ``y`` arrays (or ``x_train`` ... for
  splits) as a ``TensorDataset``.
- :func:`idx_dataset`: an IDX image file and an IDX label file (``compactnn.zoo.data
  .read_idx``).
- :func:`load_files`: ``(train, test)`` from a path: an image folder (with ``train/``
  and ``test/`` (or ``val/``) subfolders, or one folder split 75/25 with a seed) or a
  ``.npz`` file (``x_train`` / ``y_train`` / ``x_test`` / ``y_test``, or ``x`` / ``y``
  split the same way).

Text, one sample per line: ``compactnn.zoo.hf_task.text_inputs`` (Hugging Face models)
and ``compactnn.zoo.corpora.load_corpus`` (the corpora and user text files).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Subset, TensorDataset, random_split

from compactnn.zoo.data import DatasetError, read_idx

__all__ = ["IMAGE_SUFFIXES", "ImageFolder", "npz_dataset", "idx_dataset", "load_files",
           "is_image_folder", "inputs_and_targets"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def is_image_folder(path: str | os.PathLike) -> bool:
    """A folder whose subfolders hold images (one subfolder per class), or one with
    ``train/`` holding such subfolders."""
    root = Path(path)
    if not root.is_dir():
        return False
    if (root / "train").is_dir():
        root = root / "train"
    return any(d.is_dir() and _images(d) for d in root.iterdir())


class ImageFolder(Dataset):
    """Images in class subfolders (see the module docstring); ``classes`` are the
    subfolder names, ``targets`` the int64 class id of each sample."""

    def __init__(self, root: str | os.PathLike, *, mode: str = "RGB",
                 size: tuple[int, int] | None = None, classes: list[str] | None = None
                 ) -> None:
        from PIL import Image

        self.root = Path(root)
        if not self.root.is_dir():
            raise DatasetError(f"{os.fspath(root)}: no such folder")
        if mode not in ("RGB", "L"):
            raise ValueError(f"mode must be 'RGB' or 'L', got {mode!r}")
        found = sorted(d.name for d in self.root.iterdir() if d.is_dir() and _images(d))
        self.classes = list(classes) if classes is not None else found
        if not found:
            raise DatasetError(f"{self.root}: no class subfolders with images "
                               f"({', '.join(IMAGE_SUFFIXES)})")
        unknown = sorted(set(found) - set(self.classes))
        if unknown:
            raise DatasetError(f"{self.root}: classes {', '.join(unknown)} are not among "
                               f"the training classes {', '.join(self.classes)}")
        self.samples = [(p, self.classes.index(c)) for c in found for p in _images(self.root / c)]
        self.targets = torch.tensor([t for _, t in self.samples], dtype=torch.int64)
        self.mode, self.size = mode, size
        if size is None:
            sizes = set()
            for p, _ in self.samples:
                try:
                    with Image.open(p) as im:
                        sizes.add(im.size)
                except OSError as exc:
                    raise DatasetError(f"{p}: not a readable image ({exc})") from None
            if len(sizes) > 1:
                raise DatasetError(f"{self.root}: images of {len(sizes)} sizes "
                                   f"({', '.join(f'{w}x{h}' for w, h in sorted(sizes)[:3])}"
                                   "...); pass size=(height, width) to resize them")

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        from PIL import Image

        path, target = self.samples[i]
        try:
            with Image.open(path) as im:
                im = im.convert(self.mode)
                if self.size is not None:
                    im = im.resize((self.size[1], self.size[0]), Image.Resampling.BILINEAR)
                arr = np.asarray(im, dtype=np.float32) / 255.0
        except OSError as exc:
            raise DatasetError(f"{path}: not a readable image ({exc})") from None
        x = torch.from_numpy(arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1).copy())
        return x, self.targets[i]


def _array(z, key: str, path: str) -> torch.Tensor:
    arr = z[key]
    if arr.dtype.kind not in "fiub":
        raise DatasetError(f"{path}: array {key!r} is {arr.dtype}, not numbers")
    if arr.dtype.kind == "f":
        return torch.from_numpy(np.ascontiguousarray(arr, np.float32))
    return torch.from_numpy(np.ascontiguousarray(arr, np.int64))


def npz_dataset(path: str | os.PathLike, x: str = "x", y: str = "y") -> TensorDataset:
    """``TensorDataset`` of the arrays ``x`` (float32; integer images are scaled by
    1/255) and ``y`` (int64 class ids, or float32 regression targets) of a ``.npz``."""
    source = os.fspath(path)
    try:
        with np.load(source, allow_pickle=False) as z:
            missing = [k for k in (x, y) if k not in z]
            if missing:
                raise DatasetError(f"{source}: no array {missing[0]!r} (has "
                                   f"{', '.join(z.files) or 'none'})")
            xs, ys = _array(z, x, source), _array(z, y, source)
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{source}: not a readable .npz file ({exc})") from None
    if not xs.is_floating_point():
        xs = xs.to(torch.float32) / 255.0
    if len(xs) != len(ys):
        raise DatasetError(f"{source}: {len(xs)} inputs but {len(ys)} targets")
    return TensorDataset(xs, ys)


def idx_dataset(images: str | os.PathLike, labels: str | os.PathLike) -> TensorDataset:
    """``TensorDataset`` of an IDX image file (float32 ``(n, 1, h, w)`` in [0, 1]) and
    an IDX label file (int64)."""
    x, y = read_idx(images), read_idx(labels)
    if len(x) != len(y):
        raise DatasetError(f"{images}: {len(x)} images but {len(y)} labels in {labels}")
    xs = torch.from_numpy(np.asarray(x, np.float32) / 255.0)
    return TensorDataset(xs[:, None] if xs.ndim == 3 else xs,
                         torch.from_numpy(np.asarray(y, np.int64)))


def _split(data: Dataset, seed: int) -> tuple[Subset, Subset]:
    n = len(data)
    if n < 2:
        raise DatasetError("a dataset to split into train and test needs at least 2 samples")
    test = max(1, n // 4)
    train, held = random_split(data, [n - test, test], torch.Generator().manual_seed(seed))
    return train, held


def load_files(path: str | os.PathLike, *, seed: int = 0, mode: str = "RGB",
               size: tuple[int, int] | None = None) -> tuple[Dataset, Dataset]:
    """``(train, test)`` from an image folder or a ``.npz`` file (module docstring)."""
    p = Path(path)
    if p.is_file() and p.suffix == ".npz":
        with np.load(p, allow_pickle=False) as z:
            names = set(z.files)
        if {"x_train", "y_train", "x_test", "y_test"} <= names:
            return npz_dataset(p, "x_train", "y_train"), npz_dataset(p, "x_test", "y_test")
        return _split(npz_dataset(p), seed)
    if not is_image_folder(p):
        raise DatasetError(f"{os.fspath(path)}: not an image folder (one subfolder of images "
                           "per class) or a .npz file")
    held = next((p / s for s in ("test", "val") if (p / s).is_dir()), None)
    if (p / "train").is_dir() and held is not None:
        train = ImageFolder(p / "train", mode=mode, size=size)
        return train, ImageFolder(held, mode=mode, size=size, classes=train.classes)
    whole = ImageFolder(p, mode=mode, size=size)
    return _split(whole, seed)


def inputs_and_targets(data: Dataset) -> tuple[torch.Tensor, torch.Tensor]:
    """``(one input as a batch of 1, every target)`` of a ``TensorDataset``, an
    :class:`ImageFolder` or a ``Subset`` of either (what a model's shape and output
    count are chosen from)."""
    base, index = data, None
    while isinstance(base, Subset):
        index = base.indices if index is None else [base.indices[i] for i in index]
        base = base.dataset
    if isinstance(base, TensorDataset):
        x, y = base.tensors
    elif isinstance(base, ImageFolder):
        x, y = base[0][0][None], base.targets
    else:
        raise TypeError(f"expected a TensorDataset or ImageFolder, got {type(base).__name__}")
    if index is not None:
        y = y[torch.as_tensor(index, dtype=torch.int64)]
    return x[:1], y
