"""Check records against the lexicons the package ships; nothing else happens here.

A small validator for the lexicon features the ``science.alt.dataset.*``
definitions use: objects (``required``, ``properties``), strings (``maxLength``
in UTF-8 bytes, ``const``, ``enum``, ``pattern``, the ``at-uri``, ``datetime``
and ``uri`` formats), integers (``minimum``, ``maximum``), booleans, arrays
(``minLength``, ``maxLength``), ``bytes``, ``blob`` (``accept``, ``maxSize``),
``ref`` and ``union``. ``knownValues`` are suggestions in the lexicon language,
not a closed set, so a value outside them is accepted (another client's newer
schema type or language is still a valid record). Fields a definition does not
name are allowed, as the AT Protocol allows them.

The lexicon files are read once, on the first validation.

Example:
    >>> label = "science.alt.dataset.label"
    >>> try:
    ...     validate({"$type": label, "name": "mnist"}, label, "a new label")
    ... except InvalidRecordError as exc:
    ...     print(exc.path)
    $.datasetUri
"""

from __future__ import annotations

import datetime as dt
import functools
import importlib.resources
import json
import re
from collections.abc import Iterator, Mapping
from importlib.resources.abc import Traversable
from typing import Any

from atdata.errors import InvalidRecordError

__all__ = ["is_record_type", "validate"]

_URI = re.compile(r"^[a-z][a-z0-9+.-]*:\S+$")


@functools.cache
def _lexicons() -> dict[str, dict[str, Any]]:
    """Every lexicon document shipped in ``atdata/atmosphere/lexicons``, by NSID."""
    root = importlib.resources.files("atdata.atmosphere") / "lexicons"
    docs: dict[str, dict[str, Any]] = {}
    for item in _json_files(root):
        doc = json.loads(item.read_text(encoding="utf-8"))
        if "lexicon" in doc:  # the array shims beside them are JSON Schema, not lexicons
            docs[str(doc["id"])] = doc
    return docs


def _json_files(folder: Traversable) -> Iterator[Traversable]:
    for item in folder.iterdir():
        if item.is_dir():
            yield from _json_files(item)
        elif item.name.endswith(".json"):
            yield item


def is_record_type(nsid: str) -> bool:
    """True when the package ships a record lexicon for ``nsid`` (so its records are checked)."""
    doc = _lexicons().get(nsid)
    return doc is not None and doc["defs"]["main"].get("type") == "record"


def validate(record: Mapping[str, Any], collection: str, where: str) -> None:
    """Raise ``InvalidRecordError`` unless ``record`` is a conforming ``collection`` record.

    Args:
        record: a record value; its ``$type`` must be ``collection``.
        collection: the NSID of a lexicon the package ships (``science.alt.dataset.entry``).
        where: the record, for the message: its ``at://`` URI, or a description
            of a record about to be written.

    Raises:
        InvalidRecordError: a field is missing, of the wrong type, too long, or not
            an allowed value; ``path`` says which (e.g. ``$.storage.shards[0].url``).
    """
    if record.get("$type") != collection:
        raise InvalidRecordError(
            f"{where} is not a {collection} record: its $type is {record.get('$type')!r}.",
            path="$.$type",
        )
    _Validator(where, collection).check(record, _definition(collection), collection, "$")


def _definition(ref: str) -> dict[str, Any]:
    """The definition a full ref names (``nsid`` or ``nsid#name``); a record's is its object."""
    nsid, _, name = ref.partition("#")
    doc = _lexicons()[nsid]
    defn: dict[str, Any] = doc["defs"][name or "main"]
    return defn["record"] if defn.get("type") == "record" else defn


def _full_ref(ref: str, context: str) -> str:
    """A ref with its NSID: ``#name`` becomes ``context#name``."""
    return context + ref if ref.startswith("#") else ref


