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
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, Literal

from atdata._encodings import Encoding
from atdata._semver import Bump, next_version, precedence
from atdata._types import FieldType, ManifestField, ManifestKind, parse_type
from atdata.errors import SchemaError

if TYPE_CHECKING:
    from atdata.sample._codec import PackableSample

__all__ = ["FieldChange", "FieldSpec", "Schema", "SchemaDiff", "schema_of"]

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

    @property
    def required(self) -> bool:
        """True when every sample must hold the field: it has no default and is not optional.

        Example:
            >>> [f.name for f in ImageSample.__schema__.fields if f.required]
            ['image', 'label']
        """
        return not self.has_default and not self.optional

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

    def diff(self, other: Schema) -> SchemaDiff:
        """What changed going from ``self`` (the old version) to ``other`` (the new one).

        The result maps each kind of change (``added``, ``removed``,
        ``retyped``, ``manifest``, ``encoding``) to its entries, and says for
        each change whether readers of either version still read the other's
        data (see :class:`SchemaDiff`). Manifest kinds and array encodings
        never stop a reader: an encoded array says how it is encoded.

        Example:
            >>> @atdata.packable(version="1.1.0")
            ... class Tagged:
            ...     image: atdata.NDArray
            ...     label: str
            ...     confidence: float
            ...     tags: list[str]
            >>> diff = ImageSample.__schema__.diff(Tagged.__schema__)
            >>> diff["added"], diff.new_readers, diff.bump
            (['tags'], ('field `tags` is required and absent in old data',), 'major')
        """
        return SchemaDiff.between(self, other)

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


ChangeKind = Literal["added", "removed", "retyped", "manifest", "encoding"]
"""What changed about a field: it was added, removed, retyped, re-indexed or re-encoded."""
CHANGE_KINDS: tuple[ChangeKind, ...] = ("added", "removed", "retyped", "manifest", "encoding")


@dataclasses.dataclass(frozen=True)
class FieldChange:
    """One field's change between two versions of a schema, and who still reads across it.

    Attributes:
        name: the field.
        kind: ``added``, ``removed``, ``retyped``, ``manifest`` or ``encoding``.
        old: the type (manifest kind, encoding) before; None for an added field.
        new: the type (manifest kind, encoding) after; None for a removed field.
        old_readers: why readers of the old version cannot read data written
            with the new one; None when they can.
        new_readers: why readers of the new version cannot read data written
            with the old one; None when they can.

    Example:
        >>> change = FieldChange("score", "retyped", "int", "float", None, None)
        >>> change.entry
        'score: int -> float'
    """

    name: str
    kind: ChangeKind
    old: str | None
    new: str | None
    old_readers: str | None = None
    new_readers: str | None = None

    @property
    def entry(self) -> str:
        """The change as one line: the field's name, and ``old -> new`` for a change of type.

        Example:
            >>> FieldChange("tags", "added", None, "list[str]").entry
            'tags'
        """
        if self.kind in ("added", "removed"):
            return self.name
        return f"{self.name}: {self.old} -> {self.new}"


