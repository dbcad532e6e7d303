"""Dataset-wide summaries merged from per-shard aggregates, on the standard library alone.

Kept free of numpy and pyarrow, like :mod:`atdata.manifest._header`, so that
``atdata inspect`` summarises fields with the same rules as
``Dataset.describe()`` without loading the rest of the manifest layer. Also
here: how aggregate values are spelled in the manifest JSON.

Example:
    >>> from atdata.manifest._merge import merge
    >>> merge([
    ...     {"kind": "categorical", "type": "str", "count": 3, "nulls": 0,
    ...      "distinct": 2, "counts": {"dog": 2, "cat": 1}},
    ...     {"kind": "categorical", "type": "str", "count": 2, "nulls": 1,
    ...      "distinct": 1, "counts": {"cat": 1}},
    ... ])["counts"]
    {'cat': 2, 'dog': 2}
"""

from __future__ import annotations

import bisect
import datetime as dt
import math
from collections.abc import Callable, Sequence
from typing import Any

__all__ = [
    "HISTOGRAM_BINS",
    "TOP_VALUES",
    "from_micros",
    "key_from_json",
    "merge",
    "micros",
    "num_from_json",
    "num_to_json",
    "to_utc",
]

HISTOGRAM_BINS = 16
"""Bins of every numeric field's histogram, per shard and merged."""
TOP_VALUES = 20
"""Most common values kept when a field has too many to list."""
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


# -- values <-> JSON ------------------------------------------------------------------


def to_utc(value: dt.datetime) -> dt.datetime:
    """An aware UTC datetime (naive ones are taken to be UTC).

    Example:
        >>> to_utc(dt.datetime(2025, 1, 1)).isoformat()
        '2025-01-01T00:00:00+00:00'
    """
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


def micros(value: dt.datetime) -> int:
    """Microseconds since the Unix epoch (naive datetimes are taken to be UTC)."""
    delta = to_utc(value) - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(us: float) -> dt.datetime:
    """The aware UTC datetime ``us`` microseconds after the Unix epoch."""
    return _EPOCH + dt.timedelta(microseconds=round(us))


def num_to_json(value: float | int | None) -> float | int | str | None:
    """A number as the manifest spells it: NaN and infinities as strings."""
    # JSON has no NaN or infinity; spell them as strings so any JSON reader copes.
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


def num_from_json(value: Any) -> Any:
    """Inverse of :func:`num_to_json`."""
    if isinstance(value, str):
        return float(value)
    return value


def key_from_json(text: str, value_type: str) -> Any:
    """A value from its spelling as a JSON object key (value counts are keyed by value).

    Inverse of ``atdata.manifest._aggregates.key_to_json``.

    Raises:
        ValueError: ``text`` does not spell a value of ``value_type``.

    Example:
        >>> key_from_json("2025-01-01T00:00:00", "datetime").isoformat()
        '2025-01-01T00:00:00+00:00'
    """
    if value_type == "bool":
        return text == "true"
    if value_type == "int":
        return int(text)
    if value_type == "float":
        return float(text)
    if value_type == "datetime":
        return to_utc(dt.datetime.fromisoformat(text))
    return text


# -- merging ----------------------------------------------------------------------------


