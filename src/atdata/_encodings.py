"""Field encodings: array fields stored as PNG, JPEG or zstd inside the msgpack map.

An array field is stored as ``.npy`` bytes unless its annotation names another
:class:`Encoding`::

    image: Annotated[atdata.NDArray, atdata.Encoding("jpeg", quality=90)]
    mask: Annotated[atdata.NDArray, atdata.Encoding("png")]
    depth: Annotated[atdata.NDArray, atdata.Encoding("zstd", level=9)]

The encoding is part of the field's schema (``FieldSpec.encoding``, the
``"encoding"`` key of its JSON), so it is recorded in every manifest header and
in published schema records.

**On the wire** an encoded value is self-describing: a msgpack *extension*
value whose type code names the codec and whose data is a standard file.

==========  ========  =================================================
encoding    ext code  ext data
==========  ========  =================================================
``png``     80        a PNG file
``jpeg``    74        a JPEG (JFIF) file
``zstd``    90        a zstd frame (with its content size) of ``.npy`` bytes
==========  ========  =================================================

So every reader decodes a field without the schema at hand: the typed reader,
:class:`~atdata.DictSample`, ``atdata preview``, in whichever process decodes
samples (a DataLoader worker, say). A type whose schema names another encoding
still reads the field, so changing a field's encoding is a compatible change:
shards written before and after read alike. Raw ``bytes`` fields that happen to
hold a PNG or JPEG are never mistaken for an encoded array.

The shards stay plain WebDataset tars. With the ``webdataset`` package, decode
a sample's ``.msgpack`` member with atdata (arrays come back decoded)::

    wds.WebDataset(url).map_dict(msgpack=atdata.DictSample.from_bytes)

or with the ``msgpack`` package (``.map_dict(msgpack=msgpack.unpackb)``), which
gives an encoded field as ``msgpack.ExtType(code, data)``: :func:`decode_array`
turns it into an array, and so do, without atdata::

    PIL.Image.open(io.BytesIO(ext.data))                       # png, jpeg
    numpy.load(io.BytesIO(zstandard.decompress(ext.data)))     # zstd

Lossless encodings (``npy``, ``png``, ``zstd``) give back the exact dtype,
shape and values; ``jpeg`` is lossy. Decoding is bounded: an image or frame
that declares more than :data:`MAX_PIXELS` pixels or :data:`MAX_DECODED_BYTES`
bytes is refused before anything is allocated, and damaged data raises
:class:`EncodedArrayError` (a ``ValueError``; the shard reader reports it as
:class:`~atdata.errors.ShardCorruptError`). Nothing is ever unpickled.

Codecs are optional extras: ``pip install 'atdata[images]'`` (Pillow for PNG,
simplejpeg, libjpeg-turbo without Pillow's per-image overhead, for JPEG) and
``pip install 'atdata[zstd]'``; without them a read or write of such a field
raises :class:`~atdata.errors.MissingDependencyError` with that hint.
"""

from __future__ import annotations

import dataclasses
import io
import json
import struct
import typing
import zlib
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import msgspec
import numpy as np

from atdata import _npy
from atdata.errors import MissingDependencyError, SchemaError

if TYPE_CHECKING:
    from typing_extensions import Buffer

__all__ = [
    "EXT_CODES",
    "MAX_DECODED_BYTES",
    "MAX_PIXELS",
    "EncodedArrayError",
    "Encoding",
    "decode_array",
    "decode_ext",
    "encode_array",
    "encoding_in",
    "encoding_name",
]

EXT_CODES: dict[str, int] = {"png": 80, "jpeg": 74, "zstd": 90}
"""The msgpack extension type code of each encoding ('P', 'J' and 'Z' in ASCII)."""
_BY_CODE = {code: name for name, code in EXT_CODES.items()}

MAX_DECODED_BYTES = 1 << 30
"""The most bytes one encoded field may decode to (1 GiB)."""
MAX_PIXELS = 89_478_485
"""The most pixels one encoded image may have: Pillow's own default limit."""

# name -> {option: (default, lowest, highest)}
_OPTIONS: dict[str, dict[str, tuple[int, int, int]]] = {
    "npy": {},
    "png": {"level": (1, 0, 9)},
    "jpeg": {"quality": (90, 1, 100)},
    "zstd": {"level": (3, 1, 22)},
}


class EncodedArrayError(ValueError):
    """Bytes of an encoded array field are damaged, hostile or of an unknown encoding."""


