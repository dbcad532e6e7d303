"""Event-driven pipelines: new shards in a bucket trigger processing, once each.

::

    @atdata.pipeline(trigger="r2://bucket/incoming", output="r2://bucket/processed")
    def process_uploads(shard_url: str):
        ds = atdata.Dataset[RawSample](shard_url)
        return ds.map(transform_sample)          # writes under r2://bucket/processed/...

Events reach :func:`create_app` (``POST /ingest``; served by ``atdata serve``
or :class:`atdata.modal.Dispatcher`) from the Cloudflare Worker in
``workers/r2-to-atdata``, or are pulled by :func:`poll` (``atdata pipeline
poll``). A ledger with the output makes each (bucket, key, ETag) run once.

Names are imported on first use, so ``import atdata.pipeline`` is cheap (the
processing layer consults :func:`current_output_prefix` on every ``map``).
"""

from __future__ import annotations

import sys
import types
from typing import TYPE_CHECKING, Any

from atdata import _lazy

_EXPORTS: dict[str, str] = {
    "CREATE_ACTIONS": "atdata.pipeline._events",
    "Claim": "atdata.pipeline._ledger",
    "EventLedger": "atdata.pipeline._ledger",
    "EventRecord": "atdata.pipeline._ledger",
    "InlineRunner": "atdata.pipeline._runners",
    "IngestResult": "atdata.pipeline._service",
    "MemoryLedger": "atdata.pipeline._ledger",
    "ObjectEvent": "atdata.pipeline._events",
    "ObjectStoreLedger": "atdata.pipeline._ledger",
    "Pipeline": "atdata.pipeline._registry",
    "PipelineRegistry": "atdata.pipeline._registry",
    "PipelineRun": "atdata.pipeline._context",
    "PollReport": "atdata.pipeline._poll",
    "Runner": "atdata.pipeline._runners",
    "SQLiteLedger": "atdata.pipeline._ledger",
    "Service": "atdata.pipeline._service",
    "ThreadRunner": "atdata.pipeline._runners",
    "Trigger": "atdata.pipeline._trigger",
    "create_app": "atdata.pipeline._app",
    "current_output_prefix": "atdata.pipeline._context",
    "current_run": "atdata.pipeline._context",
    "default_registry": "atdata.pipeline._registry",
    "ledger_for": "atdata.pipeline._ledger",
    "list_objects": "atdata.pipeline._poll",
    "load_pipelines": "atdata.pipeline._loader",
    "pipeline": "atdata.pipeline._registry",
    "poll": "atdata.pipeline._poll",
}

__all__ = [
    "CREATE_ACTIONS",
    "Claim",
    "EventLedger",
    "EventRecord",
    "IngestResult",
    "InlineRunner",
    "MemoryLedger",
    "ObjectEvent",
    "ObjectStoreLedger",
    "Pipeline",
    "PipelineRegistry",
    "PipelineRun",
    "PollReport",
    "Runner",
    "SQLiteLedger",
    "Service",
    "ThreadRunner",
    "Trigger",
    "create_app",
    "current_output_prefix",
    "current_run",
    "default_registry",
    "ledger_for",
    "list_objects",
    "load_pipelines",
    "pipeline",
    "poll",
]

__getattr__, __dir__ = _lazy.lazy_exports(__name__, _EXPORTS)


class _CallablePackage(types.ModuleType):
    """``atdata.pipeline`` names both this package and the decorator.

    Importing the package rebinds ``atdata.pipeline`` to it, so the package
    itself is callable: ``@atdata.pipeline(trigger=..., output=...)`` works
    whichever of the two ``atdata.pipeline`` currently is.
    """

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from atdata.pipeline._registry import pipeline

        return pipeline(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage


if TYPE_CHECKING:
    from atdata.pipeline._app import create_app
    from atdata.pipeline._context import PipelineRun, current_output_prefix, current_run
    from atdata.pipeline._events import CREATE_ACTIONS, ObjectEvent
    from atdata.pipeline._ledger import (
        Claim,
        EventLedger,
        EventRecord,
        MemoryLedger,
        ObjectStoreLedger,
        SQLiteLedger,
        ledger_for,
    )
    from atdata.pipeline._loader import load_pipelines
    from atdata.pipeline._poll import PollReport, list_objects, poll
    from atdata.pipeline._registry import Pipeline, PipelineRegistry, default_registry, pipeline
    from atdata.pipeline._runners import InlineRunner, Runner, ThreadRunner
    from atdata.pipeline._service import IngestResult, Service
    from atdata.pipeline._trigger import Trigger
