"""``cli.memory.lean_allocator``: memory freed by the process goes back to the system."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from compactnn.cli.memory import MMAP_THRESHOLD

# In a fresh process: free one 1 MiB block (glibc then serves blocks up to 1 MiB from
# its heap), allocate 400 blocks of 512 KiB, free all but the last, and print how much
# the resident set grew.
_CHILD = """
import sys
import numpy as np
from compactnn.cli.memory import lean_allocator

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096

if sys.argv[1] == "lean":
    assert lean_allocator()
first = np.ones(1 << 20, np.uint8)
del first
before = rss()
blocks = [np.ones(1 << 19, np.uint8) for _ in range(400)]
del blocks[:-1]
print(rss() - before)
"""


def _grown(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", _CHILD, mode], capture_output=True, text=True,
                         check=True)
    return int(out.stdout.split()[-1])


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                    reason="glibc's allocator on Linux")
def test_freed_blocks_are_given_back():
    assert MMAP_THRESHOLD <= 1 << 19
    assert _grown("lean") < 16 << 20  # the last block, not the 200 MiB allocated
    assert _grown("default") > 100 << 20  # glibc's own setting keeps them (why it is set)
