"""``python -m compactnn.cli``: the same as the ``compactnn`` console script."""

from compactnn.cli import run

run()
