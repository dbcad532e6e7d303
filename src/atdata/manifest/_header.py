"""The manifest JSON header: its version rules, its typed form, and a validating parser.

A ``.manifest.json`` is decoded once and checked into a :class:`Header`, whose
per-field aggregates are typed by kind (:class:`CategoricalAggregate`,
:class:`SetAggregate`, :class:`NumericAggregate`). Beyond the types, the checks
cover what types alone cannot say: values spelled as their field's type, counts
that add up to the samples, bounds in order, histograms whose edges fit their
counts, bloom filters of the size they claim. Anything wrong is a
:class:`~atdata.errors.ManifestError` naming the file, the field
(``aggregates.label.counts['dog']``) and the problem, with the command that
rebuilds the manifest; no reader further on meets a malformed header.

Standard library only (no numpy, pyarrow or msgspec), so the fast paths
(``atdata inspect``) read headers without loading the rest of the manifest layer.

Example:
    >>> doc = load_json("s.manifest.json", b'{"format_version": 1, "num_samples": 2,'
    ...     b' "schema": {"name": "S", "version": "1.0.0", "fields": []}}')
    >>> header = validate_header("s.manifest.json", doc)
    >>> header.num_samples, header.aggregates
    (2, {})
    >>> try:  # doctest: +NORMALIZE_WHITESPACE
    ...     validate_header("s.manifest.json", {**doc, "num_samples": -5})
    ... except ManifestError as exc:
    ...     print(exc)
    Manifest s.manifest.json is invalid: num_samples: expected an integer >= 0, got -5.
    Rebuild it with `atdata manifest build --force s.tar`.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime as dt
import itertools
import json
import math
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

from atdata.errors import ManifestError
from atdata.manifest._merge import key_from_json, to_utc

__all__ = [
    "BLOOM_HASH",
    "BUILD_HINT",
    "FORMAT_VERSION",
    "REBUILD_HINT",
    "SUPPORTED_VERSIONS",
    "Aggregate",
    "AnyAggregate",
    "Bloom",
    "CategoricalAggregate",
    "FieldHeader",
    "Header",
    "Histogram",
    "NumericAggregate",
    "SchemaHeader",
    "SetAggregate",
    "invalid",
    "load_json",
    "parse_header",
    "validate_header",
]

FORMAT_VERSION = 1
SUPPORTED_VERSIONS = frozenset({1})
BUILD_HINT = "atdata manifest build URL"
REBUILD_HINT = "atdata manifest build --force URL"
"""The command that replaces a broken manifest (``URL``: the shard)."""
BLOOM_HASH = "blake2b-128-double"
"""The only bloom filter hash scheme atdata writes and reads."""
MAX_BLOOM_HASHES = 1024
"""Most hash functions a bloom filter may claim (each lookup computes them all)."""
VALUE_TYPES = frozenset({"str", "int", "float", "bool", "datetime"})
MANIFEST_KINDS = frozenset({"categorical", "numeric", "set"})

Scalar = int | float | str | None
"""A bound or mean as the JSON spells it (strings: datetimes, text, NaN and infinities)."""


# -- the typed header ------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Bloom:
    """A bloom filter of a field's values (see ``atdata.manifest.BloomFilter``)."""

    num_bits: int
    num_hashes: int
    bits: bytes


@dataclasses.dataclass(frozen=True)
class Histogram:
    """Bin edges (one more than bins; ISO 8601 for datetimes) and samples per bin."""

    edges: tuple[int | float | str, ...]
    counts: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class Aggregate:
    """What every field aggregate carries: value type, samples, and how many are null."""

    kind: ClassVar[str]
    type: str
    count: int
    nulls: int


@dataclasses.dataclass(frozen=True)
class CategoricalAggregate(Aggregate):
    """Value counts of a categorical field, or its most common values and a bloom filter."""

    kind: ClassVar[str] = "categorical"
    distinct: int | None = None
    counts: dict[str, int] | None = None
    top: dict[str, int] | None = None
    bloom: Bloom | None = None


@dataclasses.dataclass(frozen=True)
class SetAggregate(CategoricalAggregate):
    """A set field: per value, the samples holding it; ``empty``: samples with no value."""

    kind: ClassVar[str] = "set"
    empty: int = 0
    values: tuple[str, ...] | None = None


