"""Array field encodings (``atdata.Encoding``): png, jpeg and zstd inside the msgpack map.

Round-trips (bit-exact for the lossless ones), the schema, manifest header and
published record that carry the encoding, the readers that decode without it
(DictSample, ``atdata preview``, the ``webdataset`` package), refusals at write
time, missing codecs, schema evolution and hostile encoded bodies.
"""

from __future__ import annotations

import gc
import io
import json
import struct
import sys
import warnings
import zlib
from pathlib import Path
from typing import Annotated, Any

import msgspec
import numpy as np
import pytest
import zstandard
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import atdata
from atdata import _encodings
from atdata._encodings import EncodedArrayError, Encoding, decode_array, decode_ext, encode_array
from atdata.errors import (
    AtdataError,
    MissingDependencyError,
    SchemaError,
    ShardCorruptError,
    UnsupportedFieldTypeError,
)
from atdata.sample import DictSample
from atdata.shards import ShardWriter
from cli_helpers import ok, ok_json, user_error
from fuzz_helpers import fuzz_settings, time_bound

FUZZ = fuzz_settings(max_examples=80)


def smooth_image(height: int = 48, width: int = 64, channels: int = 3) -> np.ndarray:
    """A natural-looking uint8 image: gradients and low-frequency waves."""
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    planes = [
        np.clip(128 + 100 * np.sin(3 * x + c) * np.cos(2 * y - c) + 20 * c, 0, 255)
        for c in range(channels)
    ]
    return np.stack(planes, -1).astype(np.uint8)


@atdata.packable
class Photo:
    image: Annotated[atdata.NDArray, atdata.Encoding("jpeg", quality=90)]
    mask: Annotated[atdata.NDArray, atdata.Encoding("png")]
    depth: Annotated[atdata.NDArray | None, atdata.Encoding("zstd", level=5)]
    label: str


def photo(i: int = 0) -> Photo:
    rng = np.random.default_rng(i)
    return Photo(
        image=smooth_image(),
        mask=(rng.random((48, 64)) > 0.5).astype(np.uint8) * 255,
        depth=rng.random((48, 64)).astype(np.float32),
        label=f"p{i}",
    )


@pytest.fixture
def shards(tmp_path: Path) -> str:
    with ShardWriter(str(tmp_path / "photos-%06d.tar"), maxcount=3) as sink:
        for i in range(6):
            sink.write(photo(i))
    return str(tmp_path / "photos-{000000..000001}.tar")


# -- round-trips ----------------------------------------------------------------------------


PNG_ARRAYS = {
    "uint8 gray": (np.uint8, (5, 7)),
    "uint8 HxWx1": (np.uint8, (5, 7, 1)),
    "uint8 RGB": (np.uint8, (5, 7, 3)),
    "uint8 RGBA": (np.uint8, (5, 7, 4)),
    "uint16 gray": (np.uint16, (5, 7)),
    "uint16 HxWx1": (np.uint16, (5, 7, 1)),
    "uint16 RGB": (np.uint16, (5, 7, 3)),
    "uint16 RGBA": (np.uint16, (5, 7, 4)),
    "one pixel": (np.uint8, (1, 1, 3)),
}


@pytest.mark.parametrize(("dtype", "shape"), PNG_ARRAYS.values(), ids=PNG_ARRAYS)
@pytest.mark.parametrize("level", [0, 6, 9])
def test_png_is_bit_exact(dtype: Any, shape: tuple[int, ...], level: int) -> None:
    @atdata.packable
    class Image:
        pixels: Annotated[atdata.NDArray, atdata.Encoding("png", level=level)]

    rng = np.random.default_rng(1)
    array = rng.integers(0, np.iinfo(dtype).max, shape, dtype=dtype, endpoint=True)
    back = Image.from_bytes(Image(pixels=array).packed).pixels
    assert back.dtype == array.dtype and back.shape == array.shape
    assert np.array_equal(back, array)
    assert back.flags.writeable


def test_png_of_non_contiguous_arrays() -> None:
    array = smooth_image(20, 30, 4)
    for view in (array[::2, ::3], np.asfortranarray(array), array[:, :, :3]):
        assert np.array_equal(decode_array(encode_array(view, Encoding("png"))), view)


