"""``science.alt.dataset.*`` records <-> atdata objects; no network here.

The record layouts follow the lexicons published with the atdata federation
(``science.alt.dataset.schema``, ``.entry``, ``.label``, ``.lens`` and the
storage unions), so records written here are read by every other atdata client.

Every record built here is checked against its lexicon (:mod:`._lexicon`)
before it is returned, so a record that would not conform is never sent. Two
rules of the AT Protocol shape what is written too:

- records never carry floats (the PDS refuses them): :func:`check_record`
  rejects them before a request is sent, naming the path;
- record keys may only use ``A-Za-z0-9.-_:~``. The schema lexicon asks for
  ``{NSID}@{semver}``, which the PDS refuses (``@`` is not a record-key
  character), so schemas are keyed ``{NSID}:{semver}`` (see :func:`schema_rkey`).
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, get_args

import msgspec

from atdata._encodings import Encoding
from atdata._types import FieldType, ManifestKind, parse_type
from atdata.atmosphere import _lexicon as lexicon
from atdata.errors import InvalidRecordError, SchemaError
from atdata.sample import FieldSpec, Schema

__all__ = [
    "ENTRY",
    "LABEL",
    "LENS",
    "NDARRAY_REF",
    "SCHEMA",
    "AtUri",
    "CodeRef",
    "DatasetRef",
    "check_record",
    "check_rkey",
    "entry_record",
    "label_record",
    "lens_record",
    "new_tid",
    "parse_dataset_ref",
    "schema_from_record",
    "schema_record",
    "schema_rkey",
]

NAMESPACE = "science.alt.dataset"
SCHEMA = f"{NAMESPACE}.schema"
ENTRY = f"{NAMESPACE}.entry"
LABEL = f"{NAMESPACE}.label"
LENS = f"{NAMESPACE}.lens"
STORAGE_HTTP = f"{NAMESPACE}.storageHttp"
STORAGE_S3 = f"{NAMESPACE}.storageS3"
STORAGE_BLOBS = f"{NAMESPACE}.storageBlobs"
STORAGE_EXTERNAL = f"{NAMESPACE}.storageExternal"  # deprecated; read, never written
JSON_SCHEMA_FORMAT = f"{SCHEMA}#jsonSchemaFormat"
DRAFT7 = "http://json-schema.org/draft-07/schema#"
NDARRAY_REF = "https://alt.science/schemas/atdata-ndarray-bytes/1.0.0#/$defs/ndarray"
NDARRAY_FORMAT_VERSION = "1.0.0"
ATDATA_SCHEMA_VERSION = 1  # the record layout we write and the newest we read
TAR_MIME = "application/x-tar"

_RKEY = re.compile(r"^[A-Za-z0-9.\-_:~]{1,512}$")
_TID_ALPHABET = "234567abcdefghijklmnopqrstuvwxyz"
_NSID_SEGMENT = re.compile(r"[^A-Za-z0-9-]")


# -- identifiers ---------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class AtUri:
    """An ``at://authority/collection/rkey`` URI.

    Example:
        >>> u = AtUri.parse("at://did:plc:abc/science.alt.dataset.entry/3kxyz")
        >>> u.collection, u.rkey
        ('science.alt.dataset.entry', '3kxyz')
    """

    authority: str
    collection: str = ""
    rkey: str = ""

    @classmethod
    def parse(cls, text: str) -> AtUri:
        """Parse an ``at://`` URI.

        Raises:
            InvalidRecordError: the text is not an ``at://`` URI.
        """
        if not text.startswith("at://"):
            raise InvalidRecordError(
                f"Not an AT URI: {text!r}. Expected at://DID-or-handle/collection/rkey."
            )
        parts = text[len("at://") :].split("/")
        if not parts[0] or len(parts) > 3:
            raise InvalidRecordError(
                f"Malformed AT URI {text!r}: expected at://DID-or-handle/collection/rkey."
            )
        parts += [""] * (3 - len(parts))
        return cls(parts[0], parts[1], parts[2])

    def __str__(self) -> str:
        return "at://" + "/".join(p for p in (self.authority, self.collection, self.rkey) if p)


@dataclasses.dataclass(frozen=True)
class DatasetRef:
    """A parsed ``@handle/name`` or ``@handle/name@version`` reference.

    Example:
        >>> ref = parse_dataset_ref("@alice.test/mnist@1.0.0")
        >>> ref.authority, ref.name, ref.version, str(ref)
        ('alice.test', 'mnist', '1.0.0', '@alice.test/mnist@1.0.0')
    """

    authority: str
    name: str
    version: str | None = None

    def __str__(self) -> str:
        return f"@{self.authority}/{self.name}" + (f"@{self.version}" if self.version else "")


def parse_dataset_ref(text: str) -> DatasetRef:
    """Parse ``@handle/name[@version]`` (the handle may also be a DID).

    Raises:
        InvalidRecordError: the text is not of that form.

    Example:
        >>> parse_dataset_ref("@alice.test/mnist@1.0.0")
        DatasetRef(authority='alice.test', name='mnist', version='1.0.0')
    """
    body = text[1:] if text.startswith("@") else text
    authority, sep, rest = body.partition("/")
    if not sep or not authority or not rest:
        raise InvalidRecordError(
            f"Not a dataset reference: {text!r}. Expected @handle/name or @handle/name@version "
            "(e.g. @alice.bsky.social/mnist)."
        )
    name, _, version = rest.partition("@")
    return DatasetRef(authority, name, version or None)


def check_rkey(rkey: str) -> str:
    """Return ``rkey`` if it is a valid record key, else raise ``InvalidRecordError``."""
    if not _RKEY.match(rkey) or rkey in (".", ".."):
        raise InvalidRecordError(
            f"Invalid record key {rkey!r}: use 1-512 of A-Z a-z 0-9 . - _ : ~", path="$.rkey"
        )
    return rkey


def new_tid(clock_id: int = 0) -> str:
    """A fresh TID record key (microseconds since 1970 + a clock id, base32-sortable)."""
    value = (time.time_ns() // 1000) << 10 | (clock_id & 0x3FF)
    chars = []
    for _ in range(13):
        chars.append(_TID_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def default_schema_id(handle: str, name: str) -> str:
    """The NSID a schema is published under by default: reversed handle + type name.

    Example:
        >>> default_schema_id("alice.bsky.social", "ImageSample")
        'social.bsky.alice.ImageSample'
    """
    domain = [_NSID_SEGMENT.sub("-", p) for p in reversed(handle.lower().split("."))]
    last = re.sub(r"[^A-Za-z0-9]", "", name) or "Sample"
    if last[0].isdigit():
        last = "S" + last
    return ".".join([*domain, last])


def schema_rkey(schema_id: str, version: str) -> str:
    """The record key of one schema version: ``{NSID}:{semver}`` (``+`` becomes ``~``)."""
    return check_rkey(f"{schema_id}:{version.replace('+', '~')}")


def now_iso() -> str:
    """The current UTC time as the datetime format the lexicons use."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# -- the no-float rule -----------------------------------------------------------------