@dataclasses.dataclass(frozen=True)
class NumericAggregate(Aggregate):
    """Bounds, mean and histogram of a numeric field (NaNs counted apart)."""

    kind: ClassVar[str] = "numeric"
    nans: int = 0
    min: Scalar = None
    max: Scalar = None
    mean: Scalar = None
    histogram: Histogram | None = None
    timezone: str | None = "UTC"


AnyAggregate = CategoricalAggregate | SetAggregate | NumericAggregate


@dataclasses.dataclass(frozen=True)
class FieldHeader:
    """One field of the recorded schema (``atdata.sample.FieldSpec`` in JSON)."""

    name: str
    type: str
    manifest: str | None = None


@dataclasses.dataclass(frozen=True)
class SchemaHeader:
    """The recorded sample schema (``atdata.sample.Schema`` in JSON)."""

    name: str
    version: str
    fields: tuple[FieldHeader, ...]


@dataclasses.dataclass(frozen=True)
class Header:
    """A validated manifest JSON header (see :mod:`atdata.manifest._format` for the layout).

    ``keys`` is the smallest and largest key, or None for an empty shard.
    """

    format_version: int
    num_samples: int
    schema: SchemaHeader
    shard_id: str = ""
    size_bytes: int = 0
    keys: tuple[str, str] | None = None
    aggregates: dict[str, AnyAggregate] = dataclasses.field(default_factory=dict)


# -- decoding ------------------------------------------------------------------------


class _FieldError(ValueError):
    """One problem found in a header: where (a dotted path) and what."""

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"{path or 'the header'}: {problem}")


def shard_of(url: str) -> str:
    """The shard a manifest JSON belongs to (``s-0.manifest.json`` -> ``s-0.tar``)."""
    return url.removesuffix(".manifest.json") + ".tar"


def invalid(url: str, problem: str, *, shard: str | None = None) -> ManifestError:
    """The error for a broken manifest: the file, what is wrong, and how to rebuild it."""
    command = REBUILD_HINT.replace("URL", shard or shard_of(url))
    return ManifestError(
        f"Manifest {url} is invalid: {problem}. Rebuild it with `{command}`.", url=url
    )


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def load_json(url: str, data: bytes, *, shard: str | None = None) -> Any:
    """Decode a ``.manifest.json`` file's bytes into plain JSON values (strict JSON).

    Raises:
        ManifestError: the bytes are not UTF-8 JSON (``NaN`` included), or nest
            too deeply to decode.
    """
    try:
        return json.loads(data, parse_constant=_no_constant)
    except RecursionError:
        raise invalid(url, "not valid JSON (it nests too deeply)", shard=shard) from None
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError among them
        raise invalid(url, f"not valid JSON ({exc})", shard=shard) from None


def validate_header(url: str, doc: Any, *, shard: str | None = None) -> Header:
    """Check a decoded manifest JSON and return its typed form.

    Fields atdata does not read are left unchecked (newer writers may add some).

    Args:
        url: the manifest JSON's URL (named in errors).
        doc: the decoded JSON (see :func:`load_json`).
        shard: the shard's URL, for the rebuild command in errors (default:
            derived from ``url``).

    Raises:
        ManifestError: a format version this atdata cannot read, or a field that
            is missing, of the wrong type, or inconsistent with the rest.
    """
    if not isinstance(doc, dict):
        raise invalid(url, f"the header is {_show_kind(doc)}, not an object", shard=shard)
    version = doc.get("format_version")
    if type(version) is not int or version not in SUPPORTED_VERSIONS:
        raise ManifestError(
            f"Manifest {url} has format_version {version!r}; this atdata reads "
            f"{sorted(SUPPORTED_VERSIONS)}. Upgrade atdata (pip install -U atdata).",
            url=url,
        )
    try:
        return _header(doc)
    except _FieldError as exc:
        raise invalid(url, str(exc), shard=shard) from None


def parse_header(url: str, data: bytes) -> dict[str, Any]:
    """Decode a ``.manifest.json``, validate it, and return it as plain JSON values.

    Raises:
        ManifestError: unreadable JSON, an unknown format version, or a broken field.
    """
    doc = load_json(url, data)
    validate_header(url, doc)
    return doc  # type: ignore[no-any-return]


# -- reading typed fields ------------------------------------------------------------

T = TypeVar("T")
D = TypeVar("D")
_Check = Callable[[Any, str], T]


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _required(obj: dict[str, Any], path: str, key: str, check: _Check[T]) -> T:
    """``obj[key]`` checked by ``check``; missing or null is an error."""
    where = _join(path, key)
    if key not in obj:
        raise _FieldError(where, "missing")
    return check(obj[key], where)


