"""A schema inferred from untyped samples, for shards written without a sample type.

:class:`SchemaInference` looks at every sample of a shard (a dict of decoded
msgpack values, or a ``DictSample``) and settles each field's type from all
the values it held: ``str``, ``int``, ``float`` (ints and floats mixed),
``bool``, ``datetime`` (msgpack timestamps, and strings that all read as
RFC 3339 datetimes, as naive datetimes are written), ``bytes``, lists and
dicts of those, and arrays (``.npy`` bytes or encoded values) with their
dtype and shape. A field is optional when some samples lack it or hold None.
A field whose values have several types (``int`` and ``str``), or only None,
cannot be typed: it is left out and :attr:`InferredSchema.left_out` says why.

The schema's name is ``Inferred_`` and a hash of its fields, so two datasets
of different fields never claim the same name and version in the index.

Example:
    >>> from atdata.sample import SchemaInference
    >>> inference = SchemaInference()
    >>> inference.observe({"label": "cat", "score": 1})
    >>> inference.observe({"label": "dog", "score": 0.5, "note": "blurry"})
    >>> inferred = inference.result()
    >>> [(f.name, str(f.type)) for f in inferred.schema.fields]
    [('label', 'str'), ('score', 'float'), ('note', 'str | None')]
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

import msgspec
import numpy as np

from atdata import _npy
from atdata._types import FieldType
from atdata.sample._schema import FieldSpec, Schema

__all__ = ["InferredSchema", "SchemaInference"]

INFERRED_PREFIX = "Inferred_"
"""How the name of an inferred schema starts (a hash of its fields follows)."""

# the kind of a value, by its exact type (the common case: what msgpack decodes)
_KINDS: dict[type, str] = {
    bool: "bool",
    int: "int",
    float: "float",
    str: "str",
    dt.datetime: "datetime",
    list: "list",
    tuple: "list",
    dict: "dict",
    np.ndarray: "ndarray",
    msgspec.msgpack.Ext: "ndarray",
}
_FIELD_KINDS = frozenset({*_KINDS.values(), "bytes"})
_ONLY_NONE = "only None values"


class _Observed:
    """What the values of one field (or of the items of a list or dict field) were."""

    __slots__ = ("dims", "dtypes", "item", "kinds", "ndims", "nones", "seen", "times")

    def __init__(self) -> None:
        self.seen = 0  # values, None included
        self.nones = 0
        self.kinds: set[str] = set()
        self.times = True  # every string so far reads as a datetime
        self.item: _Observed | None = None
        self.dtypes: set[str] = set()
        self.ndims: set[int] = set()
        self.dims: tuple[int | None, ...] = ()  # per axis: its length, None where lengths vary

    def observe(self, value: Any) -> None:
        self.seen += 1
        if value is None:
            self.nones += 1
            return
        kind = _KINDS.get(type(value)) or _kind_of(value)
        if kind == "ndarray" and not self._observe_array(value):
            kind = "bytes"  # bytes that start like .npy but are not an array
        elif kind == "dict" and not all(type(k) is str for k in value):
            kind = "non-string-keyed dict"
        self.kinds.add(kind)
        if kind == "str":
            if self.times:
                self.times = _reads_as_time(value)
        elif kind == "list":
            item = self.item or self._new_item()
            for x in value:
                item.observe(x)
        elif kind == "dict":
            item = self.item or self._new_item()
            for x in value.values():
                item.observe(x)

    def _new_item(self) -> _Observed:
        self.item = _Observed()
        return self.item

    def _observe_array(self, value: Any) -> bool:
        """Note an array's dtype and shape; False when ``value`` is not an array after all."""
        if isinstance(value, msgspec.msgpack.Ext):
            return True  # encoded (PNG, JPEG, zstd): its dtype and shape need decoding
        if not isinstance(value, np.ndarray):
            try:
                value = _npy.decode_ndarray(value)  # a view: only the header is parsed
            except ValueError:
                return False
        self.dtypes.add(str(value.dtype))
        shape = value.shape
        if not self.ndims:
            self.dims = shape
        elif shape != self.dims:
            self.dims = _common_dims(self.dims, shape)
        self.ndims.add(len(shape))
        return True

    def update(self, other: _Observed) -> None:
        """Add what ``other`` saw (the same field, in other samples)."""
        if other.ndims:
            self.dims = other.dims if not self.ndims else _common_dims(self.dims, other.dims)
        self.seen += other.seen
        self.nones += other.nones
        self.kinds |= other.kinds
        self.times = self.times and other.times
        self.dtypes |= other.dtypes
        self.ndims |= other.ndims
        if other.item is not None:
            (self.item or self._new_item()).update(other.item)

    def field_type(self) -> FieldType | str:
        """The type of these values, or why there is none (``"int and str values"``)."""
        kinds = set(self.kinds)
        if kinds == {"int", "float"}:
            kinds = {"float"}  # a float field reads ints
        if self.times and "str" in kinds and kinds <= {"str", "datetime"}:
            kinds = {"datetime"}  # a datetime field reads RFC 3339 strings
        if not kinds:
            return _ONLY_NONE
        if len(kinds) > 1:
            return f"{' and '.join(sorted(kinds))} values"
        (kind,) = kinds
        if kind not in _FIELD_KINDS:
            return f"{kind} values, which no field type stores"
        optional = self.nones > 0
        if kind in ("list", "dict"):
            item = self.item.field_type() if self.item is not None else _ONLY_NONE
            if item == _ONLY_NONE:
                # no element ever seen with a value: any element type reads these
                item = FieldType("str", optional=self.item is not None and self.item.nones > 0)
            if isinstance(item, str):
                return f"{kind}s of {item}"
            return FieldType(kind, item=item, optional=optional)
        return FieldType(kind, optional=optional)

    def array_facts(self) -> tuple[str | None, tuple[int | None, ...] | None]:
        """``(dtype, shape)`` of the arrays seen, where all agree (None where unknown)."""
        dtype = next(iter(self.dtypes)) if len(self.dtypes) == 1 else None
        shape = self.dims if len(self.ndims) == 1 else None
        return dtype, shape


