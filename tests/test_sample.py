"""Typed samples: every field type round-trips, schemas serialise, bad types are refused."""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import enum
import io
import json
import pickle
from typing import Annotated, Any

import msgspec
import numpy as np
import pytest
from numpy.typing import NDArray

import atdata
from atdata import _npy
from atdata.errors import (
    SchemaError,
    SchemaMismatchError,
    UnsupportedFieldTypeError,
)
from atdata.sample import DictSample, PackableSample, Schema, WdsRecord, schema_of


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


@atdata.packable
class Scalars:
    text: str
    number: int
    real: float
    flag: bool
    blob: bytes
    when: dt.datetime


@atdata.packable
class Containers:
    names: list[str]
    counts: list[int]
    reals: list[float]
    nested: list[list[int]]
    weights: dict[str, float]
    groups: dict[str, list[str]]
    flags: list[bool]


@atdata.packable
class Arrays:
    image: NDArray[np.uint8]
    plain: np.ndarray
    maybe: NDArray | None = None
    stack: list[NDArray] = dataclasses.field(default_factory=list)
    named: dict[str, NDArray] = dataclasses.field(default_factory=dict)


@atdata.packable
class WithDefaults:
    label: str
    score: float = 0.5
    note: str | None = None
    tags: list[str] = dataclasses.field(default_factory=lambda: ["x"])
    color: Color = Color.RED
    level: Level = Level.LOW


@atdata.packable(version="1.1.0")
class Versioned:
    value: float


def roundtrip(sample: Any) -> Any:
    return type(sample).from_bytes(sample.packed)


# -- round trips --------------------------------------------------------------------------


def test_scalars_round_trip() -> None:
    when = dt.datetime(2024, 5, 6, 7, 8, 9, 123456)
    s = Scalars(text="héllo", number=-(2**40), real=3.25, flag=True, blob=b"\x00\xff", when=when)
    back = roundtrip(s)
    assert back == s
    assert type(back.number) is int and type(back.real) is float and type(back.flag) is bool
    assert back.blob == b"\x00\xff" and back.when == when


def test_timezone_aware_datetime_round_trips() -> None:
    when = dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    s = Scalars(text="", number=0, real=0.0, flag=False, blob=b"", when=when)
    back = roundtrip(s)
    assert back.when == when and back.when.tzinfo is not None


def test_int_is_accepted_for_float_field() -> None:
    s = Scalars(text="a", number=1, real=2, flag=False, blob=b"", when=dt.datetime(2020, 1, 1))
    back = roundtrip(s)
    assert back.real == 2.0 and type(back.real) is float


def test_numpy_scalars_are_accepted() -> None:
    s = Scalars(
        text="a",
        number=np.int64(7),
        real=np.float32(0.5),
        flag=np.bool_(True),
        blob=b"",
        when=dt.datetime(2020, 1, 1),
    )
    back = roundtrip(s)
    assert (back.number, back.real, back.flag) == (7, 0.5, True)
    assert type(back.number) is int


def test_containers_round_trip() -> None:
    s = Containers(
        names=["a", "b"],
        counts=[1, 2, 3],
        reals=[0.5, 1],
        nested=[[1], [], [2, 3]],
        weights={"w": 1.5},
        groups={"g": ["x", "y"]},
        flags=[True, False],
    )
    assert roundtrip(s) == s


def test_empty_containers_round_trip() -> None:
    s = Containers(names=[], counts=[], reals=[], nested=[], weights={}, groups={}, flags=[])
    assert roundtrip(s) == s


def test_tuple_is_accepted_for_list_field() -> None:
    s = Containers(names=("a",), counts=[], reals=[], nested=[], weights={}, groups={}, flags=[])
    assert roundtrip(s).names == ["a"]


