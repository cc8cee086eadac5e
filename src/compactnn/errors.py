"""The error types a user can fix (bottom module: imports nothing from compactnn).

``UserError`` is what ``compactnn``'s command line prints as one line with exit status
2: a bad argument, path, file, recipe, dataset or model folder, named in the message.
Anything else reaching the command line is a bug and shows its traceback (exit 1).
Library errors of that kind subclass it (``CompactFileError``, ``RecipeError``,
``DatasetError``, ``HFError``, ``UnsupportedLayerError``, ``PathError``), so a caller
can catch them by their own names or all together.

>>> issubclass(UserError, ValueError), issubclass(PathError, OSError)
(True, True)
"""

from __future__ import annotations

__all__ = ["UserError", "PathError"]


class UserError(ValueError):
    """Input the user can fix; the message names the input and the problem. A
    ``ValueError``, so code that catches ``ValueError`` keeps working."""


class PathError(OSError, UserError):
    """A user's path cannot be opened, read or written (missing, a directory, no
    permission, no space); an ``OSError`` with the ``errno`` of the cause."""