def test_png_16_bit_colour_rows_filtered_sub_or_none() -> None:
    # other encoders filter rows with None or Sub too: write one of each by hand
    array = np.random.default_rng(2).integers(0, 65535, (3, 4, 3), dtype=np.uint16)
    rows = array.astype(">u2").view(np.uint8).reshape(3, -1)
    sub = rows.copy()
    sub[1, 6:] -= rows[1, :-6]  # Sub: minus the byte one pixel (6 bytes) to the left
    raw = b"".join(
        [b"\x00" + rows[0].tobytes(), b"\x01" + sub[1].tobytes(), b"\x00" + rows[2].tobytes()]
    )
    data = _png(struct.pack(">IIBBBBB", 4, 3, 16, 2, 0, 0, 0), zlib.compress(raw))
    assert np.array_equal(decode_ext(80, data), array)


@FUZZ
@given(
    array=hnp.arrays(
        dtype=st.one_of(
            hnp.integer_dtypes(endianness="="),
            hnp.unsigned_integer_dtypes(endianness="="),
            hnp.floating_dtypes(endianness="="),
            hnp.complex_number_dtypes(endianness="="),
            hnp.boolean_dtypes(),
            hnp.integer_dtypes(endianness=">"),
            hnp.unicode_string_dtypes(max_len=4),
            hnp.datetime64_dtypes(),
        ),
        shape=hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=6),
    ),
    fortran=st.booleans(),
)
def test_zstd_is_bit_exact_for_any_array(array: np.ndarray, fortran: bool) -> None:
    if fortran:
        array = np.asfortranarray(array)
    back = decode_array(encode_array(array, Encoding("zstd")))
    assert back.dtype == array.dtype and back.shape == array.shape
    assert back.tobytes() == array.tobytes()  # NaN payloads included
    assert back.flags.writeable


@pytest.mark.parametrize("shape", [(0,), (3, 0, 2), (), (0, 0)])
def test_zstd_empty_and_scalar_arrays(shape: tuple[int, ...]) -> None:
    @atdata.packable
    class Holder:
        values: Annotated[atdata.NDArray, atdata.Encoding("zstd")]

    array = np.ones(shape, np.float64)
    back = Holder.from_bytes(Holder(values=array).packed).values
    assert back.shape == shape and back.dtype == np.float64


def test_zstd_compresses_and_levels_matter() -> None:
    array = np.repeat(np.arange(1000, dtype=np.int64), 50)
    fast = encode_array(array, Encoding("zstd", level=1))
    small = encode_array(array, Encoding("zstd", level=19))
    assert isinstance(fast, msgspec.msgpack.Ext) and isinstance(small, msgspec.msgpack.Ext)
    assert len(small.data) <= len(fast.data) < array.nbytes // 20


def test_jpeg_is_close_and_keeps_shape() -> None:
    rgb = smooth_image()
    sample = Photo.from_bytes(photo().packed)
    assert sample.image.shape == rgb.shape and sample.image.dtype == np.uint8
    assert np.abs(sample.image.astype(int) - rgb).mean() < 3
    gray = rgb[:, :, 0]
    back = decode_array(encode_array(gray, Encoding("jpeg")))
    assert back.shape == gray.shape and np.abs(back.astype(int) - gray).mean() < 3
    low = encode_array(rgb, Encoding("jpeg", quality=20))
    high = encode_array(rgb, Encoding("jpeg", quality=95))
    assert isinstance(low, msgspec.msgpack.Ext) and isinstance(high, msgspec.msgpack.Ext)
    assert len(low.data) < len(high.data) < rgb.nbytes


def test_typed_dataset_reads_encoded_fields(shards: str) -> None:
    got = list(atdata.Dataset[Photo](shards).ordered())
    assert [s.label for s in got] == [f"p{i}" for i in range(6)]
    for i, s in enumerate(got):
        want = photo(i)
        assert np.array_equal(s.mask, want.mask)
        assert s.depth is not None and np.array_equal(s.depth, want.depth)
        assert np.abs(s.image.astype(int) - want.image).mean() < 3


def test_dataloader_workers_decode_the_fields(shards: str) -> None:
    torch = pytest.importorskip("torch")
    from atdata.torch import collate

    loader = torch.utils.data.DataLoader(
        atdata.Dataset[Photo](shards), batch_size=3, num_workers=2, collate_fn=collate
    )
    batches = list(loader)
    assert sorted(label for b in batches for label in b["label"]) == [f"p{i}" for i in range(6)]
    assert batches[0]["mask"].shape == (3, 48, 64) and batches[0]["image"].shape == (3, 48, 64, 3)
    assert batches[0]["depth"].dtype == torch.float32


