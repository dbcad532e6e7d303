"""The pipeline run in progress, visible to the code it calls (``Dataset.map``).

Kept free of imports beyond the standard library: processing consults it on
every ``map`` call without an output prefix.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
from collections.abc import Iterator
from typing import Any

__all__ = ["PipelineRun", "current_output_prefix", "current_run", "running"]


@dataclasses.dataclass(frozen=True)
class PipelineRun:
    """One pipeline handling one event.

    Attributes:
        pipeline: the pipeline's name.
        version: the pipeline's version string, if it declared one.
        event_id: the ledger id of the event (bucket, key and ETag).
        shard_url: the URL of the shard that arrived.
        output_prefix: where this run's output goes: ``<output>/<shard stem>/<etag>``,
            the same for every delivery of the same object version.
        event: the event, in the R2 notification format.

    Example:
        >>> runs = []
        >>> reg = atdata.pipeline.PipelineRegistry()
        >>> @reg.pipeline(trigger="s3://bucket/incoming", output="out/seen")
        ... def remember(shard_url: str) -> None:
        ...     runs.append(current_run())
        >>> atdata.pipeline.Service(reg).ingest(event).status
        'accepted'
        >>> runs[0].pipeline, runs[0].shard_url
        ('remember', 's3://bucket/incoming/a.tar')
    """

    pipeline: str
    version: str | None
    event_id: str
    shard_url: str
    output_prefix: str
    event: dict[str, Any]


_CURRENT: contextvars.ContextVar[PipelineRun | None] = contextvars.ContextVar(
    "atdata_pipeline_run", default=None
)


def current_run() -> PipelineRun | None:
    """The pipeline run this code executes in, or None outside a pipeline.

    Example:
        >>> current_run() is None
        True
    """
    return _CURRENT.get()


def current_output_prefix() -> str | None:
    """Where ``map`` writes when it is not told: the running pipeline's output for this event.

    None outside a pipeline. :func:`running` hands it to processing as the default
    ``output_prefix`` of ``map``.

    Example:
        >>> current_output_prefix() is None
        True
    """
    run = _CURRENT.get()
    return None if run is None else run.output_prefix


@contextlib.contextmanager
def running(run: PipelineRun) -> Iterator[PipelineRun]:
    """Make ``run`` the current pipeline run inside the ``with`` block."""
    from atdata.processing._defaults import default_output_prefix

    token = _CURRENT.set(run)
    try:
        with default_output_prefix(run.output_prefix):
            yield run
    finally:
        _CURRENT.reset(token)
