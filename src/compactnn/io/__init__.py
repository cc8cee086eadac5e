"""The compactnn file: one safetensors container with a JSON description.

>>> import tempfile, os, torch
>>> from torch import nn
>>> from compactnn import to_compact, save, load
>>> cm = to_compact(nn.Sequential(nn.Linear(4, 2)))
>>> path = os.path.join(tempfile.mkdtemp(), "m.cnn")
>>> size = save(cm, path)
>>> back = load(path, model=nn.Sequential(nn.Linear(4, 2)))
>>> torch.equal(back(torch.ones(1, 4)), cm(torch.ones(1, 4)))
True
"""

from compactnn.io.container import CompactFileError
from compactnn.io.info import FileInfo, LayerInfo, inspect
from compactnn.io.load import MAX_PARAMS, load
from compactnn.io.save import save

__all__ = ["CompactFileError", "FileInfo", "LayerInfo", "MAX_PARAMS", "inspect", "load", "save"]
