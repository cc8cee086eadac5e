"""Hugging Face models of five architectures through compress -> convert -> save ->
load without the original weights: the reloaded model computes what the constrained
dense model computes."""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from compactnn import compress_, load, save, to_compact
from compactnn.io import CompactFileError, inspect
from compactnn.nn import CompactLinear
from compactnn.zoo import hf, hf_task
from tests.io.helpers import reforge

RECIPE = [{"method": "prune", "p": 50},
          {"method": "cws", "k": 8, "calibrate": 8},
          {"method": "finetune", "epochs": 1, "lr": 1e-4, "batch_size": 8}]


def _roundtrip(kind, path, data, tmp_path):
    model = hf.read_dir(path)
    x = hf_task.inputs_for(model, data, 32)
    ds = hf_task.distillation_data(model, x)
    compress_(hf_task.TaskView(model), RECIPE, ds)
    model.eval()
    cm = to_compact(model)
    out = tmp_path / f"{kind}.cnn"
    save(cm, out)
    return model, cm, x, out


def test_compress_save_load_without_weights(model_dir, tmp_path):
    kind, path, data = model_dir
    copy = tmp_path / "orig"
    shutil.copytree(path, copy)
    dense, cm, x, out = _roundtrip(kind, copy, data, tmp_path)
    shutil.rmtree(copy)  # the file alone rebuilds the model
    back = load(out)
    assert type(back).__name__ == dense.hf_spec["architecture"]
    assert sum(isinstance(m, CompactLinear) for m in back.modules()) >= 8
    ref, got = hf_task.TaskView(dense).eval(), hf_task.TaskView(back)
    torch.testing.assert_close(got(x), ref(x), rtol=1e-5, atol=1e-5)
    la, lb = got.logits(x), ref.logits(x)
    if la is not None:
        torch.testing.assert_close(la, lb, rtol=1e-5, atol=1e-5)
    # the constraints survived: few distinct values per layer, half the weights zero
    w = back.get_submodule(next(n for n, m in back.named_modules()
                                if isinstance(m, CompactLinear))).weight_matrix()
    assert np.unique(w).size <= 9 and (w == 0).mean() >= 0.45
    assert inspect(out, check=True).validated == "arrays"
    if kind != "vit":  # the tokenizer travels in the file
        tok = hf.tokenizer(back)
        assert tok("the cat sat")["input_ids"]
    assert "_name_or_path" not in back.hf_spec["config"]  # no local path in the file
    assert save(back, tmp_path / "again.cnn") == out.stat().st_size
    assert (tmp_path / "again.cnn").read_bytes() == out.read_bytes()


def test_same_bytes_twice(tmp_path):
    from tests.anymodel.conftest import make_model_dir

    path, data = make_model_dir("gpt2", tmp_path / "m")
    sizes = []
    for i in range(2):
        m = hf.read_dir(path)
        sizes.append(save(to_compact(m), tmp_path / f"{i}.cnn"))
    assert (tmp_path / "0.cnn").read_bytes() == (tmp_path / "1.cnn").read_bytes()


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="reads /proc/self/maps")
@pytest.mark.parametrize("kind", ["gpt2", "vit"])
def test_read_dir_keeps_no_view_of_the_weights_file(kind, tmp_path):
    """The model owns its memory: no tensor is a view of the memory-mapped weights file,
    so the file is unmapped once loaded (else its pages stay resident all run long)."""
    import gc

    import transformers

    from tests.anymodel.conftest import make_model_dir

    path, _ = make_model_dir(kind, tmp_path / "m")
    weights = str(next(path.glob("*.safetensors")).resolve())
    model = hf.read_dir(path)
    gc.collect()
    assert weights not in Path("/proc/self/maps").read_text()
    assert all(t.untyped_storage().resizable() for t in model.state_dict().values())
    auto = getattr(transformers, model.hf_spec["auto"])
    ref = hf.normalise_(auto.from_pretrained(path, dtype=torch.float32))
    for (k, a), (k2, b) in zip(model.state_dict().items(), ref.state_dict().items(),
                               strict=True):
        assert k == k2 and torch.equal(a, b)


@pytest.fixture(scope="module")
def gpt2_file(tmp_path_factory):
    from tests.anymodel.conftest import make_model_dir

    root = tmp_path_factory.mktemp("g")
    path, _ = make_model_dir("gpt2", root / "m")
    out = root / "g.cnn"
    save(to_compact(hf.read_dir(path)), out)
    return out.read_bytes()


def _edit_config(key, value):
    def edit(arrays, desc):
        desc["model"]["hf"]["config"][key] = value
    return edit


