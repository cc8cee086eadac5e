"""Data, a one-tensor view and metrics for Hugging Face models (:mod:`compactnn.zoo.hf`).

compactnn's loops (``train.fit``, ``compress_`` calibration) feed a model one tensor
per sample. :class:`TaskView` gives a Hugging Face model that interface:

- text models take ``(n, 2, length)`` int64 (token ids, attention mask; from
  :func:`text_inputs`: one sample per line of a text file, padded to the longest line,
  at most ``max_length`` tokens);
- image models take ``(n, channels, height, width)`` float32 pixel values
  (:func:`image_inputs`: a ``.npy`` array, the ``pixel_values`` array of a ``.npz``, or
  a folder of images in class subfolders, resized to the config's ``image_size`` and
  normalised with the processor's ``image_mean`` / ``image_std`` (0.5 when it has none)).

Labels (:func:`labelled_inputs`, for classifiers' :func:`accuracy`): the first field of
a text line ``label<TAB>text`` (an integer or a name of the config's ``label2id``), the
``labels`` array of a ``.npz``, or an image folder's class (its subfolder name in
``label2id``, else its index among the sorted subfolders).

Its output is the last hidden state (the decoder's for an encoder-decoder, which is fed
the input shifted right as decoder input), zero at padded positions: the distillation
target of ``finetune`` steps (mean squared error against the original model's) and the
quantity agreement is measured on. Perplexity (:func:`perplexity`) is measured for
causal LMs on the same kind of text file. Text models run without a key/value cache
(``use_cache=False``: every pass is over whole samples); :func:`checkpointed` makes
fine-tuning keep one block's activations at a time.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import TensorDataset

from compactnn.train import predict
from compactnn.zoo.hf import HFError, task_of, tokenizer

__all__ = ["TaskView", "text_inputs", "image_inputs", "inputs_for", "labelled_inputs",
           "distillation_data", "checkpointed", "perplexity", "agreement", "accuracy",
           "MAX_LINES"]

MAX_LINES = 1_000_000


class TaskView(nn.Module):
    """``model`` as a function of one tensor (see the module docstring); the model is a
    submodule named ``model``, so its layer names gain the prefix ``model.``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.task = task_of(model)
        self.train(model.training)

    def _run(self, x: torch.Tensor):
        if self.task == "image":
            return self.model(pixel_values=x, output_hidden_states=True)
        ids, mask = x[:, 0], x[:, 1]
        # one pass over whole samples: a key/value cache would never be read
        more = {"use_cache": False} if getattr(self.model.config, "use_cache", None) \
            is not None else {}
        if self.task == "seq2seq":
            dec = self.model._shift_right(ids)
            return self.model(input_ids=ids, attention_mask=mask, decoder_input_ids=dec,
                              output_hidden_states=True, **more)
        return self.model(input_ids=ids, attention_mask=mask, output_hidden_states=True,
                          **more)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self._run(x)
        if self.task == "image":
            return out.hidden_states[-1]
        hidden = out.decoder_hidden_states[-1] if self.task == "seq2seq" else \
            out.hidden_states[-1]
        return hidden * x[:, 1].unsqueeze(-1).to(hidden.dtype)

    def logits(self, x: torch.Tensor) -> torch.Tensor | None:
        """The model's logits for ``x`` (``None`` if it has no head)."""
        return getattr(self._run(x), "logits", None)


def _lines(path: str | os.PathLike) -> list[str]:
    p = Path(path)
    if not p.is_file():
        raise HFError(f"{os.fspath(path)}: no such text file")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise HFError(f"{os.fspath(path)}: not UTF-8 text") from None
    lines = [s for s in (ln.strip() for ln in text.splitlines()) if s]
    if not lines:
        raise HFError(f"{os.fspath(path)}: no non-empty lines (one sample per line)")
    if len(lines) > MAX_LINES:
        raise HFError(f"{os.fspath(path)}: more than {MAX_LINES} lines")
    return lines


def _label_id(model: nn.Module, text: str) -> int | None:
    ids = getattr(model.config, "label2id", None) or {}
    if text in ids:
        return int(ids[text])
    try:
        return int(text)
    except ValueError:
        return None


def _split_labels(model: nn.Module, lines: list[str]) -> tuple[list[str], torch.Tensor | None]:
    """``label<TAB>text`` lines -> (texts, labels) when every line has a label."""
    parts = [ln.split("\t", 1) for ln in lines]
    if not all(len(p) == 2 for p in parts):
        return lines, None
    labels = [_label_id(model, p[0].strip()) for p in parts]
    if None in labels:
        return lines, None
    return [p[1] for p in parts], torch.tensor(labels, dtype=torch.int64)