def test_optional_encoded_field_may_be_none() -> None:
    sample = photo()
    sample.depth = None
    assert Photo.from_bytes(sample.packed).depth is None


# -- the encoding in the schema, the manifest, the record ------------------------------------


def test_schema_json_records_the_encoding() -> None:
    fields = {f["name"]: f for f in Photo.__schema__.to_json()["fields"]}
    assert fields["image"]["encoding"] == {"name": "jpeg", "quality": 90}
    assert fields["mask"]["encoding"] == {"name": "png", "level": 1}
    assert fields["depth"]["encoding"] == {"name": "zstd", "level": 5}
    assert "encoding" not in fields["label"]
    again = atdata.Schema.from_json(Photo.__schema__.dumps())
    assert again == Photo.__schema__
    rebuilt = again.to_type()
    assert rebuilt.__schema__.field("image").encoding == Encoding("jpeg")
    assert rebuilt.from_bytes(photo().packed).label == "p0"


def test_npy_is_the_default_and_leaves_the_schema_as_it_was() -> None:
    @atdata.packable
    class Plain:
        x: atdata.NDArray

    @atdata.packable
    class Plain2:
        x: Annotated[atdata.NDArray, atdata.Encoding("npy")]

    assert Plain.__schema__.to_json()["fields"] == Plain2.__schema__.to_json()["fields"]
    assert Plain2.__schema__.field("x").encoding is None
    array = np.arange(6).reshape(2, 3)
    assert Plain2(x=array).packed == Plain(x=array).packed


def test_manifest_header_records_the_encoding(shards: str) -> None:
    from atdata.manifest.loader import dataset_schema

    manifest = Path(shards.replace("{000000..000001}.tar", "000000.manifest.json"))
    header = json.loads(manifest.read_text())
    fields = {f["name"]: f for f in header["schema"]["fields"]}
    assert fields["image"]["encoding"] == {"name": "jpeg", "quality": 90}
    assert fields["depth"]["encoding"] == {"name": "zstd", "level": 5}
    schema = dataset_schema(atdata.Dataset(shards).shards)
    assert schema.field("mask").encoding == Encoding("png")
    assert schema.field("image").encoding == Encoding("jpeg", quality=90)


def test_atmosphere_record_keeps_the_encoding() -> None:
    from atdata.atmosphere._records import schema_from_record, schema_record

    record = schema_record(Photo.__schema__)
    props = record["schema"]["properties"]
    assert props["image"]["x-atdata-encoding"] == {"name": "jpeg", "quality": 90}
    assert "ndarray" in props["image"]["$ref"]  # still an array to other clients
    assert "x-atdata-encoding" not in props["label"]
    back = schema_from_record(record)
    assert [f.encoding for f in back.fields] == [f.encoding for f in Photo.__schema__.fields]


@pytest.mark.parametrize(
    "bad", [{"name": "gif"}, {"name": "png", "quality": 3}, "webp", 7, {"name": ["png"]}]
)
def test_atmosphere_record_with_a_bad_encoding(bad: Any) -> None:
    from atdata.atmosphere._records import schema_from_record, schema_record
    from atdata.errors import InvalidRecordError

    record = schema_record(Photo.__schema__)
    record["schema"]["properties"]["mask"]["x-atdata-encoding"] = bad
    with pytest.raises(InvalidRecordError, match="mask"):
        schema_from_record(record)
    record["schema"]["properties"]["mask"].pop("x-atdata-encoding")
    record["schema"]["properties"]["label"]["x-atdata-encoding"] = {"name": "png"}
    with pytest.raises(InvalidRecordError, match="only array fields"):
        schema_from_record(record)


# -- readers without the type -------------------------------------------------------------


def test_dict_sample_decodes_without_a_manifest(tmp_path: Path) -> None:
    with ShardWriter(str(tmp_path / "bare-%06d.tar"), manifest=False) as sink:
        sink.write(photo(3))
    (sample,) = atdata.Dataset(str(tmp_path / "bare-000000.tar")).ordered()
    assert isinstance(sample, DictSample)
    assert np.array_equal(sample.mask, photo(3).mask)
    assert sample.depth.dtype == np.float32 and sample.image.shape == (48, 64, 3)
    assert Photo.from_dict(sample).label == "p3"
    raw = DictSample.from_bytes(photo(3).packed)
    assert Photo.from_dict(msgspec.msgpack.decode(photo(3).packed)).label == raw.label


