"""Manifest columns: which fields go in a manifest, their Arrow types and their values.

A manifest column is described by a :class:`Column`: the field name, its
manifest kind (``categorical``, ``numeric`` or ``set``) and the type of its
values (``str``, ``int``, ``float``, ``bool`` or ``datetime``; for a set, the
type of its elements). Datetimes are stored as UTC microsecond timestamps; a
naive datetime is taken to be UTC.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from atdata._types import FieldType
from atdata.errors import ManifestError
from atdata.sample import FieldSpec, Schema

__all__ = ["Column", "arrow_type", "columns_of", "to_arrow", "value_class"]

VALUE_TYPES = ("str", "int", "float", "bool", "datetime")
TIMESTAMP = pa.timestamp("us", tz="UTC")
_ARROW: dict[str, pa.DataType] = {
    "str": pa.string(),
    "int": pa.int64(),
    "float": pa.float64(),
    "bool": pa.bool_(),
    "datetime": TIMESTAMP,
}


@dataclasses.dataclass(frozen=True)
class Column:
    """One manifest column: field name, manifest kind and value type."""

    name: str
    kind: str
    value_type: str

    @property
    def arrow_type(self) -> pa.DataType:
        """The column's Arrow type (a list type for set fields)."""
        return arrow_type(self.kind, self.value_type)


def arrow_type(kind: str, value_type: str) -> pa.DataType:
    """The Arrow type of a manifest column of this kind and value type."""
    base = _ARROW.get(value_type, pa.string())
    return pa.list_(base) if kind == "set" else base


def value_class(value_type: str) -> str:
    """The comparison class of a value type: ``text``, ``number`` or ``time``."""
    if value_type == "str":
        return "text"
    if value_type == "datetime":
        return "time"
    return "number"


def _value_type(ft: FieldType) -> str:
    """The scalar value type of a field type (a list's element type for lists)."""
    if ft.kind == "list" and ft.item is not None:
        return _value_type(ft.item)
    if ft.kind == "enum":
        kinds = {type(c) for c in ft.choices}
        return "int" if kinds == {int} else "str"
    if ft.kind in VALUE_TYPES:
        return ft.kind
    return "str"


def _column_for(spec: FieldSpec) -> Column | None:
    if spec.manifest is None or spec.type.has_arrays or spec.type.kind in ("bytes", "dict"):
        return None
    kind = spec.manifest
    if spec.type.kind == "list" and kind != "set":
        kind = "set"  # a list is a set of values whatever the annotation asks for
    return Column(spec.name, kind, _value_type(spec.type))


def columns_of(schema: Schema) -> list[Column]:
    """The manifest columns of a schema, in field order."""
    return [c for spec in schema.fields if (c := _column_for(spec)) is not None]


def _normalise(value: Any, value_type: str) -> Any:
    """One value made acceptable to Arrow (enums to values, numpy scalars to Python)."""
    if value is None:
        return None
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, np.generic):
        value = value.item()
    if value_type == "datetime" and isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    elif value_type == "float" and isinstance(value, bool):
        value = float(value)
    elif value_type == "int" and isinstance(value, bool):
        value = int(value)
    elif value_type == "str" and not isinstance(value, str):
        value = str(value)
    return value


def _as_list(value: Any) -> list[Any]:
    if isinstance(value, list | tuple | set | frozenset):
        return list(value)
    return [value]  # a scalar declared a set: a set of one


def to_arrow(column: Column, values: Sequence[Any]) -> pa.Array:
    """The Arrow array of one manifest column.

    Raises:
        ManifestError: a value cannot be stored as the column's type.
    """
    target = column.arrow_type
    try:
        return pa.array(values, type=target)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
        pass  # the slow path below normalises each value
    vt = column.value_type
    try:
        if column.kind == "set":
            fixed: list[Any] = [
                None if v is None else [_normalise(x, vt) for x in _as_list(v)] for v in values
            ]
        else:
            fixed = [_normalise(v, vt) for v in values]
        return pa.array(fixed, type=target)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError) as exc:
        bad = next((v for v in values if v is not None), None)
        hint = (
            "Fix the sample type's annotation or mark the field "
            "Annotated[..., atdata.ManifestField(indexed=False)]."
        )
        raise ManifestError(
            f"manifest field {column.name!r} ({column.kind}, {vt}) cannot hold a value such as "
            f"{bad!r:.60}: {exc}. {hint}"
        ).with_cli_hint(
            hint,
            "Give the sample type as --type MODULE:CLASS, with this field's annotation fixed "
            "or the field left out of the manifest.",
        ) from None
