"""Fuzzing the read path with broken and hostile shards: only ``atdata.errors`` escape,
each names the shard, nothing hangs, and ``handler="skip"`` loses only the bad samples.

Seeded and bounded (hypothesis' derandomized profile, a fixed number of cases,
an alarm per case), so it runs in the normal suite.
"""

from __future__ import annotations

import io
import shutil
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import atdata
from atdata.errors import AtdataError
from atdata.shards import ShardWriter, iter_raw, sample_spans
from atdata.shards._tar import BLOCK
from fuzz_helpers import each_byte_flipped, fuzz_settings, time_bound

FUZZ = fuzz_settings(max_examples=120)


@atdata.packable
class Item:
    image: atdata.NDArray
    label: str
    score: float


N = 12


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, Path]:
    root = tmp_path_factory.mktemp("fuzz")
    with ShardWriter(str(root / "shard-%06d.tar"), maxcount=N) as sink:
        for i in range(N):
            sink.write(Item(image=np.full((4, 4), i, np.uint8), label=f"l{i}", score=i / 2))
    return Path(sink.shards[0]).read_bytes(), root


def only_atdata_errors(action: Callable[[], Any], shard: str) -> Any:
    """Run a reader; a failure must be an ``AtdataError`` that names the shard."""
    with time_bound():
        try:
            return action()
        except AtdataError as exc:
            assert shard in str(exc) or getattr(exc, "url", None) == shard, exc
            return exc


def readers(url: str, with_manifest: bool) -> dict[str, Callable[[], Any]]:
    typed = atdata.Dataset[Item](url)
    out: dict[str, Callable[[], Any]] = {
        "typed": lambda: [s.label for s in typed.ordered()],
        "untyped": lambda: [s.__key__ for s in atdata.Dataset(url).ordered()],
        "skip": lambda: [s.label for s in atdata.Dataset[Item](url, handler="skip").ordered()],
        "shuffled": lambda: len(list(typed.shuffled(seed=0, buffer_size=5))),
        "raw": lambda: [r.key for r in iter_raw(url)],
        "spans": lambda: sample_spans(url),
        "build": lambda: atdata.manifest.build(url, Item, overwrite=True),
    }
    if with_manifest:
        out["get"] = lambda: typed.get(KEYS[5])
        out["len"] = lambda: len(typed)
        out["query"] = lambda: typed.query(where=lambda m: m.score > 1.0).count
        out["describe"] = lambda: typed.describe()["num_samples"]
        out["position"] = lambda: [typed[i].label for i in (0, 5, -1)]
        out["slice"] = lambda: [s.label for s in typed[2:9]]
    return out


KEYS: list[str] = []  # the pristine shard's keys, in order


def place(pristine: tuple[bytes, Path], tmp_path: Path, data: bytes, name: str) -> str:
    """The mutated bytes as a shard beside a copy of the pristine manifest."""
    _, root = pristine
    target = tmp_path / name
    target.mkdir(exist_ok=True)
    url = str(target / "shard-000000.tar")
    Path(url).write_bytes(data)
    for suffix in (".manifest.json", ".manifest.parquet"):
        shutil.copy(root / f"shard-000000{suffix}", target / f"shard-000000{suffix}")
    return url


@pytest.fixture(scope="module", autouse=True)
def keys(pristine: tuple[bytes, Path]) -> None:
    KEYS[:] = [r.key for r in iter_raw(str(pristine[1] / "shard-000000.tar"))]


def members(data: bytes) -> list[tuple[int, int, int]]:
    """``(header offset, data offset, data size)`` of each member of a pristine shard."""
    out = []
    for raw in iter_raw("pristine", stream=io.BytesIO(data)):
        out.append((raw.offset, raw.offset + BLOCK, len(raw.data)))
    return out


# -- byte-level damage ----------------------------------------------------------------


