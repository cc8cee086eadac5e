"""Encoding a streamed block's layers in worker processes writes the same bytes as
encoding them in this process."""

from __future__ import annotations

import pytest

from compactnn.stream import StreamError, compress

from .conftest import inputs

RECIPE = [{"method": "prune", "p": 50}, {"method": "cws", "k": 8}]


def test_workers_write_the_serial_file(folder, tmp_path):
    x = inputs()
    compress(folder, RECIPE, x, tmp_path / "one.cnn")
    compress(folder, RECIPE, x, tmp_path / "two.cnn", workers=2)
    assert (tmp_path / "two.cnn").read_bytes() == (tmp_path / "one.cnn").read_bytes()


@pytest.mark.parametrize("bad", [0, 1.5, True])
def test_workers_must_be_a_positive_integer(tmp_path, bad):
    with pytest.raises(StreamError, match="workers must be an integer >= 1"):
        compress(tmp_path, RECIPE, inputs(), tmp_path / "x.cnn", workers=bad)