@dataclasses.dataclass(frozen=True)
class Encoding:
    """How an array field is stored: ``"npy"`` (the default), ``"png"``, ``"jpeg"`` or ``"zstd"``.

    Give it in ``typing.Annotated`` next to the array type. ``png`` stores
    ``uint8`` or ``uint16`` images of shape ``(H, W)`` or ``(H, W, C)`` with
    ``C`` 1, 3 or 4; ``jpeg`` (lossy) ``uint8`` images ``(H, W)`` or
    ``(H, W, 3)``; ``zstd`` compresses any array's ``.npy`` bytes. Arrays an
    encoding cannot store are refused when written, with a ``SchemaError``.

    Args:
        name: the encoding.
        quality: JPEG quality, 1-100 (default 90); ``jpeg`` only.
        level: compression level: zlib's 0-9 for ``png`` (default 1: on a
            photo-like 256x256 image it writes 5x faster than Pillow's default 6,
            for a file 18% larger; decoding is as fast either way),
            zstd's 1-22 for ``zstd`` (default 3).

    Raises:
        SchemaError: an unknown name, or an option the encoding does not take.

    Example:
        >>> from typing import Annotated
        >>> import atdata
        >>> @atdata.packable
        ... class Photo:
        ...     image: Annotated[atdata.NDArray, atdata.Encoding("jpeg", quality=85)]
        ...     mask: Annotated[atdata.NDArray, atdata.Encoding("png")]
        >>> str(Photo.__schema__.field("image").encoding)
        'jpeg(quality=85)'
    """

    name: str = "npy"
    quality: int | None = None
    level: int | None = None

    def __post_init__(self) -> None:
        options = _OPTIONS.get(self.name)
        if options is None:
            raise SchemaError(
                f"unknown array encoding {self.name!r}; choose one of {', '.join(_OPTIONS)}"
            )
        for option in ("quality", "level"):
            value = getattr(self, option)
            if option not in options:
                if value is not None:
                    raise SchemaError(f"the {self.name} encoding takes no {option} option")
                continue
            default, low, high = options[option]
            if value is None:
                object.__setattr__(self, option, default)
            elif isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise SchemaError(
                    f"{self.name} {option} must be an integer from {low} to {high}, got {value!r}"
                )

    def __str__(self) -> str:
        options = ", ".join(f"{o}={getattr(self, o)}" for o in _OPTIONS[self.name])
        return f"{self.name}({options})" if options else self.name

    @property
    def lossless(self) -> bool:
        """True unless decoding may give back values other than those written (``jpeg``).

        Example:
            >>> Encoding("png").lossless, Encoding("jpeg").lossless
            (True, False)
        """
        return self.name != "jpeg"

    def to_json(self) -> dict[str, Any]:
        """The encoding as a JSON-able dict: its name and options.

        Example:
            >>> Encoding("jpeg").to_json()
            {'name': 'jpeg', 'quality': 90}
        """
        out: dict[str, Any] = {"name": self.name}
        out.update((o, getattr(self, o)) for o in _OPTIONS[self.name])
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | str) -> Encoding:
        """Rebuild an encoding from :meth:`to_json` output (or just its name).

        Raises:
            SchemaError: the data does not describe an encoding.

        Example:
            >>> Encoding.from_json({"name": "zstd", "level": 9}) == Encoding("zstd", level=9)
            True
        """
        if isinstance(data, str):
            return cls(data)
        if not isinstance(data, Mapping) or not set(data) <= {"name", "quality", "level"}:
            raise SchemaError(f"not an array encoding: {json.dumps(data, default=str):.120}")
        return cls(**data)


def encoding_in(annotation: Any) -> Encoding | None:
    """The :class:`Encoding` given in an ``Annotated`` annotation, if any.

    Example:
        >>> from typing import Annotated
        >>> encoding_in(Annotated[np.ndarray, Encoding("zstd")])
        Encoding(name='zstd', quality=None, level=3)
    """
    if typing.get_origin(annotation) is not typing.Annotated:
        return None
    found = [e for e in typing.get_args(annotation)[1:] if isinstance(e, Encoding)]
    if len(found) > 1:
        raise SchemaError("give at most one atdata.Encoding per field")
    return found[0] if found else None