@FUZZ
@given(
    flips=st.lists(st.tuples(st.integers(0, 10**9), st.integers(0, 255)), min_size=1, max_size=8),
    cut=st.one_of(st.none(), st.integers(0, 10**9)),
)
def test_flipped_and_truncated_shards(
    pristine: tuple[bytes, Path], tmp_path: Path, flips: list[tuple[int, int]], cut: int | None
) -> None:
    data = bytearray(pristine[0])
    for where, value in flips:
        data[where % len(data)] = value
    if cut is not None:
        data = data[: cut % len(data)]
    url = place(pristine, tmp_path, bytes(data), "flip")
    for reader in readers(url, with_manifest=True).values():
        only_atdata_errors(reader, url)


def test_every_byte_of_the_first_sample_flipped(
    pristine: tuple[bytes, Path], tmp_path: Path
) -> None:
    """Exhaustive where hypothesis samples: one bit of each byte of the first member
    (its tar header above all), read by position, in order and skipping."""
    _, data_at, size = members(pristine[0])[0]
    url = place(pristine, tmp_path, pristine[0], "sweep")
    typed = atdata.Dataset[Item](url)
    sweep = {
        "typed": lambda: [s.label for s in typed.ordered()],
        "skip": lambda: [s.label for s in atdata.Dataset[Item](url, handler="skip").ordered()],
        "position": lambda: [atdata.Dataset[Item](url)[i].label for i in (0, 1)],
    }
    for damaged in each_byte_flipped(pristine[0], stop=data_at + size):
        Path(url).write_bytes(damaged)
        for reader in sweep.values():
            only_atdata_errors(reader, url)


SIZE_FIELDS = [
    b"\x80" + (2**40).to_bytes(11, "big"),  # base-256: a terabyte
    b"\xff" * 12,  # base-256, all ones
    b"77777777777\x00",  # the octal maximum
    b"7777777777777",  # no terminator
    b"-0000000001\x00",
    b"zzzzzzzzzzz\x00",
]


@FUZZ
@given(member=st.integers(0, N - 1), field=st.sampled_from(SIZE_FIELDS))
def test_tar_headers_that_lie_about_sizes(
    pristine: tuple[bytes, Path], tmp_path: Path, member: int, field: bytes
) -> None:
    data = bytearray(pristine[0])
    header = members(pristine[0])[member][0]
    data[header + 124 : header + 136] = field
    url = place(pristine, tmp_path, bytes(data), "size")
    for reader in readers(url, with_manifest=True).values():
        only_atdata_errors(reader, url)


@FUZZ
@given(victim=st.integers(0, N - 1), flips=st.lists(st.integers(0, 10**6), min_size=1, max_size=4))
def test_skip_mode_loses_only_the_damaged_sample(
    pristine: tuple[bytes, Path], tmp_path: Path, victim: int, flips: list[int]
) -> None:
    data = bytearray(pristine[0])
    _, start, size = members(pristine[0])[victim]
    for flip in flips:
        data[start + flip % min(size, 24)] ^= 0xFF  # inside the msgpack map's first bytes
    url = place(pristine, tmp_path, bytes(data), "skip")
    ds = atdata.Dataset[Item](url, handler="skip")
    with time_bound():
        got = {s.__key__: s for s in ds.ordered()}
    assert set(KEYS) - {KEYS[victim]} <= set(got)
    for key, sample in got.items():
        if key != KEYS[victim]:
            assert sample.label == f"l{KEYS.index(key)}"


# -- sample bodies ---------------------------------------------------------------------