class _Validator:
    """One validation: remembers which record it is, to name it in the error."""

    def __init__(self, where: str, nsid: str) -> None:
        self.where = where
        self.nsid = nsid

    def fail(self, path: str, problem: str) -> InvalidRecordError:
        """The error for ``problem`` at ``path``, naming the record and its lexicon."""
        return InvalidRecordError(
            f"{self.where} does not conform to {self.nsid}: {path} {problem}.", path=path
        )

    def check(self, value: Any, defn: Mapping[str, Any], context: str, path: str) -> None:
        """Check ``value`` against ``defn``; refs inside it are relative to ``context``."""
        kind = defn.get("type")
        if kind == "object":
            self._object(value, defn, context, path)
        elif kind == "string":
            self._string(value, defn, path)
        elif kind == "integer":
            self._integer(value, defn, path)
        elif kind == "boolean":
            if not isinstance(value, bool):
                raise self.fail(path, f"must be a boolean, not {_kind(value)}")
        elif kind == "array":
            self._array(value, defn, context, path)
        elif kind == "bytes":
            self._bytes(value, defn, path)
        elif kind == "blob":
            self._blob(value, defn, path)
        elif kind == "ref":
            ref = _full_ref(str(defn["ref"]), context)
            self.check(value, _definition(ref), ref.partition("#")[0], path)
        elif kind == "union":
            self._union(value, defn, context, path)
        # "unknown" holds anything

    def _object(self, value: Any, defn: Mapping[str, Any], context: str, path: str) -> None:
        if not isinstance(value, Mapping):
            raise self.fail(path, f"must be an object, not {_kind(value)}")
        for name in defn.get("required", ()):
            if value.get(name) is None:
                raise self.fail(f"{path}.{name}", "is required")
        for name, prop in (defn.get("properties") or {}).items():
            if value.get(name) is not None:
                self.check(value[name], prop, context, f"{path}.{name}")

    def _string(self, value: Any, defn: Mapping[str, Any], path: str) -> None:
        if not isinstance(value, str):
            raise self.fail(path, f"must be a string, not {_kind(value)}")
        limit = defn.get("maxLength")
        if limit is not None and len(value.encode()) > limit:
            raise self.fail(
                path, f"is {len(value.encode())} bytes long; the lexicon allows {limit}"
            )
        if "const" in defn and value != defn["const"]:
            raise self.fail(path, f"must be {defn['const']!r}, not {value[:100]!r}")
        if "enum" in defn and value not in defn["enum"]:
            raise self.fail(path, f"must be one of {defn['enum']}, not {value[:100]!r}")
        if "pattern" in defn and not re.search(defn["pattern"], value):
            raise self.fail(path, f"{value[:100]!r} does not match {defn['pattern']}")
        fmt = defn.get("format")
        if fmt is not None and not _FORMATS.get(fmt, _any)(value):
            raise self.fail(path, f"{value[:100]!r} is not a valid {fmt}")

    def _integer(self, value: Any, defn: Mapping[str, Any], path: str) -> None:
        if not isinstance(value, int) or isinstance(value, bool):
            raise self.fail(path, f"must be an integer, not {_kind(value)}")
        if "minimum" in defn and value < defn["minimum"]:
            raise self.fail(path, f"is {value}; the lexicon's minimum is {defn['minimum']}")
        if "maximum" in defn and value > defn["maximum"]:
            raise self.fail(path, f"is {value}; the lexicon's maximum is {defn['maximum']}")

    def _array(self, value: Any, defn: Mapping[str, Any], context: str, path: str) -> None:
        if not isinstance(value, list):
            raise self.fail(path, f"must be an array, not {_kind(value)}")
        if len(value) > defn.get("maxLength", len(value)):
            raise self.fail(path, f"has {len(value)} items; the lexicon allows {defn['maxLength']}")
        if len(value) < defn.get("minLength", 0):
            raise self.fail(path, f"has {len(value)} items; the lexicon needs {defn['minLength']}")
        for i, item in enumerate(value):
            self.check(item, defn["items"], context, f"{path}[{i}]")

    def _bytes(self, value: Any, defn: Mapping[str, Any], path: str) -> None:
        text = value.get("$bytes") if isinstance(value, Mapping) else None
        if not isinstance(text, str):
            raise self.fail(path, 'must be bytes ({"$bytes": base64})')
        size = len(text.rstrip("=")) * 3 // 4
        limit = defn.get("maxLength")
        if limit is not None and size > limit:
            raise self.fail(path, f"is {size} bytes; the lexicon allows {limit}")

    def _blob(self, value: Any, defn: Mapping[str, Any], path: str) -> None:
        if not isinstance(value, Mapping):
            raise self.fail(path, f"must be a blob, not {_kind(value)}")
        if value.get("$type") == "blob":
            link = value.get("ref")
            if not isinstance(link, Mapping) or not isinstance(link.get("$link"), str):
                raise self.fail(f"{path}.ref", 'must be a link ({"$link": CID})')
            size = value.get("size")
            if not isinstance(size, int) or isinstance(size, bool):
                raise self.fail(f"{path}.size", f"must be an integer, not {_kind(size)}")
            if size > defn.get("maxSize", size):
                raise self.fail(f"{path}.size", f"is {size}; the lexicon allows {defn['maxSize']}")
        elif not isinstance(value.get("cid"), str):  # the legacy form: {"cid", "mimeType"}
            raise self.fail(path, 'must be a blob ({"$type": "blob", "ref": ..., ...})')
        mime = value.get("mimeType")
        if not isinstance(mime, str):
            raise self.fail(f"{path}.mimeType", f"must be a string, not {_kind(mime)}")
        accept = defn.get("accept", ["*/*"])
        if "*/*" not in accept and mime not in accept:
            raise self.fail(f"{path}.mimeType", f"must be one of {accept}, not {mime!r}")

    def _union(self, value: Any, defn: Mapping[str, Any], context: str, path: str) -> None:
        if not isinstance(value, Mapping):
            raise self.fail(path, f"must be an object, not {_kind(value)}")
        member = value.get("$type")
        if not isinstance(member, str):
            raise self.fail(f"{path}.$type", "is required (it says which kind of value this is)")
        listed = {_full_ref(str(r), context).removesuffix("#main") for r in defn["refs"]}
        if member not in listed and defn.get("closed"):
            raise self.fail(f"{path}.$type", f"must be one of {sorted(listed)}, not {member!r}")
        # An open union may hold other types: those of lexicons we ship are checked too
        # (the deprecated storageExternal), others are not ours to judge.
        if member in listed or _known_definition(member):
            self.check(value, _definition(member), member.partition("#")[0], path)


def _known_definition(ref: str) -> bool:
    nsid, _, name = ref.partition("#")
    return nsid in _lexicons() and (name or "main") in _lexicons()[nsid]["defs"]


def _kind(value: Any) -> str:
    """The JSON kind of a value, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list):
        return "an array"
    return f"a {type(value).__name__}"


def _is_datetime(text: str) -> bool:
    try:
        return dt.datetime.fromisoformat(text).tzinfo is not None and "T" in text
    except ValueError:
        return False


def _is_at_uri(text: str) -> bool:
    return text.startswith("at://") and len(text) > len("at://")


def _is_uri(text: str) -> bool:
    return bool(_URI.match(text))


def _any(_text: str) -> bool:
    return True


# The string formats the lexicons use; others (did, cid, nsid...) are not checked.
_FORMATS = {"at-uri": _is_at_uri, "datetime": _is_datetime, "uri": _is_uri}
