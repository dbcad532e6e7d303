"""Packable sample types and their msgpack codec; ``DictSample`` for untyped reads.

``@packable`` turns a class into a dataclass whose instances encode to one
msgpack map ``field name -> value`` (array fields stored as ``.npy`` bytes, or
as PNG, JPEG or zstd when annotated with an :class:`~atdata.Encoding`),
described by a :class:`~atdata.sample.Schema`. Decoding is typed (msgspec
validates every field), so reading a shard with the wrong type fails with a
:class:`~atdata.errors.SchemaMismatchError` instead of producing garbage.
:class:`DictSample` reads a sample of any shard without its type.

Example:
    >>> import atdata, numpy as np
    >>> @atdata.packable
    ... class ImageSample:
    ...     image: atdata.NDArray
    ...     label: str
    ...     confidence: float = 1.0
    >>> s = ImageSample(image=np.zeros((2, 2), np.uint8), label="cat")
    >>> ImageSample.from_bytes(s.packed).label
    'cat'
"""

from __future__ import annotations

import abc
import dataclasses
import datetime as dt
import re
import sys
import typing
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from typing import Any, ClassVar, TypeVar, overload

import msgspec
import numpy as np

from atdata import _npy
from atdata._encodings import decode_ext, encode_array, encoding_in
from atdata._semver import normalize_version
from atdata._types import FieldType, analyze
from atdata.errors import SchemaError, SchemaMismatchError, UnsupportedFieldTypeError
from atdata.sample._schema import FieldSpec, Schema

__all__ = [
    "DictSample",
    "PackableSample",
    "WdsRecord",
    "encode_mapping",
    "is_packable",
    "packable",
]

T = TypeVar("T")
_RESERVED = frozenset(
    {"packed", "as_wds", "from_bytes", "from_dict", "to_dict", "with_key", "__key__"}
)


