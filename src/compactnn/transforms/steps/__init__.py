"""The built-in recipe steps, one module each; importing a module registers its config
type (``compactnn.transforms.registry.register_step``). A new method is one new module
here plus its line below."""

from compactnn.transforms.steps import (
    bias,  # noqa: F401  (registration lines)
    finetune,  # noqa: F401
    mpd,  # noqa: F401
    permute,  # noqa: F401
    prune,  # noqa: F401
    share,  # noqa: F401
)
from compactnn.transforms.steps.bias import RoundBias
from compactnn.transforms.steps.finetune import FineTune
from compactnn.transforms.steps.mpd import MPD
from compactnn.transforms.steps.permute import Permute
from compactnn.transforms.steps.prune import Prune
from compactnn.transforms.steps.share import CWS, ECSQ, PWS, UQ, Sharing

__all__ = ["FineTune", "MPD", "Permute", "Prune", "RoundBias", "Sharing", "CWS", "PWS", "UQ",
           "ECSQ"]
