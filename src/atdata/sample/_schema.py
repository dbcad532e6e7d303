"""The schema of a sample type: its fields, JSON form, version and differences.

A :class:`Schema` names a packable type, its semantic version and its fields
(:class:`FieldSpec`: storage type, manifest kind, whether it has a default, and
for an array field its :class:`~atdata.Encoding` when not ``.npy``). It
round-trips through JSON, which is how shards' manifests, the local index and
published records store it; :meth:`Schema.diff` says what changed between two
versions of a type, and :meth:`Schema.to_type` rebuilds a packable type from
a schema alone.

Example:
    >>> from atdata.sample import Schema
    >>> schema = Schema.from_json(
    ...     {"name": "Reading", "version": "1.1.0",
    ...      "fields": [{"name": "value", "type": "float"}]}
    ... )
    >>> schema.field_names, schema.version
    (['value'], '1.1.0')
"""

from __future__ import annotations

import dataclasses
import json
import typing
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from atdata._encodings import Encoding
from atdata._types import FieldType, ManifestField, ManifestKind, parse_type
from atdata.errors import SchemaError

if TYPE_CHECKING:
    from atdata.sample._codec import PackableSample

__all__ = ["FieldSpec", "Schema", "schema_of"]

# the module of types built by Schema.to_type: the package, where users meet them
_PUBLIC_MODULE = "atdata.sample"


@dataclasses.dataclass(frozen=True)
class FieldSpec:
    """One field of a sample type: name, storage type and manifest kind.

    ``encoding`` is how an array field is stored when not as ``.npy`` bytes
    (``None``); its JSON form has an ``"encoding"`` key only then. ``dtype``
    and ``shape`` are what the arrays of a schema inferred from samples held
    (see :class:`~atdata.sample.SchemaInference`; ``None`` in a shape: that axis
    varies); a declared ``NDArray`` leaves them None.

    Example:
        >>> FieldSpec.from_json(
        ...     {"name": "image", "type": "ndarray", "encoding": {"name": "png", "level": 6}}
        ... ).encoding
        Encoding(name='png', quality=None, level=6)
    """

    name: str
    type: FieldType
    manifest: ManifestKind | None = None
    has_default: bool = False
    encoding: Encoding | None = None
    dtype: str | None = None
    shape: tuple[int | None, ...] | None = None

    @property
    def optional(self) -> bool:
        """True when the field may be None."""
        return self.type.optional

    def to_json(self) -> dict[str, Any]:
        """The field as a JSON-able dict."""
        out: dict[str, Any] = {
            "name": self.name,
            "type": str(self.type),
            "optional": self.type.optional,
            "manifest": self.manifest,
        }
        if self.has_default:
            out["has_default"] = True
        if self.encoding is not None:
            out["encoding"] = self.encoding.to_json()
        if self.dtype is not None:
            out["dtype"] = self.dtype
        if self.shape is not None:
            out["shape"] = list(self.shape)
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FieldSpec:
        """Rebuild a field from :meth:`to_json` output.

        Raises:
            SchemaError: the encoding is unknown, or given for a field that is
                not an array.
        """
        ft = parse_type(data["type"])
        encoding = None
        if data.get("encoding") is not None:
            encoding = Encoding.from_json(data["encoding"])
            if ft.kind != "ndarray":
                raise SchemaError(f"field {data['name']!r}: only array fields have an encoding")
            if encoding.name == "npy":
                encoding = None
        shape = data.get("shape")
        return cls(
            name=data["name"],
            type=ft,
            manifest=data.get("manifest"),
            has_default=bool(data.get("has_default", False)),
            encoding=encoding,
            dtype=data.get("dtype"),
            shape=None if shape is None else tuple(shape),
        )


