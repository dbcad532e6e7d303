"""Per-shard aggregates of manifest columns and the bloom filter.

Aggregates are what the query planner reads to skip whole shards, so each one
must be a *sound* summary: a shard may only be skipped when its aggregates
prove no sample can match.

- categorical: value counts (``{"dog": 12, ...}``); beyond
  :data:`CARDINALITY_CAP` distinct values, a bloom filter and the most common
  values instead;
- numeric: ``min``, ``max``, ``mean`` and a histogram (NaNs counted apart);
  datetimes in ISO 8601 (UTC);
- set: distinct ``values`` and per-value sample counts; beyond the cap, a
  bloom filter (base64 in the JSON).

Every aggregate also has ``count`` (samples) and ``nulls``. Merging them into
dataset-wide summaries (for ``describe`` and ``atdata inspect``) is
:func:`atdata.manifest._merge.merge`, re-exported here.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import hashlib
import math
from collections.abc import Iterable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from atdata.manifest._fields import Column
from atdata.manifest._header import BLOOM_HASH, AnyAggregate, NumericAggregate, SetAggregate
from atdata.manifest._merge import (
    HISTOGRAM_BINS,
    TOP_VALUES,
    from_micros,
    key_from_json,
    merge,
    micros,
    num_from_json,
    num_to_json,
    to_utc,
)

__all__ = [
    "CARDINALITY_CAP",
    "HISTOGRAM_BINS",
    "BloomFilter",
    "FieldStats",
    "compute",
    "merge",
]

CARDINALITY_CAP = 1000
"""Most distinct values listed per field and shard before a bloom filter is used."""


# -- values <-> JSON ------------------------------------------------------------------


def key_to_json(value: Any, value_type: str) -> str:
    """A value as a JSON object key (counts are objects keyed by value)."""
    if value_type == "bool":
        return "true" if value else "false"
    if value_type == "datetime":
        return to_utc(value).isoformat()
    if value_type == "float":
        return repr(float(value))
    return str(value)


# -- bloom filter -------------------------------------------------------------------


def _canonical(value: Any) -> bytes:
    """Bytes that identify a value across types (``3`` and ``3.0`` hash alike)."""
    if isinstance(value, bool):
        return b"b1" if value else b"b0"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int):
        return b"i" + str(value).encode()
    if isinstance(value, float):
        return b"f" + repr(value).encode()
    if isinstance(value, dt.datetime):
        return b"t" + str(micros(value)).encode()
    return b"s" + str(value).encode("utf-8")


class BloomFilter:
    """A bloom filter over values: ``value in bloom`` may say yes wrongly, never no wrongly.

    Hashing is BLAKE2b-128 split into two 64-bit halves, combined by double
    hashing (``h1 + i * h2``); the JSON form records this so other readers can
    reproduce it.

    Example:
        >>> bloom = BloomFilter.from_values(["dog", "cat"])
        >>> "dog" in bloom
        True
    """

    HASH = BLOOM_HASH

    def __init__(self, num_bits: int, num_hashes: int, bits: bytearray | None = None) -> None:
        self.num_bits = num_bits
        self.num_hashes = num_hashes
        self.bits = bits if bits is not None else bytearray((num_bits + 7) // 8)

    @classmethod
    def from_values(cls, values: Iterable[Any], fp_rate: float = 0.01) -> BloomFilter:
        """A filter sized for ``values`` at the given false-positive rate."""
        items = list(values)
        n = max(len(items), 1)
        num_bits = max(64, math.ceil(-n * math.log(fp_rate) / math.log(2) ** 2))
        num_hashes = max(1, round(num_bits / n * math.log(2)))
        bloom = cls(num_bits, num_hashes)
        for item in items:
            bloom.add(item)
        return bloom

    def _positions(self, value: Any) -> list[int]:
        digest = hashlib.blake2b(_canonical(value), digest_size=16).digest()
        h1 = int.from_bytes(digest[:8], "little")
        h2 = int.from_bytes(digest[8:], "little") | 1
        return [(h1 + i * h2) % self.num_bits for i in range(self.num_hashes)]

    def add(self, value: Any) -> None:
        """Add one value."""
        for pos in self._positions(value):
            self.bits[pos >> 3] |= 1 << (pos & 7)

    def __contains__(self, value: Any) -> bool:
        return all(self.bits[pos >> 3] & (1 << (pos & 7)) for pos in self._positions(value))

    def to_json(self) -> dict[str, Any]:
        """The filter as JSON: sizes, hash scheme and base64 bits."""
        return {
            "num_bits": self.num_bits,
            "num_hashes": self.num_hashes,
            "hash": self.HASH,
            "bits": base64.b64encode(bytes(self.bits)).decode("ascii"),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BloomFilter:
        """Rebuild a filter from :meth:`to_json` output."""
        bits = bytearray(base64.b64decode(data["bits"]))
        return cls(int(data["num_bits"]), int(data["num_hashes"]), bits)


# -- computing ------------------------------------------------------------------------


def compute(column: Column, array: pa.Array, *, naive_times: bool = False) -> dict[str, Any]:
    """The JSON-able aggregate of one manifest column of one shard.

    Args:
        column: the column's description.
        array: its values, one per sample.
        naive_times: the datetimes written were naive (recorded, so readers can
            hand the same kind back).
    """
    out: dict[str, Any] = {
        "kind": column.kind,
        "type": column.value_type,
        "count": len(array),
        "nulls": array.null_count,
    }
    if column.kind == "numeric":
        out.update(_numeric(array, column.value_type))
        if column.value_type == "datetime":
            out["timezone"] = None if naive_times else "UTC"
    elif column.kind == "set":
        out.update(_set(array, column.value_type))
    else:
        out.update(_counts(array, column.value_type))
    return out


def _numeric(array: pa.Array, value_type: str) -> dict[str, Any]:
    valid = pc.drop_null(array)
    if value_type == "datetime":
        values = np.asarray(valid.cast(pa.int64()).to_numpy(zero_copy_only=False), dtype=np.int64)
    elif value_type == "str":  # a text field declared numeric: order only
        bounds = pc.min_max(valid)
        return {"min": bounds["min"].as_py(), "max": bounds["max"].as_py()}
    else:
        values = np.asarray(valid.to_numpy(zero_copy_only=False))
    if value_type == "bool":
        values = values.astype(np.int64)
    out: dict[str, Any] = {}
    nans = 0
    if values.dtype.kind == "f":
        is_nan = np.isnan(values)
        nans = int(is_nan.sum())
        values = values[~is_nan]
        out["nans"] = nans
    if len(values) == 0:
        out.update(min=None, max=None, mean=None, histogram=None)
        return out
    lo, hi = values.min(), values.max()
    finite = values[np.isfinite(values)] if values.dtype.kind == "f" else values
    mean = float(np.mean(values.astype(np.float64))) if len(values) else None
    histogram: dict[str, list[Any]] | None = None
    if len(finite):
        f_lo, f_hi = float(finite.min()), float(finite.max())
        if f_lo == f_hi:  # one value: one zero-width bin (numpy would widen it by 0.5)
            histogram = {"edges": [f_lo, f_hi], "counts": [len(finite)]}
        else:
            counts, edges = np.histogram(
                finite.astype(np.float64), bins=HISTOGRAM_BINS, range=(f_lo, f_hi)
            )
            histogram = {"edges": edges.tolist(), "counts": counts.tolist()}
    if value_type == "datetime":
        out.update(
            min=from_micros(int(lo)).isoformat(),
            max=from_micros(int(hi)).isoformat(),
            mean=from_micros(mean).isoformat() if mean is not None else None,
        )
        if histogram is not None:
            histogram["edges"] = [from_micros(e).isoformat() for e in histogram["edges"]]
        out["histogram"] = histogram
        return out
    if value_type in ("int", "bool"):
        out.update(min=int(lo), max=int(hi))
    else:
        out.update(min=num_to_json(float(lo)), max=num_to_json(float(hi)))
    out.update(mean=num_to_json(mean), histogram=histogram)
    return out


def _value_counts(array: pa.Array) -> list[tuple[Any, int]]:
    counted = pc.value_counts(array)
    values = counted.field("values").to_pylist()
    counts = counted.field("counts").to_pylist()
    pairs = [(v, c) for v, c in zip(values, counts, strict=True) if v is not None]
    pairs.sort(key=lambda p: (-p[1], str(p[0])))
    return pairs


def _summary(pairs: list[tuple[Any, int]], value_type: str) -> dict[str, Any]:
    out: dict[str, Any] = {"distinct": len(pairs)}
    if len(pairs) <= CARDINALITY_CAP:
        out["counts"] = {key_to_json(v, value_type): c for v, c in pairs}
    else:
        out["top"] = {key_to_json(v, value_type): c for v, c in pairs[:TOP_VALUES]}
        out["bloom"] = BloomFilter.from_values(v for v, _ in pairs).to_json()
    return out


def _counts(array: pa.Array, value_type: str) -> dict[str, Any]:
    return _summary(_value_counts(array), value_type)


def _set(array: pa.Array, value_type: str) -> dict[str, Any]:
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    flat = pc.list_flatten(array)
    parents = pc.list_parent_indices(array)
    # one count per sample that holds a value, however often it repeats there
    pairs = pa.table({"p": parents, "v": flat}).group_by(["p", "v"]).aggregate([])
    out = _summary(_value_counts(pairs.column("v")), value_type)
    lengths = pc.list_value_length(array)
    out["empty"] = int(pc.sum(pc.equal(lengths, 0)).as_py() or 0)
    if "counts" in out:
        out["values"] = sorted(out["counts"])
    return out


# -- reading back, for pruning ------------------------------------------------------------


def _instant(value: Any) -> dt.datetime | None:
    """A datetime bound of a validated aggregate (ISO 8601), as aware UTC; or None."""
    return None if value is None else to_utc(dt.datetime.fromisoformat(value))


@dataclasses.dataclass
class FieldStats:
    """A shard's aggregate of one field, parsed for the query planner.

    ``values`` maps each distinct value to its count when the shard listed them
    (categorical and set fields under the cap), else ``bloom`` holds them.
    ``min``/``max`` are numbers, or aware UTC datetimes.
    """

    kind: str
    value_type: str
    count: int
    nulls: int
    nans: int = 0
    empty: int = 0
    values: dict[Any, int] | None = None
    bloom: BloomFilter | None = None
    min: Any = None
    max: Any = None

    @property
    def non_null(self) -> int:
        """Samples with a value."""
        return self.count - self.nulls

    @classmethod
    def from_aggregate(cls, agg: AnyAggregate) -> FieldStats:
        """One field's aggregate from a validated manifest header, for the planner."""
        vt = agg.type
        stats = cls(kind=agg.kind, value_type=vt, count=agg.count, nulls=agg.nulls)
        if isinstance(agg, NumericAggregate):
            stats.nans = agg.nans
            if vt == "datetime":
                stats.min, stats.max = _instant(agg.min), _instant(agg.max)
            else:
                stats.min, stats.max = num_from_json(agg.min), num_from_json(agg.max)
            return stats
        if isinstance(agg, SetAggregate):
            stats.empty = agg.empty
        if agg.counts is not None:
            stats.values = (
                dict(agg.counts)
                if vt == "str"
                else {key_from_json(k, vt): c for k, c in agg.counts.items()}
            )
        if agg.bloom is not None:
            bloom = agg.bloom
            stats.bloom = BloomFilter(bloom.num_bits, bloom.num_hashes, bytearray(bloom.bits))
        return stats

    def may_hold(self, value: Any) -> bool:
        """False only when no sample of the shard has ``value``."""
        if self.values is not None:
            return value in self.values
        if self.bloom is not None:
            return value in self.bloom
        return True
