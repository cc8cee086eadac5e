"""Streaming compression: a Hugging Face causal LM compressed one block at a time, its
weights read lazily from safetensors shards, its compact file written incrementally and
resumable (``docs/architecture/streaming.md``)."""

from compactnn.stream.driver import BlockStat, StreamError, check_streamable, compress
from compactnn.transforms.recipe import as_recipe

__all__ = ["BlockStat", "StreamError", "as_recipe", "check_streamable", "compress"]
