"""Manifest JSON headers, read fast for the CLI (stdlib only).

``atdata inspect`` must answer in well under a second on hundreds of shards,
so it reads only the small ``<shard>.manifest.json`` files (DESIGN §2,
``format_version`` 1), concurrently from object stores, and never imports numpy or pyarrow (which
``atdata.manifest`` needs for the parquet side, and which alone take longer
than the whole command may). The summaries here are for display; the library's
``Dataset.describe()`` gives the full statistics (histograms included).
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Sequence
from typing import Any

from atdata.errors import ManifestError, UnreadableURLError
from atdata.manifest._header import BUILD_HINT, parse_header
from atdata.storage import is_local, sibling, store_for

__all__ = [
    "BUILD_HINT",
    "dataset_schema",
    "manifest_url",
    "read_headers",
    "shard_sizes",
    "summarize_fields",
]

_TOP = 5  # values shown per categorical or set field


def manifest_url(shard: str) -> str:
    """The manifest JSON beside a shard."""
    return sibling(shard, ".manifest.json")


def read_headers(shards: Sequence[str], *, workers: int = 32) -> list[dict[str, Any] | None]:
    """Each shard's manifest header, or None for a shard without one.

    Headers in object stores are fetched on ``workers`` threads at once (each is
    a round trip); local ones are read one after another, which is faster
    (200 headers: ~15 ms in turn, ~45 ms on 32 threads).

    Raises:
        ManifestError: a manifest is not JSON or has an unknown format version.
        StorageError: a store refused access (credentials, network).
    """
    if not shards:
        return []
    if len(shards) == 1 or workers <= 1 or all(is_local(s) for s in shards):
        return [_read_header(s) for s in shards]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(workers, len(shards))) as pool:
        return list(pool.map(_read_header, shards))


def _read_header(shard: str) -> dict[str, Any] | None:
    url = manifest_url(shard)
    if is_local(url):
        path = url.removeprefix("file://")
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ManifestError(f"Cannot read manifest {url}: {exc}", url=url) from None
    else:
        store, path = store_for(url)
        try:
            data = store.read(path)
        except UnreadableURLError:
            return None
    return parse_header(url, data)


def shard_sizes(shards: Sequence[str]) -> list[int]:
    """Sizes of shards in bytes, for shards without manifests.

    Raises:
        UnreadableURLError: a shard does not exist.
    """
    out = []
    for shard in shards:
        store, path = store_for(shard)
        out.append(store.size(path))
    return out


def dataset_schema(headers: Sequence[dict[str, Any] | None]) -> dict[str, Any] | None:
    """The dataset's schema from its headers; None when none records one.

    Usually every shard records the same schema, returned as recorded. Shards
    written with several versions of a type are merged by the library's rule
    (``atdata.manifest.loader.merge_schemas``: the newest wins, fields missing
    from some shards become optional); only then are numpy and pyarrow loaded.
    """
    schemas = [h["schema"] for h in headers if h is not None and isinstance(h.get("schema"), dict)]
    if not schemas:
        return None
    if all(s == schemas[0] for s in schemas[1:]):
        return schemas[0]  # type: ignore[no-any-return]
    from atdata.manifest.loader import merge_schemas
    from atdata.sample import Schema

    distinct = list({json.dumps(s, sort_keys=True): s for s in schemas}.values())
    return merge_schemas([Schema.from_json(s) for s in distinct]).to_json()


# -- display summaries of the per-shard aggregates --------------------------------


def summarize_fields(headers: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """A dataset-wide summary of each manifest field, from the shards' aggregates.

    Per field: ``kind``, ``type``, ``count``, ``nulls``; categorical and set
    fields add ``distinct`` (or ``distinct_at_least`` when a shard kept only
    its most common values) and ``top`` (value -> samples, the most common
    first); numeric fields add ``min``, ``max`` and ``mean``.
    """
    per_field: dict[str, list[dict[str, Any]]] = {}
    for header in headers:
        for name, agg in (header.get("aggregates") or {}).items():
            if isinstance(agg, dict):
                per_field.setdefault(name, []).append(agg)
    return {name: _summarize(aggs) for name, aggs in per_field.items()}


def _summarize(aggs: list[dict[str, Any]]) -> dict[str, Any]:
    first = aggs[0]
    kind = first.get("kind", "categorical")
    out: dict[str, Any] = {
        "kind": kind,
        "type": first.get("type", "str"),
        "count": sum(int(a.get("count", 0)) for a in aggs),
        "nulls": sum(int(a.get("nulls", 0)) for a in aggs),
    }
    if kind == "numeric":
        out.update(_numeric(aggs, out["type"]))
    else:
        out.update(_counts(aggs))
    return out


def _counts(aggs: list[dict[str, Any]]) -> dict[str, Any]:
    totals: dict[str, int] = {}
    exact = True
    for agg in aggs:
        counts = agg.get("counts")
        if counts is None:
            exact = False
            counts = agg.get("top") or {}
        for value, n in counts.items():
            totals[value] = totals.get(value, 0) + int(n)
    ranked = sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))
    out: dict[str, Any] = {}
    if exact:
        out["distinct"] = len(ranked)
    else:
        out["distinct_at_least"] = max([len(ranked)] + [int(a.get("distinct", 0)) for a in aggs])
    out["top"] = dict(ranked[:_TOP])
    return out


def _numeric(aggs: list[dict[str, Any]], value_type: str) -> dict[str, Any]:
    present = [a for a in aggs if a.get("min") is not None and a.get("max") is not None]
    out: dict[str, Any] = {"nans": sum(int(a.get("nans", 0)) for a in aggs)}
    if not present:
        return {**out, "min": None, "max": None, "mean": None}
    if value_type == "datetime":
        lows = [dt.datetime.fromisoformat(a["min"]) for a in present]
        highs = [dt.datetime.fromisoformat(a["max"]) for a in present]
        return {**out, "min": min(lows).isoformat(), "max": max(highs).isoformat(), "mean": None}
    if value_type == "str":
        return {**out, "min": min(a["min"] for a in present), "max": max(a["max"] for a in present),
                "mean": None}
    lo = min(_number(a["min"]) for a in present)
    hi = max(_number(a["max"]) for a in present)
    weighted = total = 0.0
    for a in present:
        if a.get("mean") is None:
            continue
        weight = int(a.get("count", 0)) - int(a.get("nulls", 0)) - int(a.get("nans", 0))
        weighted += weight * _number(a["mean"])
        total += weight
    mean = weighted / total if total else None
    if value_type in ("int", "bool"):
        return {**out, "min": int(lo), "max": int(hi), "mean": _spelled(mean)}
    return {**out, "min": _spelled(lo), "max": _spelled(hi), "mean": _spelled(mean)}


def _number(value: Any) -> float:
    # The manifest spells NaN and infinities as strings ("nan", "inf", "-inf").
    return float(value)


def _spelled(value: float | None) -> float | str | None:
    """Non-finite numbers as the manifest spells them, so the output stays strict JSON."""
    if value is None or math.isfinite(value):
        return value
    return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