@dataclasses.dataclass(frozen=True, eq=False)
class SchemaDiff(Mapping[str, list[str]]):
    """The changes from an old schema to a new one, and what they mean for readers.

    As a mapping: change kind -> entries (``diff["retyped"] == ["score: int -> float"]``).
    "Readers of the old version" is code that reads with the old type, meeting
    data written with the new one; "readers of the new version" read old data
    with the new type. What a reader does decides it: fields it does not know
    are ignored, a field it requires must be there, and a value must be of a
    type it decodes (an int field does not read floats, a float field reads
    ints, a field that is not optional does not read None).

    Example:
        >>> @atdata.packable(version="1.1.0")
        ... class Scored:
        ...     image: atdata.NDArray
        ...     label: str
        ...     confidence: float
        ...     note: str | None = None
        >>> diff = ImageSample.__schema__.diff(Scored.__schema__)
        >>> diff["added"], diff.compatible, diff.bump, diff.next_version
        (['note'], True, 'minor', '1.1.0')
    """

    old: Schema
    new: Schema
    changes: tuple[FieldChange, ...]

    @classmethod
    def between(cls, old: Schema, new: Schema) -> SchemaDiff:
        """The changes going from ``old`` to ``new``.

        Example:
            >>> SchemaDiff.between(ImageSample.__schema__, ImageSample.__schema__).identical
            True
        """
        mine = {f.name: f for f in old.fields}
        theirs = {f.name: f for f in new.fields}
        changes = [_added(f) for n, f in theirs.items() if n not in mine]
        changes += [_removed(f) for n, f in mine.items() if n not in theirs]
        common = [(mine[n], theirs[n]) for n in mine if n in theirs]
        changes += [_retyped(a, b) for a, b in common if str(a.type) != str(b.type)]
        changes += [
            FieldChange(a.name, "manifest", a.manifest, b.manifest)
            for a, b in common
            if a.manifest != b.manifest
        ]
        changes += [
            FieldChange(a.name, "encoding", str(a.encoding or "npy"), str(b.encoding or "npy"))
            for a, b in common
            if a.encoding != b.encoding
        ]
        return cls(old, new, tuple(changes))

    def __getitem__(self, kind: str) -> list[str]:
        if kind not in CHANGE_KINDS:
            raise KeyError(kind)
        return [c.entry for c in self.changes if c.kind == kind]

    def __iter__(self) -> Iterator[str]:
        return iter(CHANGE_KINDS)

    def __len__(self) -> int:
        return len(CHANGE_KINDS)

    def __repr__(self) -> str:
        return f"SchemaDiff({dict(self)!r})"

    @property
    def identical(self) -> bool:
        """True when no field changed (type, manifest kind or encoding).

        Example:
            >>> ImageSample.__schema__.diff(ImageSample.__schema__).identical
            True
        """
        return not self.changes

    @property
    def old_readers(self) -> tuple[str, ...]:
        """Why readers of the old version cannot read new data; empty when they can.

        Example:
            >>> ImageSample.__schema__.diff(ImageSample.__schema__).old_readers
            ()
        """
        return tuple(c.old_readers for c in self.changes if c.old_readers is not None)

    @property
    def new_readers(self) -> tuple[str, ...]:
        """Why readers of the new version cannot read old data; empty when they can.

        Example:
            >>> ImageSample.__schema__.diff(ImageSample.__schema__).new_readers
            ()
        """
        return tuple(c.new_readers for c in self.changes if c.new_readers is not None)

    @property
    def compatible(self) -> bool:
        """True when readers of either version read data of the other.

        Example:
            >>> ImageSample.__schema__.diff(ImageSample.__schema__).compatible
            True
        """
        return not self.old_readers and not self.new_readers

    @property
    def bump(self) -> Bump | None:
        """The version part the change needs bumped; None when nothing changed.

        ``major`` when readers of either version can no longer read the other's
        data; ``minor`` when fields were added, removed or retyped and both
        still can; ``patch`` when only manifest kinds or encodings changed.

        Example:
            >>> ImageSample.__schema__.diff(ImageSample.__schema__).bump is None
            True
        """
        if not self.changes:
            return None
        if not self.compatible:
            return "major"
        if any(c.kind in ("added", "removed", "retyped") for c in self.changes):
            return "minor"
        return "patch"

    @property
    def next_version(self) -> str | None:
        """The lowest version the new schema needs: the old one with :attr:`bump` bumped.

        Example:
            >>> ImageSample.__schema__.diff(ImageSample.__schema__).next_version is None
            True
        """
        bump = self.bump
        return None if bump is None else next_version(self.old.version, bump)

    @property
    def version_enough(self) -> bool:
        """True when the new schema's version is at least :attr:`next_version`.

        Example:
            >>> ImageSample.__schema__.diff(ImageSample.__schema__).version_enough
            True
        """
        needed = self.next_version
        return needed is None or precedence(self.new.version) >= precedence(needed)


def _added(field: FieldSpec) -> FieldChange:
    why = f"field `{field.name}` is required and absent in old data" if field.required else None
    return FieldChange(field.name, "added", None, str(field.type), new_readers=why)


def _removed(field: FieldSpec) -> FieldChange:
    why = (
        f"field `{field.name}` is required by the old type and absent in new data"
        if field.required
        else None
    )
    return FieldChange(field.name, "removed", str(field.type), None, old_readers=why)


def _retyped(old: FieldSpec, new: FieldSpec) -> FieldChange:
    return FieldChange(
        old.name,
        "retyped",
        str(old.type),
        str(new.type),
        old_readers=_unreadable(old.name, reader=old.type, data=new.type, data_of="new"),
        new_readers=_unreadable(old.name, reader=new.type, data=old.type, data_of="old"),
    )


def _unreadable(name: str, *, reader: FieldType, data: FieldType, data_of: str) -> str | None:
    """Why a ``reader`` field does not read every value of a ``data`` field; None if it does."""
    lifted = dataclasses.replace(reader, optional=True)
    if data.optional and not reader.optional and _reads(lifted, data):
        return f"field `{name}` may be None in {data_of} data, and {reader} does not read None"
    if _reads(reader, data):
        return None
    return f"field `{name}` is {data} in {data_of} data, and {reader} does not read it"


def _reads(reader: FieldType, data: FieldType) -> bool:
    """True when a field of type ``reader`` decodes every value a ``data`` field holds.

    As the codec's msgspec decoding does: a float reads ints (not the other
    way), an enum reads the choices it has, a ``str`` or ``int`` field reads an
    enum's values of that type; containers read what their items read.
    """
    if data.optional and not reader.optional:
        return False
    if reader.kind == data.kind:
        if reader.kind in ("list", "dict"):
            assert reader.item is not None and data.item is not None
            return _reads(reader.item, data.item)
        if reader.kind == "enum":
            return set(data.choices) <= set(reader.choices)
        return True
    if reader.kind == "float" and data.kind == "int":
        return True
    if data.kind == "enum" and reader.kind in ("str", "int"):
        return all(type(c).__name__ == reader.kind for c in data.choices)
    return False


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