def test_raw_bytes_fields_are_not_mistaken_for_images() -> None:
    @atdata.packable
    class Blob:
        data: bytes

    png = encode_array(smooth_image(), Encoding("png"))
    assert isinstance(png, msgspec.msgpack.Ext)
    assert DictSample.from_bytes(Blob(data=png.data).packed).data == png.data


def test_preview_shows_shape_dtype_and_encoding(shards: str) -> None:
    one = shards.replace("{000000..000001}", "000000")
    out = ok("preview", one, "--limit", "1")
    assert "ndarray (jpeg)" in out and "ndarray (png)" in out and "ndarray (zstd)" in out
    assert "uint8 48×64×3" in out and "float32 48×64" in out
    info = ok_json("preview", one, "-n", "1", "--fields", "image,label")
    image = info["samples"][0]["fields"]["image"]
    assert image["encoding"] == "jpeg"
    assert image["value"]["ndarray"]["shape"] == [48, 64, 3]
    assert "encoding" not in info["samples"][0]["fields"]["label"]


def test_schema_show_and_diff_name_the_encoding(shards: str, tmp_path: Path) -> None:
    assert "stored as png" in ok("schema", "show", shards)

    @atdata.packable
    class Photo2:
        image: atdata.NDArray
        mask: Annotated[atdata.NDArray, atdata.Encoding("png")]
        depth: Annotated[atdata.NDArray | None, atdata.Encoding("zstd", level=5)]
        label: str

    Photo2.__schema__ = Photo2.__schema__.__class__(
        "Photo", "1.1.0", Photo2.__schema__.fields, Photo2.__schema__.module
    )
    with ShardWriter(str(tmp_path / "v2-%06d.tar")) as sink:
        sink.write(Photo2(image=smooth_image(), mask=photo().mask, depth=None, label="x"))
    diff = ok_json("schema", "diff", shards, str(tmp_path / "v2-000000.tar"))
    assert diff["encoding"] == [{"name": "image", "old": "jpeg(quality=90)", "new": "npy"}]
    assert not diff["identical"]


def _wds_records(url: str, decode: Any) -> list[dict[str, Any]]:
    """The ``webdataset`` package's records of a shard, ``.msgpack`` members decoded."""
    import webdataset as wds

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its deprecation notices, its unclosed tar file
        records = list(wds.WebDataset([url], shardshuffle=False).map_dict(msgpack=decode))
        gc.collect()
    return records


def test_webdataset_reads_the_tar(shards: str) -> None:
    import msgpack
    from PIL import Image

    url = shards.replace("{000000..000001}", "000000")
    records = _wds_records(url, msgpack.unpackb)
    assert [r["__key__"] for r in records] == [s.__key__ for s in atdata.Dataset(url).ordered()]
    fields = records[0]["msgpack"]
    assert fields["label"] == "p0"
    want = photo(0)
    # with atdata: decode_array takes the msgpack package's ExtType
    assert np.array_equal(decode_array(fields["mask"]), want.mask)
    # without atdata, as the docs say
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(fields["mask"].data))), want.mask)
    jpeg = np.asarray(Image.open(io.BytesIO(fields["image"].data)))
    assert jpeg.shape == want.image.shape and np.abs(jpeg.astype(int) - want.image).mean() < 3
    depth = np.load(io.BytesIO(zstandard.decompress(fields["depth"].data)))
    assert np.array_equal(depth, want.depth)
    # or the whole sample at once
    first = _wds_records(url, DictSample.from_bytes)[0]["msgpack"]
    assert np.array_equal(first.mask, want.mask)


