"""Arrow arrays and scalars built from buffers, and read back into numpy, without pandas.

pyarrow checks for pandas objects whenever it converts Python or numpy values
(``pa.array``, ``pa.scalar``, a Python constant given to a compute function)
or converts to numpy (``to_numpy``, ``np.asarray``), and that check imports
pandas: ~150 ms, most of what a small query costs. The query path makes and
reads its arrays through these helpers instead, which touch only buffers.

Example:
    >>> to_numpy(from_numpy(np.array([3, 1, 2])))
    array([3, 1, 2])
    >>> from_values(["dog", "cat"], pa.string()).to_pylist()
    ['dog', 'cat']
    >>> scalar(0.5, pa.float64())
    <pyarrow.DoubleScalar: 0.5>
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

__all__ = ["FALSE", "NULL", "from_numpy", "from_values", "scalar", "to_numpy"]

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MICROSECOND = dt.timedelta(microseconds=1)
_NUMPY: dict[pa.DataType, type] = {
    pa.bool_(): np.bool_,
    pa.int64(): np.int64,
    pa.float64(): np.float64,
}


def from_numpy(values: np.ndarray) -> pa.Array:
    """A one-dimensional bool, integer or float numpy array as an Arrow array (no nulls)."""
    n = len(values)
    if values.dtype == np.bool_:
        bits = np.packbits(values, bitorder="little")
        return pa.Array.from_buffers(pa.bool_(), n, [None, pa.py_buffer(bits)])
    values = np.ascontiguousarray(values)
    return pa.Array.from_buffers(pa.from_numpy_dtype(values.dtype), n, [None, pa.py_buffer(values)])


def to_numpy(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """The values of a bool, integer or float Arrow array without nulls, as numpy.

    Raises:
        ValueError: the array has nulls or another type.
    """
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    kind, n, start = values.type, len(values), values.offset
    if values.null_count:
        raise ValueError(f"to_numpy: {n} values of which {values.null_count} are null")
    if pa.types.is_boolean(kind):
        data = values.buffers()[1]
        if data is None or not n:
            return np.zeros(n, dtype=bool)
        bits = np.unpackbits(np.frombuffer(data, np.uint8), bitorder="little")
        return bits[start : start + n].astype(bool)
    if pa.types.is_integer(kind):
        dtype = np.dtype(f"{'i' if pa.types.is_signed_integer(kind) else 'u'}{kind.bit_width // 8}")
    elif pa.types.is_floating(kind):
        dtype = np.dtype(f"f{kind.bit_width // 8}")
    else:
        raise ValueError(f"to_numpy: {kind} is not a bool, integer or float type")
    data = values.buffers()[1]
    if data is None or not n:
        return np.zeros(n, dtype=dtype)
    return np.frombuffer(data, dtype=dtype, count=n, offset=start * dtype.itemsize)


def from_values(values: Sequence[Any], kind: pa.DataType) -> pa.Array:
    """Python values (none of them None) as an Arrow array of ``kind``.

    ``kind`` is a string, bool, integer, float or microsecond timestamp type;
    timestamps take time-zone-aware datetimes.
    """
    if pa.types.is_string(kind):
        encoded = [str(v).encode() for v in values]
        offsets = np.zeros(len(encoded) + 1, dtype=np.int32)
        np.cumsum([len(b) for b in encoded], out=offsets[1:])
        buffers = [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(encoded))]
        return pa.Array.from_buffers(kind, len(encoded), buffers)
    if pa.types.is_timestamp(kind):
        micros = np.array([(v - _EPOCH) // _MICROSECOND for v in values], dtype=np.int64)
        return pa.Array.from_buffers(kind, len(micros), [None, pa.py_buffer(micros)])
    dtype = _NUMPY.get(kind)
    if dtype is None:
        raise ValueError(
            f"from_values: {kind} is not a string, bool, int64, float64 or timestamp type"
        )
    return from_numpy(np.array(values, dtype=dtype))


def scalar(value: Any, kind: pa.DataType) -> pa.Scalar:
    """One Python value (not None) as an Arrow scalar of ``kind`` (see :func:`from_values`)."""
    return from_values([value], kind)[0]


FALSE = scalar(False, pa.bool_())
"""The boolean ``false``, for ``fill_null`` and ``if_else``."""
NULL = pa.nulls(1, pa.bool_())[0]
"""The boolean null, for ``if_else``."""
