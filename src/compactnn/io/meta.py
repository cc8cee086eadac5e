"""Building a model without its weights: factory calls for large tensors go to the
meta device, so a description's model costs no memory until the file's tensors
replace its own (``load_state_dict(..., assign=True)``)."""

from __future__ import annotations

import torch
from torch.overrides import TorchFunctionMode

__all__ = ["LargeOnMeta", "SMALL"]

_SIZED_FACTORIES = (torch.empty, torch.zeros, torch.ones, torch.rand, torch.randn, torch.full)
SMALL = 4096  # elements: tensors up to this size are built for real


class LargeOnMeta(TorchFunctionMode):
    """While active, factory calls for tensors of more than ``SMALL`` elements (with no
    explicit device) create meta tensors: a model is built without its weights, which
    the file then supplies (or compact layers replace)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if func in _SIZED_FACTORIES and kwargs.get("device") is None:
            if "size" in kwargs:
                size = kwargs["size"]
            elif args and not isinstance(args[0], int):
                size = args[0]
            else:
                size = args if func is not torch.full else args[:1]
            try:
                count = 1
                for d in size:
                    count *= int(d)
            except (TypeError, ValueError):
                count = 0
            if count > SMALL:
                kwargs["device"] = "meta"
        return func(*args, **kwargs)