@pytest.mark.parametrize(
    "array",
    [
        np.arange(12, dtype=np.uint8).reshape(3, 4),
        np.arange(24, dtype=np.float32).reshape(2, 3, 4),
        np.asfortranarray(np.arange(12, dtype=np.float64).reshape(3, 4)),
        np.arange(24, dtype=np.int16).reshape(4, 6)[:, ::2],  # not contiguous
        np.array(3.5),
        np.zeros((0, 3), np.int32),
        np.array([True, False]),
        np.array(["ab", "c"]),
        np.arange(4, dtype=">i4"),
        np.array([1 + 2j], np.complex64),
        np.array(["2020-01-01"], "datetime64[D]"),
    ],
    ids=lambda a: f"{a.dtype}-{a.shape}",
)
def test_arrays_round_trip(array: np.ndarray) -> None:
    s = Arrays(image=array, plain=array)
    back = roundtrip(s)
    for got in (back.image, back.plain):
        assert got.dtype == array.dtype and got.shape == array.shape
        np.testing.assert_array_equal(got, array)
    assert back.maybe is None


def test_array_bytes_are_exactly_numpy_save() -> None:
    for array in (np.arange(6, dtype=np.float32).reshape(2, 3), np.asfortranarray(np.ones((3, 2)))):
        buf = io.BytesIO()
        np.save(buf, array)
        assert _npy.encode_ndarray(array) == buf.getvalue()
        raw = msgspec.msgpack.decode(Arrays(image=array, plain=array).packed)
        assert raw["image"] == buf.getvalue()
        np.testing.assert_array_equal(np.load(io.BytesIO(raw["image"])), array)


@pytest.mark.parametrize("shape", [(4, 4), (256, 256, 3)], ids=["small", "large"])
def test_decoded_arrays_are_writable_and_independent(shape: tuple[int, ...]) -> None:
    data = Arrays(image=np.zeros(shape, np.uint8), plain=np.ones(shape, np.uint8)).packed
    a = Arrays.from_bytes(data)
    b = Arrays.from_bytes(bytearray(data))
    for arr in (a.image, a.plain, b.image, b.plain):
        assert arr.flags.writeable
    a.image[...] = 7
    assert not b.image.any() and not Arrays.from_bytes(data).image.any()


def test_optional_and_nested_arrays_round_trip() -> None:
    arr = np.arange(5, dtype=np.int64)
    s = Arrays(
        image=np.zeros((2, 2), np.uint8),
        plain=arr,
        maybe=arr * 2,
        stack=[arr, arr + 1],
        named={"a": arr.astype(np.float32)},
    )
    back = roundtrip(s)
    np.testing.assert_array_equal(back.maybe, arr * 2)
    assert [x.tolist() for x in back.stack] == [arr.tolist(), (arr + 1).tolist()]
    assert back.named["a"].dtype == np.float32


def test_defaults_and_optionals() -> None:
    s = WithDefaults(label="a")
    assert (s.score, s.note, s.tags, s.color, s.level) == (0.5, None, ["x"], Color.RED, Level.LOW)
    back = roundtrip(WithDefaults(label="b", note="n", color=Color.GREEN, level=Level.HIGH))
    assert back.note == "n" and back.color is Color.GREEN and back.level is Level.HIGH
    # fields missing from the bytes take their defaults
    minimal = WithDefaults.from_bytes(msgspec.msgpack.encode({"label": "c"}))
    assert minimal == WithDefaults(label="c")


def test_packed_is_a_msgpack_map_of_fields() -> None:
    s = WithDefaults(label="a", score=1.0)
    raw = msgspec.msgpack.decode(s.packed)
    assert raw == {
        "label": "a",
        "score": 1.0,
        "note": None,
        "tags": ["x"],
        "color": "red",
        "level": 1,
    }


def test_packed_is_deterministic() -> None:
    a = Arrays(image=np.ones((3, 3), np.uint8), plain=np.zeros(2))
    b = Arrays(image=np.ones((3, 3), np.uint8), plain=np.zeros(2))
    assert a.packed == b.packed


def test_as_wds_record() -> None:
    s = WithDefaults(label="a")
    record = s.as_wds
    assert isinstance(record, WdsRecord) and isinstance(record, dict)
    assert set(record) == {"__key__", "msgpack"}
    assert record["__key__"] is None and record["msgpack"] == s.packed
    assert s.with_key("k1") is s
    assert s.as_wds["__key__"] == "k1" and s.__key__ == "k1"