def _enc_hook(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return _npy.encode_ndarray(value)
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot store a value of type {type(value).__name__} in msgpack")


_ENCODER = msgspec.msgpack.Encoder(enc_hook=_enc_hook)
_DICT_DECODER = msgspec.msgpack.Decoder()


# -- the codec ---------------------------------------------------------------------


class WdsRecord(dict[str, Any]):
    """A WebDataset record ``{"__key__": ..., "msgpack": ...}`` that remembers its sample.

    ``ShardWriter`` uses :attr:`sample` to fill the manifest without decoding
    the bytes again.
    """

    __slots__ = ("sample",)

    def __init__(self, key: str | None, packed: bytes, sample: Any) -> None:
        super().__init__(__key__=key, msgpack=packed)
        self.sample = sample


def _field_checker(cls_name: str, spec: FieldSpec) -> Callable[[Any], Any] | None:
    """A write-time check/convert for one field, or None when msgspec suffices."""
    ft = spec.type
    name = spec.name

    def fail(value: Any, expected: str) -> None:
        raise SchemaError(
            f"{cls_name}.{name}: expected {expected}, got {type(value).__name__} "
            f"({value!r:.60}). Convert the value before writing."
        )

    if ft.kind == "ndarray":
        encoding = spec.encoding

        def check_array(value: Any) -> Any:
            if value is None:
                if not ft.optional:
                    fail(value, "an array")
                return None
            try:
                return encode_array(value, encoding)
            except (TypeError, ValueError) as exc:
                raise SchemaError(f"{cls_name}.{name}: {exc}") from None

        return check_array
    if ft.kind in ("list", "dict"):
        return _container_checker(cls_name, spec)
    if ft.has_arrays:
        return None  # nested arrays are handled by the encoder's hook
    py: tuple[type, ...]
    if ft.kind == "float":
        py = (float, int, np.floating, np.integer)
    elif ft.kind == "int":
        py = (int, np.integer)
    elif ft.kind in ("str", "bytes", "bool", "datetime", "list", "dict"):
        py = {
            "str": (str,),
            "bytes": (bytes, bytearray, memoryview),
            "bool": (bool, np.bool_),
            "datetime": (dt.datetime,),
            "list": (list, tuple),
            "dict": (dict,),
        }[ft.kind]
    else:
        return None

    exact = _ITEM_TYPES.get(ft.kind, frozenset())

    def check(value: Any) -> Any:
        if type(value) in exact:  # the common case: exactly the annotated type
            return value
        if value is None:
            if not ft.optional:
                fail(value, str(ft))
            return None
        if not isinstance(value, py) or (ft.kind in ("int", "float") and isinstance(value, bool)):
            fail(value, str(ft))
        if isinstance(value, np.generic):
            return value.item()
        if isinstance(value, memoryview):
            return bytes(value)
        return value

    return check


_ITEM_TYPES: dict[str, frozenset[type]] = {
    "str": frozenset({str}),
    "int": frozenset({int}),
    "float": frozenset({float, int}),
    "bool": frozenset({bool}),
    "bytes": frozenset({bytes}),
    "datetime": frozenset({dt.datetime}),
}


def _problem(ft: FieldType, value: Any, path: str) -> str | None:
    """Where ``value`` does not fit ``ft``, as a message; None when it fits."""
    if value is None:
        return None if ft.optional else f"{path} is None"
    kind = ft.kind
    if kind == "list":
        if not isinstance(value, (list, tuple)):
            return f"{path} is {type(value).__name__}, not a list"
        assert ft.item is not None
        for i, item in enumerate(value):
            if (found := _problem(ft.item, item, f"{path}[{i}]")) is not None:
                return found
        return None
    if kind == "dict":
        if not isinstance(value, dict):
            return f"{path} is {type(value).__name__}, not a dict"
        assert ft.item is not None
        for k, item in value.items():
            if not isinstance(k, str):
                return f"{path} has a key {k!r} that is not a str"
            if (found := _problem(ft.item, item, f"{path}[{k!r}]")) is not None:
                return found
        return None
    ok: bool
    if kind == "ndarray":
        ok = isinstance(value, np.ndarray)
    elif kind == "enum":
        ok = (ft.enum_type is not None and isinstance(value, ft.enum_type)) or (
            not isinstance(value, bool) and value in ft.choices
        )
    elif kind == "int":
        ok = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
    elif kind == "float":
        ok = not isinstance(value, bool) and isinstance(
            value, (float, int, np.floating, np.integer)
        )
    elif kind == "bool":
        ok = isinstance(value, (bool, np.bool_))
    elif kind == "bytes":
        ok = isinstance(value, (bytes, bytearray, memoryview))
    elif kind == "str":
        ok = isinstance(value, str)
    else:
        ok = isinstance(value, dt.datetime)
    return None if ok else f"{path} is {type(value).__name__} ({value!r:.60})"


def _container_checker(cls_name: str, spec: FieldSpec) -> Callable[[Any], Any]:
    """Write-time check of a list or dict field, element by element."""
    ft = spec.type
    item = ft.item
    # the common case (a list of plain str/int/float...) costs one set of types
    fast = _ITEM_TYPES.get(item.kind) if item is not None and not item.optional else None
    plain = list if ft.kind == "list" else dict

    def check(value: Any) -> Any:
        if (
            fast is not None
            and type(value) is plain
            and set(map(type, value.values() if isinstance(value, dict) else value)) <= fast
            and (plain is list or all(type(k) is str for k in value))
        ):
            return value
        found = _problem(ft, value, f"{cls_name}.{spec.name}")
        if found is not None:
            raise SchemaError(f"{found}: expected {ft}. Convert the value before writing.")
        return value

    return check


def _array_converter(ft: FieldType, copy: bool | None = True) -> Callable[[Any], Any] | None:
    """A read-time converter turning decoded ``.npy`` buffers and encoded values into arrays.

    ``copy`` is passed to :func:`_npy.decode_ndarray`: ``None`` lets big arrays
    be views of the buffer they were decoded from. Encoded arrays (msgpack
    extension values) are decoded whatever the field's schema says, so a type
    reads shards written with any encoding of its array fields.
    """
    if ft.kind == "ndarray":
        decode = _npy.decode_ndarray
        ext = msgspec.msgpack.Ext

        def convert(v: Any) -> Any:
            if type(v) is ext:
                return decode_ext(v.code, v.data)
            return None if v is None else decode(v, copy)

        return convert
    if ft.item is not None:
        inner = _array_converter(ft.item, copy)
        if inner is None:
            return None
        if ft.kind == "list":
            return lambda v: None if v is None else [inner(x) for x in v]
        return lambda v: None if v is None else {k: inner(x) for k, x in v.items()}
    return None


def _from_loose(ft: FieldType, value: Any) -> Any:
    """Convert an untyped decoded value (``bytes`` or ``Ext`` for arrays) to the field's type."""
    if value is None:
        return None
    if ft.kind == "ndarray":
        if isinstance(value, np.ndarray):  # DictSample has decoded it already
            return value
        if isinstance(value, msgspec.msgpack.Ext):
            return decode_ext(value.code, value.data)
        return _npy.decode_ndarray(bytearray(value) if isinstance(value, bytes) else value)
    if ft.kind == "list" and ft.item is not None:
        return [_from_loose(ft.item, x) for x in value]
    if ft.kind == "dict" and ft.item is not None:
        return {k: _from_loose(ft.item, x) for k, x in value.items()}
    if ft.kind == "datetime" and isinstance(value, str):
        return dt.datetime.fromisoformat(value)
    if ft.kind == "enum" and ft.enum_type is not None:
        return ft.enum_type(value)
    return value


def _compile_to_wire(
    schema: Schema, checks: dict[str, Callable[[Any], Any]]
) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """One straight-line function turning a sample's ``__dict__`` into its wire dict.

    Written once per type (as dataclasses does for ``__init__``): a loop over
    per-field checkers costs about as much as the msgpack encoding itself.
    Values of exactly the annotated scalar type skip their checker.
    """
    namespace: dict[str, Any] = {}
    lines = ["def to_wire(v):"]
    items = []
    for i, f in enumerate(schema.fields):
        lines.append(f"    f{i} = v[{f.name!r}]")
        check = checks.get(f.name)
        if check is None:
            items.append(f"{f.name!r}: f{i}")
            continue
        namespace[f"c{i}"] = check
        exact = _ITEM_TYPES.get(f.type.kind)
        if exact is not None:
            namespace[f"e{i}"] = exact
            items.append(f"{f.name!r}: f{i} if type(f{i}) in e{i} else c{i}(f{i})")
        else:
            items.append(f"{f.name!r}: c{i}(f{i})")
    lines.append("    return {" + ", ".join(items) + "}")
    exec("\n".join(lines), namespace)  # the names are the schema fields (identifiers)
    return namespace["to_wire"]  # type: ignore[no-any-return]


class _Codec:
    """Encodes and decodes one packable type; built once at decoration."""

    def __init__(self, cls: type, schema: Schema) -> None:
        self.cls = cls
        self.schema = schema
        self.names = tuple(f.name for f in schema.fields)
        self.checks = tuple(
            (f.name, c) for f in schema.fields if (c := _field_checker(cls.__name__, f)) is not None
        )
        self._to_wire = _compile_to_wire(schema, dict(self.checks))
        self.array_fields = tuple(
            (f.name, c) for f in schema.fields if (c := _array_converter(f.type)) is not None
        )
        self.borrowing_array_fields = tuple(
            (f.name, c)
            for f in schema.fields
            if (c := _array_converter(f.type, copy=None)) is not None
        )
        struct_fields: list[Any] = []
        for f, dc_field in zip(schema.fields, dataclasses.fields(cls), strict=True):
            wire = f.type.wire_type()
            if dc_field.default is not dataclasses.MISSING:
                default = dc_field.default
                if isinstance(default, np.ndarray):
                    default = memoryview(_npy.encode_ndarray(default))
                struct_fields.append((f.name, wire, default))
            elif dc_field.default_factory is not dataclasses.MISSING:
                struct_fields.append(
                    (f.name, wire, msgspec.field(default_factory=dc_field.default_factory))
                )
            elif f.type.optional:
                struct_fields.append((f.name, wire, None))
            else:
                struct_fields.append((f.name, wire))
        # keyword-only: an optional field (default None) may precede a required one
        self.wire = msgspec.defstruct(f"{cls.__name__}Wire", struct_fields, kw_only=True)
        self.decoder = msgspec.msgpack.Decoder(self.wire)

    def to_wire_dict(self, sample: Any) -> dict[str, Any]:
        """Field values ready for msgpack: checked, arrays as ``.npy`` bytes."""
        try:
            return self._to_wire(sample.__dict__)
        except KeyError as exc:
            raise SchemaError(f"{self.cls.__name__} sample has no field {exc.args[0]!r}") from None

    def encode(self, sample: Any) -> bytes:
        wire = self.to_wire_dict(sample)
        try:
            return _ENCODER.encode(wire)
        except TypeError as exc:  # from the hook: e.g. an object array inside a list
            raise SchemaError(f"{self.cls.__name__}: {exc}") from None

    def decode(self, data: bytes | memoryview, key: str | None = None) -> Any:
        """Decode msgpack bytes into an instance, validating every field.

        Arrays are copies: the caller may reuse ``data``.
        """
        return self._decode(data, key, self.array_fields)

    def decode_borrowed(self, data: bytes | memoryview, key: str | None = None) -> Any:
        """Like :meth:`decode`, but big arrays may be views of ``data`` (no copy).

        For buffers nobody else writes to, such as the shard reader's.
        """
        return self._decode(data, key, self.borrowing_array_fields)

    def _decode(
        self,
        data: bytes | memoryview,
        key: str | None,
        array_fields: tuple[tuple[str, Callable[[Any], Any]], ...],
    ) -> Any:
        try:
            wire = self.decoder.decode(data)
        except msgspec.ValidationError as exc:
            raise self.mismatch(exc, data) from None
        values = msgspec.structs.asdict(wire)
        for name, convert in array_fields:
            values[name] = convert(values[name])
        obj: Any = object.__new__(self.cls)
        obj.__dict__.update(values)
        obj.__dict__["__key__"] = key
        return obj

    def from_mapping(self, data: Mapping[str, Any], key: str | None = None) -> Any:
        """Build an instance from loosely typed values (e.g. a ``DictSample``)."""
        missing = [
            f.name
            for f in self.schema.fields
            if f.name not in data and not f.has_default and not f.optional
        ]
        if missing:
            raise SchemaMismatchError(self.cls.__name__, missing=missing, key=key)
        kwargs = {
            f.name: _from_loose(f.type, data[f.name]) for f in self.schema.fields if f.name in data
        }
        obj = self.cls(**kwargs)
        obj.__dict__["__key__"] = key
        return obj

    def mismatch(self, exc: msgspec.ValidationError, data: bytes | memoryview) -> SchemaError:
        """Turn msgspec's validation error into a ``SchemaMismatchError``."""
        try:
            raw = _DICT_DECODER.decode(data)
        except msgspec.DecodeError:
            raise exc from None
        if not isinstance(raw, dict):
            return SchemaError(f"sample is not a msgpack map ({exc})")
        required = {f.name for f in self.schema.fields if not f.has_default and not f.optional}
        missing = sorted(required - raw.keys())
        unexpected = sorted(raw.keys() - set(self.names))
        match = re.search(r"at `\$\.([^`\[]+)", str(exc))
        retyped = [f"{match.group(1)} ({exc})"] if match and not missing else []
        return SchemaMismatchError(
            self.cls.__name__, missing=missing, unexpected=unexpected, retyped=retyped
        )


# -- packable --------------------------------------------------------------------


class PackableSample(abc.ABC):
    """Methods every ``@packable`` type has (the decorator adds them to your class).

    ``isinstance(x, PackableSample)`` is true for instances of packable types.

    Example:
        >>> isinstance(sample, atdata.PackableSample)
        True
    """

    __schema__: ClassVar[Schema]
    __atdata_codec__: ClassVar[_Codec]
    __key__: str | None = None

    @property
    def packed(self) -> bytes:
        """The sample as msgpack bytes.

        Example:
            >>> ImageSample.from_bytes(sample.packed).label
            'cat'
        """
        return type(self).__atdata_codec__.encode(self)

    @property
    def as_wds(self) -> WdsRecord:
        """The sample as a WebDataset record ``{"__key__": key, "msgpack": bytes}``.

        Example:
            >>> sorted(sample.with_key("sample_0001").as_wds)
            ['__key__', 'msgpack']
        """
        return WdsRecord(self.__dict__.get("__key__"), self.packed, self)

    @classmethod
    def from_bytes(cls: type[T], data: bytes | memoryview, key: str | None = None) -> T:
        """Decode msgpack bytes written by :attr:`packed`.

        Example:
            >>> ImageSample.from_bytes(sample.packed, key="sample_0001").__key__
            'sample_0001'
        """
        return cls.__atdata_codec__.decode(data, key)  # type: ignore[attr-defined,no-any-return]

    @classmethod
    def from_dict(cls: type[T], data: Mapping[str, Any], key: str | None = None) -> T:
        """Build a sample from a mapping (``.npy`` bytes become arrays).

        Example:
            >>> ImageSample.from_dict({"image": np.zeros((2, 2)), "label": "cat"}).confidence
            1.0
        """
        return cls.__atdata_codec__.from_mapping(data, key)  # type: ignore[attr-defined,no-any-return]

    def to_dict(self) -> dict[str, Any]:
        """Field name -> value (arrays stay arrays).

        Example:
            >>> sorted(sample.to_dict())
            ['confidence', 'image', 'label']
        """
        return {name: self.__dict__[name] for name in type(self).__atdata_codec__.names}

    def with_key(self: T, key: str) -> T:
        """Give this sample a key (used by ``ShardWriter``); returns the sample.

        Example:
            >>> sample.with_key("sample_0001").__key__
            'sample_0001'
        """
        self.__dict__["__key__"] = key
        return self


@overload
def packable(cls: type[T], /, *, version: str = ...) -> type[T]: ...
@overload
def packable(*, version: str = ...) -> Callable[[type[T]], type[T]]: ...


def packable(cls: type[T] | None = None, /, *, version: str = "1.0.0") -> Any:
    """Make a class a typed, storable sample type (a dataclass with a codec).

    Args:
        cls: the class; its annotations are the fields.
        version: the schema's semantic version, e.g. ``"1.1.0"``.

    Raises:
        UnsupportedFieldTypeError: a field's type cannot be stored safely.

    Example:
        >>> @atdata.packable(version="1.1.0")
        ... class Reading:
        ...     value: float
        ...     tags: list[str]
        >>> Reading.__schema__.version
        '1.1.0'
    """
    try:
        version = normalize_version(version)
    except (SchemaError, AttributeError):
        raise SchemaError(
            f"@packable version must be a semantic version like '1.0.0', got {version!r}"
        ) from None
    if cls is None:
        return lambda c: packable(c, version=version)
    if not dataclasses.is_dataclass(cls):
        cls = dataclasses.dataclass(cls)
    if "__slots__" in vars(cls):
        raise SchemaError(
            f"{cls.__name__}: @packable does not support slotted classes "
            "(dataclass(slots=True)); remove slots=True"
        )
    try:
        try:
            hints = typing.get_type_hints(cls, include_extras=True)
        except NameError:
            # a class inside a function (postponed annotations) may use local types
            frame = sys._getframe(1)
            while frame.f_back is not None and frame.f_globals.get("__name__") == __name__:
                frame = frame.f_back
            hints = typing.get_type_hints(cls, localns=dict(frame.f_locals), include_extras=True)
    except NameError as exc:
        raise SchemaError(
            f"{cls.__name__}: cannot resolve a field annotation ({exc}). Define the types "
            "the fields use at module level, before the class."
        ) from None
    specs = []
    for dc_field in dataclasses.fields(cls):  # type: ignore[arg-type]
        if dc_field.name in _RESERVED:
            raise SchemaError(
                f"{cls.__name__}.{dc_field.name}: the name is reserved by atdata; rename the field"
            )
        try:
            ftype, setting = analyze(hints[dc_field.name])
        except TypeError as exc:
            raise UnsupportedFieldTypeError(
                cls.__name__, dc_field.name, hints[dc_field.name], str(exc)
            ) from None
        kind = ftype.default_manifest_kind()
        if setting is not None:
            if not setting.indexed:
                kind = None
            elif setting.kind is not None:
                if ftype.has_arrays or ftype.kind in ("bytes", "dict"):
                    raise UnsupportedFieldTypeError(
                        cls.__name__,
                        dc_field.name,
                        hints[dc_field.name],
                        "arrays, bytes and dicts cannot be manifest fields",
                    )
                kind = setting.kind
        has_default = (
            dc_field.default is not dataclasses.MISSING
            or dc_field.default_factory is not dataclasses.MISSING
        )
        encoding = encoding_in(hints[dc_field.name])
        if encoding is not None and ftype.kind != "ndarray":
            raise UnsupportedFieldTypeError(
                cls.__name__,
                dc_field.name,
                hints[dc_field.name],
                "an atdata.Encoding applies to array fields (NDArray or NDArray | None)",
            )
        if encoding is not None and encoding.name == "npy":
            encoding = None  # the default, so the schema reads the same as without it
        specs.append(FieldSpec(dc_field.name, ftype, kind, has_default, encoding))
    schema = Schema(cls.__name__, version, tuple(specs), module=cls.__module__)
    for name, member in vars(PackableSample).items():
        if name in ("packed", "as_wds", "from_bytes", "from_dict", "to_dict", "with_key"):
            setattr(cls, name, member)
    cls.__key__ = None  # type: ignore[attr-defined]
    cls.__schema__ = schema  # type: ignore[attr-defined]
    cls.__atdata_codec__ = _Codec(cls, schema)  # type: ignore[attr-defined]
    PackableSample.register(cls)
    return cls


def is_packable(tp: Any) -> bool:
    """True when ``tp`` is a ``@packable`` class or ``DictSample``."""
    return isinstance(tp, type) and issubclass(tp, (PackableSample, DictSample))


# -- DictSample ----------------------------------------------------------------------


class DictSample(MutableMapping[str, Any]):
    """A sample of any shard, read without its type.

    Fields are reachable as attributes and items; ``.npy`` byte values and
    encoded arrays (PNG, JPEG, zstd: they say how they are encoded, so no
    schema is needed) are returned as numpy arrays. Items can be set and
    deleted like a dict's (and ``copy.copy`` keeps the key), which is also how
    torch's DataLoader turns the arrays into tensors without losing
    ``__key__``. :attr:`packed` writes arrays back as ``.npy``: a
    ``DictSample`` does not know the encodings.

    Example:
        >>> s = next(iter(atdata.Dataset("data/shard-000000.tar")))
        >>> s.label, s["confidence"], sorted(s.keys())
        ('cat', 0.607, ['confidence', 'image', 'label'])
    """

    __slots__ = ("__key__", "_data")

    def __init__(self, data: Mapping[str, Any], key: str | None = None) -> None:
        self._data = {k: _loose_array(v) for k, v in data.items()}
        self.__key__ = key

    @classmethod
    def from_bytes(cls, data: bytes | memoryview, key: str | None = None) -> DictSample:
        """Decode msgpack bytes of any sample.

        Example:
            >>> atdata.DictSample.from_bytes(sample.packed).label
            'cat'
        """
        raw = _DICT_DECODER.decode(data)
        if not isinstance(raw, dict):
            raise SchemaError(f"sample {key!r} is not a msgpack map")
        return cls(raw, key)

    def __reduce__(self) -> Any:
        # a shallow copy shares no dict with the original (copy.copy, pickling)
        return (_rebuild_dict_sample, (dict(self._data), self.__key__))

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name == "_data":
            # pickle, copy and friends probe for dunders, maybe before _data exists
            raise AttributeError(name)
        try:
            return self._data[name]
        except KeyError:
            from atdata.errors import closest

            hint = closest(name, self._data)
            extra = f" Did you mean {hint[0]!r}?" if hint else ""
            raise AttributeError(
                f"sample has no field {name!r}.{extra} Fields: {', '.join(self._data)}"
            ) from None

    def __getitem__(self, name: str) -> Any:
        return self._data[name]

    def __setitem__(self, name: str, value: Any) -> None:
        self._data[name] = value

    def __delitem__(self, name: str) -> None:
        del self._data[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"DictSample(key={self.__key__!r}, fields={list(self._data)})"

    def to_dict(self) -> dict[str, Any]:
        """A plain dict of the fields.

        Example:
            >>> sorted(atdata.DictSample({"label": "cat", "score": 0.5}).to_dict())
            ['label', 'score']
        """
        return dict(self._data)

    @property
    def packed(self) -> bytes:
        """The sample as msgpack bytes.

        Example:
            >>> atdata.DictSample.from_bytes(atdata.DictSample({"label": "cat"}).packed).label
            'cat'
        """
        return _ENCODER.encode(self._data)

    @property
    def as_wds(self) -> WdsRecord:
        """The sample as a WebDataset record.

        Example:
            >>> atdata.DictSample({"label": "cat"}, key="sample_0001").as_wds["__key__"]
            'sample_0001'
        """
        return WdsRecord(self.__key__, self.packed, self)


def _loose_array(value: Any) -> Any:
    """An untyped value with ``.npy`` bytes and encoded arrays decoded."""
    if type(value) is msgspec.msgpack.Ext:
        return decode_ext(value.code, value.data)
    return _npy.decode_ndarray(bytearray(value)) if _npy.is_npy(value) else value


def _rebuild_dict_sample(data: dict[str, Any], key: str | None) -> DictSample:
    sample = DictSample.__new__(DictSample)
    sample._data = data
    sample.__key__ = key
    return sample


def encode_mapping(data: Mapping[str, Any]) -> bytes:
    """msgpack bytes for a plain mapping of field values (arrays become ``.npy``)."""
    return _ENCODER.encode(data)