# -- refusals -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("encoding", "array", "reason"),
    [
        ("png", np.zeros((4, 4), np.float32), "uint8 or uint16"),
        ("png", np.zeros((4, 4), np.int16), "uint8 or uint16"),
        ("png", np.zeros((4, 4), bool), "uint8 or uint16"),
        ("png", np.zeros((4, 4), ">u2"), "native byte order"),
        ("png", np.zeros((4, 4, 2), np.uint8), r"\(H, W, 1\)"),
        ("png", np.zeros((4, 4, 3, 1), np.uint8), "shape"),
        ("png", np.zeros((4,), np.uint8), "shape"),
        ("png", np.zeros((0, 4), np.uint8), "empty"),
        ("jpeg", np.zeros((4, 4, 4), np.uint8), r"\(H, W, 3\)"),
        ("jpeg", np.zeros((4, 4, 1), np.uint8), r"\(H, W, 3\)"),
        ("jpeg", np.zeros((4, 4, 3), np.uint16), "uint8"),
        ("zstd", np.array([object()]), "pickle"),
    ],
)
def test_unstorable_arrays_are_refused_at_write(encoding: str, array: Any, reason: str) -> None:
    @atdata.packable
    class Holder:
        field: Annotated[atdata.NDArray, atdata.Encoding(encoding)]

    with pytest.raises(SchemaError, match=rf"Holder\.field: .*{reason}"):
        _ = Holder(field=array).packed


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (("gif",), "unknown array encoding"),
        (("npy",), None),
        (("png",), None),
        (("jpeg", 0), "quality must be an integer from 1 to 100"),
        (("jpeg", 101), "quality"),
        (("jpeg", True), "quality"),
        (("png", 90), "takes no quality"),
        (("zstd", None, 23), "level must be an integer from 1 to 22"),
        (("npy", None, 1), "takes no level"),
        (("jpeg", None, 1), "takes no level"),
    ],
)
def test_encoding_options(args: tuple[Any, ...], reason: str | None) -> None:
    if reason is None:
        assert Encoding(*args) == Encoding.from_json(Encoding(*args).to_json())
    else:
        with pytest.raises(SchemaError, match=reason):
            Encoding(*args)


def test_encoding_only_on_array_fields() -> None:
    with pytest.raises(UnsupportedFieldTypeError, match="array fields"):

        @atdata.packable
        class Bad:
            label: Annotated[str, atdata.Encoding("zstd")]

    with pytest.raises(UnsupportedFieldTypeError, match="wrap the whole annotation"):

        @atdata.packable
        class Nested:
            image: Annotated[atdata.NDArray, atdata.Encoding("png")] | None

    with pytest.raises(SchemaError, match="at most one"):

        @atdata.packable
        class Twice:
            image: Annotated[atdata.NDArray, atdata.Encoding("png"), atdata.Encoding("zstd")]


# -- missing codecs ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("module", "encoding", "array", "extra"),
    [
        ("PIL", "png", np.zeros((2, 2), np.uint8), "images"),
        ("simplejpeg", "jpeg", np.zeros((8, 8, 3), np.uint8), "images"),
        ("zstandard", "zstd", np.zeros(3), "zstd"),
    ],
)
def test_missing_codec_gives_the_install_hint(
    monkeypatch: pytest.MonkeyPatch, module: str, encoding: str, array: Any, extra: str
) -> None:
    @atdata.packable
    class Holder:
        field: Annotated[atdata.NDArray, atdata.Encoding(encoding)]

    packed = Holder(field=array).packed
    monkeypatch.setitem(sys.modules, module, None)  # import now fails
    hint = rf"pip install 'atdata\[{extra}\]'"
    with pytest.raises(MissingDependencyError, match=hint):
        _ = Holder(field=array).packed
    with pytest.raises(MissingDependencyError, match=hint):
        Holder.from_bytes(packed)
    with pytest.raises(MissingDependencyError, match=hint):
        DictSample.from_bytes(packed)


# -- schema evolution -------------------------------------------------------------------------


def test_changing_an_encoding_is_compatible(tmp_path: Path) -> None:
    def version(encoding: Encoding | None, number: str) -> type:
        annotation: Any = atdata.NDArray
        if encoding is not None:
            annotation = Annotated[atdata.NDArray, encoding]

        @atdata.packable(version=number)
        class Frame:
            pixels: annotation  # type: ignore[valid-type]
            n: int

        return Frame

    old, new = version(None, "1.0.0"), version(Encoding("png"), "1.1.0")
    pixels = smooth_image()
    with ShardWriter(str(tmp_path / "old-%06d.tar")) as sink:
        sink.write(old(pixels=pixels, n=1))
    with ShardWriter(str(tmp_path / "new-%06d.tar")) as sink:
        sink.write(new(pixels=pixels, n=2))
    both = [str(tmp_path / "old-000000.tar"), str(tmp_path / "new-000000.tar")]
    for reader in (old, new):
        got = list(atdata.Dataset[reader](both).ordered())
        assert [s.n for s in got] == [1, 2]
        assert all(np.array_equal(s.pixels, pixels) for s in got)
    assert old.__schema__.diff(new.__schema__)["encoding"] == ["pixels: npy -> png(level=1)"]
    assert old.__schema__.diff(new.__schema__)["retyped"] == []
    # the schema of the mixed dataset is the newest one, and reads every shard
    from atdata.manifest.loader import dataset_schema

    merged = dataset_schema(both)
    assert merged.field("pixels").encoding == Encoding("png")
    assert [s.n for s in atdata.Dataset[merged.to_type()](both).ordered()] == [1, 2]