def encoding_name(code: int) -> str:
    """The encoding of a msgpack extension type code; ``EncodedArrayError`` if unknown."""
    name = _BY_CODE.get(code)
    if name is None:
        raise EncodedArrayError(
            f"unknown array encoding (msgpack extension type {code}); it may have been "
            "written by a newer atdata: pip install -U atdata"
        )
    return name


# -- entry points ------------------------------------------------------------------


def encode_array(array: Any, encoding: Encoding | None) -> bytes | msgspec.msgpack.Ext:
    """Encode an array field's value: ``.npy`` bytes, or an extension value.

    Raises:
        TypeError: the encoding cannot store this array (its dtype or shape),
            with what to do instead.
        MissingDependencyError: the encoding's codec is not installed.

    Example:
        >>> encode_array(np.arange(3), Encoding("zstd")).code
        90
    """
    if encoding is None or encoding.name == "npy":
        return _npy.encode_ndarray(array)
    if type(array) is not np.ndarray:
        array = np.asarray(array)
    return msgspec.msgpack.Ext(EXT_CODES[encoding.name], _ENCODERS[encoding.name](array, encoding))


def decode_ext(code: int, data: Buffer) -> np.ndarray[Any, Any]:
    """Decode an extension value written by :func:`encode_array` into a (writable) array.

    Raises:
        EncodedArrayError: the data is damaged, too large or of an unknown encoding.
        MissingDependencyError: the encoding's codec is not installed.
    """
    name = encoding_name(code)
    decode = _DECODERS[name]
    try:
        return decode(data if type(data) is bytes else bytes(data))
    except EncodedArrayError:
        raise
    except (OSError, ValueError, SyntaxError, EOFError, IndexError, struct.error) as exc:
        # what Pillow, simplejpeg and zstandard raise for data they cannot read
        raise EncodedArrayError(f"unreadable {name} data: {exc}") from None


def decode_array(value: Any) -> np.ndarray[Any, Any]:
    """Decode a stored array field: ``.npy`` bytes or an encoded extension value.

    For readers of raw shards: an extension value may be msgspec's ``Ext`` or
    the ``msgpack`` package's ``ExtType`` (what ``msgpack.unpackb`` gives).

    Example:
        >>> import msgpack
        >>> fields = msgpack.unpackb(msgspec.msgpack.encode(
        ...     {"depth": encode_array(np.eye(2), Encoding("zstd"))}))
        >>> fields["depth"].code, decode_array(fields["depth"]).tolist()
        (90, [[1.0, 0.0], [0.0, 1.0]])
    """
    code = getattr(value, "code", None)
    if isinstance(code, int):
        return decode_ext(code, bytes(value.data))
    return _npy.decode_ndarray(bytearray(value))


# -- shared checks -------------------------------------------------------------------


def _image_shape(array: np.ndarray[Any, Any], name: str, channels: tuple[int, ...]) -> int:
    """The channel count of an image array (0 for 2-D); ``TypeError`` when not an image."""
    shape = array.shape
    if array.ndim == 2:
        found = 0
    elif array.ndim == 3 and shape[2] in channels:
        found = shape[2]
    else:
        wanted = " or ".join(f"(H, W, {c})" for c in channels)
        raise TypeError(
            f"the {name} encoding stores images of shape (H, W) or {wanted}, not {shape}; "
            "use Encoding('zstd') for other arrays"
        )
    if shape[0] == 0 or shape[1] == 0:
        raise TypeError(f"the {name} encoding cannot store an empty image {shape}")
    return found


def _check_size(name: str, height: int, width: int, bytes_per_pixel: int) -> None:
    pixels = height * width
    if pixels == 0:
        raise EncodedArrayError(f"{name} image of size {width}x{height} is empty")
    if pixels > MAX_PIXELS or pixels * bytes_per_pixel > MAX_DECODED_BYTES:
        raise EncodedArrayError(
            f"{name} image of {width}x{height} pixels is over the decoding limit "
            f"({MAX_PIXELS} pixels, {MAX_DECODED_BYTES} bytes)"
        )


# -- png -------------------------------------------------------------------------------

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# written for (H, W, 1) arrays, so that they do not come back 2-D
_CHANNEL_KEY = "atdata:channels"
_PNG_MODES = {"L": np.uint8, "RGB": np.uint8, "RGBA": np.uint8, "I;16": np.uint16}
# PNG colour type -> channels
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}


def _pillow() -> Any:
    try:
        from PIL import Image, PngImagePlugin
    except ImportError:
        raise MissingDependencyError("pillow", "images", "The png encoding") from None
    return Image, PngImagePlugin


