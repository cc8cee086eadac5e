"""The one error type of ``compactnn.transforms``."""

from __future__ import annotations

from compactnn.errors import UserError

__all__ = ["RecipeError"]


class RecipeError(UserError):
    """A recipe, a step config or a transform's arguments are invalid (raised before any
    work starts); a ``UserError`` (a ``ValueError``, so ``except ValueError`` catches it
    too), which the CLI reports in one line."""
