"""``python -m compactnn`` (and ``torchrun ... -m compactnn``): the ``compactnn`` command."""

import sys

from compactnn.cli import main

sys.exit(main())