def check_record(record: Mapping[str, Any], path: str = "$") -> None:
    """Raise ``InvalidRecordError`` if ``record`` holds a value the PDS refuses.

    Records may hold null, booleans, integers, strings, bytes (``{"$bytes": ...}``),
    links, lists and maps; floats are refused everywhere.
    """
    _check_value(record, path)


def _check_value(value: Any, path: str) -> None:
    if value is None or isinstance(value, (bool, int, str)):
        return
    if isinstance(value, float):
        raise InvalidRecordError(
            f"Records cannot hold floats (got {value!r} at {path}); "
            "store it as a string or a scaled integer.",
            path=path,
        )
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidRecordError(f"Record keys must be strings (at {path})", path=path)
            _check_value(item, f"{path}.{key}")
        return
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_value(item, f"{path}[{i}]")
        return
    raise InvalidRecordError(
        f"Records cannot hold a {type(value).__name__} (at {path}); "
        "use strings, integers, booleans, lists and maps.",
        path=path,
    )


def _checked(record: dict[str, Any]) -> dict[str, Any]:
    """``record``, once it is known to be writable: no floats, and it conforms to its lexicon."""
    check_record(record)
    collection = str(record["$type"])
    lexicon.validate(record, collection, f"The new {collection} record {record.get('name')!r}")
    return record


