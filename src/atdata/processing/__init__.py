"""Processing: per-sample functions run over whole datasets, shard by shard.

- :func:`processor` turns ``fn(sample: In) -> Out`` into a processor (and,
  given a ``modal.App``, registers it on Modal); ``@processor(batch_size=64)``
  on ``fn(batch: SampleBatch[In]) -> list[Out]`` makes a batched one;
- ``Dataset.map(fn, output_prefix=...)`` (:func:`map_dataset`) runs it on an
  executor, writes output shards with manifests, and returns ``Dataset[Out]``;
- :func:`job_status` reads a job's ledger: per-shard state, attempts, errors,
  and the dead-letter records;
- executors (``"inline"``, ``"local"``, ``"dask"``, ``"modal"``) share one small
  interface, :class:`Executor`; :func:`register_executor` adds others;
- ``"local"`` keeps its worker processes warm between jobs;
  :func:`shutdown_workers` stops them (done at exit anyway).

Example:
    >>> @atdata.processor
    ... def embed(sample: ImageSample) -> EmbeddingSample:
    ...     return EmbeddingSample(embedding=model(sample.image), label=sample.label)
    >>> out = ds.map(embed, output_prefix="out/embedded/v1")
    >>> atdata.job_status("out/embedded/v1").counts
    {'done': 10, 'failed': 0, 'pending': 0}
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from atdata import _lazy
from atdata.processing._ledger import DeadLetter, JobStatus, RunRecord, ShardStatus, job_status
from atdata.processing._map import map_dataset
from atdata.processing._processor import Processor, processor
from atdata.processing._task import OnError, ShardResult, ShardTask, process_shard
from atdata.processing.executors import Executor, TaskHandle, get_executor, register_executor
from atdata.processing.executors.inline import InlineExecutor
from atdata.processing.executors.local import LocalExecutor, shutdown_workers

__all__ = [
    "DeadLetter",
    "Executor",
    "InlineExecutor",
    "JobStatus",
    "LocalExecutor",
    "OnError",
    "Processor",
    "RunRecord",
    "ShardResult",
    "ShardStatus",
    "ShardTask",
    "TaskHandle",
    "get_executor",
    "job_status",
    "map_dataset",
    "process_shard",
    "processor",
    "register_executor",
    "shutdown_workers",
]


# The executors with optional dependencies import them only when asked for.
__getattr__, __dir__ = _lazy.lazy_exports(
    __name__,
    {
        "DaskExecutor": "atdata.processing.executors.dask",
        "ModalExecutor": "atdata.processing.executors.modal",
    },
)

if TYPE_CHECKING:
    from atdata.processing.executors.dask import DaskExecutor as DaskExecutor
    from atdata.processing.executors.modal import ModalExecutor as ModalExecutor