def _common_dims(a: tuple[int | None, ...], b: tuple[int | None, ...]) -> tuple[int | None, ...]:
    if len(a) != len(b):
        return ()
    return tuple(x if x == y else None for x, y in zip(a, b, strict=True))


def _kind_of(value: Any) -> str:
    """The kind of a value whose exact type is not in ``_KINDS``."""
    if isinstance(value, bool | np.bool_):
        return "bool"
    if isinstance(value, int | np.integer):
        return "int"
    if isinstance(value, float | np.floating):
        return "float"
    if isinstance(value, str):
        return "str"
    if isinstance(value, bytes | bytearray | memoryview):
        return "ndarray" if bytes(value[:6]) == _npy.MAGIC else "bytes"
    if isinstance(value, dt.datetime):
        return "datetime"
    if isinstance(value, list | tuple):
        return "list"
    if isinstance(value, np.ndarray):
        return "ndarray"
    if isinstance(value, Mapping):
        return "dict"
    return type(value).__name__


def _reads_as_time(text: str) -> bool:
    """True when a datetime field would read ``text`` (as the codec's msgspec does)."""
    try:
        msgspec.convert(text, dt.datetime)
    except msgspec.ValidationError:
        return False
    return True


@dataclasses.dataclass(frozen=True)
class InferredSchema:
    """A schema inferred from samples, and the fields it had to leave out.

    Attributes:
        schema: the fields whose type could be told, in the order first seen.
        left_out: field name -> why its type could not be told, e.g.
            ``"int and str values"`` or ``"only None values"``; give the
            sample type to record these fields.

    Example:
        >>> inference = SchemaInference()
        >>> inference.observe({"id": 1, "label": "cat"})
        >>> inference.observe({"id": "b2", "label": "dog"})
        >>> inference.result().left_out
        {'id': 'int and str values'}
    """

    schema: Schema
    left_out: dict[str, str]

    def to_json(self) -> dict[str, Any]:
        """The schema's JSON form, with an ``"inferred"`` entry naming the fields left out.

        Example:
            >>> inference = SchemaInference()
            >>> inference.observe({"label": "cat"})
            >>> inference.result().to_json()["inferred"]
            {'left_out': {}}
        """
        return {**self.schema.to_json(), "inferred": {"left_out": dict(self.left_out)}}


class SchemaInference:
    """Collects the types of untyped samples' fields; :meth:`result` settles the schema.

    Example:
        >>> import numpy as np
        >>> inference = SchemaInference()
        >>> for i in range(3):
        ...     inference.observe({"image": np.zeros((4, 2 + i), np.uint8), "tags": ["a"] * i})
        >>> image = inference.result().schema.field("image")
        >>> str(image.type), image.dtype, image.shape
        ('ndarray', 'uint8', (4, None))
    """

    def __init__(self) -> None:
        self.samples = 0
        self._fields: dict[str, _Observed] = {}

    def observe(self, sample: Mapping[str, Any]) -> None:
        """Look at one sample: a mapping of field name -> decoded value.

        Example:
            >>> inference = SchemaInference()
            >>> inference.observe({"label": "cat"})
            >>> inference.samples
            1
        """
        self.samples += 1
        fields = self._fields
        for name, value in sample.items():
            seen = fields.get(name)
            if seen is None:
                seen = fields[name] = _Observed()
            seen.observe(value)

    def update(self, others: Iterable[SchemaInference]) -> SchemaInference:
        """Add what other inferences saw (other shards of the dataset); returns ``self``.

        Example:
            >>> a, b = SchemaInference(), SchemaInference()
            >>> a.observe({"score": 1})
            >>> b.observe({"score": 0.5})
            >>> str(a.update([b]).result().schema.field("score").type)
            'float'
        """
        for other in others:
            self.samples += other.samples
            for name, seen in other._fields.items():
                mine = self._fields.get(name)
                if mine is None:
                    mine = self._fields[name] = _Observed()
                mine.update(seen)
        return self

    def result(self) -> InferredSchema:
        """The schema of the samples seen so far.

        Example:
            >>> inference = SchemaInference()
            >>> inference.observe({"label": "cat"})
            >>> inference.observe({})
            >>> str(inference.result().schema.field("label").type)
            'str | None'
        """
        specs: list[FieldSpec] = []
        left_out: dict[str, str] = {}
        for name, seen in self._fields.items():
            ft = seen.field_type()
            if isinstance(ft, str):
                left_out[name] = ft
                continue
            if seen.seen < self.samples and not ft.optional:
                ft = dataclasses.replace(ft, optional=True)  # some samples lack it
            dtype, shape = seen.array_facts() if ft.kind == "ndarray" else (None, None)
            specs.append(FieldSpec(name, ft, ft.default_manifest_kind(), dtype=dtype, shape=shape))
        fields = tuple(specs)
        return InferredSchema(Schema(_name_of(fields, left_out), "1.0.0", fields), left_out)


def _name_of(fields: tuple[FieldSpec, ...], left_out: Mapping[str, str]) -> str:
    """``Inferred_`` and a hash of the fields: the same fields, the same name."""
    text = json.dumps([[f.to_json() for f in fields], sorted(left_out)], sort_keys=True)
    return INFERRED_PREFIX + hashlib.blake2b(text.encode(), digest_size=4).hexdigest()