def test_from_bytes_keeps_the_key() -> None:
    s = WithDefaults.from_bytes(WithDefaults(label="a").packed, key="abc")
    assert s.__key__ == "abc"
    assert WithDefaults(label="a").__key__ is None


def test_from_dict_and_to_dict() -> None:
    arr = np.arange(3)
    s = Arrays.from_dict({"image": arr, "plain": _npy.encode_ndarray(arr)}, key="k")
    np.testing.assert_array_equal(s.plain, arr)
    assert s.__key__ == "k"
    assert list(s.to_dict()) == ["image", "plain", "maybe", "stack", "named"]


def test_isinstance_packable_sample() -> None:
    assert isinstance(WithDefaults(label="a"), PackableSample)
    assert not isinstance(object(), PackableSample)


def test_packable_instances_pickle_and_copy() -> None:
    s = WithDefaults(label="a").with_key("k")
    for other in (pickle.loads(pickle.dumps(s)), copy.deepcopy(s)):
        assert other == s and other.__key__ == "k"


# -- schema ---------------------------------------------------------------------------------


def test_schema_fields_and_version() -> None:
    schema = schema_of(Scalars)
    assert schema.name == "Scalars" and schema.version == "1.0.0"
    assert schema.field_names == ["text", "number", "real", "flag", "blob", "when"]
    assert [str(f.type) for f in schema.fields] == [
        "str",
        "int",
        "float",
        "bool",
        "bytes",
        "datetime",
    ]
    assert Versioned.__schema__.version == "1.1.0"
    assert atdata.schema_of(Versioned) is Versioned.__schema__


def test_schema_types_of_containers_optionals_and_enums() -> None:
    types = {f.name: str(f.type) for f in Containers.__schema__.fields}
    assert types["nested"] == "list[list[int]]" and types["groups"] == "dict[str, list[str]]"
    types = {f.name: str(f.type) for f in Arrays.__schema__.fields}
    assert types == {
        "image": "ndarray",
        "plain": "ndarray",
        "maybe": "ndarray | None",
        "stack": "list[ndarray]",
        "named": "dict[str, ndarray]",
    }
    types = {f.name: str(f.type) for f in WithDefaults.__schema__.fields}
    assert types["color"] == "enum['red', 'green']" and types["level"] == "enum[1, 2]"
    assert WithDefaults.__schema__.field("note").optional


@pytest.mark.parametrize("cls", [Scalars, Containers, Arrays, WithDefaults, Versioned])
def test_schema_json_round_trip(cls: type) -> None:
    schema = cls.__schema__
    text = schema.dumps()
    assert json.loads(text)["name"] == cls.__name__
    assert Schema.from_json(text) == schema
    assert Schema.from_json(json.loads(text)) == schema


def test_manifest_kinds_follow_annotations() -> None:
    @atdata.packable
    class Image:
        image: NDArray
        label: str
        confidence: float
        tags: list[str]
        when: dt.datetime
        site: Annotated[int, atdata.ManifestField(kind="categorical")]
        note: Annotated[str, atdata.ManifestField(indexed=False)]

    assert Image.__schema__.manifest_fields == {
        "label": "categorical",
        "confidence": "numeric",
        "tags": "set",
        "when": "numeric",
        "site": "categorical",
    }


def test_schema_to_type_reads_the_same_bytes() -> None:
    dynamic = Arrays.__schema__.to_type()
    s = Arrays(image=np.ones((2, 2), np.uint8), plain=np.arange(3), maybe=None)
    back = dynamic.from_bytes(s.packed)
    np.testing.assert_array_equal(back.plain, np.arange(3))
    assert dynamic.__schema__.field_names == Arrays.__schema__.field_names


def test_schema_diff() -> None:
    @atdata.packable
    class Old:
        a: int
        b: str

    @atdata.packable
    class New:
        a: float
        c: str

    diff = Old.__schema__.diff(New.__schema__)
    assert diff["added"] == ["c"] and diff["removed"] == ["b"]
    assert diff["retyped"] == ["a: int -> float"]


