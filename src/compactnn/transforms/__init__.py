"""Lossy transforms on ``nn.Module`` s: pruning and weight sharing with fine-tuning.

Constraints are parametrizations (``torch.nn.utils.parametrize``): ``Masked`` for
pruning, ``SharedWeights`` for weight sharing. ``compress_`` applies a recipe and
``bake_`` makes the constraints permanent.

>>> from compactnn import zoo
>>> from compactnn.transforms import compress_, Prune, CWS
>>> model = zoo.build("lenet300", in_features=64)
>>> report = compress_(model, [Prune(p=90, scope="global"), CWS(k=16)])
>>> round(report.sparsity, 2)
0.9
"""

from compactnn.transforms.mpd import (
    BlockDiagConv2d,
    BlockDiagLinear,
    BlockMask,
    BlockMasked,
    CompactBlocks,
    MPDConfig,
    block_mask_,
    fuse_permutations_,
    mpd_,
    to_block_diagonal_,
)
from compactnn.transforms.permuted import (
    PermuteConfig,
    PermutedLinear,
    parameter_count,
    permute_,
    projected_parameter_count,
    sorted_row_groups,
)
from compactnn.transforms.prune import Masked, bake_, layers_of, magnitude_masks, prune_
from compactnn.transforms.quantize import (
    Quantized,
    SharedWeights,
    ecsq_1d,
    ecsq_fixed_lambda,
    kmeans_1d,
    kmeans_sklearn,
    pws_1d,
    share_weights_,
    uq_1d,
)
from compactnn.transforms.recipe import (
    CWS,
    ECSQ,
    METHODS,
    MPD,
    PWS,
    UQ,
    CompressionReport,
    FineTune,
    LayerStats,
    Prune,
    Recipe,
    RecipeError,
    Step,
    check_recipe,
    compress_,
    layer_report,
    load_recipe,
)

__all__ = [
    "Masked", "bake_", "layers_of", "magnitude_masks", "prune_",
    "Quantized", "SharedWeights", "share_weights_",
    "kmeans_1d", "kmeans_sklearn", "pws_1d", "uq_1d", "ecsq_1d", "ecsq_fixed_lambda",
    "CWS", "ECSQ", "PWS", "UQ", "MPD", "Prune", "FineTune", "METHODS", "Recipe", "RecipeError",
    "Step", "check_recipe", "compress_", "load_recipe", "layer_report", "LayerStats",
    "CompressionReport",
    "PermutedLinear", "PermuteConfig", "permute_", "parameter_count",
    "projected_parameter_count", "sorted_row_groups",
    "BlockMask", "BlockMasked", "MPDConfig", "block_mask_", "mpd_", "BlockDiagLinear",
    "BlockDiagConv2d", "to_block_diagonal_", "fuse_permutations_", "CompactBlocks",
]