@dataclasses.dataclass(frozen=True)
class Schema:
    """A sample type's name, semantic version and fields; JSON round-trips.

    Example:
        >>> schema = ImageSample.__schema__
        >>> Schema.from_json(schema.to_json()) == schema
        True
    """

    name: str
    version: str
    fields: tuple[FieldSpec, ...]
    module: str = ""

    @property
    def field_names(self) -> list[str]:
        """Field names in declaration order.

        Example:
            >>> ImageSample.__schema__.field_names
            ['image', 'label', 'confidence']
        """
        return [f.name for f in self.fields]

    @property
    def manifest_fields(self) -> dict[str, ManifestKind]:
        """Field name -> manifest kind, for the fields that go in the manifest.

        Example:
            >>> ImageSample.__schema__.manifest_fields
            {'label': 'categorical', 'confidence': 'numeric'}
        """
        return {f.name: f.manifest for f in self.fields if f.manifest is not None}

    def field(self, name: str) -> FieldSpec:
        """The field called ``name``; ``KeyError`` if there is none.

        Example:
            >>> ImageSample.__schema__.field("label").manifest
            'categorical'
        """
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)

    def to_json(self) -> dict[str, Any]:
        """The schema as a JSON-able dict.

        Example:
            >>> sorted(ImageSample.__schema__.to_json())
            ['fields', 'module', 'name', 'version']
        """
        return {
            "name": self.name,
            "version": self.version,
            "module": self.module,
            "fields": [f.to_json() for f in self.fields],
        }

    def dumps(self) -> str:
        """The schema as JSON text.

        Example:
            >>> Schema.from_json(ImageSample.__schema__.dumps()).name
            'ImageSample'
        """
        return json.dumps(self.to_json(), sort_keys=True)

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | str) -> Schema:
        """Rebuild a schema from :meth:`to_json` output (a dict or JSON text).

        Example:
            >>> Schema.from_json({"name": "Digit", "fields": []}).version
            '1.0.0'
        """
        if isinstance(data, str):
            data = json.loads(data)
        assert isinstance(data, Mapping)
        return cls(
            name=data["name"],
            version=data.get("version", "1.0.0"),
            fields=tuple(FieldSpec.from_json(f) for f in data["fields"]),
            module=data.get("module", ""),
        )

    def diff(self, other: Schema) -> dict[str, list[str]]:
        """Fields added, removed, retyped and re-encoded going from ``self`` to ``other``.

        ``manifest`` lists changed manifest kinds and ``encoding`` changed array
        encodings; both are compatible changes: shards written either way read
        with either type (an encoded array says how it is encoded).

        Example:
            >>> old.diff(new)                                  # doctest: +SKIP
            {'added': ['tags'], 'removed': [], 'retyped': ['score: int -> float'],
             'manifest': [], 'encoding': ['image: npy -> png(level=6)']}
        """
        mine = {f.name: f for f in self.fields}
        theirs = {f.name: f for f in other.fields}
        return {
            "added": [n for n in theirs if n not in mine],
            "removed": [n for n in mine if n not in theirs],
            "retyped": [
                f"{n}: {mine[n].type} -> {theirs[n].type}"
                for n in mine
                if n in theirs and str(mine[n].type) != str(theirs[n].type)
            ],
            "manifest": [
                f"{n}: {mine[n].manifest} -> {theirs[n].manifest}"
                for n in mine
                if n in theirs and mine[n].manifest != theirs[n].manifest
            ],
            "encoding": [
                f"{n}: {mine[n].encoding or 'npy'} -> {theirs[n].encoding or 'npy'}"
                for n in mine
                if n in theirs and mine[n].encoding != theirs[n].encoding
            ],
        }

    def to_type(self) -> type[PackableSample]:
        """Build a packable type from this schema, for data whose class is not at hand.

        Example:
            >>> Sample = atdata.Dataset("data/shard-000000.tar").schema.to_type()
            >>> atdata.Dataset[Sample]("data/shard-{000000..000009}.tar").head(1)[0].label
            'cat'
        """
        from atdata.sample._codec import packable  # deferred: the codec imports this module

        annotations: dict[str, Any] = {}
        namespace: dict[str, Any] = {"__annotations__": annotations, "__module__": _PUBLIC_MODULE}
        for f in self.fields:
            tp = f.type.python_type()
            setting = ManifestField(kind=f.manifest) if f.manifest else ManifestField(indexed=False)
            extras = (setting,) if f.encoding is None else (setting, f.encoding)
            annotations[f.name] = typing.Annotated[(tp, *extras)]
            if f.has_default or f.optional:
                namespace[f.name] = None
        # keyword-only, so a field with a default may precede one without
        cls: type[Any] = dataclasses.dataclass(kw_only=True)(type(self.name, (), namespace))
        return packable(cls, version=self.version)


def schema_of(sample_type: type) -> Schema:
    """The :class:`Schema` of a packable type.

    Raises:
        SchemaError: when the type is not ``@packable``.

    Example:
        >>> atdata.schema_of(ImageSample).version
        '1.0.0'
    """
    schema = getattr(sample_type, "__schema__", None)

    if not isinstance(schema, Schema):
        raise SchemaError(
            f"{getattr(sample_type, '__name__', sample_type)!r} is not a sample type; "
            "decorate the class with @atdata.packable"
        )
    return schema
