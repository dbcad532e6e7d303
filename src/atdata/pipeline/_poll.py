"""Pull mode: list a bucket and feed its shards through the same ledger as events.

For when notifications lag or were lost. Objects already processed (same
bucket, key and ETag) are duplicates in the ledger and run nothing.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from atdata.errors import PipelineError
from atdata.pipeline._events import ObjectEvent, normalize_etag
from atdata.pipeline._registry import PipelineRegistry
from atdata.pipeline._runners import InlineRunner, Runner
from atdata.pipeline._service import Service
from atdata.pipeline._trigger import Trigger

__all__ = ["PollReport", "list_objects", "poll"]


@dataclasses.dataclass
class PollReport:
    """What one pass of the poller found and did.

    Attributes:
        url: the listed prefix.
        listed: ``.tar`` objects found.
        accepted: runs claimed (and, with the default inline runner, finished).
        duplicate: runs skipped because the ledger had them already.
        failed: accepted runs whose pipeline raised.
        runs: one dict per (object, pipeline): key, pipeline, status, reason, state, error.

    Example:
        >>> report = poll("s3://bucket/incoming", registry)
        >>> report.listed, report.accepted, report.failed
        (1, 1, 0)
        >>> report.runs[0]["state"]
        'done'
    """

    url: str
    listed: int = 0
    accepted: int = 0
    duplicate: int = 0
    failed: int = 0
    runs: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The report as a JSON-able dict.

        Example:
            >>> PollReport("s3://bucket/incoming", listed=1, duplicate=1).to_json()["duplicate"]
            1
        """
        return dataclasses.asdict(self)


def list_objects(url: str) -> list[ObjectEvent]:
    """``PutObject`` events for every ``.tar`` object under ``url`` (s3:// or r2://), by key.

    Raises:
        PipelineError: ``url`` is not an s3:// or r2:// URL.
        StorageError: the bucket cannot be listed.

    Example:
        >>> [(e.key, e.action) for e in list_objects("s3://bucket/incoming")]
        [('incoming/a.tar', 'PutObject')]
    """
    from atdata.storage import _errors, store_for

    where = Trigger.parse(url)
    store, _ = store_for(where.prefix_url)
    fs = getattr(store, "fs", None)
    if fs is None:  # pragma: no cover - s3/r2 always resolve to fsspec
        raise PipelineError(f"cannot list {url}: not an object store")
    root = f"{where.bucket}/{where.prefix}".rstrip("/")
    with _errors(where.prefix_url):
        fs.invalidate_cache()
        found = fs.find(root, detail=True)
    events = []
    for path, info in sorted(found.items()):
        key = path.partition("/")[2]
        etag = info.get("ETag") or info.get("etag")
        if info.get("type") == "directory" or not etag or not where.matches(where.bucket, key):
            continue
        modified = info.get("LastModified")
        events.append(
            ObjectEvent(
                bucket=where.bucket,
                key=key,
                etag=normalize_etag(str(etag)),
                action="PutObject",
                size=info.get("size"),
                event_time=modified.isoformat() if isinstance(modified, dt.datetime) else None,
            )
        )
    return [e for e in events if e.ignore_reason() is None]


def poll(
    url: str,
    registry: PipelineRegistry | None = None,
    *,
    service: Service | None = None,
    runner: Runner | None = None,
    retry_failed: bool = False,
    limit: int | None = None,
) -> PollReport:
    """List the ``.tar`` shards under ``url`` and run the pipelines they trigger, once each.

    Args:
        url: ``r2://bucket/prefix`` or ``s3://bucket/prefix`` (a glob works too).
        registry: the pipelines (default: ``default_registry``).
        service: a ready service (its runner is then used); else one is made.
        runner: where runs go (default: inline, so the report has final states).
        retry_failed: also retry events that failed ``max_attempts`` times.
        limit: claim at most this many new runs in this pass.

    Raises:
        PipelineError: no registered pipeline's trigger covers ``url``.

    Example:
        >>> report = poll("s3://bucket/incoming", registry)
        >>> report.accepted, report.duplicate
        (1, 0)
        >>> poll("s3://bucket/incoming", registry).duplicate   # the next pass
        1
    """
    where = Trigger.parse(url)
    owned = service is None
    if service is None:
        service = Service(registry, runner=runner if runner is not None else InlineRunner())
    covering = [
        p
        for p in service.registry
        if p.trigger.bucket == where.bucket
        and p.trigger.scheme == where.scheme
        and (p.trigger.prefix.startswith(where.prefix) or where.prefix.startswith(p.trigger.prefix))
    ]
    if not covering:
        known = ", ".join(p.trigger.url for p in service.registry) or "(none registered)"
        raise PipelineError(
            f"no pipeline is triggered by objects under {url}; registered triggers: {known}. "
            "Load the module that defines them with --pipelines."
        )
    report = PollReport(url=url)
    accepted: list[tuple[Any, dict[str, Any]]] = []
    try:
        for event in list_objects(url):
            report.listed += 1
            if limit is not None and report.accepted >= limit:
                continue
            result = service.ingest(event, retry_failed=retry_failed)
            for run in result.runs:
                row: dict[str, Any] = {
                    "key": event.key,
                    "etag": event.etag,
                    "pipeline": run.pipeline,
                    "event_id": run.event_id,
                    "status": run.status,
                    "reason": run.reason,
                    "state": run.state,
                    "output_prefix": run.output_prefix,
                }
                report.runs.append(row)
                if run.status == "accepted":
                    report.accepted += 1
                    accepted.append((run, row))
                else:
                    report.duplicate += 1
        if owned:
            service.runner.close(wait=True)
        for run, row in accepted:
            record = service.ledger(service.registry.get(run.pipeline)).get(run.event_id)
            if record is not None:
                row["state"] = record.state
                if record.state == "failed":
                    report.failed += 1
                    row["error"] = record.error
    finally:
        if owned:
            service.close(wait=True)
    return report