def bytes_value(data: bytes) -> dict[str, str]:
    """A lexicon ``bytes`` value as JSON (``{"$bytes": base64}``, no padding)."""
    return {"$bytes": base64.b64encode(data).decode().rstrip("=")}


def from_bytes_value(value: Any) -> bytes:
    """Decode a lexicon ``bytes`` value (``{"$bytes": base64}`` or raw bytes)."""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, Mapping) and "$bytes" in value:
        text = str(value["$bytes"])
        return base64.b64decode(text + "=" * (-len(text) % 4))
    raise InvalidRecordError(f"Expected a bytes value, got {type(value).__name__}")


# -- schema records --------------------------------------------------------------------


def _property(ft: FieldType) -> dict[str, Any]:
    """JSON Schema for one field type (without its nullability at the top level)."""
    if ft.kind == "ndarray":
        return {"$ref": NDARRAY_REF}
    if ft.kind == "str":
        return {"type": "string"}
    if ft.kind == "int":
        return {"type": "integer"}
    if ft.kind == "float":
        return {"type": "number"}
    if ft.kind == "bool":
        return {"type": "boolean"}
    if ft.kind == "bytes":
        return {"type": "string", "format": "byte", "contentEncoding": "base64"}
    if ft.kind == "datetime":
        return {"type": "string", "format": "date-time"}
    if ft.kind == "enum":
        kind = "integer" if all(isinstance(c, int) for c in ft.choices) else "string"
        return {"type": kind, "enum": list(ft.choices)}
    assert ft.item is not None
    inner = _property(ft.item)
    if ft.item.optional:
        inner = {"anyOf": [inner, {"type": "null"}]}
    if ft.kind == "list":
        return {"type": "array", "items": inner}
    return {"type": "object", "additionalProperties": inner}


def schema_record(
    schema: Schema,
    *,
    description: str | None = None,
    license: str | None = None,
    tags: Sequence[str] = (),
    created_at: str | None = None,
) -> dict[str, Any]:
    """A ``science.alt.dataset.schema`` record for a sample type's schema.

    Fields become JSON Schema (draft 7) properties; arrays reference the
    ``ndarrayBytes`` shim. ``x-atdata-type`` and ``x-atdata-manifest`` keep
    atdata's exact field type and manifest kind; ``propertyOrder`` keeps the
    field order (records are stored as DAG-CBOR, whose maps are sorted).

    An array field stored as PNG, JPEG or zstd has its :class:`~atdata.Encoding`
    in ``x-atdata-encoding`` (``{"name": "png", "level": 6}``): the lexicon's
    array formats (``science.alt.dataset.arrayFormat``: ``.npy``, sparse,
    structured, Arrow and safetensors layouts) have none for an image or a
    compressed array, so the property still names the ndarray shim (the
    field's meaning) and the extension key how it is stored.

    Example:
        >>> record = schema_record(ImageSample.__schema__)
        >>> record["$type"], record["name"], record["version"]
        ('science.alt.dataset.schema', 'ImageSample', '1.0.0')
        >>> record["schema"]["propertyOrder"]
        ['image', 'label', 'confidence']
    """
    properties: dict[str, Any] = {}
    required: list[str] = []
    has_arrays = False
    for f in schema.fields:
        prop = _property(f.type)
        prop["x-atdata-type"] = str(f.type)
        if f.manifest:
            prop["x-atdata-manifest"] = f.manifest
        if f.encoding is not None:
            prop["x-atdata-encoding"] = f.encoding.to_json()
        properties[f.name] = prop
        if not f.optional and not f.has_default:
            required.append(f.name)
        has_arrays = has_arrays or f.type.has_arrays
    body: dict[str, Any] = {
        "$type": JSON_SCHEMA_FORMAT,
        "$schema": DRAFT7,
        "type": "object",
        "properties": properties,
        "propertyOrder": [f.name for f in schema.fields],
    }
    if required:
        body["required"] = required
    if has_arrays:
        body["arrayFormatVersions"] = {"ndarrayBytes": NDARRAY_FORMAT_VERSION}
    record: dict[str, Any] = {
        "$type": SCHEMA,
        "name": schema.name,
        "version": schema.version,
        "schemaType": "jsonSchema",
        "schema": body,
        "createdAt": created_at or now_iso(),
        "atdataSchemaVersion": ATDATA_SCHEMA_VERSION,
    }
    if description:
        record["description"] = description
    metadata: dict[str, Any] = {}
    if license:
        metadata["license"] = license
    if tags:
        metadata["tags"] = list(tags)
    if metadata:
        record["metadata"] = metadata
    return _checked(record)