def test_index_refuses_a_re_encoded_schema_under_the_same_version(tmp_path: Path) -> None:
    from atdata.index import Catalog

    schema = Photo.__schema__.to_json()
    changed = json.loads(json.dumps(schema))
    changed["fields"][1]["encoding"] = {"name": "zstd", "level": 3}
    with Catalog(tmp_path / "index.db") as catalog:
        catalog.register_schema(schema)
        with pytest.raises(SchemaError, match="changed the array encoding of mask"):
            catalog.register_schema(changed)
        catalog.register_schema({**changed, "version": "1.1.0"})


# -- hostile bodies ---------------------------------------------------------------------------


def _png(header: bytes, idat: bytes, extra: bytes = b"") -> bytes:
    chunk = _encodings._png_chunk
    return (
        _encodings._PNG_SIGNATURE
        + chunk(b"IHDR", header)
        + extra
        + chunk(b"IDAT", idat)
        + chunk(b"IEND", b"")
    )


def _zstd_frame(content_size: int, payload: bytes = b"") -> bytes:
    """A single-segment zstd frame declaring ``content_size``, holding ``payload`` raw."""
    header = b"\x28\xb5\x2f\xfd" + b"\xe0" + struct.pack("<Q", content_size)
    block = struct.pack("<I", (len(payload) << 3) | 1)[:3]  # last block, raw
    return header + block + payload


def _jpeg_claiming(height: int, width: int) -> bytes:
    data = bytearray(encode_array(smooth_image(16, 16), Encoding("jpeg")).data)  # type: ignore[union-attr]
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


HOSTILE = {
    "png bomb 60000x60000": (80, _png(struct.pack(">IIBBBBB", 60000, 60000, 8, 0, 0, 0, 0), b"")),
    "png 16-bit rgb bomb": (80, _png(struct.pack(">IIBBBBB", 2**31 - 1, 9, 16, 2, 0, 0, 0), b"")),
    "png zero size": (80, _png(struct.pack(">IIBBBBB", 0, 5, 8, 0, 0, 0, 0), b"")),
    "png zlib bomb": (
        80,
        _png(
            struct.pack(">IIBBBBB", 4, 4, 16, 2, 0, 0, 0),
            zlib.compress(b"\x00" * 50_000_000, 9),
        ),
    ),
    "png paeth": (
        80,
        _png(struct.pack(">IIBBBBB", 1, 1, 16, 2, 0, 0, 0), zlib.compress(b"\x04" + b"\x00" * 6)),
    ),
    "png bad colour type": (80, _png(struct.pack(">IIBBBBB", 1, 1, 8, 5, 0, 0, 0), b"")),
    "png palette": (
        80,
        _png(
            struct.pack(">IIBBBBB", 1, 1, 8, 3, 0, 0, 0),
            zlib.compress(b"\x00\x00"),
            _encodings._png_chunk(b"PLTE", b"\x00\x00\x00"),
        ),
    ),
    "png truncated idat": (80, encode_array(smooth_image(), Encoding("png")).data[:300]),  # type: ignore[union-attr]
    "png 16-bit truncated chunk": (
        80,
        encode_array(np.zeros((4, 4, 3), np.uint16), Encoding("png")).data[:40],  # type: ignore[union-attr]
    ),
    "not a png": (80, b"GIF89a" + b"\x00" * 40),
    "jpeg bomb 65000x65000": (74, _jpeg_claiming(65000, 65000)),
    "jpeg garbage": (74, b"\xff\xd8\xff" + b"\x13" * 100),
    "jpeg empty": (74, b""),
    "zstd declares 1 TiB": (90, _zstd_frame(1 << 40)),
    "zstd declares more than it holds": (90, _zstd_frame(1000, b"x" * 10)),
    "zstd holds more than it declares": (90, _zstd_frame(4, b"x" * 10)),
    "zstd no content size": (
        90,
        zstandard.ZstdCompressor(write_content_size=False).compress(b"x" * 100),
    ),
    "zstd not a frame": (90, b"\x00" * 20),
    "zstd of a non-npy payload": (90, zstandard.compress(b"hello")),
    "zstd of an object npy": (
        90,
        zstandard.compress(
            b"\x93NUMPY\x01\x00v\x00{'descr': '|O', 'fortran_order': False, 'shape': (3,), }"
            + b" " * 57
            + b"\n"
        ),
    ),
    "unknown ext code": (5, b"whatever"),
}


