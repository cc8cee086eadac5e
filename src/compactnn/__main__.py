"""``python -m compactnn`` (and ``torchrun ... -m compactnn``): the ``compactnn`` command."""

from compactnn.cli import run

run()