def _unreadable(where: str, prop: Any) -> InvalidRecordError:
    return InvalidRecordError(
        f"Schema property {where} has a type atdata cannot read ({prop!r:.120}); "
        "supported: string, integer, number, boolean, bytes, date-time, enums, ndarray, "
        "arrays and objects of those."
    )


def _field_type_of(prop: Any, where: str) -> FieldType:
    """An atdata field type from a JSON Schema property (ours or another client's)."""
    if not isinstance(prop, Mapping):
        raise _unreadable(where, prop)
    if "x-atdata-type" in prop:
        try:
            return parse_type(str(prop["x-atdata-type"]))
        except ValueError:
            raise _unreadable(where, dict(prop)) from None
    ref = str(prop.get("$ref", ""))
    if "atdata-ndarray-bytes" in ref:
        return FieldType("ndarray")
    if isinstance(prop.get("anyOf"), list):
        members = [
            m for m in prop["anyOf"] if not (isinstance(m, Mapping) and m.get("type") == "null")
        ]
        if len(members) == 1:
            return dataclasses.replace(_field_type_of(members[0], where), optional=True)
    kind = prop.get("type")
    if isinstance(kind, list):  # ["integer", "null"]
        rest = [k for k in kind if k != "null"]
        if len(rest) == 1:
            inner = _field_type_of({**prop, "type": rest[0]}, where)
            return dataclasses.replace(inner, optional="null" in kind)
    if isinstance(prop.get("enum"), list):
        return FieldType("enum", choices=tuple(prop["enum"]))
    if kind == "string":
        fmt = prop.get("format")
        if fmt == "byte" or prop.get("contentEncoding") == "base64":
            return FieldType("bytes")
        if fmt == "date-time":
            return FieldType("datetime")
        return FieldType("str")
    simple = {"integer": "int", "number": "float", "boolean": "bool"}
    if kind in simple:
        return FieldType(simple[kind])
    if kind == "array" and isinstance(prop.get("items"), Mapping):
        return FieldType("list", item=_field_type_of(prop["items"], where + "[]"))
    if kind == "object" and isinstance(prop.get("additionalProperties"), Mapping):
        return FieldType("dict", item=_field_type_of(prop["additionalProperties"], where + "{}"))
    raise _unreadable(where, dict(prop))


def schema_from_record(record: Mapping[str, Any], uri: str = "") -> Schema:
    """Rebuild a :class:`~atdata.Schema` from a ``science.alt.dataset.schema`` record.

    Raises:
        InvalidRecordError: the record is of a newer layout or an unknown schema type.

    Example:
        >>> schema = schema_from_record(schema_record(ImageSample.__schema__))
        >>> schema.name, schema.field_names
        ('ImageSample', ['image', 'label', 'confidence'])
    """
    where = uri or "schema record"
    layout = record.get("atdataSchemaVersion", 1)
    if not isinstance(layout, int) or layout > ATDATA_SCHEMA_VERSION:
        raise InvalidRecordError(
            f"{where} uses schema record layout {layout}; this atdata reads up to "
            f"{ATDATA_SCHEMA_VERSION}. Upgrade atdata: pip install -U atdata"
        )
    body = record.get("schema")
    if record.get("schemaType", "jsonSchema") != "jsonSchema" or not isinstance(body, Mapping):
        raise InvalidRecordError(
            f"{where} has schemaType {record.get('schemaType')!r}; atdata reads 'jsonSchema'."
        )
    properties = body.get("properties") or {}
    if not isinstance(properties, Mapping):
        raise InvalidRecordError(
            f"{where}: schema.properties must be an object of field definitions.",
            path="$.schema.properties",
        )
    required = set(_names(body, "required", where))
    order = [n for n in _names(body, "propertyOrder", where) if n in properties]
    order += [n for n in properties if n not in order]
    fields = []
    for name in order:
        prop = properties[name]
        ft = _field_type_of(prop, f"{where}#{name}")
        if name not in required and not ft.optional and "x-atdata-type" not in prop:
            ft = dataclasses.replace(ft, optional=True)
        manifest = prop.get("x-atdata-manifest")
        if manifest is None and "x-atdata-type" not in prop:
            manifest = ft.default_manifest_kind()
        elif manifest not in (None, *get_args(ManifestKind)):
            raise InvalidRecordError(
                f"{where}#{name} has x-atdata-manifest {manifest!r}; atdata knows "
                f"{', '.join(get_args(ManifestKind))}.",
                path=f"$.schema.properties.{name}",
            )
        has_default = name not in required and not ft.optional
        fields.append(
            FieldSpec(name, ft, manifest, has_default, _encoding_of(prop, ft, where, name))
        )
    return Schema(
        name=str(record.get("name") or "Sample"),
        version=str(record.get("version") or "1.0.0"),
        fields=tuple(fields),
        module=uri,
    )