@pytest.mark.parametrize(("code", "data"), HOSTILE.values(), ids=HOSTILE)
def test_hostile_encoded_bodies(code: int, data: bytes) -> None:
    with time_bound(), pytest.raises(EncodedArrayError):
        decode_ext(code, data)


@pytest.mark.parametrize(("code", "data"), HOSTILE.values(), ids=HOSTILE)
def test_hostile_encoded_bodies_in_a_shard(tmp_path: Path, code: int, data: bytes) -> None:
    good = photo(1)
    url = str(tmp_path / "h-000000.tar")
    bad = {**Photo.__atdata_codec__.to_wire_dict(good), "mask": msgspec.msgpack.Ext(code, data)}
    with ShardWriter(str(tmp_path / "h-%06d.tar"), manifest=False) as sink:
        sink.write({"__key__": "good_0", "msgpack": good.packed})
        sink.write({"__key__": "bad", "msgpack": msgspec.msgpack.encode(bad)})
        sink.write({"__key__": "good_1", "msgpack": good.packed})
    for reader in (atdata.Dataset[Photo](url), atdata.Dataset(url)):
        with pytest.raises(ShardCorruptError, match="bad") as caught:
            list(reader.ordered())
        assert caught.value.url == url and caught.value.key == "bad"
    kept = [s.__key__ for s in atdata.Dataset[Photo](url, handler="skip").ordered()]
    assert kept == ["good_0", "good_1"]
    assert "corrupt" in user_error("preview", url, "--limit", "3")


def test_pillows_own_limit_is_an_encoded_array_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import Image

    ext = encode_array(smooth_image(8, 8), Encoding("png"))
    assert isinstance(ext, msgspec.msgpack.Ext)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10)  # 64 pixels: over twice the limit
    with pytest.raises(EncodedArrayError, match="decompression bomb"):
        decode_ext(ext.code, ext.data)


def _flip(data: bytes, flips: list[tuple[int, int]], cut: int | None) -> bytes:
    out = bytearray(data)
    for at, value in flips:
        if out:
            out[at % len(out)] ^= value
    return bytes(out[:cut] if cut is not None else out)


ENCODED = {
    "png": encode_array(smooth_image(12, 10, 3), Encoding("png")),
    "png16": encode_array(np.arange(360, dtype=np.uint16).reshape(12, 10, 3), Encoding("png")),
    "png-gray16": encode_array(np.arange(120, dtype=np.uint16).reshape(12, 10), Encoding("png")),
    "jpeg": encode_array(smooth_image(16, 16, 3), Encoding("jpeg")),
    "zstd": encode_array(np.linspace(0, 1, 50), Encoding("zstd")),
}


@FUZZ
@given(
    name=st.sampled_from(sorted(ENCODED)),
    flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(1, 255)), max_size=6),
    cut=st.none() | st.integers(0, 2000),
)
def test_damaged_encoded_bodies_fail_cleanly(
    name: str, flips: list[tuple[int, int]], cut: int | None
) -> None:
    ext = ENCODED[name]
    assert isinstance(ext, msgspec.msgpack.Ext)
    data = _flip(ext.data, flips, cut)
    try:
        with time_bound():
            array = decode_ext(ext.code, data)
    except EncodedArrayError:
        return
    assert isinstance(array, np.ndarray) and array.nbytes <= _encodings.MAX_DECODED_BYTES


def test_errors_are_atdata_errors_or_value_errors() -> None:
    # the shard reader turns a ValueError into ShardCorruptError; MissingDependencyError
    # and SchemaError are atdata's own
    assert issubclass(EncodedArrayError, ValueError)
    assert issubclass(MissingDependencyError, AtdataError)
