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
from typing import Any

import numpy as np

__all__ = ["MAGIC", "decode_ndarray", "encode_ndarray", "is_npy"]

MAGIC = b"\x93NUMPY"
_ALIGN = 64


class NpyFormatError(ValueError):
    """Bytes are not a safe ``.npy`` array."""


@functools.lru_cache(maxsize=1024)
def _header(descr: str, fortran: bool, shape: tuple[int, ...]) -> bytes:
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
        TypeError: for object dtypes, which could only be stored by pickling.
    """
    if type(array) is not np.ndarray:
        array = np.asarray(array)
    dtype = array.dtype
    if dtype.hasobject:
        raise TypeError(
            f"cannot store an array of dtype {dtype} (object arrays need pickle, "
            "which atdata never uses); convert it to a numeric or string dtype first"
        )
    if array.flags.c_contiguous:
        fortran = False
    elif array.flags.f_contiguous:
        fortran = True
    else:
        array = np.ascontiguousarray(array)
        fortran = False
    descr = np.lib.format.dtype_to_descr(dtype)
    if not isinstance(descr, str):
        raise TypeError(f"structured dtypes are not supported for array fields (got {dtype})")
    header = _header(descr, fortran, array.shape)
    return header + array.tobytes(order="F" if fortran else "C")


@functools.lru_cache(maxsize=1024)
def _parse_header(header: bytes) -> tuple[np.dtype[Any], tuple[int, ...], bool]:
    try:
        meta = ast.literal_eval(header.decode("latin1"))
        descr, fortran, shape = meta["descr"], meta["fortran_order"], meta["shape"]
        dtype = np.dtype(descr)
    except Exception as exc:  # noqa: BLE001 - any parse failure means a bad header
        raise NpyFormatError(f"unreadable .npy header {header[:80]!r}") from exc
    if dtype.hasobject:
        raise NpyFormatError(
            f"refusing an object-dtype array ({dtype}); reading it would need pickle"
        )
    if not isinstance(shape, tuple) or not all(isinstance(n, int) and n >= 0 for n in shape):
        raise NpyFormatError(f"bad shape {shape!r} in .npy header")
    return dtype, shape, bool(fortran)


def decode_ndarray(data: bytes | bytearray | memoryview) -> np.ndarray[Any, Any]:
    """Decode ``.npy`` bytes into an array without copying the data.

    The array is a view over ``data``: writable when ``data`` is a ``bytearray``.

    Raises:
        NpyFormatError: when the bytes are not a ``.npy`` array, are truncated,
            or hold an object dtype.
    """
    view = memoryview(data)
    if view[:6] != MAGIC:
        raise NpyFormatError("not .npy data (missing the \\x93NUMPY magic)")
    major = view[6]
    if major == 1:
        (hlen,) = struct.unpack_from("<H", view, 8)
        start = 10
    elif major in (2, 3):
        (hlen,) = struct.unpack_from("<I", view, 8)
        start = 12
    else:
        raise NpyFormatError(f"unsupported .npy format version {major}")
    dtype, shape, fortran = _parse_header(bytes(view[start : start + hlen]))
    offset = start + hlen
    count = 1
    for n in shape:
        count *= n
    if len(view) - offset < count * dtype.itemsize:
        raise NpyFormatError(
            f"truncated .npy data: need {count * dtype.itemsize} bytes, have {len(view) - offset}"
        )
    flat = np.frombuffer(data, dtype=dtype, count=count, offset=offset)
    return flat.reshape(shape, order="F" if fortran else "C")


def is_npy(value: object) -> bool:
    """True when ``value`` is bytes that start with the ``.npy`` magic."""
    return isinstance(value, (bytes, bytearray)) and value[:6] == MAGIC