def _encoding_of(prop: Mapping[str, Any], ft: FieldType, where: str, name: str) -> Encoding | None:
    """The ``x-atdata-encoding`` of a property; None for ``.npy`` (or none given)."""
    data = prop.get("x-atdata-encoding")
    if data is None:
        return None
    try:
        encoding = Encoding.from_json(data)
    except (SchemaError, TypeError) as exc:
        raise InvalidRecordError(
            f"{where}#{name} has an unreadable x-atdata-encoding: {exc}",
            path=f"$.schema.properties.{name}",
        ) from None
    if ft.kind != "ndarray":
        raise InvalidRecordError(
            f"{where}#{name} has an x-atdata-encoding, but only array fields have one",
            path=f"$.schema.properties.{name}",
        )
    return None if encoding.name == "npy" else encoding


def _names(body: Mapping[str, Any], key: str, where: str) -> list[str]:
    """A list of field names in a JSON Schema body (``required``, ``propertyOrder``)."""
    names = body.get(key) or []
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise InvalidRecordError(
            f"{where}: schema.{key} must be a list of field names.", path=f"$.schema.{key}"
        )
    return names


def schema_definition(record: Mapping[str, Any]) -> Any:
    """What makes two schema records the same definition: the fields, not the prose."""
    keys = ("name", "version", "schemaType", "schema", "atdataSchemaVersion")
    return {k: record.get(k) for k in keys}


def same_content(record: Mapping[str, Any]) -> Any:
    """A record without its creation time, to find one already published."""
    return {k: v for k, v in record.items() if k != "createdAt"}


# -- entries, labels, lenses ----------------------------------------------------------


def checksum(digest_hex: str) -> dict[str, str]:
    """A ``shardChecksum`` for a SHA-256 hex digest."""
    return {"algorithm": "sha256", "digest": digest_hex}


def entry_record(
    *,
    name: str,
    schema_uri: str,
    storage: Mapping[str, Any],
    description: str | None = None,
    tags: Sequence[str] = (),
    license: str | None = None,
    samples: int | None = None,
    size_bytes: int | None = None,
    shards: int | None = None,
    metadata: Mapping[str, Any] | None = None,
    created_at: str | None = None,
) -> dict[str, Any]:
    """A ``science.alt.dataset.entry`` record.

    ``metadata`` is msgpack-encoded into the lexicon's ``bytes`` field (it may
    hold floats: they are inside the bytes, not in the record).
    """
    record: dict[str, Any] = {
        "$type": ENTRY,
        "name": name,
        "schemaRef": schema_uri,
        "storage": dict(storage),
        "createdAt": created_at or now_iso(),
    }
    if description:
        record["description"] = description
    if tags:
        record["tags"] = list(tags)
    if license:
        record["license"] = license
    size = {
        k: v
        for k, v in (("samples", samples), ("bytes", size_bytes), ("shards", shards))
        if v is not None
    }
    if size:
        record["size"] = size
    if metadata:
        record["metadata"] = bytes_value(msgspec.msgpack.encode(dict(metadata)))
    return _checked(record)


