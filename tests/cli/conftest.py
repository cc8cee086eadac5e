"""Run numba kernels single-threaded here: these tests call many tiny kernels, and on a
busy machine every parallel launch can wait milliseconds for a second core."""

import numba
import pytest


@pytest.fixture(autouse=True, scope="module")
def _one_numba_thread():
    old = numba.get_num_threads()
    numba.set_num_threads(1)
    yield
    numba.set_num_threads(old)