def _optional(obj: dict[str, Any], path: str, key: str, check: _Check[T], default: D) -> T | D:
    """``obj[key]`` checked by ``check``, or ``default`` when absent (or null, if that is)."""
    value = obj.get(key)
    if key not in obj or (value is None and default is None):
        return default
    return check(value, _join(path, key))


def _object(value: Any, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _FieldError(path, f"expected an object, got {_show_kind(value)}")
    return value


def _string(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise _FieldError(path, f"expected a string, got {_show(value)}")
    return value


def _count(value: Any, path: str) -> int:
    if type(value) is not int or value < 0:
        raise _FieldError(path, f"expected an integer >= 0, got {_show(value)}")
    return value


def _scalar(value: Any, path: str) -> int | float | str:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise _FieldError(path, f"expected a number or a string, got {_show(value)}")
    return value


def _one_of(choices: frozenset[str]) -> _Check[str]:
    def check(value: Any, path: str) -> str:
        if not isinstance(value, str) or value not in choices:
            raise _FieldError(path, f"expected one of {sorted(choices)}, got {_show(value)}")
        return str(value)

    return check


def _list(value: Any, path: str) -> list[Any]:
    if not isinstance(value, list):
        raise _FieldError(path, f"expected an array, got {_show_kind(value)}")
    return value


def _counts(value: Any, path: str) -> dict[str, int]:
    """An object of value -> samples."""
    for key, n in _object(value, path).items():
        _count(n, f"{path}[{key!r}]")
    return value  # type: ignore[no-any-return]


def _show(value: Any, width: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def _show_kind(value: Any) -> str:
    if isinstance(value, list):
        return "a JSON array"
    if isinstance(value, dict):
        return "a JSON object"
    return _show(value)


# -- the header, field by field --------------------------------------------------------


def _header(doc: dict[str, Any]) -> Header:
    num_samples = _required(doc, "", "num_samples", _count)
    keys = _optional(doc, "", "keys", _key_range, None)
    raw = _optional(doc, "", "aggregates", _object, {})
    aggregates = {
        name: _aggregate(agg, f"aggregates.{name}", num_samples) for name, agg in raw.items()
    }
    return Header(
        format_version=doc["format_version"],
        num_samples=num_samples,
        schema=_required(doc, "", "schema", _schema),
        shard_id=_optional(doc, "", "shard_id", _string, ""),
        size_bytes=_optional(doc, "", "size_bytes", _count, 0),
        keys=keys,
        aggregates=aggregates,
    )


def _key_range(value: Any, path: str) -> tuple[str, str] | None:
    obj = _object(value, path)
    lo = _optional(obj, path, "min", _string, None)
    hi = _optional(obj, path, "max", _string, None)
    _check_bounds(path, lo, hi, str)
    return None if lo is None or hi is None else (lo, hi)


def _schema(value: Any, path: str) -> SchemaHeader:
    obj = _object(value, path)
    fields = _required(obj, path, "fields", _list)
    _optional(obj, path, "module", _string, "")
    return SchemaHeader(
        name=_required(obj, path, "name", _string),
        version=_optional(obj, path, "version", _string, "1.0.0"),
        fields=tuple(_field_spec(f, f"{path}.fields[{i}]") for i, f in enumerate(fields)),
    )


def _field_spec(value: Any, path: str) -> FieldHeader:
    obj = _object(value, path)
    return FieldHeader(
        name=_required(obj, path, "name", _string),
        type=_required(obj, path, "type", _string),
        manifest=_optional(obj, path, "manifest", _one_of(MANIFEST_KINDS), None),
    )


def _aggregate(value: Any, path: str, num_samples: int) -> AnyAggregate:
    obj = _object(value, path)
    kind = _required(obj, path, "kind", _one_of(MANIFEST_KINDS))
    value_type = _required(obj, path, "type", _one_of(VALUE_TYPES))
    count = _required(obj, path, "count", _count)
    nulls = _required(obj, path, "nulls", _count)
    if count != num_samples:
        raise _FieldError(
            f"{path}.count", f"{count} samples, but the shard has num_samples {num_samples}"
        )
    if nulls > count:
        raise _FieldError(f"{path}.nulls", f"{nulls} nulls among {count} samples")
    if kind == "numeric":
        return _numeric(obj, path, value_type, count, nulls)
    return _values(obj, path, kind, value_type, count, nulls)


def _values(
    obj: dict[str, Any], path: str, kind: str, value_type: str, count: int, nulls: int
) -> CategoricalAggregate:
    """Categorical and set aggregates: keys of the field's type, counts that fit."""
    with_value = count - nulls
    empty = 0
    values: tuple[str, ...] | None = None
    if kind == "set":
        empty = _optional(obj, path, "empty", _count, 0)
        if empty > with_value:
            raise _FieldError(f"{path}.empty", f"{empty} empty sets among {with_value} samples")
        with_value -= empty
        listed = _optional(obj, path, "values", _list, None)
        if listed is not None:
            for i, item in enumerate(listed):
                _check_key(f"{path}.values[{i}]", _string(item, f"{path}.values[{i}]"), value_type)
            values = tuple(listed)
    distinct = _optional(obj, path, "distinct", _count, None)
    found: dict[str, dict[str, int] | None] = {}
    for part in ("counts", "top"):
        counts = found[part] = _optional(obj, path, part, _counts, None)
        if counts is None:
            continue
        where = f"{path}.{part}"
        for key, n in counts.items():
            _check_key(f"{where}[{key!r}]", key, value_type)
            if n > with_value:
                raise _FieldError(f"{where}[{key!r}]", f"{n} samples of {with_value}")
        # a categorical sample has one value: counts list each such sample once, top at most once
        total = sum(counts.values())
        if kind == "categorical" and (
            total != with_value if part == "counts" else total > with_value
        ):
            raise _FieldError(where, f"adds up to {total}, but {with_value} samples have a value")
        if distinct is not None and distinct < len(counts):
            raise _FieldError(f"{path}.distinct", f"{distinct}, but {len(counts)} values listed")
    bloom = _optional(obj, path, "bloom", _bloom, None)
    cls = SetAggregate if kind == "set" else CategoricalAggregate
    aggregate = cls(
        type=value_type,
        count=count,
        nulls=nulls,
        distinct=distinct,
        counts=found["counts"],
        top=found["top"],
        bloom=bloom,
    )
    if isinstance(aggregate, SetAggregate):
        return dataclasses.replace(aggregate, empty=empty, values=values)
    return aggregate


def _check_key(path: str, key: str, value_type: str) -> None:
    if value_type == "str":
        return
    if value_type == "bool":
        if key not in ("true", "false"):
            raise _FieldError(path, f"{_show(key)} is not a bool value (true or false)")
        return
    try:
        key_from_json(key, value_type)
    except (ValueError, OverflowError):  # OverflowError: a datetime beyond year 9999 in UTC
        raise _FieldError(path, f"{_show(key)} is not a {value_type} value") from None


def _bloom(value: Any, path: str) -> Bloom:
    obj = _object(value, path)
    num_bits = _required(obj, path, "num_bits", _count)
    num_hashes = _required(obj, path, "num_hashes", _count)
    scheme = _optional(obj, path, "hash", _string, BLOOM_HASH)
    text = _required(obj, path, "bits", _string)
    if num_bits < 1:
        raise _FieldError(f"{path}.num_bits", "a filter needs a bit at least")
    if not 1 <= num_hashes <= MAX_BLOOM_HASHES:
        raise _FieldError(f"{path}.num_hashes", f"{num_hashes} is not in 1..{MAX_BLOOM_HASHES}")
    if scheme != BLOOM_HASH:
        raise _FieldError(f"{path}.hash", f"unknown hash scheme {_show(scheme)}")
    try:
        bits = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise _FieldError(f"{path}.bits", "not base64") from None
    if len(bits) != (num_bits + 7) // 8:
        raise _FieldError(f"{path}.bits", f"{len(bits)} bytes for {num_bits} bits")
    return Bloom(num_bits, num_hashes, bits)


def _numeric(
    obj: dict[str, Any], path: str, value_type: str, count: int, nulls: int
) -> NumericAggregate:
    """Bounds, mean and histogram of the field's type, in order, with counts that fit."""
    nans = _optional(obj, path, "nans", _count, 0)
    if nans + nulls > count:
        raise _FieldError(f"{path}.nans", f"{nans} NaNs and {nulls} nulls among {count} samples")
    lo = _optional(obj, path, "min", _scalar, None)
    hi = _optional(obj, path, "max", _scalar, None)
    mean = _optional(obj, path, "mean", _scalar, None)
    timezone = _optional(obj, path, "timezone", _one_of(frozenset({"UTC"})), None)
    histogram = None
    if value_type == "str":  # a text field declared numeric: only its bounds count
        _check_bounds(path, lo, hi, str)
    else:
        parse = _BOUND_PARSERS[value_type]
        _check_bounds(path, lo, hi, parse)
        if mean is not None:
            _parse_at(f"{path}.mean", mean, _MEAN_PARSERS[value_type])
        histogram = _optional(obj, path, "histogram", _histogram_of(value_type), None)
        if histogram is not None and sum(histogram.counts) > count - nulls - nans:
            raise _FieldError(
                f"{path}.histogram.counts",
                f"{sum(histogram.counts)} samples binned, but {count - nulls - nans} have a number",
            )
    return NumericAggregate(
        type=value_type,
        count=count,
        nulls=nulls,
        nans=nans,
        min=lo,
        max=hi,
        mean=mean,
        histogram=histogram,
        timezone=timezone if "timezone" in obj else "UTC",
    )


def _histogram_of(value_type: str) -> _Check[Histogram]:
    parse = _time if value_type == "datetime" else _finite

    def check(value: Any, path: str) -> Histogram:
        obj = _object(value, path)
        edges = _required(obj, path, "edges", _list)
        counts = _required(obj, path, "counts", _list)
        for i, n in enumerate(counts):
            _count(n, f"{path}.counts[{i}]")
        if not counts or len(edges) != len(counts) + 1:
            raise _FieldError(
                path,
                f"{len(edges)} edges for {len(counts)} bins "
                "(want one edge more than bins, and a bin at least)",
            )
        points = [_parse_at(f"{path}.edges[{i}]", e, parse) for i, e in enumerate(edges)]
        if any(b < a for a, b in itertools.pairwise(points)):
            raise _FieldError(f"{path}.edges", "not in increasing order")
        return Histogram(tuple(edges), tuple(counts))

    return check


def _int(value: Any) -> int:
    if type(value) is not int:
        raise ValueError(value)
    return value


def _number(value: Any, *, allow_nan: bool = False) -> float:
    """A float bound: a number, or ``"inf"``/``"-inf"`` (``"nan"`` too, for means)."""
    if isinstance(value, str):
        if value not in ("inf", "-inf") and not (allow_nan and value == "nan"):
            raise ValueError(value)
        return float(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(value)
    return float(value)


def _finite(value: Any) -> float:
    number = _number(value)
    if not math.isfinite(number):
        raise ValueError(value)
    return number


def _time(value: Any) -> dt.datetime:
    if not isinstance(value, str):
        raise ValueError(value)
    return to_utc(dt.datetime.fromisoformat(value))


_BOUND_PARSERS: dict[str, Callable[[Any], Any]] = {
    "int": _int,
    "bool": _int,
    "float": _number,
    "datetime": _time,
}
_MEAN_PARSERS: dict[str, Callable[[Any], Any]] = {
    "int": _finite,
    "bool": _finite,
    "float": lambda value: _number(value, allow_nan=True),
    "datetime": _time,
}
_WANTS: dict[Callable[[Any], Any], str] = {
    _int: "an integer",
    _time: "an ISO 8601 datetime",
    _finite: "a finite number",
}


def _parse_at(path: str, value: Any, parse: Callable[[Any], Any]) -> Any:
    try:
        return parse(value)
    except (ValueError, OverflowError, TypeError):
        want = _WANTS.get(parse, "a number")
        raise _FieldError(path, f"expected {want}, got {_show(value)}") from None


def _check_bounds(path: str, lo: Any, hi: Any, parse: Callable[[Any], Any] | type[str]) -> None:
    """``min`` and ``max``: both or neither, each of the field's type, ``min <= max``."""
    if (lo is None) != (hi is None):
        missing = "min" if lo is None else "max"
        raise _FieldError(f"{path}.{missing}", "missing while the other bound is given")
    if lo is None:
        return
    if parse is str:
        a, b = _string(lo, f"{path}.min"), _string(hi, f"{path}.max")
    else:
        a, b = _parse_at(f"{path}.min", lo, parse), _parse_at(f"{path}.max", hi, parse)
    if b < a:
        raise _FieldError(f"{path}.min", f"{_show(lo)} is above max {_show(hi)}")
