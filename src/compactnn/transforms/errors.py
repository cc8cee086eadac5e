"""The one error type of ``compactnn.transforms``."""

from __future__ import annotations

__all__ = ["RecipeError"]


class RecipeError(ValueError):
    """A recipe, a step config or a transform's arguments are invalid (raised before any
    work starts); a ``ValueError``, so ``except ValueError`` catches it too."""