def _png_encode(array: np.ndarray[Any, Any], encoding: Encoding) -> bytes:
    if array.dtype not in (np.uint8, np.uint16) or array.dtype.byteorder == ">":
        raise TypeError(
            f"the png encoding stores uint8 or uint16 (native byte order) images, not "
            f"{array.dtype}; convert with .astype(np.uint8), or use Encoding('zstd')"
        )
    channels = _image_shape(array, "png", (1, 3, 4))
    assert encoding.level is not None
    if array.dtype == np.uint16 and channels > 1:
        return _png16_encode(array, encoding.level)
    image_module, png_plugin = _pillow()
    plane = np.ascontiguousarray(array[:, :, 0] if channels == 1 else array)
    info = None
    if channels == 1:
        info = png_plugin.PngInfo()
        info.add_text(_CHANNEL_KEY, "1")
    out = io.BytesIO()
    image_module.fromarray(plane).save(out, "PNG", compress_level=encoding.level, pnginfo=info)
    return out.getvalue()


def _png_decode(data: bytes) -> np.ndarray[Any, Any]:
    if data[:8] != _PNG_SIGNATURE or data[12:16] != b"IHDR" or len(data) < 29:
        raise EncodedArrayError("not a PNG file")
    width, height, depth, colour, _compression, _filter, interlace = struct.unpack(
        ">IIBBBBB", data[16:29]
    )
    channels = _PNG_CHANNELS.get(colour)
    if channels is None or depth not in (1, 2, 4, 8, 16):
        raise EncodedArrayError(f"PNG of bit depth {depth} and colour type {colour} is invalid")
    _check_size("png", height, width, channels * (2 if depth == 16 else 1))
    if depth == 16 and channels > 1:
        if interlace:
            raise EncodedArrayError("interlaced 16-bit colour PNGs are not read by atdata")
        return _png16_decode(data, width, height, channels)
    image_module, _ = _pillow()
    try:
        with image_module.open(io.BytesIO(data), formats=["PNG"]) as image:
            dtype = _PNG_MODES.get(image.mode)
            if dtype is None:
                raise EncodedArrayError(f"a PNG of mode {image.mode}, which atdata never writes")
            array = np.array(image, dtype)
            if image.info.get(_CHANNEL_KEY) == "1":
                array = array[:, :, None]
    except image_module.DecompressionBombError as exc:  # Image.MAX_IMAGE_PIXELS set lower
        raise EncodedArrayError(str(exc)) from None
    return array


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png16_encode(array: np.ndarray[Any, Any], level: int) -> bytes:
    """A 16-bit RGB or RGBA PNG, which Pillow cannot write: each row Up-filtered, zlib."""
    height, width, channels = array.shape
    rows = np.ascontiguousarray(array, dtype=">u2").view(np.uint8).reshape(height, -1)
    filtered = np.empty((height, rows.shape[1] + 1), np.uint8)
    filtered[:, 0] = 2  # "Up": each byte minus the one above (row 0: minus zero)
    filtered[:, 1:] = rows
    filtered[1:, 1:] -= rows[:-1]
    header = struct.pack(">IIBBBBB", width, height, 16, 2 if channels == 3 else 6, 0, 0, 0)
    return (
        _PNG_SIGNATURE
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(filtered.tobytes(), level))
        + _png_chunk(b"IEND", b"")
    )


def _png16_decode(data: bytes, width: int, height: int, channels: int) -> np.ndarray[Any, Any]:
    """Read a 16-bit RGB(A) PNG exactly (Pillow reduces them to 8 bits).

    Rows filtered with None, Sub or Up are read (what :func:`_png16_encode` and
    most encoders write for such images); Average and Paeth are refused.
    """
    idat = bytearray()
    pos = 8
    while True:
        if pos + 8 > len(data):
            raise EncodedArrayError("truncated PNG (no IEND chunk)")
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        if pos + 12 + length > len(data):
            raise EncodedArrayError(f"truncated PNG {kind!r} chunk")
        if kind == b"IDAT":
            idat += data[pos + 8 : pos + 8 + length]
        elif kind == b"IEND":
            break
        pos += 12 + length
    stride = width * channels * 2
    expected = height * (stride + 1)
    try:
        raw = zlib.decompressobj().decompress(bytes(idat), expected + 1)
    except zlib.error as exc:
        raise EncodedArrayError(f"bad PNG image data: {exc}") from None
    if len(raw) != expected:
        raise EncodedArrayError(f"PNG image data is {len(raw)} bytes, expected {expected}")
    rows = np.frombuffer(bytearray(raw), np.uint8).reshape(height, stride + 1)
    filters, pixels = rows[:, 0], rows[:, 1:]
    if (filters > 2).any():
        raise EncodedArrayError("16-bit colour PNG rows must use the None, Sub or Up filter")
    if (filters == 2).all():
        np.cumsum(pixels, axis=0, dtype=np.uint8, out=pixels)
    elif filters.any():
        for y, kind in enumerate(filters.tolist()):
            if kind == 1:
                row = pixels[y].reshape(width, channels * 2)
                np.cumsum(row, axis=0, dtype=np.uint8, out=row)
            elif kind == 2 and y:
                pixels[y] += pixels[y - 1]
    return pixels.view(">u2").reshape(height, width, channels).astype(np.uint16)