def merge(aggregates: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One dataset-wide summary from the aggregates of one field in many shards.

    Returns ``kind``, ``type`` (``"float"`` when shards mix ints and floats,
    ``"mixed"`` for other disagreements), ``count``, ``nulls`` and ``shards``,
    then per kind: categorical and set fields ``distinct`` and ``counts`` (the
    most common first; set fields also ``values``), or, when a shard kept only
    its most common values, ``distinct_at_least`` and the :data:`TOP_VALUES`
    most common as ``top``; set fields ``empty``; numeric fields ``nans``,
    ``min``, ``max``, ``mean`` and a ``histogram`` re-binned onto common edges.

    Example:
        >>> merged = merge([
        ...     {"kind": "numeric", "type": "int", "count": 2, "nulls": 0,
        ...      "min": 1, "max": 3, "mean": 2.0, "histogram": None},
        ...     {"kind": "numeric", "type": "int", "count": 2, "nulls": 0,
        ...      "min": 5, "max": 7, "mean": 6.0, "histogram": None},
        ... ])
        >>> merged["min"], merged["max"], merged["mean"]
        (1, 7, 4.0)
    """
    first = aggregates[0]
    kind = first.get("kind", "categorical")
    types = {a.get("type") for a in aggregates}
    if len(types) == 1:
        vt = first.get("type", "str")
    else:
        vt = "float" if types <= {"int", "float"} else "mixed"
    out: dict[str, Any] = {
        "kind": kind,
        "type": vt,
        "count": sum(int(a.get("count", 0)) for a in aggregates),
        "nulls": sum(int(a.get("nulls", 0)) for a in aggregates),
        "shards": len(aggregates),
    }
    if kind == "numeric":
        out.update(_merge_numeric(aggregates, vt))
    else:
        out.update(_merge_counts(aggregates, kind))
    return out


def _merge_counts(aggregates: Sequence[dict[str, Any]], kind: str) -> dict[str, Any]:
    totals: dict[str, int] = {}
    exact = True
    for agg in aggregates:
        counts = agg.get("counts")
        if counts is None:
            exact = False
            counts = agg.get("top") or {}
        for key, n in counts.items():
            totals[key] = totals.get(key, 0) + int(n)
    ranked = dict(sorted(totals.items(), key=lambda kv: (-kv[1], kv[0])))
    out: dict[str, Any] = {}
    if exact:
        out["distinct"] = len(ranked)
        out["counts"] = ranked
        if kind == "set":
            out["values"] = sorted(ranked)
    else:
        # every value seen is distinct, and so is every value a shard counted
        out["distinct_at_least"] = max(
            [len(ranked)] + [int(a.get("distinct", 0)) for a in aggregates]
        )
        out["top"] = dict(list(ranked.items())[:TOP_VALUES])
    if kind == "set":
        out["empty"] = sum(int(a.get("empty", 0)) for a in aggregates)
    return out


def _merge_numeric(aggregates: Sequence[dict[str, Any]], vt: str) -> dict[str, Any]:
    is_time = vt == "datetime"

    def num(value: Any) -> float:
        if is_time:
            return float(micros(dt.datetime.fromisoformat(value)))
        return float(num_from_json(value))

    present = [a for a in aggregates if a.get("min") is not None and a.get("max") is not None]
    out: dict[str, Any] = {"nans": sum(int(a.get("nans", 0)) for a in aggregates)}
    if vt == "mixed" and not {a.get("type") for a in present} <= {"int", "float", "bool"}:
        present = []  # numbers, text and datetimes have no common order: no bounds
    if not present:
        out.update(min=None, max=None, mean=None, histogram=None)
        return out
    if vt == "str":
        out.update(min=min(a["min"] for a in present), max=max(a["max"] for a in present))
        return out
    lo = min(num(a["min"]) for a in present)
    hi = max(num(a["max"]) for a in present)
    # a shard's mean weighs as many samples as have a number
    weighted = [
        (int(a.get("count", 0)) - int(a.get("nulls", 0)) - int(a.get("nans", 0)), num(a["mean"]))
        for a in present
        if a.get("mean") is not None
    ]
    total = sum(w for w, _ in weighted)
    mean = sum(w * m for w, m in weighted) / total if total else None
    histogram = _merge_histograms([a.get("histogram") for a in present], num)
    if is_time:
        out.update(
            min=from_micros(lo).isoformat(),
            max=from_micros(hi).isoformat(),
            mean=from_micros(mean).isoformat() if mean is not None else None,
        )
        if histogram is not None:
            histogram["edges"] = [from_micros(e).isoformat() for e in histogram["edges"]]
    else:
        as_int = vt in ("int", "bool")
        out.update(
            min=int(lo) if as_int else num_to_json(lo),
            max=int(hi) if as_int else num_to_json(hi),
            mean=num_to_json(mean),
        )
    out["histogram"] = histogram
    return out


def _merge_histograms(
    histograms: Sequence[Any], num: Callable[[Any], float]
) -> dict[str, Any] | None:
    """Re-bin shard histograms onto common edges (a bin's count is spread evenly over it)."""
    parts = [
        ([num(e) for e in h["edges"]], h["counts"]) for h in histograms if h and h.get("counts")
    ]
    if not parts:
        return None
    lo = min(edges[0] for edges, _ in parts)
    hi = max(edges[-1] for edges, _ in parts)
    if lo == hi:
        return {"edges": [lo, hi], "counts": [sum(sum(c) for _, c in parts)]}
    step = (hi - lo) / HISTOGRAM_BINS
    edges = [lo + i * step for i in range(HISTOGRAM_BINS)] + [hi]
    merged = [0.0] * HISTOGRAM_BINS
    for shard_edges, counts in parts:
        for i, count in enumerate(counts):
            a, b = shard_edges[i], shard_edges[i + 1]
            if not count:
                continue
            if a == b:
                j = min(bisect.bisect_right(edges, a) - 1, HISTOGRAM_BINS - 1)
                merged[max(j, 0)] += count
                continue
            for k in range(HISTOGRAM_BINS):
                overlap = min(edges[k + 1], b) - max(edges[k], a)
                if overlap > 0:
                    merged[k] += count * overlap / (b - a)
    # round to whole samples without losing any: largest remainders get the spare ones
    rounded = [math.floor(m) for m in merged]
    spare = round(math.fsum(merged)) - sum(rounded)
    by_remainder = sorted(range(HISTOGRAM_BINS), key=lambda k: rounded[k] - merged[k])
    for k in by_remainder[:spare]:
        rounded[k] += 1
    return {"edges": edges, "counts": rounded}
