"""The dispatcher's engine, shared by the ingest app, the poller and remote workers.

``Service.ingest(event)`` routes an event to the pipelines whose trigger it
matches, claims it in each pipeline's ledger (synchronously: a duplicate is
known before anyone is answered) and hands the claimed runs to a runner.
``Service.execute(task)`` is what a runner finally calls, here or on another
machine: it runs one pipeline for one event, or one map job.

Accepting an event touches nothing but the ledger. Whether the event's object
version still exists (its ETag is still the object's) is asked by the run, just
before the pipeline would read the object: an overwritten version is recorded
``superseded`` and runs nothing, and its redeliveries are answered ``superseded``.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import threading
import time
import traceback
from collections.abc import Mapping, Sequence
from typing import Any

from atdata import observability as obs
from atdata.errors import InvalidEventError, JobConflictError, PipelineError, StorageError
from atdata.pipeline._context import PipelineRun, running
from atdata.pipeline._events import ObjectEvent
from atdata.pipeline._ledger import EventLedger, EventRecord, ledger_for, owner_id
from atdata.pipeline._registry import Pipeline, PipelineRegistry, default_registry
from atdata.pipeline._runners import InlineRunner, Runner, Task
from atdata.storage import store_for

__all__ = ["IngestResult", "JobConflictError", "RunInfo", "Service"]

_JOB_OPTIONS = {"workers_per_shard": int, "on_error": str, "retry": bool}
_MAX_URL = 4096
_MAX_INPUTS = 100_000


@dataclasses.dataclass
class RunInfo:
    """What happened to one event for one pipeline."""

    pipeline: str
    event_id: str
    output_prefix: str
    status: str  # accepted | duplicate | superseded
    reason: str  # new | retry | takeover | done | running | exhausted | superseded
    state: str  # running | done | failed | superseded


@dataclasses.dataclass
class IngestResult:
    """The answer to one event: accepted (something will run), duplicate, superseded or ignored.

    Example:
        >>> result = Service(registry).ingest(ObjectEvent("bucket", "notes.txt", "e1"))
        >>> result.status, result.reason
        ('ignored', 'notes.txt is not a .tar shard')
    """

    status: str
    reason: str = ""
    runs: list[RunInfo] = dataclasses.field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The answer as a JSON-able dict (``reason`` and ``runs`` only when set).

        Example:
            >>> IngestResult("ignored", "notes.txt is not a .tar shard").to_json()
            {'status': 'ignored', 'reason': 'notes.txt is not a .tar shard'}
        """
        out: dict[str, Any] = {"status": self.status}
        if self.reason:
            out["reason"] = self.reason
        if self.runs:
            out["runs"] = [vars(r).copy() for r in self.runs]  # flat: no deep copy needed
        return out


