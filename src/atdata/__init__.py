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
    >>> with atdata.ShardWriter("out/shard-%06d.tar") as sink:
    ...     key = sink.write(Sample(label="cat", score=0.9))
    >>> atdata.Dataset[Sample]("out/shard-000000.tar").head(1)
    [Sample(label='cat', score=0.9)]
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from atdata import _lazy
from atdata._version import __version__ as __version__

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "AtdataError": "atdata.errors",
    "AtmosphereAuthError": "atdata.errors",
    "AtmosphereConnectionError": "atdata.errors",
    "AtmosphereError": "atdata.errors",
    "Catalog": "atdata.index",
    "CatalogError": "atdata.errors",
    "CredentialsError": "atdata.errors",
    "Dataset": "atdata.dataset",
    "DatasetDict": "atdata.dataset",
    "DatasetNotFoundError": "atdata.errors",
    "DatasetView": "atdata.loader",
    "DictSample": "atdata.sample",
    "Encoding": "atdata._encodings",
    "Executor": "atdata.processing",
    "InlineExecutor": "atdata.processing",
    "InvalidEventError": "atdata.errors",
    "InvalidRecordError": "atdata.errors",
    "JobConflictError": "atdata.errors",
    "JobStatus": "atdata.processing",
    "LedgerError": "atdata.errors",
    "LensNotFoundError": "atdata.errors",
    "LiteralURL": "atdata.storage",
    "LocalExecutor": "atdata.processing",
    "ManifestBuilder": "atdata.manifest",
    "ManifestError": "atdata.errors",
    "ManifestField": "atdata._types",
    "MissingDependencyError": "atdata.errors",
    "NDArray": "atdata.sample",
    "PackableSample": "atdata.sample",
    "PartialFailureError": "atdata.errors",
    "PipelineError": "atdata.errors",
    "ProcessingError": "atdata.errors",
    "Processor": "atdata.processing",
    "QueryError": "atdata.errors",
    "QueryResult": "atdata.manifest",
    "RecordConflictError": "atdata.errors",
    "RecordNotFoundError": "atdata.errors",
    "SampleBatch": "atdata.dataset",
    "SampleLocation": "atdata.manifest",
    "SampleNotFoundError": "atdata.errors",
    "Schema": "atdata.sample",
    "SchemaError": "atdata.errors",
    "SchemaMismatchError": "atdata.errors",
    "ShardCorruptError": "atdata.errors",
    "ShardError": "atdata.errors",
    "ShardWriter": "atdata.shards",
    "StorageError": "atdata.errors",
    "UnreadableURLError": "atdata.errors",
    "UnsupportedFieldTypeError": "atdata.errors",
    "WorkerLostError": "atdata.errors",
    "attach_trace_context": "atdata.observability",
    "configure_logging": "atdata.observability",
    "configure_tracing": "atdata.observability",
    "disable_prometheus": "atdata.observability",
    "disable_tracing": "atdata.observability",
    "enable_prometheus": "atdata.observability",
    "extract_trace_context": "atdata.observability",
    "inject_trace_context": "atdata.observability",
    "job_status": "atdata.processing",
    "lens": "atdata.lens",
    "load_dataset": "atdata.dataset",
    "log_event": "atdata.observability",
    "map_dataset": "atdata.processing",
    "metrics": "atdata.observability",
    "metrics_text": "atdata.observability",
    "mix": "atdata.loader",
    "packable": "atdata.sample",
    "processor": "atdata.processing",
    "schema_of": "atdata.sample",
    "trace": "atdata.observability",
    "traced": "atdata.observability",
}

__all__ = sorted(_EXPORTS)

# subpackages reachable as attributes without an explicit import (atdata.manifest.build)
_SUBMODULES = frozenset(
    {
        "atmosphere",
        "errors",
        "index",
        "lens",
        "loader",
        "manifest",
        "modal",
        "observability",
        "pipeline",
        "processing",
        "sample",
        "shards",
        "storage",
        "testing",
        "torch",
    }
)

__getattr__, __dir__ = _lazy.lazy_exports(__name__, _EXPORTS, _SUBMODULES)


if TYPE_CHECKING:
    from atdata._encodings import Encoding
    from atdata._types import ManifestField
    from atdata.dataset import Dataset, DatasetDict, SampleBatch, load_dataset
    from atdata.errors import (
        AtdataError,
        AtmosphereAuthError,
        AtmosphereConnectionError,
        AtmosphereError,
        CatalogError,
        CredentialsError,
        DatasetNotFoundError,
        InvalidEventError,
        InvalidRecordError,
        JobConflictError,
        LedgerError,
        LensNotFoundError,
        ManifestError,
        MissingDependencyError,
        PartialFailureError,
        PipelineError,
        ProcessingError,
        QueryError,
        RecordConflictError,
        RecordNotFoundError,
        SampleNotFoundError,
        SchemaError,
        SchemaMismatchError,
        ShardCorruptError,
        ShardError,
        StorageError,
        UnreadableURLError,
        UnsupportedFieldTypeError,
        WorkerLostError,
    )
    from atdata.index import Catalog
    from atdata.lens import lens
    from atdata.loader import DatasetView, mix
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
    from atdata.processing import (
        Executor,
        InlineExecutor,
        JobStatus,
        LocalExecutor,
        Processor,
        job_status,
        map_dataset,
        processor,
    )
    from atdata.sample import DictSample, NDArray, PackableSample, Schema, packable, schema_of
    from atdata.shards import ShardWriter
    from atdata.storage import LiteralURL