# -- refusals -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("annotation", "reason"),
    [
        (object, "not a supported field type"),
        (set[str], "not a supported field type"),
        (int | str, "Optional"),
        (dict[int, str], "string keys"),
        (list, "element type"),
        (tuple[int, int], "not a supported field type"),
    ],
    ids=["object", "set", "union", "int-keys", "bare-list", "tuple"],
)
def test_unsupported_field_types_are_refused_at_decoration(annotation: Any, reason: str) -> None:
    cls = type("Bad", (), {"__annotations__": {"value": annotation}})
    with pytest.raises(UnsupportedFieldTypeError) as info:
        atdata.packable(cls)
    message = str(info.value)
    assert "Bad.value" in message and reason in message and "Supported:" in message
    assert info.value.field == "value" and info.value.type_name == "Bad"
    assert isinstance(info.value, TypeError)  # and SchemaError


def test_object_dtype_is_refused_at_write_and_read() -> None:
    s = Arrays(image=np.array([object(), 1], dtype=object), plain=np.zeros(1))
    with pytest.raises(SchemaError, match="object arrays need pickle"):
        _ = s.packed
    nested = Arrays(image=np.zeros(1), plain=np.zeros(1), stack=[np.array([None], dtype=object)])
    with pytest.raises(SchemaError, match="pickle"):
        _ = nested.packed
    # a hand-made .npy with an object dtype is refused when read, never unpickled
    buf = io.BytesIO()
    np.save(buf, np.array([1, None], dtype=object), allow_pickle=True)
    bad = msgspec.msgpack.encode(
        {"image": buf.getvalue(), "plain": _npy.encode_ndarray(np.zeros(1))}
    )
    with pytest.raises(_npy.NpyFormatError, match="object-dtype"):
        Arrays.from_bytes(bad)


def test_structured_dtype_is_refused() -> None:
    s = Arrays(image=np.zeros(2, dtype=[("a", "i4"), ("b", "f4")]), plain=np.zeros(1))
    with pytest.raises(SchemaError, match="structured"):
        _ = s.packed


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("text", 5, "expected str"),
        ("number", 1.5, "expected int"),
        ("number", True, "expected int"),
        ("real", "x", "expected float"),
        ("flag", 1, "expected bool"),
        ("blob", "text", "expected bytes"),
        ("when", "2020-01-01", "expected datetime"),
        ("text", None, "expected str"),
    ],
)
def test_wrong_value_types_are_refused_at_write(field: str, value: Any, expected: str) -> None:
    values: dict[str, Any] = dict(
        text="a", number=1, real=1.0, flag=False, blob=b"", when=dt.datetime(2020, 1, 1)
    )
    values[field] = value
    with pytest.raises(SchemaError, match=expected) as info:
        _ = Scalars(**values).packed
    assert f"Scalars.{field}" in str(info.value)


@pytest.mark.parametrize(
    ("field", "value", "where"),
    [
        ("names", [1], "Containers.names[0] is int"),
        ("names", "ab", "not a list"),
        ("counts", [1, "2"], "Containers.counts[1] is str"),
        ("reals", [True], "Containers.reals[0] is bool"),
        ("nested", [[1], ["x"]], "Containers.nested[1][0] is str"),
        ("weights", {"a": "b"}, "Containers.weights['a'] is str"),
        ("weights", {1: 1.0}, "key 1 that is not a str"),
        ("groups", {"g": [None]}, "Containers.groups['g'][0] is None"),
    ],
)
def test_wrong_element_types_are_refused_at_write(field: str, value: Any, where: str) -> None:
    values: dict[str, Any] = dict(
        names=[], counts=[], reals=[], nested=[], weights={}, groups={}, flags=[]
    )
    values[field] = value
    with pytest.raises(SchemaError) as info:
        _ = Containers(**values).packed
    assert where in str(info.value)


def test_array_field_given_a_non_array_value() -> None:
    assert Arrays.from_bytes(Arrays(image=[1, 2], plain=np.zeros(1)).packed).image.tolist() == [
        1,
        2,
    ]
    with pytest.raises(SchemaError, match=r"Arrays.image"):
        _ = Arrays(image=None, plain=np.zeros(1)).packed