class Service:
    """Routes events to pipelines exactly once, and starts map jobs by processor name.

    Args:
        registry: the pipelines and processors (default: ``default_registry``).
        runner: where claimed work runs (default: inline, in the caller's thread).
        lease_seconds: a claim older than this whose run never finished (its
            process died) is taken over by the next delivery or poll.
        max_attempts: how often a failing event is retried before it stays failed.
        job_executor: the executor ``POST /jobs`` map jobs use.

    Example:
        >>> service = Service(registry)
        >>> service.ingest(event).status          # ObjectEvent("bucket", "incoming/a.tar", etag)
        'accepted'
        >>> service.ingest(event).status          # delivered again
        'duplicate'
    """

    def __init__(
        self,
        registry: PipelineRegistry | None = None,
        *,
        runner: Runner | None = None,
        lease_seconds: float = 3600.0,
        max_attempts: int | None = 3,
        job_executor: Any = "local",
    ) -> None:
        self.registry = registry if registry is not None else default_registry
        self.runner: Runner = runner if runner is not None else InlineRunner()
        self.lease_seconds = lease_seconds
        self.max_attempts = max_attempts
        self.job_executor = job_executor
        self.owner = owner_id()
        self._ledgers: dict[str, EventLedger] = {}
        self._jobs: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    # -- events ----------------------------------------------------------------------

    def ledger(self, pipeline: Pipeline) -> EventLedger:
        """The ledger of ``pipeline`` (one per output, opened once)."""
        with self._lock:
            ledger = self._ledgers.get(pipeline.output)
            if ledger is None:
                ledger = self._ledgers[pipeline.output] = ledger_for(pipeline.output)
            return ledger

    def route(self, event: ObjectEvent) -> tuple[list[Pipeline], str]:
        """The pipelines ``event`` triggers, and why none do when the list is empty."""
        why = event.ignore_reason()
        if why is not None:
            return [], why
        found = self.registry.matching(event)
        if not found:
            return [], f"no pipeline's trigger matches {event.bucket}/{event.key}"
        return found, ""

    def ingest(self, event: ObjectEvent, *, retry_failed: bool = False) -> IngestResult:
        """Claim ``event`` for every pipeline it triggers and submit the runs.

        Returns as soon as the claims are taken (the runs go to the runner). An
        event whose object has been overwritten since is claimed like any other:
        its run finds the ETag changed and records it ``superseded`` without
        running, and a redelivery of it is answered ``superseded``.

        Args:
            event: the object event.
            retry_failed: claim failed events again even after ``max_attempts``.

        Raises:
            LedgerError: a ledger is unreachable (nothing was claimed for that pipeline).
        """
        # The ingest span is the root of the event's trace: the claimed runs carry
        # its context to the runner, so pipeline run -> map job -> shard spans
        # share its trace id, also when the runner is another process.
        with obs.trace("atdata.dispatcher.ingest", bucket=event.bucket, key=event.key):
            return self._ingest(event, retry_failed)

    def _ingest(self, event: ObjectEvent, retry_failed: bool) -> IngestResult:
        obs.metrics.events_received.inc()
        pipelines, why = self.route(event)
        if not pipelines:
            obs.metrics.events_ignored.inc()
            obs.log_event(
                "pipeline event ignored",
                level="debug",
                bucket=event.bucket,
                key=event.key,
                reason=why,
            )
            return IngestResult("ignored", why)
        limit = None if retry_failed else self.max_attempts
        claims = [self._claim_and_submit(p, event, limit) for p in pipelines]
        runs = [run for run, _ in claims]
        if any(r.status == "accepted" for r in runs):
            return IngestResult("accepted", runs=runs)
        if all(r.status == "superseded" for r in runs):
            obs.metrics.events_ignored.inc()
            current = claims[0][1].superseded_by
            return IngestResult("superseded", f"object overwritten (now ETag {current})", runs)
        obs.metrics.events_duplicate.inc()
        return IngestResult("duplicate", runs=runs)

    def _overwritten_by(self, pipeline: Pipeline, event: ObjectEvent) -> str | None:
        """The object's ETag if it is no longer the event's (the object was overwritten), else None.

        None too when the store cannot say, or the object is gone: the run reports that.
        """
        store, path = store_for(pipeline.trigger.shard_url(event.key))
        try:
            current = store.etag(path)
        except StorageError:
            return None
        if current is None or not event.etag or current == event.etag.strip('"'):
            return None
        return current

    def _claim_and_submit(
        self, pipeline: Pipeline, event: ObjectEvent, limit: int | None
    ) -> tuple[RunInfo, EventRecord]:
        ledger = self.ledger(pipeline)
        record = EventRecord(
            id=pipeline.event_id(event),
            pipeline=pipeline.name,
            bucket=event.bucket,
            key=event.key,
            etag=event.etag,
            shard_url=str(pipeline.trigger.shard_url(event.key)),
            output_prefix=pipeline.output_prefix_for(event),
            owner=self.owner,
            size=event.size,
            event_time=event.event_time,
            pipeline_version=pipeline.version,
        )
        claim = ledger.claim(record, lease_seconds=self.lease_seconds, max_attempts=limit)
        if claim.acquired:
            status = "accepted"
        else:
            status = "superseded" if claim.reason == "superseded" else "duplicate"
        info = RunInfo(
            pipeline=pipeline.name,
            event_id=record.id,
            output_prefix=claim.record.output_prefix,
            status=status,
            reason=claim.reason,
            state=claim.record.state,
        )
        obs.log_event(
            "pipeline event " + ("claimed" if claim.acquired else "duplicate"),
            pipeline=pipeline.name,
            bucket=event.bucket,
            key=event.key,
            etag=event.etag,
            event_id=record.id,
            reason=claim.reason,
        )
        if claim.acquired:
            task: Task = {
                "kind": "event",
                "pipeline": pipeline.name,
                "event": event.to_json(),
                "event_id": record.id,
                "output_prefix": claim.record.output_prefix,
                "owner": self.owner,
                "trace": obs.inject_trace_context(),
            }
            try:
                self.runner.submit(task, self.execute)
            except Exception as exc:
                # Release the claim, so a redelivery can run it.
                ledger.fail(record.id, owner=self.owner, error=f"could not start: {_one_line(exc)}")
                raise PipelineError(
                    f"could not start pipeline {pipeline.name!r} for {event.key}: {_one_line(exc)}"
                ) from exc
        return info, claim.record

    def execute(self, task: Task) -> dict[str, Any]:
        """Run one task (an event for a pipeline, or a map job); never raises for task errors."""
        kind = task.get("kind")
        with obs.attach_trace_context(task.get("trace") or {}):
            if kind == "event":
                return self.run_event(task)
            if kind == "job":
                return self.run_job(task)
        raise PipelineError(f"unknown task kind {kind!r}: expected 'event' or 'job'")

    def run_event(self, task: Task) -> dict[str, Any]:
        """Run a claimed event's pipeline and record the outcome in the ledger.

        An event whose object has been overwritten since (a newer version, whose
        own event runs the pipeline) is recorded ``superseded`` and not run, so one
        object version maps to one run and one output folder.
        """
        pipeline = self.registry.get(task["pipeline"])
        event = ObjectEvent.from_json(task["event"])
        event_id = task["event_id"]
        owner = task.get("owner") or self.owner
        ledger = self.ledger(pipeline)
        current = self._overwritten_by(pipeline, event)
        if current is not None:
            ledger.supersede(event_id, owner=owner, current_etag=current)
            obs.metrics.events_ignored.inc()
            obs.log_event(
                "pipeline event superseded",
                level="warning",
                pipeline=pipeline.name,
                bucket=event.bucket,
                key=event.key,
                etag=event.etag,
                current_etag=current,
                event_id=event_id,
            )
            return {"status": "superseded", "event_id": event_id, "current_etag": current}
        run = PipelineRun(
            pipeline=pipeline.name,
            version=pipeline.version,
            event_id=event_id,
            shard_url=pipeline.trigger.shard_url(event.key),
            output_prefix=task.get("output_prefix") or pipeline.output_prefix_for(event),
            event=event.to_json(),
        )
        started = time.perf_counter()
        try:
            with (
                obs.trace(
                    "atdata.pipeline.run",
                    pipeline=pipeline.name,
                    shard=run.shard_url,
                    event_id=event_id,
                ),
                running(run),
            ):
                result = pipeline.func(run.shard_url)
            outputs = output_urls(result)
        except BaseException as exc:
            error = _one_line(exc)
            ledger.fail(event_id, owner=owner, error=error)
            obs.log_event(
                "pipeline run failed",
                level="error",
                pipeline=pipeline.name,
                shard=run.shard_url,
                event_id=event_id,
                error=error,
                traceback="".join(traceback.format_exception(exc))[-4000:],
            )
            if not isinstance(exc, Exception):
                raise
            return {"status": "failed", "event_id": event_id, "error": error}
        ledger.finish(event_id, owner=owner, outputs=outputs)
        duration = time.perf_counter() - started
        obs.metrics.events_processed.inc()
        obs.log_event(
            "pipeline run done",
            pipeline=pipeline.name,
            shard=run.shard_url,
            event_id=event_id,
            outputs=len(outputs),
            duration_s=round(duration, 6),
        )
        return {"status": "done", "event_id": event_id, "outputs": outputs}

    # -- jobs --------------------------------------------------------------------------

    def start_job(self, body: Any) -> dict[str, Any]:
        """Validate a ``POST /jobs`` body, count its shards and submit the map job.

        Body: ``{"input": URL or [URLs], "output_prefix": URL, "processor": name,
        "options": {"workers_per_shard": 1, "on_error": "skip", "retry": true}}``.

        Raises:
            InvalidEventError: the body is malformed or names an unknown processor.
            UnreadableURLError: the input matches no shards.
            JobConflictError: a job for this output prefix is running here.
        """
        with obs.trace("atdata.dispatcher.start_job"):
            return self._start_job(body)

    def _start_job(self, body: Any) -> dict[str, Any]:
        processor, shards_spec, output_prefix, options = _validate_job(body)
        try:
            self.registry.processor(processor)
        except PipelineError as exc:
            raise InvalidEventError(str(exc)) from None
        from atdata.storage import expand_urls

        shards = expand_urls(shards_spec)
        if not shards:
            raise InvalidEventError(f"'input' matches no shards: {shards_spec!r}")
        job_id = job_id_for(output_prefix)
        with self._lock:
            known = self._jobs.get(job_id)
            if known is not None and known["state"] in ("queued", "running"):
                raise JobConflictError(
                    f"a job writing to {output_prefix} is already {known['state']} "
                    f"(job {job_id}); wait for it, or choose another output_prefix"
                )
            self._jobs[job_id] = {
                "state": "queued",
                "processor": processor,
                "output_prefix": output_prefix,
                "shard_count": len(shards),
                "submitted_at": time.time(),
            }
        task: Task = {
            "kind": "job",
            "job_id": job_id,
            "processor": processor,
            "input": shards,
            "output_prefix": output_prefix,
            "options": options,
            "trace": obs.inject_trace_context(),
        }
        try:
            self.runner.submit(task, self.execute)
        except Exception as exc:
            self._set_job(job_id, state="failed", error=f"could not start: {_one_line(exc)}")
            raise
        return {
            "job_id": job_id,
            "status": "started",
            "shard_count": len(shards),
            "output_prefix": output_prefix,
            "processor": processor,
        }

    def run_job(self, task: Task) -> dict[str, Any]:
        """Run a map job (in a runner); the job ledger in its output prefix tracks it."""
        from atdata.dataset import Dataset
        from atdata.errors import PartialFailureError
        from atdata.processing import map_dataset

        job_id = task["job_id"]
        self._set_job(
            job_id,
            state="running",
            started_at=time.time(),
            processor=task["processor"],
            output_prefix=task["output_prefix"],
            shard_count=len(task["input"]),
        )
        try:
            fn = self.registry.processor(task["processor"])
            with obs.trace("atdata.dispatcher.job", job_id=job_id, processor=task["processor"]):
                out = map_dataset(
                    Dataset(task["input"]),
                    fn,
                    output_prefix=task["output_prefix"],
                    executor=self.job_executor,
                    **task.get("options", {}),
                )
        except PartialFailureError as exc:
            self._set_job(job_id, state="partial", error=_one_line(exc), finished_at=time.time())
            return {"status": "partial", "job_id": job_id, "error": _one_line(exc)}
        except Exception as exc:  # noqa: BLE001 - recorded, and visible in GET /jobs/{id}
            self._set_job(job_id, state="failed", error=_one_line(exc), finished_at=time.time())
            obs.log_event(
                "dispatcher job failed", level="error", job_id=job_id, error=_one_line(exc)
            )
            return {"status": "failed", "job_id": job_id, "error": _one_line(exc)}
        outputs = output_urls(out)
        self._set_job(job_id, state="done", finished_at=time.time(), outputs=len(outputs))
        return {"status": "done", "job_id": job_id, "outputs": outputs}

    def job_status(self, job_id: str) -> dict[str, Any] | None:
        """Per-shard state, counts and errors of a job, from its ledger; None if unknown.

        Raises:
            InvalidEventError: ``job_id`` is not a job id.
        """
        output_prefix = output_prefix_of(job_id)
        with self._lock:
            local = dict(self._jobs.get(job_id) or {})
        ledger = _job_ledger(output_prefix)
        if ledger is None and not local:
            return None
        out: dict[str, Any] = {"job_id": job_id, "output_prefix": output_prefix}
        if ledger is not None:
            out.update(ledger)
        if local:
            out["dispatcher"] = local
            if ledger is None or local.get("state") in ("queued", "failed"):
                # not started yet, or failed before the map job wrote its ledger
                out["state"] = local.get("state")
        return out

    def _set_job(self, job_id: str, **fields: Any) -> None:
        with self._lock:
            self._jobs.setdefault(job_id, {}).update(fields)

    def close(self, wait: bool = True) -> None:
        """Stop the runner (waiting for its tasks) and close the ledgers."""
        self.runner.close(wait=wait)
        with self._lock:
            ledgers, self._ledgers = list(self._ledgers.values()), {}
        for ledger in ledgers:
            close = getattr(ledger, "close", None)
            if close is not None:
                close()