def _npy(descr: str, shape: str) -> bytes:
    text = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}".encode()
    text += b" " * (-(len(text) + 11) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text


HOSTILE_BODIES = {
    "zero-size dtype, huge shape": {"image": _npy("|V0", "(2**62,)"), "label": "x", "score": 1.0},
    "S0 dtype": {"image": _npy("|S0", "(10**12, 10**6)"), "label": "x", "score": 1.0},
    "huge shape": {"image": _npy("<f8", "(10**10, 10**10)"), "label": "x", "score": 1.0},
    "object dtype": {"image": _npy("|O", "(3,)"), "label": "x", "score": 1.0},
    "many dims": {"image": _npy("|u1", "(1,)*100"), "label": "x", "score": 1.0},
    "nested label": {"image": _npy("|u1", "(0,)"), "label": [[[["x"]]]], "score": 1.0},
}


def _deep(depth: int) -> bytes:
    # a map whose "label" is an array nested ``depth`` deep, written by hand
    return (
        b"\x83"
        + msgspec.msgpack.encode("label")
        + b"\x91" * depth
        + b"\xc0"
        + (
            msgspec.msgpack.encode("score")
            + msgspec.msgpack.encode(1.0)
            + msgspec.msgpack.encode("image")
            + msgspec.msgpack.encode(b"")
        )
    )


@pytest.mark.parametrize(
    "body",
    [
        *[msgspec.msgpack.encode(v) for v in HOSTILE_BODIES.values()],
        _deep(100_000),
        msgspec.msgpack.encode([1, 2, 3]),  # valid msgpack, not a map
        msgspec.msgpack.encode("just a string"),
        b"\xc1",  # never valid
        b"",
    ],
    ids=[*HOSTILE_BODIES, "nested 100k deep", "array", "string", "reserved byte", "empty"],
)
def test_hostile_sample_bodies(tmp_path: Path, body: bytes) -> None:
    url = str(tmp_path / "h-000000.tar")
    with ShardWriter(str(tmp_path / "h-%06d.tar"), manifest=False) as sink:
        sink.write(
            {
                "__key__": "good_0",
                "msgpack": msgspec.msgpack.encode(
                    {"image": _npy("|u1", "(0,)"), "label": "ok", "score": 1.0}
                ),
            }
        )
        sink.write({"__key__": "bad", "msgpack": body})
        sink.write(
            {
                "__key__": "good_1",
                "msgpack": msgspec.msgpack.encode(
                    {"image": _npy("|u1", "(0,)"), "label": "ok", "score": 2.0}
                ),
            }
        )
    for reader in readers(url, with_manifest=False).values():
        only_atdata_errors(reader, url)
    with time_bound():
        kept = [s.__key__ for s in atdata.Dataset[Item](url, handler="skip").ordered()]
    assert kept == ["good_0", "good_1"]


# -- manifests that lie ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("__size__", 10**15),
        ("__size__", 0),
        ("__size__", -5),
        ("__offset__", -1024),
        ("__offset__", 10**12),
    ],
)
def test_manifest_offsets_and_sizes_that_lie(
    pristine: tuple[bytes, Path], tmp_path: Path, column: str, value: int
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    url = place(pristine, tmp_path, pristine[0], "lie")
    parquet = url.replace(".tar", ".manifest.parquet")
    table = pq.read_table(parquet)
    values = table.column(column).to_pylist()
    values[5] = value
    table = table.set_column(table.schema.get_field_index(column), column, pa.array(values))
    pq.write_table(table, parquet)
    ds = atdata.Dataset[Item](url)
    error = only_atdata_errors(lambda: ds.get(KEYS[5]), url)
    assert isinstance(error, AtdataError) and "manifest" in str(error)
    hits = ds.query(where=lambda m: m.score >= 0)
    only_atdata_errors(lambda: list(hits.read()), url)
    only_atdata_errors(lambda: ds[5], url)
    only_atdata_errors(lambda: ds[3:8], url)


@FUZZ
@given(
    st.lists(
        st.tuples(st.integers(-2 * BLOCK, 40 * BLOCK), st.integers(-BLOCK, 8 * BLOCK)),
        min_size=1,
        max_size=6,
    )
)
def test_locations_anywhere_in_a_shard(
    pristine: tuple[bytes, Path], locations: list[tuple[int, int]]
) -> None:
    from atdata.shards.reader import SampleLocation, decoder_for, read_samples

    url = str(pristine[1] / "shard-000000.tar")
    wanted = [SampleLocation(url, "", offset, size) for offset, size in locations]
    only_atdata_errors(lambda: list(read_samples(wanted, decoder_for(Item))), url)
