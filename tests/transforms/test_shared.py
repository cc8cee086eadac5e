"""``SharedWeights``' autograd function: the same weight and codebook gradient as plain
indexing, bit for bit, without an int64 copy of the assignment kept for the backward."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from compactnn.transforms.shared import TILE, SharedWeights, index_dtype


def _plain(book: torch.Tensor, assign: torch.Tensor) -> torch.Tensor:
    return F.pad(book, (1, 0))[(assign.long() + 1)]


@settings(max_examples=30, deadline=None)
@given(k=st.integers(1, 300), rows=st.integers(1, 40), cols=st.integers(1, 70),
       seed=st.integers(0, 2**16))
def test_weight_and_gradient_equal_plain_indexing(k, rows, cols, seed):
    g = torch.Generator().manual_seed(seed)
    book = torch.randn(k, generator=g)
    assign = torch.randint(-1, k, (rows, cols), generator=g)
    grad = torch.randn(rows, cols, generator=g)
    con = SharedWeights(nn.Parameter(book.clone()), assign)
    assert con.assign.dtype == index_dtype(k)
    w = con(torch.empty(0))
    ref_book = book.clone().requires_grad_()
    ref = _plain(ref_book, assign)
    assert torch.equal(w, ref) and w.dtype == torch.float32
    w.backward(grad)
    ref.backward(grad)
    assert torch.equal(con.codebook.grad, ref_book.grad)


def test_large_weight_spans_tiles():
    """On a large weight, plain indexing's backward adds in parallel (its result varies
    with the thread schedule); ``SharedWeights`` always adds in flat order, which is
    plain indexing's result on one thread."""
    g = torch.Generator().manual_seed(0)
    book = torch.randn(16, generator=g)
    assign = torch.randint(-1, 16, (3 * TILE // 512 + 7, 512), generator=g)
    grad = torch.randn(assign.shape, generator=g)
    con = SharedWeights(nn.Parameter(book.clone()), assign)
    ref_book = book.clone().requires_grad_()
    w = con(torch.empty(0))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ref = _plain(ref_book, assign)
        ref.backward(grad)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(w, ref)
    w.backward(grad)
    assert torch.equal(con.codebook.grad, ref_book.grad)


def test_autograd_keeps_only_the_small_assignment():
    """What autograd saves for the backward pass: the int8 buffer itself (no copy), no
    int64 indices (plain indexing saves 8 bytes per weight)."""
    assign = torch.randint(-1, 16, (256, 300))
    con = SharedWeights(nn.Parameter(torch.randn(16)), assign)
    saved: list[torch.Tensor] = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        con(torch.empty(0)).sum().backward()
    assert [t.dtype for t in saved] == [torch.int8]
    assert saved[0].data_ptr() == con.assign.data_ptr()
    plain: list[torch.Tensor] = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: plain.append(t) or t,
                                                  lambda t: t):
        _plain(torch.randn(16, requires_grad=True), con.assign).sum().backward()
    assert torch.int64 in [t.dtype for t in plain]  # what the function avoids


@pytest.mark.parametrize(("k", "dtype"), [(1, torch.int8), (126, torch.int8),
                                          (127, torch.int16), (32766, torch.int16),
                                          (32767, torch.int32)])
def test_index_dtype_holds_minus_one_to_k(k, dtype):
    assert index_dtype(k) == dtype
    info = torch.iinfo(dtype)
    assert info.min <= -1 and k <= info.max