# -- helpers ---------------------------------------------------------------------------


def output_urls(result: Any) -> list[str]:
    """The output shard URLs a pipeline function's result names (a Dataset, URLs, or None)."""
    if result is None:
        return []
    if isinstance(result, str):
        return [result]
    shards = getattr(result, "shards", None)
    if shards is not None:
        return [str(s) for s in shards]
    if isinstance(result, Sequence):
        return [str(s) for s in result if isinstance(s, str)]
    return []


def job_id_for(output_prefix: str) -> str:
    """A job's id: its output prefix, base64url-encoded, so any replica can find its ledger."""
    return "j" + base64.urlsafe_b64encode(output_prefix.encode("utf-8")).decode().rstrip("=")


def output_prefix_of(job_id: str) -> str:
    """The output prefix a job id encodes.

    Raises:
        InvalidEventError: not a job id.
    """
    if not job_id.startswith("j") or len(job_id) > 2 * _MAX_URL:
        raise InvalidEventError(f"{job_id[:40]!r} is not a job id")
    raw = job_id[1:]
    try:
        return base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidEventError(f"{job_id[:40]!r} is not a job id") from None


def _job_ledger(output_prefix: str) -> dict[str, Any] | None:
    """The job ledger under ``output_prefix`` as JSON, or None when there is none yet."""
    import msgspec

    from atdata.errors import ProcessingError
    from atdata.processing import job_status

    try:
        status = job_status(output_prefix)
    except ProcessingError:
        return None
    counts = status.counts
    if status.complete:
        state = "done"
    elif counts["pending"]:
        state = "running"
    else:
        state = "failed" if not counts["done"] else "partial"
    job = status.job
    return {
        "state": state,
        "ledger_job_id": status.job_id,
        "processor": job.processor,
        "input_type": job.input_type,
        "output_type": job.output_type,
        "counts": counts,
        "shards": [msgspec.to_builtins(s) for s in status.shards],
        "errors": {s.input_shard: s.error for s in status.shards if s.error},
        "dead_letters": [
            {k: v for k, v in msgspec.to_builtins(d).items() if k != "traceback"}
            for d in status.dead_letters
        ],
        "runs": [msgspec.to_builtins(r) for r in job.runs],
    }


