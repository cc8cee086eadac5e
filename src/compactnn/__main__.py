"""``python -m compactnn`` (and ``torchrun ... -m compactnn``): the ``compactnn`` command."""

import os
import sys

from compactnn.cli import main

code = main()
try:
    rank_of_several = int(os.environ.get("WORLD_SIZE", "1")) > 1
except ValueError:
    rank_of_several = False
if rank_of_several:
    # A torchrun rank ends here once its work is done and its output written: with torch
    # 2.13, DistributedDataParallel leaves the gloo group's threads alive after
    # destroy_process_group, and at interpreter exit they abort a rank now and then
    # ("terminate called without an active exception"), which torchrun reports as a
    # failed rank (docs/architecture/streaming.md).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
sys.exit(code)