def entry_metadata(record: Mapping[str, Any]) -> dict[str, Any]:
    """The entry's msgpack ``metadata`` as a dict ({} when absent or unreadable)."""
    value = record.get("metadata")
    if value is None:
        return {}
    try:
        out = msgspec.msgpack.decode(from_bytes_value(value))
    except (msgspec.DecodeError, InvalidRecordError):
        return {}
    return out if isinstance(out, dict) else {}


def http_storage(shards: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """``storageHttp`` from ``(url, sha256 hex)`` pairs."""
    entries = [{"url": url, "checksum": checksum(digest)} for url, digest in shards]
    return {"$type": STORAGE_HTTP, "shards": entries}


def s3_storage(
    bucket: str,
    shards: Iterable[tuple[str, str]],
    *,
    region: str | None = None,
    endpoint: str | None = None,
) -> dict[str, Any]:
    """``storageS3`` from a bucket and ``(key, sha256 hex)`` pairs."""
    out: dict[str, Any] = {
        "$type": STORAGE_S3,
        "bucket": bucket,
        "shards": [{"key": key, "checksum": checksum(digest)} for key, digest in shards],
    }
    if region:
        out["region"] = region
    if endpoint:
        out["endpoint"] = endpoint
    return out


def blob_storage(blobs: Iterable[tuple[Mapping[str, Any], str]]) -> dict[str, Any]:
    """``storageBlobs`` from ``(blob ref, sha256 hex)`` pairs."""
    entries = [{"blob": dict(blob), "checksum": checksum(digest)} for blob, digest in blobs]
    return {"$type": STORAGE_BLOBS, "blobs": entries}


def label_record(
    *,
    name: str,
    dataset_uri: str,
    version: str | None = None,
    description: str | None = None,
    created_at: str | None = None,
) -> dict[str, Any]:
    """A ``science.alt.dataset.label`` record: a name pointing at an entry."""
    record: dict[str, Any] = {
        "$type": LABEL,
        "name": name,
        "datasetUri": dataset_uri,
        "createdAt": created_at or now_iso(),
    }
    if version:
        record["version"] = version
    if description:
        record["description"] = description
    return _checked(record)


@dataclasses.dataclass(frozen=True)
class CodeRef:
    """Where a lens function's code lives: a repository, a commit, and a path.

    ``path`` is ``file.py:function`` inside the repository. atdata never
    downloads or runs it: import the code yourself to use the lens.

    Example:
        >>> ref = CodeRef("https://github.com/alice/vision", "0123abc", "vision.py:to_gray")
        >>> ref.to_record()["path"], CodeRef.from_record(ref.to_record()) == ref
        ('vision.py:to_gray', True)
    """

    repository: str
    commit: str
    path: str
    branch: str | None = None
    language: str = "python"

    def to_record(self) -> dict[str, Any]:
        """The ``codeReference`` object."""
        out = {
            "repository": self.repository,
            "commit": self.commit,
            "path": self.path,
            "language": self.language,
        }
        if self.branch:
            out["branch"] = self.branch
        return out

    @classmethod
    def from_record(cls, data: Mapping[str, Any]) -> CodeRef:
        """Read a ``codeReference`` object."""
        return cls(
            repository=str(data.get("repository", "")),
            commit=str(data.get("commit", "")),
            path=str(data.get("path", "")),
            branch=data.get("branch"),
            language=str(data.get("language", "python")),
        )


def lens_record(
    *,
    name: str,
    source_schema: str,
    target_schema: str,
    getter: CodeRef,
    putter: CodeRef,
    description: str | None = None,
    source_version: str | None = None,
    target_version: str | None = None,
    created_at: str | None = None,
) -> dict[str, Any]:
    """A ``science.alt.dataset.lens`` record: references to code, never code."""
    record: dict[str, Any] = {
        "$type": LENS,
        "name": name,
        "sourceSchema": source_schema,
        "targetSchema": target_schema,
        "getterCode": getter.to_record(),
        "putterCode": putter.to_record(),
        "createdAt": created_at or now_iso(),
    }
    if description:
        record["description"] = description
    if source_version:
        record["sourceSchemaVersion"] = source_version
    if target_version:
        record["targetSchemaVersion"] = target_version
    return _checked(record)
