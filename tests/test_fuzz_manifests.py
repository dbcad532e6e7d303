"""Hostile and broken manifests: only ``atdata.errors`` escape, each names the file.

A table of known-bad JSON headers and parquet files, then hypothesis putting
arbitrary JSON values at random places of a real header: the library's readers
(``query``, ``describe``, ``len``) and ``atdata inspect`` either answer, and
answer right, or raise a :class:`~atdata.errors.ManifestError` (the CLI: one
line, exit code 1). Seeded and bounded like ``test_fuzz_shards.py``.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st

import atdata
from atdata.errors import AtdataError, ManifestError
from atdata.manifest import BloomFilter
from cli_helpers import user_error
from fuzz_helpers import each_byte_flipped, fuzz_settings

FUZZ = fuzz_settings(max_examples=100)


@atdata.packable
class S:
    x: int


@atdata.packable
class Rich:
    x: int
    label: str
    score: float
    tags: list[str]
    when: dt.datetime
    flag: bool


N = 10
T0 = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)


def _write(root: Path, samples: list[Any]) -> Path:
    with atdata.ShardWriter(str(root / "s-%04d.tar"), maxcount=N) as sink:
        for sample in samples:
            sink.write(sample)
    return Path(sink.shards[0])


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A shard of ``S`` (x = 0..9) with its manifest."""
    return _write(tmp_path_factory.mktemp("plain"), [S(x=i) for i in range(N)])


