"""What a sample field's annotation means: its storage kind and manifest kind.

``analyze(annotation)`` turns a Python annotation into a :class:`FieldType`, a
small, serialisable description (``"list[str]"``, ``"ndarray"``...) that survives
without the Python class, and from which the msgpack decoding type, the
write-time checks and the manifest kind are all derived.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import types
import typing
from typing import Any, Literal

import msgspec
import numpy as np

__all__ = ["FieldType", "ManifestField", "ManifestKind", "analyze", "parse_type"]

ManifestKind = Literal["categorical", "numeric", "set"]
_SCALARS: dict[str, type] = {
    "str": str,
    "int": int,
    "float": float,
    "bool": bool,
    "bytes": bytes,
    "datetime": dt.datetime,
}


@dataclasses.dataclass(frozen=True)
class ManifestField:
    """Per-field manifest settings, given with ``typing.Annotated``.

    Args:
        kind: ``"categorical"``, ``"numeric"`` or ``"set"``; ``None`` derives it
            from the annotation.
        indexed: ``False`` leaves the field out of the manifest.

    Example:
        >>> from typing import Annotated
        >>> import atdata
        >>> @atdata.packable
        ... class Reading:
        ...     site_id: Annotated[int, atdata.ManifestField(kind="categorical")]
        ...     note: Annotated[str, atdata.ManifestField(indexed=False)]
    """

    kind: ManifestKind | None = None
    indexed: bool = True

    def __post_init__(self) -> None:
        if self.kind not in (None, "categorical", "numeric", "set"):
            raise ValueError(
                f"ManifestField kind must be 'categorical', 'numeric' or 'set', got {self.kind!r}"
            )


@dataclasses.dataclass(frozen=True)
class FieldType:
    """The storage type of one field, independent of the Python class.

    ``kind`` is one of ``str int float bool bytes datetime ndarray enum list dict``;
    ``item`` is the element type of a list or the value type of a dict;
    ``choices`` are an enum's values.
    """

    kind: str
    item: FieldType | None = None
    optional: bool = False
    choices: tuple[Any, ...] = ()
    enum_type: type[enum.Enum] | None = dataclasses.field(default=None, compare=False)

    def __str__(self) -> str:
        if self.kind == "list":
            text = f"list[{self.item}]"
        elif self.kind == "dict":
            text = f"dict[str, {self.item}]"
        elif self.kind == "enum":
            text = "enum[" + ", ".join(repr(c) for c in self.choices) + "]"
        else:
            text = self.kind
        return f"{text} | None" if self.optional else text

    @property
    def has_arrays(self) -> bool:
        """True when values of this type contain numpy arrays."""
        return self.kind == "ndarray" or (self.item is not None and self.item.has_arrays)

    def default_manifest_kind(self) -> ManifestKind | None:
        """The manifest kind the annotation implies, or None when not indexed."""
        if self.kind in ("str", "bool", "enum"):
            return "categorical"
        if self.kind in ("int", "float", "datetime"):
            return "numeric"
        if self.kind == "list" and self.item is not None and self.item.kind in ("str", "enum"):
            return "set"
        return None

    def python_type(self) -> Any:
        """A Python annotation for this type (enums become their values' type)."""
        if self.kind == "ndarray":
            base: Any = np.ndarray
        elif self.kind == "enum":
            base = self.enum_type or (type(self.choices[0]) if self.choices else str)
        elif self.kind == "list":
            base = list[self.item.python_type()]  # type: ignore[union-attr,misc]
        elif self.kind == "dict":
            base = dict[str, self.item.python_type()]  # type: ignore[union-attr,misc]
        else:
            base = _SCALARS[self.kind]
        return base | None if self.optional else base

    def wire_type(self) -> Any:
        """The type msgspec decodes this field's msgpack value into."""
        if self.kind == "ndarray":
            # ``.npy`` bytes as a view of the read buffer (large arrays need no copy, see
            # _npy.decode_ndarray), or an encoded array (see atdata._encodings)
            base: Any = memoryview | msgspec.msgpack.Ext
        elif self.kind == "enum":
            base = self.enum_type or Any
        elif self.kind == "list":
            base = list[self.item.wire_type()]  # type: ignore[union-attr,misc]
        elif self.kind == "dict":
            base = dict[str, self.item.wire_type()]  # type: ignore[union-attr,misc]
        else:
            base = _SCALARS[self.kind]
        return base | None if self.optional else base


def _is_ndarray(tp: Any) -> bool:
    return tp is np.ndarray or typing.get_origin(tp) is np.ndarray


def analyze(annotation: Any) -> tuple[FieldType, ManifestField | None]:
    """Describe an annotation; raise ``TypeError`` with the reason when unsupported.

    Returns:
        The field type and the ``ManifestField`` found in an ``Annotated``, if any.
    """
    setting: ManifestField | None = None
    if typing.get_origin(annotation) is typing.Annotated:
        annotation, *extras = typing.get_args(annotation)
        setting = next((e for e in extras if isinstance(e, ManifestField)), None)
    return _analyze(annotation), setting


def _analyze(tp: Any) -> FieldType:
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        raise TypeError(
            "typing.Annotated must wrap the whole annotation, not a part of it, "
            "e.g. Annotated[NDArray | None, atdata.Encoding('png')]"
        )
    if origin in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(members) != len(typing.get_args(tp)) - 1 or len(members) != 1:
            raise TypeError("unions are only supported as Optional[X] (X | None)")
        return dataclasses.replace(_analyze(members[0]), optional=True)
    if _is_ndarray(tp):
        return FieldType("ndarray")
    for name, scalar in _SCALARS.items():
        if tp is scalar:
            return FieldType(name)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        values = tuple(m.value for m in tp)
        if not all(isinstance(v, (str, int)) for v in values):
            raise TypeError("enum values must be str or int")
        return FieldType("enum", choices=values, enum_type=tp)
    if origin is list or tp is list:  # bare ``list`` has no origin
        (item,) = typing.get_args(tp) or (None,)
        if item is None:
            raise TypeError("give the element type, e.g. list[str]")
        return FieldType("list", item=_analyze(item))
    if origin is dict or tp is dict:
        args = typing.get_args(tp)
        if len(args) != 2 or args[0] is not str:
            raise TypeError("dicts need string keys, e.g. dict[str, float]")
        return FieldType("dict", item=_analyze(args[1]))
    raise TypeError("not a supported field type")


def parse_type(text: str) -> FieldType:
    """Parse the string form of a :class:`FieldType` (the inverse of ``str``).

    Example:
        >>> str(parse_type("dict[str, list[int]] | None"))
        'dict[str, list[int]] | None'
    """
    text = text.strip()
    optional = text.endswith("| None")
    if optional:
        text = text[: -len("| None")].strip()
    if text.startswith("list[") and text.endswith("]"):
        ft = FieldType("list", item=parse_type(text[5:-1]))
    elif text.startswith("dict[str,") and text.endswith("]"):
        ft = FieldType("dict", item=parse_type(text[9:-1]))
    elif text.startswith("enum[") and text.endswith("]"):
        choices = tuple(ast_literal(f"[{text[5:-1]}]"))
        ft = FieldType("enum", choices=choices)
    elif text in _SCALARS or text == "ndarray":
        ft = FieldType(text)
    else:
        raise ValueError(f"unknown field type {text!r}")
    return dataclasses.replace(ft, optional=optional)


def ast_literal(text: str) -> Any:
    """Evaluate a Python literal safely (no code runs)."""
    import ast

    return ast.literal_eval(text)
