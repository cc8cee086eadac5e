"""``coding.distinct`` and ``coding.distinct_and_entropy`` against their definitions."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from compactnn.coding import distinct, distinct_and_entropy, entropy_bits

from .strategies import low_entropy


@settings(max_examples=80, deadline=None)
@given(a=hnp.arrays(st.sampled_from([np.uint32, np.int64, np.uint8]),
                    hnp.array_shapes(min_dims=0, max_dims=2, min_side=0, max_side=40)))
def test_distinct_counts_like_np_unique(a):
    assert distinct(a) == np.unique(a).size


def test_distinct_of_floats_by_value_and_by_bit_pattern():
    x = np.array([0.0, -0.0, 1.5, 1.5, -2.0], np.float32)
    assert distinct(x) == 3  # by value: -0.0 == +0.0
    assert distinct(x.view(np.uint32)) == 4
    assert distinct(np.zeros(0, np.float32)) == 0


@settings(max_examples=60, deadline=None)
@given(W=low_entropy(max_rows=30, max_cols=50))
def test_distinct_and_entropy_equal_the_separate_counts(W):
    values, bits = distinct_and_entropy(W)
    assert values == np.unique(W.view(np.uint32)).size
    assert bits == entropy_bits(W)  # the same float, bit for bit


@settings(max_examples=60, deadline=None)
@given(W=hnp.arrays(np.float32, hnp.array_shapes(min_dims=1, max_dims=2, max_side=30),
                    elements=st.sampled_from([0.0, -0.0, 1.0, -1.0, 0.5, float("nan"),
                                              float("inf"), 1e-40, 3.25])))
def test_distinct_and_entropy_with_signed_zeros_nans_and_ties(W):
    values, bits = distinct_and_entropy(W)
    assert values == np.unique(W.view(np.uint32)).size
    assert bits == entropy_bits(W)
