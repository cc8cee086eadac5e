"""compactnn: make trained neural networks small and still runnable."""

from compactnn import formats
from compactnn.coding import entropy_bits
from compactnn.io import load, save
from compactnn.kernels.backend import get_num_threads, set_num_threads
from compactnn.nn import to_compact
from compactnn.transforms import compress_

__version__ = "0.1.0"

__all__ = ["formats", "entropy_bits", "load", "save", "to_compact", "compress_",
           "set_num_threads", "get_num_threads", "__version__"]