def _validate_job(body: Any) -> tuple[str, str | list[str], str, dict[str, Any]]:
    if not isinstance(body, Mapping):
        raise InvalidEventError(
            "expected a JSON object with 'input', 'output_prefix' and 'processor'"
        )
    unknown = sorted(set(body) - {"input", "output_prefix", "processor", "options"})
    if unknown:
        raise InvalidEventError(
            f"unknown field(s) {', '.join(map(repr, unknown))}; expected "
            "'input', 'output_prefix', 'processor' and optional 'options'"
        )
    processor = body.get("processor")
    if not isinstance(processor, str) or not processor:
        raise InvalidEventError("'processor': expected the name of a registered processor")
    spec = body.get("input")
    if isinstance(spec, str):
        if not spec or len(spec) > _MAX_URL:
            raise InvalidEventError("'input': expected a shard URL, pattern or list of URLs")
    elif isinstance(spec, list):
        if (
            not spec
            or len(spec) > _MAX_INPUTS
            or not all(isinstance(u, str) and 0 < len(u) <= _MAX_URL for u in spec)
        ):
            raise InvalidEventError("'input': expected a non-empty list of shard URLs")
    else:
        raise InvalidEventError("'input': expected a shard URL, pattern or list of URLs")
    output_prefix = body.get("output_prefix")
    if (
        not isinstance(output_prefix, str)
        or not output_prefix.strip("/")
        or len(output_prefix) > _MAX_URL
    ):
        raise InvalidEventError(
            "'output_prefix': expected the URL to write the output dataset under"
        )
    options = body.get("options", {})
    if not isinstance(options, Mapping):
        raise InvalidEventError("'options': expected an object")
    for name, value in options.items():
        kind = _JOB_OPTIONS.get(name)
        if kind is None:
            raise InvalidEventError(
                f"'options.{name}' is not accepted; allowed: {', '.join(sorted(_JOB_OPTIONS))}"
            )
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise InvalidEventError(
                f"'options.{name}': expected {kind.__name__}, got {value!r:.40}"
            )
    if "on_error" in options and options["on_error"] not in ("raise", "skip"):
        raise InvalidEventError("'options.on_error': expected 'raise' or 'skip'")
    if "workers_per_shard" in options and options["workers_per_shard"] < 1:
        raise InvalidEventError("'options.workers_per_shard': expected at least 1")
    return processor, spec, output_prefix.rstrip("/"), dict(options)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    text = f"{type(exc).__name__}: {text}" if not text.startswith(type(exc).__name__) else text
    return text if len(text) <= 500 else text[:497] + "..."
