"""Datasets from files (PNG folders written with Pillow, .npz, IDX) and the loops on
them: map-style, iterable and DataLoader inputs."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader, IterableDataset, TensorDataset

from compactnn import train, zoo
from compactnn.cli import main
from compactnn.zoo.data import DatasetError
from compactnn.zoo.files import (
    ImageFolder,
    idx_dataset,
    inputs_and_targets,
    load_files,
    npz_dataset,
)


def write_images(root, per_class=6, size=(8, 8), classes=("bars", "dots")):
    """Two classes of 8x8 RGB PNGs a model can tell apart (horizontal vs vertical)."""
    rng = np.random.default_rng(0)
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            img = rng.integers(0, 60, (*size, 3), dtype=np.uint8)
            if c == 0:
                img[::2] += 180
            else:
                img[:, ::2] += 180
            Image.fromarray(img).save(root / name / f"{i}.png")
    return root


def test_image_folder_reads_pngs_as_float_chw(tmp_path):
    ds = ImageFolder(write_images(tmp_path / "imgs"))
    assert ds.classes == ["bars", "dots"] and len(ds) == 12
    x, y = ds[0]
    assert x.dtype == torch.float32 and x.shape == (3, 8, 8) and 0 <= x.min() <= x.max() <= 1
    raw = np.asarray(Image.open(tmp_path / "imgs" / "bars" / "0.png"), np.float32) / 255
    assert torch.equal(x, torch.from_numpy(raw.transpose(2, 0, 1).copy()))
    assert y.dtype == torch.int64 and ds[11][1] == 1
    gray = ImageFolder(tmp_path / "imgs", mode="L", size=(4, 4))
    assert gray[0][0].shape == (1, 4, 4)


def test_image_folder_errors_are_one_line(tmp_path):
    with pytest.raises(DatasetError, match="no class subfolders"):
        ImageFolder(tmp_path)
    root = write_images(tmp_path / "a")
    Image.fromarray(np.zeros((5, 5, 3), np.uint8)).save(root / "bars" / "odd.png")
    with pytest.raises(DatasetError, match="2 sizes.*pass size"):
        ImageFolder(root)
    (root / "bars" / "odd.png").write_bytes(b"not a png")
    with pytest.raises(DatasetError, match="not a readable image"):
        ImageFolder(root)


def test_load_files_splits_folders_and_npz(tmp_path):
    root = write_images(tmp_path / "one")
    tr, te = load_files(root)
    assert len(tr) + len(te) == 12 and len(te) == 3
    tr2, _ = load_files(root)
    assert list(tr.indices) == list(tr2.indices)  # seeded
    x, y = inputs_and_targets(tr)
    assert x.shape == (1, 3, 8, 8) and len(y) == 9
    both = tmp_path / "both"
    write_images(both / "train")
    write_images(both / "test", per_class=2)
    tr, te = load_files(both)
    assert (len(tr), len(te)) == (12, 4) and te.classes == tr.classes
    z = tmp_path / "d.npz"
    np.savez(z, x=np.arange(40, dtype=np.uint8).reshape(10, 1, 2, 2), y=np.arange(10) % 2)
    ds = npz_dataset(z)
    assert ds.tensors[0].dtype == torch.float32 and ds.tensors[0].max() <= 1
    assert ds.tensors[1].dtype == torch.int64
    tr, te = load_files(z)
    assert len(tr) == 8 and len(te) == 2
    np.savez(z, x=np.zeros((3, 2), np.float32))
    with pytest.raises(DatasetError, match="no array 'y'"):
        npz_dataset(z)


def _idx(path, arr: np.ndarray) -> None:
    code = {np.uint8: 0x08}[arr.dtype.type]
    head = bytes([0, 0, code, arr.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(head + arr.tobytes())


def test_idx_pair(tmp_path):
    imgs = np.arange(3 * 4 * 4, dtype=np.uint8).reshape(3, 4, 4)
    _idx(tmp_path / "i.gz", imgs)
    _idx(tmp_path / "l.gz", np.array([0, 1, 2], np.uint8))
    ds = idx_dataset(tmp_path / "i.gz", tmp_path / "l.gz")
    assert ds.tensors[0].shape == (3, 1, 4, 4) and ds.tensors[1].tolist() == [0, 1, 2]


class Stream(IterableDataset):
    def __init__(self, data: TensorDataset) -> None:
        self.data = data

    def __iter__(self):
        yield from zip(*self.data.tensors, strict=True)


def _fit(data, **kw):
    torch.manual_seed(0)
    net = zoo.build("lenet300", in_features=64)
    train.fit(net, data, epochs=2, batch_size=64, seed=3, progress=False, **kw)
    return [p.detach().clone() for p in net.parameters()]


class Plain(torch.utils.data.Dataset):
    def __init__(self, data: TensorDataset) -> None:
        self.data = data

    def __len__(self):
        return len(self.data)

    def __getitem__(self, i):
        return self.data[i]


def test_map_style_datasets_train_like_tensors():
    tr, te = zoo.load_dataset("digits")
    ref = _fit(tr)
    got = _fit(Plain(tr), num_workers=0)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(ref, got, strict=True))
    ev = train.evaluate(_net_from(ref), te)
    assert ev == train.evaluate(_net_from(ref), Plain(te))
    assert ev == train.evaluate(_net_from(ref), DataLoader(te, batch_size=100))
    assert ev == train.evaluate(_net_from(ref), Stream(te))


def _net_from(params):
    net = zoo.build("lenet300", in_features=64)
    with torch.no_grad():
        for p, v in zip(net.parameters(), params, strict=True):
            p.copy_(v)
    return net


def test_iterable_and_loader_inputs_train():
    tr, te = zoo.load_dataset("digits")
    for data, kw in ((Stream(tr), {"lr_schedule": "constant"}),
                     (DataLoader(tr, batch_size=32, shuffle=True,
                                 generator=torch.Generator().manual_seed(0)), {})):
        torch.manual_seed(0)
        net = zoo.build("lenet300", in_features=64)
        train.fit(net, data, epochs=2, progress=False, **kw)
        assert train.evaluate(net, te)["accuracy"] > 0.8
    with pytest.raises(ValueError, match="constant"):
        train.fit(zoo.build("lenet300", in_features=64), Stream(tr), progress=False)
    assert train.input_sample(Stream(tr), 5).shape == (5, 1, 8, 8)
    assert torch.equal(train.input_sample(Plain(tr), 7), train.input_sample(tr, 7))


def test_image_folder_with_workers_and_calibration(tmp_path):
    from compactnn.transforms import compress_

    tr, te = load_files(write_images(tmp_path / "imgs", per_class=12))
    torch.manual_seed(0)
    net = zoo.build("lenet300", in_features=3 * 8 * 8, num_classes=2)
    train.fit(net, tr, epochs=15, lr=3e-3, batch_size=8, progress=False, num_workers=2)
    assert train.evaluate(net, te)["accuracy"] == 1.0
    compress_(net, [{"method": "prune", "p": 50, "criterion": "wanda", "calibrate": 8},
                    {"method": "cws", "k": 4, "calibrate": 8}], tr)
    w = next(m for m in net.modules() if isinstance(m, torch.nn.Linear)).weight
    assert torch.unique(w[w != 0]).numel() <= 4


def test_cli_trains_and_compresses_on_an_image_folder(tmp_path, capsys):
    root = write_images(tmp_path / "imgs", per_class=12)
    ck, out = tmp_path / "m.safetensors", tmp_path / "c.safetensors"
    assert main(["train", "--model", "lenet300", "--data", str(root), "--epochs", "5",
                 "--batch-size", "8", "-o", str(ck)]) == 0
    assert "accuracy" in capsys.readouterr().out
    recipe = tmp_path / "r.yaml"
    recipe.write_text("- {method: prune, p: 50}\n- {method: finetune, epochs: 1, batch_size: 8}\n")
    assert main(["compress", str(ck), "--recipe", str(recipe), "--data", str(root),
                 "-o", str(out)]) == 0
    assert main(["train", "--model", "lenet300", "--data", str(tmp_path / "nope"),
                 "-o", str(ck)]) == 2
    assert "not an image folder" in capsys.readouterr().err
