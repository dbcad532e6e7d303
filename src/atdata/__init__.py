"""atdata: typed, sharded datasets with queryable manifests.

Public names are imported lazily on first use, so ``import atdata`` (and every
CLI command) starts fast; numpy, pyarrow, duckdb and the storage back ends are
loaded only when a feature needs them.

Example:
    >>> import atdata
    >>> @atdata.packable
    ... class Sample:
    ...     label: str
    ...     score: float
    >>> with atdata.ShardWriter("out/shard-%06d.tar") as sink:   # doctest: +SKIP
    ...     sink.write(Sample(label="cat", score=0.9))
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.3.0"

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "Catalog": "atdata.index",
    "attach_trace_context": "atdata.observability",
    "configure_logging": "atdata.observability",
    "configure_tracing": "atdata.observability",
    "disable_prometheus": "atdata.observability",
    "disable_tracing": "atdata.observability",
    "enable_prometheus": "atdata.observability",
    "extract_trace_context": "atdata.observability",
    "inject_trace_context": "atdata.observability",
    "log_event": "atdata.observability",
    "metrics": "atdata.observability",
    "metrics_text": "atdata.observability",
    "trace": "atdata.observability",
    "traced": "atdata.observability",
    "Dataset": "atdata.dataset",
    "DatasetDict": "atdata.dataset",
    "DictSample": "atdata.sample",
    "ManifestField": "atdata._types",
    "NDArray": "atdata.sample",
    "ManifestBuilder": "atdata.manifest",
    "PackableSample": "atdata.sample",
    "QueryResult": "atdata.manifest",
    "SampleLocation": "atdata.manifest",
    "SampleBatch": "atdata.dataset",
    "Schema": "atdata.sample",
    "ShardWriter": "atdata.shards",
    "lens": "atdata.lens",
    "job_status": "atdata.processing",
    "load_dataset": "atdata.dataset",
    "map_dataset": "atdata.processing",
    "packable": "atdata.sample",
    "processor": "atdata.processing",
    "schema_of": "atdata.sample",
}

__all__ = sorted(_EXPORTS)

# subpackages reachable as attributes without an explicit import (atdata.manifest.build)
_SUBMODULES = frozenset(
    {"atmosphere", "errors", "index", "lens", "manifest", "modal", "observability",
     "pipeline", "processing", "sample", "shards", "storage", "testing"}
)


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"atdata.{name}")
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'atdata' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:
    from atdata._types import ManifestField
    from atdata.dataset import Dataset, DatasetDict, SampleBatch, load_dataset
    from atdata.index import Catalog
    from atdata.lens import lens
    from atdata.manifest import ManifestBuilder, QueryResult, SampleLocation
    from atdata.observability import (
        attach_trace_context,
        configure_logging,
        configure_tracing,
        disable_prometheus,
        disable_tracing,
        enable_prometheus,
        extract_trace_context,
        inject_trace_context,
        log_event,
        metrics,
        metrics_text,
        trace,
        traced,
    )
    from atdata.processing import job_status, map_dataset, processor
    from atdata.sample import DictSample, NDArray, PackableSample, Schema, packable, schema_of
    from atdata.shards import ShardWriter
