"""The error tree, and the messages users see for common mistakes."""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

import atdata
from atdata import errors
from atdata.errors import (
    AtdataError,
    LensNotFoundError,
    MissingDependencyError,
    QueryError,
    SampleNotFoundError,
    SchemaError,
    SchemaMismatchError,
    ShardCorruptError,
    ShardError,
    StorageError,
    UnreadableURLError,
    UnsupportedFieldTypeError,
)
from atdata.shards import ShardWriter


@atdata.packable
class Thing:
    data: NDArray
    name: str


def test_every_error_is_an_atdata_error() -> None:
    classes = [
        obj
        for name in errors.__all__
        if inspect.isclass(obj := getattr(errors, name)) and issubclass(obj, BaseException)
    ]
    assert len(classes) >= 15
    for cls in classes:
        assert issubclass(cls, AtdataError), cls


def test_branches() -> None:
    assert issubclass(UnreadableURLError, StorageError)
    assert issubclass(UnsupportedFieldTypeError, SchemaError)
    assert issubclass(SchemaMismatchError, SchemaError)
    assert issubclass(LensNotFoundError, SchemaError)
    assert issubclass(ShardCorruptError, ShardError)
    assert issubclass(SampleNotFoundError, ShardError) and issubclass(SampleNotFoundError, KeyError)
    assert issubclass(MissingDependencyError, ImportError)


def test_error_context_in_attributes_and_message() -> None:
    e = ShardCorruptError("s3://b/s-000001.tar", 4096, "bad header", key="k7")
    assert (e.url, e.offset, e.reason, e.key) == ("s3://b/s-000001.tar", 4096, "bad header", "k7")
    assert str(e) == (
        "Shard s3://b/s-000001.tar is corrupt at byte 4096 (sample 'k7'): bad header. "
        "Rewrite the shard, or read with handler='skip' to skip bad samples."
    )
    m = SchemaMismatchError("Img", missing=["a"], unexpected=["b"], url="x.tar", key="k")
    assert "in x.tar at key 'k'" in str(m) and "missing fields a" in str(m)
    assert "DictSample" in str(m)


def test_sample_not_found_suggests_close_keys() -> None:
    e = SampleNotFoundError("sample_0001", "ds", known=["sample_0002", "other"])
    assert str(e) == "No sample with key 'sample_0001' in ds. Did you mean 'sample_0002'?"


def test_missing_dependency_names_the_extra() -> None:
    e = MissingDependencyError("s3fs", "s3", "Reading s3:// URLs")
    assert "pip install 'atdata[s3]'" in str(e)


def test_query_error_suggests_fields() -> None:
    e = QueryError.unknown_field("confidnce", ["confidence", "label"])
    assert "Did you mean 'confidence'" in str(e) and e.field == "confidnce"


def test_no_error_has_an_empty_message() -> None:
    for e in (
        UnsupportedFieldTypeError("T", "f", set),
        LensNotFoundError("A", "B", []),
        StorageError("x"),
        ShardCorruptError("u", 0, "r"),
    ):
        assert str(e).strip()


# -- the messages users see ------------------------------------------------------------------


def test_message_missing_file(tmp_path: Path) -> None:
    url = str(tmp_path / "nope-000000.tar")
    with pytest.raises(UnreadableURLError) as info:
        atdata.Dataset[Thing](url).head(1)
    assert str(info.value).startswith(f"No such file or object: {url}.")


def test_message_bad_key(tmp_path: Path) -> None:
    with (
        ShardWriter(str(tmp_path / "s.tar"), manifest=False) as sink,
        pytest.raises(ShardError) as info,
    ):
        sink.write(Thing(data=np.zeros(1), name="x").with_key("cat.jpg"))
    assert str(info.value) == (
        "sample key 'cat.jpg' contains a dot; WebDataset keys end at the first dot, "
        "so use '_' or '-' instead"
    )


def test_message_duplicate_key(tmp_path: Path) -> None:
    with ShardWriter(str(tmp_path / "s.tar"), manifest=False) as sink:
        sink.write(Thing(data=np.zeros(1), name="x").with_key("a"))
        with pytest.raises(ShardError) as info:
            sink.write(Thing(data=np.zeros(1), name="y").with_key("a"))
    assert str(info.value) == "duplicate sample key 'a': keys must be unique within a dataset"


def test_message_unsupported_field_type() -> None:
    with pytest.raises(UnsupportedFieldTypeError) as info:

        @atdata.packable
        class Bad:
            value: complex

    assert str(info.value) == (
        "Bad.value: cannot store a field of type <class 'complex'> (not a supported field "
        "type). Supported: str, int, float, bool, bytes, datetime, enums, NDArray, and lists, "
        "dicts and Optionals of those."
    )


def test_message_object_dtype() -> None:
    with pytest.raises(SchemaError) as info:
        _ = Thing(data=np.array([{}, []], dtype=object), name="x").packed
    assert str(info.value) == (
        "Thing.data: cannot store an array of dtype object (object arrays need pickle, "
        "which atdata never uses); convert it to a numeric or string dtype first"
    )
