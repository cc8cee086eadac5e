"""Shared test setup.

Tests under ``tests/io``, ``tests/nn`` and ``tests/cli`` run numba kernels
single-threaded: they call many tiny kernels, and on a busy machine every parallel
launch can wait milliseconds for a second core.
"""

from pathlib import Path

import numba
import pytest

TESTS = Path(__file__).resolve().parent
ONE_NUMBA_THREAD = {"io", "nn", "cli"}


@pytest.fixture(autouse=True, scope="module")
def _one_numba_thread(request):
    try:
        top = Path(request.path).resolve().relative_to(TESTS).parts[0]
    except ValueError:  # a doctest in src/
        top = None
    if top not in ONE_NUMBA_THREAD:
        yield
        return
    old = numba.get_num_threads()
    numba.set_num_threads(1)
    yield
    numba.set_num_threads(old)
