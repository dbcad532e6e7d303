"""Fast encoding of numpy arrays in the standard ``.npy`` layout.

The bytes are exactly what ``numpy.save`` writes (format 1.0, header padded to
64 bytes), so any numpy user can read a field with ``numpy.load``. Headers are
built and parsed once per (dtype, shape) and cached: per-array cost is then one
``tobytes`` on write and one ``frombuffer`` on read. Object dtypes are refused
in both directions, so no pickle is ever written or read.
"""

from __future__ import annotations

import ast
import functools
import struct
from typing import Any, Literal

import numpy as np

__all__ = ["MAGIC", "decode_ndarray", "encode_ndarray", "is_npy"]

MAGIC = b"\x93NUMPY"
_ALIGN = 64


class NpyFormatError(ValueError):
    """Bytes are not a safe ``.npy`` array."""


COPY_BELOW = 64 << 10
"""Arrays smaller than this are copied out of the buffer they were decoded from
(see :func:`decode_ndarray`); bigger ones are views when the buffer allows."""


@functools.lru_cache(maxsize=1024)
def _header(dtype: np.dtype[Any], fortran: bool, shape: tuple[int, ...]) -> bytes:
    if dtype.hasobject:
        raise TypeError(
            f"cannot store an array of dtype {dtype} (object arrays need pickle, "
            "which atdata never uses); convert it to a numeric or string dtype first"
        )
    descr = np.lib.format.dtype_to_descr(dtype)
    if not isinstance(descr, str):
        raise TypeError(f"structured dtypes are not supported for array fields (got {dtype})")
    text = f"{{'descr': {descr!r}, 'fortran_order': {fortran}, 'shape': {shape!r}, }}"
    # Pad with spaces so the data starts 64-byte aligned, newline last (as numpy does).
    total = len(MAGIC) + 4 + len(text) + 1
    text += " " * (-total % _ALIGN) + "\n"
    return MAGIC + b"\x01\x00" + struct.pack("<H", len(text)) + text.encode("latin1")


def encode_ndarray(array: Any) -> bytes:
    """Encode an array as ``.npy`` bytes.

    Args:
        array: a numpy array (or anything ``numpy.asarray`` accepts).

    Returns:
        The bytes ``numpy.save`` would write.

    Raises:
        TypeError: for object and structured dtypes, which could only be stored
            by pickling.
    """
    if type(array) is not np.ndarray:
        array = np.asarray(array)
    flags = array.flags
    fortran = False
    if flags.c_contiguous:
        flat = array
    elif flags.f_contiguous:
        fortran, flat = True, array.T
    else:
        flat = array = np.ascontiguousarray(array)
    header = _header(array.dtype, fortran, array.shape)
    try:
        # one copy (header and data straight into the result), not tobytes() + concat
        return header + memoryview(flat).cast("B")
    except (TypeError, ValueError):  # empty arrays, dtypes without a buffer format
        data: bytes = array.tobytes(order="F" if fortran else "C")
        return header + data


MAX_DIMS = 32
"""numpy's own limit on dimensions is 64; no sample field needs more than this."""
MAX_ELEMENTS = 1 << 36
"""The most elements one array may declare (a header is checked before any array exists)."""

_PARSED: dict[bytes, tuple[np.dtype[Any], tuple[int, ...], bool, int, int]] = {}


def _parse_header(
    prefix: bytes,
) -> tuple[np.dtype[Any], tuple[int, ...], bool, int, int]:
    """(dtype, shape, fortran order, item count, data bytes) of a whole ``.npy`` preamble."""
    if prefix[:6] != MAGIC:
        raise NpyFormatError("not .npy data (missing the \\x93NUMPY magic)")
    text = prefix[10:] if prefix[6] == 1 else prefix[12:]
    try:
        meta = ast.literal_eval(text.decode("latin1" if prefix[6] < 3 else "utf-8"))
        descr, fortran, shape = meta["descr"], meta["fortran_order"], meta["shape"]
        dtype = np.dtype(descr)
    except Exception as exc:
        raise NpyFormatError(f"unreadable .npy header {text[:80]!r}") from exc
    if dtype.hasobject:
        raise NpyFormatError(
            f"refusing an object-dtype array ({dtype}); reading it would need pickle"
        )
    if not isinstance(shape, tuple) or not all(isinstance(n, int) and n >= 0 for n in shape):
        raise NpyFormatError(f"bad shape {shape!r} in .npy header")
    if len(shape) > MAX_DIMS:
        raise NpyFormatError(f"shape {shape!r} has more than {MAX_DIMS} dimensions")
    if dtype.itemsize == 0:
        raise NpyFormatError(f"refusing a zero-size dtype ({dtype.str}): it holds no data")
    count = 1
    for n in shape:
        count *= n
    if count > MAX_ELEMENTS:
        raise NpyFormatError(
            f"shape {shape!r} declares {count} elements, over the limit of {MAX_ELEMENTS}"
        )
    return dtype, shape, bool(fortran), count, count * dtype.itemsize


def decode_ndarray(
    data: bytes | bytearray | memoryview, copy: bool | None = False
) -> np.ndarray[Any, Any]:
    """Decode ``.npy`` bytes into an array.

    Args:
        data: the ``.npy`` bytes.
        copy: ``False`` returns a view over ``data`` (writable when ``data``
            is); ``True`` a copy; ``None`` a view only when that is writable and
            at least :data:`COPY_BELOW` bytes (so a small array never keeps a
            large read buffer alive), else a copy.

    Raises:
        NpyFormatError: when the bytes are not a ``.npy`` array, are truncated,
            or hold an object dtype.
    """
    view = data if type(data) is memoryview else memoryview(data)
    if len(view) < 10:
        raise NpyFormatError("not .npy data (too short)")
    major = view[6]
    if major == 1:
        start = 10 + (view[8] | view[9] << 8)
    elif major in (2, 3) and len(view) >= 12:
        start = 12 + int.from_bytes(view[8:12], "little")
    else:
        raise NpyFormatError(f"not .npy data, or an unsupported format version {major}")
    prefix = bytes(view[:start])
    # a plain dict in front of the parser: most shards repeat a few headers
    parsed = _PARSED.get(prefix)
    if parsed is None:
        parsed = _parse_header(prefix)
        if len(_PARSED) >= 1024:
            _PARSED.clear()
        _PARSED[prefix] = parsed
    dtype, shape, fortran, _count, nbytes = parsed
    if len(view) - start < nbytes:
        raise NpyFormatError(f"truncated .npy data: need {nbytes} bytes, have {len(view) - start}")
    # positional arguments only: numpy parses keywords noticeably slower
    copy_order: Literal["C", "F"]
    if fortran:
        array = np.ndarray(shape, dtype, view, start, None, "F")
        copy_order = "F"
    else:
        array = np.ndarray(shape, dtype, view, start)
        copy_order = "C"
    if copy or (copy is None and (view.readonly or nbytes < COPY_BELOW)):
        return array.copy(copy_order)
    return array


def is_npy(value: object) -> bool:
    """True when ``value`` is bytes that start with the ``.npy`` magic."""
    return isinstance(value, (bytes, bytearray)) and value[:6] == MAGIC
