"""Per-shard manifests: generation, loading, queries and statistics.

Beside every ``shard-NNNNNN.tar`` written with ``ShardWriter(..., manifest=True)``
live ``shard-NNNNNN.manifest.parquet`` (one row per sample: key, byte offset,
size and the manifest fields) and ``shard-NNNNNN.manifest.json`` (schema,
provenance, physical facts and per-field aggregates; written last).
``Dataset.query``, ``Dataset.get``, ``len(Dataset)`` and ``Dataset.describe``
read them instead of the shards.

Example:
    >>> import atdata
    >>> with atdata.ShardWriter("old/shard-%06d.tar", manifest=False) as sink:
    ...     key = sink.write(sample)
    >>> atdata.manifest.build("old/shard-*.tar")
    ['old/shard-000000.tar']
    >>> [m.num_samples for m in atdata.manifest.load_manifests("old/shard-*.tar")]
    [1]
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from atdata import _lazy

_EXPORTS: dict[str, str] = {
    "BloomFilter": "atdata.manifest._aggregates",
    "FORMAT_VERSION": "atdata.manifest._format",
    "ManifestBuilder": "atdata.manifest.builder",
    "ManifestRow": "atdata.manifest.query",
    "QueryResult": "atdata.manifest.query",
    "SampleLocation": "atdata.manifest.query",
    "ShardManifest": "atdata.manifest._format",
    "build": "atdata.manifest.builder",
    "count_samples": "atdata.manifest.loader",
    "dataset_schema": "atdata.manifest.loader",
    "describe_dataset": "atdata.manifest.query",
    "load_manifests": "atdata.manifest.loader",
    "locate_key": "atdata.manifest.query",
    "run_query": "atdata.manifest.query",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = _lazy.lazy_exports(__name__, _EXPORTS)


if TYPE_CHECKING:
    from atdata.manifest._aggregates import BloomFilter as BloomFilter
    from atdata.manifest._format import FORMAT_VERSION as FORMAT_VERSION
    from atdata.manifest._format import ShardManifest as ShardManifest
    from atdata.manifest.builder import ManifestBuilder as ManifestBuilder
    from atdata.manifest.builder import build as build
    from atdata.manifest.loader import count_samples as count_samples
    from atdata.manifest.loader import dataset_schema as dataset_schema
    from atdata.manifest.loader import load_manifests as load_manifests
    from atdata.manifest.query import ManifestRow as ManifestRow
    from atdata.manifest.query import QueryResult as QueryResult
    from atdata.manifest.query import SampleLocation as SampleLocation
    from atdata.manifest.query import describe_dataset as describe_dataset
    from atdata.manifest.query import locate_key as locate_key
    from atdata.manifest.query import run_query as run_query
