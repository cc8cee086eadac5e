"""``python -m compactnn.cli``: the same as the ``compactnn`` console script."""

import sys

from compactnn.cli import main

sys.exit(main())