@pytest.fixture(scope="module")
def rich(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A shard of ``Rich``: every aggregate kind and value type."""
    return _write(
        tmp_path_factory.mktemp("rich"),
        [
            Rich(
                x=i,
                label="ab"[i % 2],
                score=float("nan") if i == 4 else i / 3,
                tags=[f"t{i % 3}"],
                when=T0 + dt.timedelta(days=i),
                flag=i % 2 == 0,
            )
            for i in range(N)
        ],
    )


def _copy(shard: Path, target: Path) -> Path:
    """The shard and its manifest files, copied into ``target``."""
    target.mkdir(parents=True, exist_ok=True)
    stem = shard.name.removesuffix(".tar")
    for suffix in (".tar", ".manifest.json", ".manifest.parquet"):
        shutil.copy(shard.parent / f"{stem}{suffix}", target / f"{stem}{suffix}")
    return target / shard.name


def _json_path(shard: Path) -> Path:
    return shard.with_name(shard.name.removesuffix(".tar") + ".manifest.json")


def _parquet_path(shard: Path) -> Path:
    return shard.with_name(shard.name.removesuffix(".tar") + ".manifest.parquet")


def _header(shard: Path) -> dict[str, Any]:
    return json.loads(_json_path(shard).read_text())  # type: ignore[no-any-return]


# -- the table of hostile headers ----------------------------------------------------------


def _set(path: list[Any], value: Any) -> Callable[[dict[str, Any]], Any]:
    def mutate(header: dict[str, Any]) -> Any:
        node = header
        for step in path[:-1]:
            node = node[step]
        node[path[-1]] = value
        return header

    return mutate


def _drop(key: str) -> Callable[[dict[str, Any]], Any]:
    def mutate(header: dict[str, Any]) -> Any:
        del header[key]
        return header

    return mutate


def _raw(data: bytes) -> Callable[[dict[str, Any]], Any]:
    return lambda header: data


HOSTILE: dict[str, tuple[Callable[[dict[str, Any]], Any], str]] = {
    # case: (mutation, what the error names)
    "num_samples is text": (_set(["num_samples"], "many"), "num_samples"),
    "num_samples is negative": (_set(["num_samples"], -5), "num_samples"),
    "num_samples disagrees with the aggregates": (_set(["num_samples"], 11), "aggregates.x.count"),
    "aggregates is a list": (_set(["aggregates"], []), "aggregates"),
    "an aggregate is an int": (_set(["aggregates", "x"], 3), "aggregates.x"),
    "min of an int field is text": (_set(["aggregates", "x", "min"], "zz"), "aggregates.x.min"),
    "min above max": (_set(["aggregates", "x", "min"], 100), "aggregates.x.min"),
    "a negative count": (_set(["aggregates", "x", "nulls"], -1), "aggregates.x.nulls"),
    "histogram counts are not ints": (
        _set(["aggregates", "x", "histogram", "counts"], ["a"] * 16),
        "aggregates.x.histogram.counts[0]",
    ),
    "histogram edges do not fit the counts": (
        _set(["aggregates", "x", "histogram", "edges"], [0, 1]),
        "aggregates.x.histogram",
    ),
    "an unknown aggregate kind": (_set(["aggregates", "x", "kind"], "fancy"), "aggregates.x.kind"),
    "schema fields is a number": (_set(["schema"], {"fields": 3}), "schema.fields"),
    "schema missing": (_drop("schema"), "schema"),
    "the JSON is a list": (_raw(b"[1, 2]"), "not an object"),
    "invalid UTF-8": (_raw(b'{"format_version": 1, "x": "\xff\xfe"}'), "not valid JSON"),
    "deeply nested": (_raw(b"[" * 100_000), "not valid JSON"),
    "NaN is not JSON": (_raw(b'{"format_version": 1, "num_samples": NaN}'), "not valid JSON"),
}


def _place(shard: Path, target: Path, mutate: Callable[[dict[str, Any]], Any]) -> Path:
    """A copy of ``shard`` whose manifest JSON is ``mutate(header)`` (a dict, or bytes)."""
    url = _copy(shard, target)
    doc = mutate(copy.deepcopy(_header(shard)))
    _json_path(url).write_bytes(doc if isinstance(doc, bytes) else json.dumps(doc).encode())
    return url


def _raises_manifest_error(action: Callable[[], Any], file: Path) -> ManifestError:
    with pytest.raises(ManifestError) as info:
        action()
    assert str(file) in str(info.value), info.value
    return info.value


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_header(case: str, pristine: Path, tmp_path: Path) -> None:
    mutate, named = HOSTILE[case]
    url = _place(pristine, tmp_path, mutate)
    manifest = _json_path(url)
    ds = atdata.Dataset[S](str(url))

    error = _raises_manifest_error(lambda: ds.query(where=lambda s: s.x > 3), manifest)
    assert named in str(error) and "atdata manifest build --force" in str(error), error
    _raises_manifest_error(ds.describe, manifest)
    _raises_manifest_error(lambda: len(ds.shuffled(seed=0)), manifest)
    # Dataset.__len__ turns it into TypeError by design ("length unknown": list(ds) still works)
    with pytest.raises(TypeError) as info:
        len(ds)
    assert isinstance(info.value.__cause__, ManifestError)

    for extra in ([], ["--json"]):
        line = user_error("inspect", str(url), *extra)
        assert str(manifest) in line and named in line, line


def test_hostile_header_in_a_real_process(pristine: Path, tmp_path: Path) -> None:
    url = _place(pristine, tmp_path, _set(["aggregates", "x", "min"], "zz"))
    for extra in ([], ["--json"]):
        done = subprocess.run(
            [sys.executable, "-m", "atdata", "inspect", str(url), *extra],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 1, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
        assert str(_json_path(url)) in lines[0] and "aggregates.x.min" in lines[0]


def test_bloom_filters_are_checked_and_used(rich: Path, tmp_path: Path) -> None:
    """A valid bloom filter prunes soundly; one whose bits do not match its size is an error."""
    bloom = BloomFilter.from_values(["a", "b"]).to_json()
    summary = {"kind": "categorical", "type": "str", "count": N, "nulls": 0, "distinct": 2}
    summary |= {"top": {"a": 5, "b": 5}, "bloom": bloom}
    good = _place(rich, tmp_path / "good", _set(["aggregates", "label"], summary))
    ds = atdata.Dataset[Rich](str(good))
    assert ds.query(where=lambda m: m.label == "a").count == 5
    missing = ds.query(where=lambda m: m.label == "zzz")
    assert missing.count == 0
    assert missing.shards_pruned == (0 if "zzz" in BloomFilter.from_json(bloom) else 1)

    broken = dict(summary, bloom=dict(bloom, bits="AAAA"))
    bad = _place(rich, tmp_path / "bad", _set(["aggregates", "label"], broken))
    error = _raises_manifest_error(
        lambda: atdata.Dataset[Rich](str(bad)).query(where=lambda m: m.label == "a"),
        _json_path(bad),
    )
    assert "aggregates.label.bloom.bits" in str(error)


# -- broken parquet files ----------------------------------------------------------------


def _rewrite(table_change: Callable[[pa.Table], pa.Table]) -> Callable[[Path], None]:
    def change(path: Path) -> None:
        pq.write_table(table_change(pq.read_table(path)), path)

    return change


def _flip_footer(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-6] ^= 0x40  # the footer's length
    path.write_bytes(bytes(data))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-100])


PARQUET: dict[str, Callable[[Path], None]] = {
    "a flipped bit in the footer": _flip_footer,
    "truncated": _truncate,
    "no __offset__ column": _rewrite(lambda t: t.drop_columns(["__offset__"])),
    "x is a string column": _rewrite(
        lambda t: t.set_column(
            t.column_names.index("x"), "x", pa.array([str(v) for v in t.column("x").to_pylist()])
        )
    ),
    "one row short": _rewrite(lambda t: t.slice(0, N - 1)),
    "null offsets": _rewrite(
        lambda t: t.set_column(
            t.column_names.index("__offset__"), "__offset__", pa.nulls(N, pa.int64())
        )
    ),
}


@pytest.mark.parametrize("case", list(PARQUET))
def test_broken_parquet(case: str, pristine: Path, tmp_path: Path) -> None:
    url = _copy(pristine, tmp_path)
    PARQUET[case](_parquet_path(url))
    ds = atdata.Dataset[S](str(url))
    error = _raises_manifest_error(
        lambda: ds.query(where=lambda s: s.x > 3).count, _parquet_path(url)
    )
    assert "atdata manifest build --force" in str(error)


@FUZZ
@given(where=st.floats(min_value=0, max_value=1, exclude_max=True), bit=st.integers(0, 7))
def test_flipped_parquet_bits_raise_only_atdata_errors(
    pristine: Path, tmp_path_factory: pytest.TempPathFactory, where: float, bit: int
) -> None:
    """Any flipped bit: the query answers right, or raises an AtdataError naming the file."""
    url = _copy(pristine, tmp_path_factory.mktemp("flip"))
    path = _parquet_path(url)
    data = bytearray(path.read_bytes())
    data[int(where * len(data))] ^= 1 << bit
    path.write_bytes(bytes(data))
    _right_or_named(url, path)


def _right_or_named(url: Path, path: Path) -> None:
    try:
        keys = atdata.Dataset[S](str(url)).query(where=lambda s: s.x > 3).keys
    except ManifestError as exc:
        assert str(path) in str(exc) or str(url) in str(exc), exc
    except AtdataError:
        pass  # a lying offset: the shard reader's error
    else:  # the page checksums leave no flip inside a value unseen
        assert keys == [f"sample_{i:08d}" for i in range(4, N)]


def test_every_byte_of_a_manifest_flipped(pristine: Path, tmp_path: Path) -> None:
    """Exhaustive where hypothesis samples: one bit of each byte in turn (its footer too)."""
    url = _copy(pristine, tmp_path)
    path = _parquet_path(url)
    for damaged in each_byte_flipped(path.read_bytes()):
        path.write_bytes(damaged)
        _right_or_named(url, path)


# -- fuzzing the header --------------------------------------------------------------------

_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
    | st.sampled_from(["nan", "inf", "-inf", "2025-01-03T00:00:00+00:00", "true", "a", "t1"]),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4)
    ),
    max_leaves=12,
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every place in a JSON document, the root excluded."""
    items = (
        node.items()
        if isinstance(node, dict)
        else enumerate(node)
        if isinstance(node, list)
        else ()
    )
    for key, child in items:
        yield (*prefix, key)
        yield from _paths(child, (*prefix, key))


def _answers(ds: atdata.Dataset[Rich]) -> dict[str, Any]:
    return {
        "x": ds.query(where=lambda m: m.x > 3).count,
        "label": ds.query(where=lambda m: m.label == "a").count,
        "tags": ds.query(where=lambda m: "t1" in m.tags).count,
        "flag": ds.query(where=lambda m: m.flag == True).count,  # noqa: E712
        "when": ds.query(where=lambda m: m.when > T0 + dt.timedelta(days=5)).count,
        "score": ds.query(where=lambda m: m.score > 1.0).count,
        "describe": ds.describe()["num_samples"],
        "len": len(ds.shuffled(seed=0)),
    }


# Paths whose values only describe the data, so any accepted value leaves answers unchanged
_DESCRIPTIVE = ("schema", "provenance", "created_by", "shard", "shard_id", "time_bounds", "parquet")


@pytest.fixture(scope="module")
def fuzz_target(
    rich: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict[str, Any]]:
    url = _copy(rich, tmp_path_factory.mktemp("fuzz"))
    return url, _answers(atdata.Dataset[Rich](str(url)))


@FUZZ
@given(data=st.data(), value=_JSON, delete=st.booleans())
def test_fuzzed_header_raises_only_atdata_errors(
    fuzz_target: tuple[Path, dict[str, Any]],
    rich: Path,
    data: st.DataObject,
    value: Any,
    delete: bool,
) -> None:
    url, expected = fuzz_target
    header = _header(rich)
    path = data.draw(st.sampled_from(sorted(_paths(header), key=repr)))
    node = header
    for step in path[:-1]:
        node = node[step]
    if delete and isinstance(node, dict):
        del node[path[-1]]
    else:
        node[path[-1]] = value
    _json_path(url).write_text(json.dumps(header))
    try:
        answers = _answers(atdata.Dataset[Rich](str(url)))
    except ManifestError as exc:
        assert str(_json_path(url)) in str(exc) or str(url) in str(exc), exc
        return
    except AtdataError:  # e.g. a QueryError: the field's aggregate was deleted
        return
    if path[0] in _DESCRIPTIVE:
        assert answers == expected, (path, value)
