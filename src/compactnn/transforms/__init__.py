"""Lossy transforms on ``nn.Module`` s: pruning, weight sharing, block masks and permuted
features, with fine-tuning, as recipe steps.

Constraints are parametrizations (``torch.nn.utils.parametrize``): ``Masked`` for
pruning and block masks, ``SharedWeights`` for weight sharing. ``compress_`` applies a
recipe (``Recipe``: steps of registered configs, ``transforms/steps/``); ``prune_``,
``share_weights_``, ``mpd_`` and ``permute_`` apply one config; ``bake_`` makes the
constraints permanent. Every user error is a ``RecipeError`` (a ``ValueError``).

>>> from compactnn import zoo
>>> from compactnn.transforms import compress_, Prune, CWS
>>> model = zoo.build("lenet300", in_features=64)
>>> report = compress_(model, [Prune(p=90, scope="global"), CWS(k=16)])
>>> round(report.sparsity, 2)
0.9
"""

from compactnn.transforms.compress import compress_, mpd_, permute_, prune_, share_weights_
from compactnn.transforms.errors import RecipeError
from compactnn.transforms.latent import LatentShared, from_latent_, to_latent_
from compactnn.transforms.mpd import (
    BlockDiagConv2d,
    BlockDiagLinear,
    BlockMask,
    BlockMasked,
    CompactBlocks,
    block_mask_,
    fuse_permutations_,
    to_block_diagonal_,
)
from compactnn.transforms.permuted import (
    PermutedLinear,
    parameter_count,
    permuted_layer,
    projected_parameter_count,
    sorted_row_groups,
)
from compactnn.transforms.plan import check_recipe
from compactnn.transforms.prune import Masked, bake_, layers_of, magnitude_masks, prune_layers_
from compactnn.transforms.quantize import (
    Quantized,
    SharedWeights,
    ecsq_1d,
    ecsq_fixed_lambda,
    kmeans_1d,
    kmeans_sklearn,
    pws_1d,
    uq_1d,
)
from compactnn.transforms.recipe import Recipe, Step, load_recipe
from compactnn.transforms.registry import METHODS, register_step, step_type
from compactnn.transforms.report import CompressionReport, LayerStats, layer_report
from compactnn.transforms.sharing import share_layers_
from compactnn.transforms.steps import (
    CWS,
    ECSQ,
    MPD,
    PWS,
    UQ,
    FineTune,
    Permute,
    Prune,
    RoundBias,
)

MPDConfig = MPD  # the old name of the MPD config (one class)
PermuteConfig = Permute  # the old name of the permute config (one class)

__all__ = [
    "RecipeError", "compress_", "prune_", "share_weights_", "mpd_", "permute_",
    "Recipe", "Step", "load_recipe", "check_recipe", "METHODS", "register_step", "step_type",
    "CompressionReport", "LayerStats", "layer_report",
    "MPD", "Permute", "Prune", "CWS", "PWS", "UQ", "ECSQ", "FineTune", "RoundBias", "MPDConfig",
    "PermuteConfig",
    "Masked", "bake_", "layers_of", "magnitude_masks", "prune_layers_",
    "Quantized", "SharedWeights", "share_layers_", "LatentShared", "to_latent_", "from_latent_",
    "kmeans_1d", "kmeans_sklearn", "pws_1d", "uq_1d", "ecsq_1d", "ecsq_fixed_lambda",
    "PermutedLinear", "permuted_layer", "parameter_count", "projected_parameter_count",
    "sorted_row_groups",
    "BlockMask", "BlockMasked", "block_mask_", "BlockDiagLinear", "BlockDiagConv2d",
    "to_block_diagonal_", "fuse_permutations_", "CompactBlocks",
]