# -- jpeg ------------------------------------------------------------------------------


def _simplejpeg() -> Any:
    try:
        import simplejpeg
    except ImportError:
        raise MissingDependencyError("simplejpeg", "images", "The jpeg encoding") from None
    return simplejpeg


def _jpeg_encode(array: np.ndarray[Any, Any], encoding: Encoding) -> bytes:
    if array.dtype != np.uint8:
        raise TypeError(
            f"the jpeg encoding stores uint8 images, not {array.dtype}; convert with "
            ".astype(np.uint8), or use Encoding('png') or Encoding('zstd')"
        )
    channels = _image_shape(array, "jpeg", (3,))
    codec = _simplejpeg()
    pixels = np.ascontiguousarray(array)
    if channels == 0:
        return codec.encode_jpeg(pixels[:, :, None], encoding.quality, "GRAY")  # type: ignore[no-any-return]
    return codec.encode_jpeg(pixels, encoding.quality, "RGB", "420")  # type: ignore[no-any-return]


def _jpeg_decode(data: bytes) -> np.ndarray[Any, Any]:
    codec = _simplejpeg()
    height, width, colourspace, _subsampling = codec.decode_jpeg_header(data)
    gray = colourspace == "Gray"
    _check_size("jpeg", height, width, 1 if gray else 3)
    if gray:
        return codec.decode_jpeg(data, "GRAY").reshape(height, width)  # type: ignore[no-any-return]
    return codec.decode_jpeg(data, "RGB")  # type: ignore[no-any-return]


# -- zstd ------------------------------------------------------------------------------


def _zstandard() -> Any:
    try:
        import zstandard
    except ImportError:
        raise MissingDependencyError("zstandard", "zstd", "The zstd encoding") from None
    return zstandard


def _zstd_encode(array: np.ndarray[Any, Any], encoding: Encoding) -> bytes:
    payload = _npy.encode_ndarray(array)
    compressor = _zstandard().ZstdCompressor(level=encoding.level, write_content_size=True)
    return compressor.compress(payload)  # type: ignore[no-any-return]


def _zstd_decode(data: bytes) -> np.ndarray[Any, Any]:
    zstandard = _zstandard()
    try:
        size = zstandard.frame_content_size(data)
        if size < 0:
            raise EncodedArrayError("zstd frame without a content size (atdata writes one)")
        if size > MAX_DECODED_BYTES:
            raise EncodedArrayError(
                f"zstd frame declares {size} bytes, over the limit of {MAX_DECODED_BYTES}"
            )
        buffer = bytearray(size)
        view = memoryview(buffer)
        reader = zstandard.ZstdDecompressor().stream_reader(data)
        filled = 0
        while filled < size and (got := reader.readinto(view[filled:])):
            filled += got
        if filled != size or reader.read(1):
            raise EncodedArrayError("zstd frame does not decompress to the size it declares")
    except zstandard.ZstdError as exc:
        raise EncodedArrayError(f"bad zstd frame: {exc}") from None
    return _npy.decode_ndarray(buffer)


_ENCODERS: dict[str, Callable[[np.ndarray[Any, Any], Encoding], bytes]] = {
    "png": _png_encode,
    "jpeg": _jpeg_encode,
    "zstd": _zstd_encode,
}
_DECODERS: dict[str, Callable[[bytes], np.ndarray[Any, Any]]] = {
    "png": _png_decode,
    "jpeg": _jpeg_decode,
    "zstd": _zstd_decode,
}