@pytest.mark.parametrize("edit, message", [
    (_edit_config("auto_map", {"AutoModel": "evil.Model"}), "remote code"),
    (_edit_config("model_type", "no-such-type"), "unknown model_type"),
    (lambda a, d: d["model"]["hf"].update(architecture="BertModel"), "not a built-in"),
    (lambda a, d: d["model"]["hf"].update(auto="AutoModelForEvil"), "bad Hugging Face"),
    (lambda a, d: d["model"]["hf"]["files"].append("../../etc/passwd"), "bad tokenizer file"),
    (lambda a, d: d["model"]["hf"]["config"].update(pad="x" * 70000), "longer than"),
    (lambda a, d: a.pop("file:tokenizer.json"), "file 'tokenizer.json' is missing"),
    (_edit_config("_name_or_path", "/home/x"), "keys save never writes"),
    (_edit_config("quantization_config", {"quant_method": "bitsandbytes"}), "quantized"),
    (lambda a, d: d["model"].update(zoo={"name": "mlp", "kwargs": {}}), "more than one way"),
])
def test_hostile_hf_entries(gpt2_file, tmp_path, edit, message):
    bad = tmp_path / "bad.cnn"
    bad.write_bytes(reforge(gpt2_file, edit))
    with pytest.raises(CompactFileError, match=message):
        load(bad)


def test_factory_and_skeleton(tmp_path):
    cm = to_compact(nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)))
    save(cm, tmp_path / "m.cnn")
    back = load(tmp_path / "m.cnn", factory="tests.anymodel.factories:small_mlp")
    x = torch.randn(5, 4)
    torch.testing.assert_close(back(x), cm(x))
    with pytest.raises(ValueError, match="package.module:function"):
        load(tmp_path / "m.cnn", factory="os.system('x')")
    with pytest.raises(CompactFileError, match="factory="):
        load(tmp_path / "m.cnn")


def test_unsupported_folder(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "gpt2", "architectures": '
                                          '["GPT2Evil"]}')
    with pytest.raises(hf.HFError, match="GPT2Evil.*supported: .*GPT2LMHeadModel"):
        hf.read_dir(tmp_path)
    (tmp_path / "config.json").write_text('{"model_type": "gpt2", "auto_map": {}}')
    with pytest.raises(hf.HFError, match="remote code"):
        hf.read_dir(tmp_path)
    (tmp_path / "config.json").write_text('{"model_type": "gpt2"}')
    with pytest.raises(hf.HFError, match="no \\*.safetensors"):
        hf.read_dir(tmp_path)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_load_on_cuda(gpt2_file, tmp_path):
    p = tmp_path / "g.cnn"
    p.write_bytes(gpt2_file)
    cpu, gpu = load(p), load(p, device="cuda")
    assert all(t.is_cuda for t in gpu.state_dict().values())
    assert not any(isinstance(m, CompactLinear) for m in gpu.modules())
    x = torch.randint(4, 20, (2, 2, 8))
    x[:, 1] = 1
    torch.testing.assert_close(hf_task.TaskView(gpu)(x.cuda()).cpu(),
                               hf_task.TaskView(cpu)(x), rtol=1e-4, atol=1e-4)


def test_compact_layers_expose_a_meta_weight():
    lin = to_compact(nn.Sequential(nn.Linear(5, 3)))[0]
    conv = to_compact(nn.Sequential(nn.Conv2d(4, 6, 3, groups=2)))[0]
    assert lin.weight.is_meta and lin.weight.shape == (3, 5)
    assert lin.weight.dtype == torch.float32
    assert conv.weight.is_meta and conv.weight.shape == (6, 2, 3, 3)
    with pytest.raises((RuntimeError, NotImplementedError)):
        lin.weight.sum().item()  # no values behind it


def _saved_bytes(view, x) -> int:
    """Bytes autograd keeps for the backward pass of one training forward pass."""
    seen: dict[int, int] = {}

    def pack(t):
        seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    view.train()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        view(x).sum().backward()
    view.eval()
    return sum(seen.values())


def test_checkpointed_finetuning_is_the_same_with_less_kept(model_dir):
    """Fine-tuning inside ``hf_task.checkpointed`` gives the same bits (dropout masks
    included) and keeps less for the backward pass; the model's settings come back."""
    kind, path, data = model_dir
    recipe = [{"method": "prune", "p": 50}, {"method": "cws", "k": 8},
              {"method": "finetune", "epochs": 2, "lr": 1e-3, "batch_size": 4}]
    states, kept = [], []
    for lean in (False, True):
        model = hf.read_dir(path)
        view = hf_task.TaskView(model)
        x = hf_task.inputs_for(model, data, 32)
        ds = hf_task.distillation_data(model, x)
        with torch.random.fork_rng(), (hf_task.checkpointed(model) if lean
                                       else contextlib.nullcontext()):
            torch.manual_seed(0)
            compress_(view, recipe, ds, progress=False)
            kept.append(_saved_bytes(view, x[:4]))
        assert not any(getattr(m, "gradient_checkpointing", False) is True
                       for m in model.modules())
        states.append(model.state_dict())
    for (k, a), (_, b) in zip(states[0].items(), states[1].items(), strict=True):
        assert torch.equal(a, b), k
    assert kept[1] < kept[0] / 2