def _encode(model: nn.Module, lines: list[str], max_length: int) -> torch.Tensor:
    if max_length < 2:
        raise HFError(f"max_length must be >= 2, got {max_length}")
    tok = tokenizer(model)
    enc = tok(lines, padding=True, truncation=True, max_length=max_length,
              return_tensors="pt")
    return torch.stack([enc["input_ids"], enc["attention_mask"]], dim=1).to(torch.int64)


def text_inputs(model: nn.Module, path: str | os.PathLike, max_length: int = 128
                ) -> torch.Tensor:
    """``(n, 2, length)`` int64 ids and attention masks of the lines of a text file."""
    return _encode(model, _lines(path), max_length)


def _normalisation(model: nn.Module) -> tuple[np.ndarray, np.ndarray]:
    import json

    raw = (getattr(model, "hf_files", None) or {}).get("preprocessor_config.json")
    conf = {}
    if raw is not None:
        try:
            conf = json.loads(bytes(raw).decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            conf = {}
    channels = getattr(model.config, "num_channels", 3)
    mean = np.asarray(conf.get("image_mean", [0.5] * channels), np.float32)
    std = np.asarray(conf.get("image_std", [0.5] * channels), np.float32)
    return mean.reshape(-1, 1, 1), std.reshape(-1, 1, 1)


def _folder_inputs(model: nn.Module, folder: str) -> tuple[torch.Tensor, torch.Tensor]:
    from compactnn.zoo.files import ImageFolder

    cfg = model.config
    channels = getattr(cfg, "num_channels", 3)
    ds = ImageFolder(folder, mode="L" if channels == 1 else "RGB",
                     size=(cfg.image_size, cfg.image_size))
    x = torch.stack([ds[i][0] for i in range(len(ds))])
    mean, std = _normalisation(model)
    x = (x - torch.from_numpy(mean)) / torch.from_numpy(std)
    ids = [_label_id(model, c) for c in ds.classes]
    names = getattr(cfg, "label2id", None) or {}
    if all(c in names for c in ds.classes):
        labels = torch.tensor([ids[t] for t in ds.targets.tolist()], dtype=torch.int64)
    else:
        labels = ds.targets
    return x.to(torch.float32), labels


def image_inputs(model: nn.Module, path: str | os.PathLike) -> torch.Tensor:
    """``(n, c, h, w)`` float32 pixel values from a ``.npy`` file, the ``pixel_values``
    array of a ``.npz`` file or an image folder, checked against the model's config."""
    return _image_data(model, path)[0]


def _image_data(model: nn.Module, path: str | os.PathLike
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
    source = os.fspath(path)
    if os.path.isdir(source):
        return _folder_inputs(model, source)
    labels = None
    try:
        if source.endswith(".npz"):
            with np.load(source, allow_pickle=False) as z:
                if "pixel_values" not in z:
                    raise HFError(f"{source}: no pixel_values array")
                arr = z["pixel_values"]
                if "labels" in z:
                    labels = torch.from_numpy(np.asarray(z["labels"], np.int64))
        else:
            arr = np.load(source, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise HFError(f"{source}: not a readable .npy/.npz array ({exc})") from None
    cfg = model.config
    want = (getattr(cfg, "num_channels", 3), cfg.image_size, cfg.image_size)
    if arr.ndim != 4 or tuple(arr.shape[1:]) != tuple(want) or arr.dtype.kind != "f":
        raise HFError(f"{source}: expected float pixel values of shape (n, {want[0]}, "
                      f"{want[1]}, {want[2]}), got {arr.dtype}{list(arr.shape)}")
    if not np.isfinite(arr).all():
        raise HFError(f"{source}: pixel values hold NaN or Inf")
    if labels is not None and labels.shape != (len(arr),):
        raise HFError(f"{source}: {len(arr)} images but labels of shape "
                      f"{list(labels.shape)}")
    return torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32)), labels


def labelled_inputs(model: nn.Module, path: str | os.PathLike, max_length: int = 128
                    ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(inputs, labels or None)`` of a data file or folder (module docstring)."""
    if task_of(model) == "image":
        return _image_data(model, path)
    texts, labels = _split_labels(model, _lines(path))
    return _encode(model, texts, max_length), labels


def inputs_for(model: nn.Module, path: str | os.PathLike, max_length: int = 128
               ) -> torch.Tensor:
    """The inputs of :func:`labelled_inputs` (a labelled text line gives its text)."""
    return labelled_inputs(model, path, max_length)[0]


def distillation_data(teacher: nn.Module, x: torch.Tensor, batch_size: int = 16, *,
                      device: str | torch.device | None = None,
                      autocast: str | None = None) -> TensorDataset:
    """``TensorDataset(x, teacher outputs)``: what ``finetune`` steps distil (MSE); the
    teacher runs on ``device`` under ``autocast``, the targets are float32 on the CPU."""
    view = TaskView(teacher).eval()
    return TensorDataset(x, predict(view, x, batch_size, device=device,
                                    autocast=autocast).float().cpu())


@contextlib.contextmanager
def checkpointed(model: nn.Module) -> Iterator[nn.Module]:
    """Within: while ``model`` trains, each transformer block keeps only its input for
    the backward pass and computes its activations again there (``transformers``'
    activation checkpointing, non-reentrant), so one block's activations exist at a
    time instead of all blocks' (at batch 8 of 64 tokens, 168 MB of a 13.9 M GPT-2's
    fine-tuning step, 3x its float32 size). The same values: the block runs the same
    operations on the same inputs, and its dropout masks are drawn again from the
    random state saved with it (which is then restored). The model's own setting comes
    back afterwards; a model without checkpointing support runs as it is."""
    if not getattr(model, "supports_gradient_checkpointing", False):
        yield model
        return
    enable = getattr(model, "activation_checkpointing_enable", None)
    disable = getattr(model, "activation_checkpointing_disable", None)
    if enable is None:  # transformers < 5
        enable = model.gradient_checkpointing_enable
        disable = model.gradient_checkpointing_disable
        kwargs = {"gradient_checkpointing_kwargs": {"use_reentrant": False}}
    else:
        kwargs = {"activation_checkpointing_kwargs": {"use_reentrant": False}}
    if any(getattr(m, "gradient_checkpointing", False) is True for m in model.modules()):
        yield model  # on already: the user's own setting is kept
        return
    enable(**kwargs)
    try:
        yield model
    finally:
        disable()


@torch.no_grad()
def perplexity(model: nn.Module, x: torch.Tensor, batch_size: int = 16) -> float:
    """Perplexity of a causal LM on ``(n, 2, length)`` inputs (every non-padded token
    after the first of each sample is predicted)."""
    view = TaskView(model).eval()
    nll, count = 0.0, 0
    for i in range(0, len(x), batch_size):
        b = x[i:i + batch_size]
        logits = view.logits(b)[:, :-1].float()
        target, mask = b[:, 0, 1:], b[:, 1, 1:].bool()
        losses = nn.functional.cross_entropy(logits.transpose(1, 2), target, reduction="none")
        nll += losses[mask].double().sum().item()
        count += int(mask.sum())
    if count == 0:
        raise HFError("perplexity needs samples of at least two tokens")
    return math.exp(nll / count)


@torch.no_grad()
def agreement(model: nn.Module, reference: nn.Module, x: torch.Tensor, batch_size: int = 16
              ) -> dict[str, float]:
    """How closely ``model`` follows ``reference`` on ``x``: the mean cosine similarity
    of their last hidden states (per non-padded position or image token), and, when the
    models have logits, the share of positions whose top-1 prediction agrees."""
    a, b = TaskView(model).eval(), TaskView(reference).eval()
    cos_sum, n, top_hits, top_n = 0.0, 0, 0, 0
    for i in range(0, len(x), batch_size):
        xb = x[i:i + batch_size]
        ha, hb = a(xb).float(), b(xb).float()
        mask = torch.ones(ha.shape[:2], dtype=torch.bool) if a.task == "image" else \
            xb[:, 1].bool()
        cos = nn.functional.cosine_similarity(ha, hb, dim=-1)[mask]
        cos_sum += cos.double().sum().item()
        n += cos.numel()
        la, lb = a.logits(xb), b.logits(xb)
        if la is not None and lb is not None:
            agree = la.argmax(-1) == lb.argmax(-1)
            if agree.dim() == 2 and a.task != "image":
                agree = agree[mask]
            top_hits += int(agree.sum())
            top_n += agree.numel()
    out = {"cosine": cos_sum / max(n, 1)}
    if top_n:
        out["top1_agreement"] = top_hits / top_n
    return out


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, labels: torch.Tensor, batch_size: int = 16
             ) -> float:
    """Share of samples whose top-1 logit is their label (sequence / image classifiers)."""
    view = TaskView(model).eval()
    if len(labels) != len(x):
        raise HFError(f"{len(x)} samples but {len(labels)} labels")
    classes = int(getattr(model.config, "num_labels", 0) or 0)
    if classes and (labels.min() < 0 or labels.max() >= classes):
        raise HFError(f"labels must be in 0..{classes - 1} (the model's num_labels), got "
                      f"{int(labels.min())}..{int(labels.max())}")
    hits = 0
    for i in range(0, len(x), batch_size):
        logits = view.logits(x[i:i + batch_size])
        hits += int((logits.argmax(-1) == labels[i:i + batch_size]).sum())
    return hits / len(x)