def test_reserved_names_and_bad_versions_are_refused() -> None:
    with pytest.raises(SchemaError, match="reserved"):
        atdata.packable(type("R", (), {"__annotations__": {"packed": int}}))
    with pytest.raises(SchemaError, match="semantic version"):
        atdata.packable(version="1.0")
    with pytest.raises(SchemaError, match="slots"):
        atdata.packable(
            dataclasses.dataclass(slots=True)(type("Slotted", (), {"__annotations__": {"a": int}}))
        )


def test_schema_of_a_plain_class() -> None:
    with pytest.raises(SchemaError, match=r"@atdata.packable"):
        schema_of(int)


def test_reading_with_the_wrong_type_names_the_fields() -> None:
    data = WithDefaults(label="a").packed
    with pytest.raises(SchemaMismatchError) as info:
        Scalars.from_bytes(data)
    assert "missing fields" in str(info.value) and "text" in info.value.missing
    retyped = msgspec.msgpack.encode({"value": "not a float"})
    with pytest.raises(SchemaMismatchError, match="value"):
        Versioned.from_bytes(retyped)


# -- DictSample -----------------------------------------------------------------------------


def test_dict_sample_reads_any_sample() -> None:
    arr = np.arange(6, dtype=np.float32).reshape(2, 3)
    data = Arrays(image=arr, plain=np.zeros(1), maybe=None).packed
    d = DictSample.from_bytes(data, key="k")
    assert d.__key__ == "k"
    assert sorted(d.keys()) == ["image", "maybe", "named", "plain", "stack"]
    np.testing.assert_array_equal(d.image, arr)
    np.testing.assert_array_equal(d["image"], arr)
    assert d.image.flags.writeable
    assert d.maybe is None and len(d) == 5 and "image" in d
    plain = d.to_dict()
    assert isinstance(plain, dict) and set(plain) == set(d)
    assert "DictSample" in repr(d)


def test_dict_sample_missing_field_suggests() -> None:
    d = DictSample({"label": "a", "score": 1.0})
    with pytest.raises(AttributeError, match="Did you mean 'label'") as info:
        d.lable  # noqa: B018
    assert "Fields: label, score" in str(info.value)
    with pytest.raises(KeyError):
        d["nope"]


def test_dict_sample_pickles_and_copies() -> None:
    d = DictSample({"label": "a", "image": _npy.encode_ndarray(np.arange(3))}, key="k")
    for other in (pickle.loads(pickle.dumps(d)), copy.copy(d), copy.deepcopy(d)):
        assert other.__key__ == "k" and other.label == "a"
        np.testing.assert_array_equal(other.image, np.arange(3))


def test_dict_sample_packs_back_to_equivalent_bytes() -> None:
    s = WithDefaults(label="x", tags=["a", "b"])
    d = DictSample.from_bytes(s.packed)
    assert WithDefaults.from_bytes(d.packed) == s
    assert d.as_wds["msgpack"] == d.packed


def test_dict_sample_of_a_non_map() -> None:
    with pytest.raises(SchemaError, match="not a msgpack map"):
        DictSample.from_bytes(msgspec.msgpack.encode([1, 2]), key="k")


def test_classes_inside_functions_may_use_local_types() -> None:
    class Mood(enum.Enum):
        HAPPY = "happy"

    @atdata.packable
    class Local:
        mood: Mood
        other: Mood | None = None

    assert roundtrip(Local(mood=Mood.HAPPY)).mood is Mood.HAPPY


def test_dict_sample_is_a_mutable_mapping() -> None:
    d = DictSample({"a": 1, "b": 2}, key="k")
    d["c"] = 3
    del d["a"]
    assert d.to_dict() == {"b": 2, "c": 3} and d.c == 3
    clone = copy.copy(d)
    clone["b"] = 20
    assert d["b"] == 2 and clone.__key__ == "k"


def test_from_bytes_never_aliases_the_callers_buffer() -> None:
    big = np.zeros((256, 256, 3), np.uint8)
    buf = bytearray(Arrays(image=big, plain=big).packed)
    s = Arrays.from_bytes(buf)
    buf[:] = b"\xff" * len(buf)  # the caller reuses its buffer
    assert not s.image.any() and not s.plain.any()
