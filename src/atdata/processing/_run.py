"""Running a planned map job: submit its tasks, retry failures, keep the ledger.

The driver is the only writer of the job ledger, and records a task as done only
after its worker has committed the output shard and returned (see ``_map``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
import threading
import time
import warnings
from collections.abc import Generator, Iterator
from typing import Any

import msgspec

from atdata import observability as obs
from atdata._progress import Progress
from atdata.errors import PartialFailureError
from atdata.processing._ledger import DeadLetter, RunRecord, ShardStatus, now_iso
from atdata.processing._plan import JobPlan
from atdata.processing._processor import Processor
from atdata.processing._task import ShardResult, ShardTask
from atdata.processing.executors import Executor

__all__ = ["RunOutcome", "raise_for_failures", "run_job", "warn_skipped"]


@dataclasses.dataclass
class RunOutcome:
    """What a run of a job leaves for its caller to report.

    Attributes:
        errors: input shard URL -> the error of a task of it that failed for good.
        skipped_samples: bad samples skipped by the error policy, over the run.
    """

    errors: dict[str, str] = dataclasses.field(default_factory=dict)
    skipped_samples: int = 0


def run_job(
    plan: JobPlan,
    runner: Executor,
    *,
    owned: bool,
    proc: Processor[Any, Any],
    payload: bytes,
    budget: int,
    progress: bool | None,
) -> RunOutcome:
    """Run the plan's tasks on ``runner``, each up to ``budget`` times, recording every result.

    Args:
        plan: the planned job (its ledger, records and the tasks to run).
        runner: the executor.
        owned: close the executor at the end (it was made for this job).
        proc: the processor.
        payload: the serialised function and sample types.
        budget: attempts per task in this run.
        progress: show a progress bar; None: only on a terminal.
    """
    job, ledger = plan.job, plan.ledger
    run = RunRecord(
        started_at=now_iso(),
        executor=type(runner).__name__,
        tasks_skipped=plan.skipped,
    )
    job.runs.append(run)
    ledger.write_job(job)
    obs.log_event(
        "map job started",
        job_id=job.job_id,
        processor=proc.name,
        output_prefix=ledger.output_prefix,
        tasks=len(plan.to_run),
        skipped=plan.skipped,
    )
    clock = time.perf_counter()
    # (obs.trace's no-op span works in a `with` statement, not in an ExitStack)
    with (
        _closing(runner) if owned else contextlib.nullcontext(),
        obs.trace(
            "map_job", job_id=job.job_id, processor=proc.name, tasks=len(plan.to_run)
        ) as span,
        Progress(
            proc.name,
            enabled=progress if plan.to_run else False,
            shards_total=len(plan.to_run),
        ) as bar,
    ):
        run.workers = runner.workers
        counts = _MapProgress(bar)
        tally = _Tally(plan, run, counts, budget)
        tasks = plan.shard_tasks(proc, payload, obs.inject_trace_context())
        while tasks:
            retry_next: list[ShardTask] = []
            with contextlib.closing(_map(runner, tasks, counts)) as outcomes:
                for task, outcome in outcomes:
                    again = tally.record(task, outcome)
                    if again is not None:
                        retry_next.append(again)
            run.tasks_run += len(tasks)
            tasks = retry_next
        run.wall_s = time.perf_counter() - clock
        if run.workers and run.wall_s > 0 and run.tasks_run:
            run.utilisation = min(1.0, run.busy_s / (run.wall_s * run.workers))
        span.set_attribute("failed", run.tasks_failed)
    run.finished_at = now_iso()
    ledger.write_job(job)
    obs.log_event(
        "map job finished",
        job_id=job.job_id,
        processor=proc.name,
        tasks_run=run.tasks_run,
        tasks_failed=run.tasks_failed,
        wall_s=round(run.wall_s or 0.0, 3),
        utilisation=None if run.utilisation is None else round(run.utilisation, 3),
    )
    return tally.outcome


class _Tally:
    """Records each task's result in the ledger, the run record and the metrics."""

    def __init__(self, plan: JobPlan, run: RunRecord, bar: _MapProgress, budget: int) -> None:
        self.plan = plan
        self.run = run
        self.bar = bar
        self.budget = budget
        self.outcome = RunOutcome()
        self.tries: dict[str, int] = {}

    def record(self, task: ShardTask, outcome: ShardResult | BaseException) -> ShardTask | None:
        """Record one attempt's outcome; returns the next attempt if the task is retried."""
        plan, run, job_id = self.plan, self.run, self.plan.job.job_id
        result = (
            outcome
            if isinstance(outcome, ShardResult)
            else ShardResult.from_exception(task, outcome)
        )
        self.tries[task.task_id] = self.tries.get(task.task_id, 0) + 1
        # A copy, kept once it is in the ledger: what the plan says is done, is (a Ctrl-C
        # may land anywhere here, and the interrupted map reports the plan's count).
        record = msgspec.structs.replace(plan.records[task.task_id])
        _update(record, result, job_id)
        run.busy_s += result.busy_s
        run.cpu_s += result.cpu_s
        obs.metrics.shard_processing_time.observe(result.busy_s)
        if result.ok:
            plan.ledger.write_shard(record)
            plan.records[task.task_id] = record
            if record.attempts > 1:
                plan.ledger.clear_dead_letter(task.task_id)
            obs.metrics.samples_processed.inc(result.samples_in)
            if result.samples_skipped:
                obs.metrics.samples_skipped.inc(result.samples_skipped)
                self.outcome.skipped_samples += result.samples_skipped
            obs.log_event(
                "map shard finished",
                job_id=job_id,
                shard=task.input_url,
                task=task.task_id,
                duration_s=round(result.busy_s, 6),
                samples_in=result.samples_in,
                samples_out=result.samples_out,
            )
            self.bar.finished(result)
            return None
        final = self.tries[task.task_id] >= self.budget
        record.state = "failed" if final else "pending"
        plan.ledger.write_shard(record)
        plan.records[task.task_id] = record
        obs.log_event(
            "map shard failed",
            level="error" if final else "warning",
            job_id=job_id,
            shard=task.input_url,
            task=task.task_id,
            attempt=record.attempts,
            final=final,
            error=record.error,
        )
        if not final:
            obs.metrics.retries.inc()
            return dataclasses.replace(task, attempt=record.attempts + 1)
        run.tasks_failed += 1
        self.outcome.errors.setdefault(task.input_url, result.error or record.error or "")
        plan.ledger.write_dead_letter(_dead_letter(task, record, result))
        self.bar.finished(result)
        return None


# -- reporting -------------------------------------------------------------------------------


def warn_skipped(plan: JobPlan, outcome: RunOutcome, name: str) -> None:
    """Warn the caller of ``map_dataset`` that bad samples were skipped (``on_error="warn"``)."""
    if outcome.skipped_samples:
        warnings.warn(
            f"{name}: {outcome.skipped_samples} bad samples were skipped; their keys are in "
            f"atdata.job_status({plan.ledger.output_prefix!r}).shards[i].skipped_keys",
            RuntimeWarning,
            stacklevel=4,  # this, map_dataset, Dataset.map, the caller
        )


def raise_for_failures(plan: JobPlan, outcome: RunOutcome) -> None:
    """Raise if a selected shard failed, in this run or (not retried) in an earlier one.

    Raises:
        PartialFailureError: naming the failed shards, their errors, and the
            shards whose output is committed.
    """
    errors = dict(outcome.errors)
    if plan.earlier_failures:
        letters = {d.task_id: d for d in plan.ledger.read_dead_letters()}
        for t in plan.earlier_failures:
            errors.setdefault(t.input_shard, _earlier_error(plan.records[t.task_id], letters))
    if not errors:
        return
    records = plan.records
    unfinished = {t.input_shard for t in plan.tasks if records[t.task_id].state != "done"}
    failed = [s for s in plan.selected if s in errors]
    succeeded = [s for s in plan.selected if s not in errors and s not in unfinished]
    raise PartialFailureError(succeeded, failed, errors, output_prefix=plan.ledger.output_prefix)


# -- results --------------------------------------------------------------------------------


def _summary(error: str | None) -> str | None:
    if not error:
        return None
    lines = [ln for ln in error.strip().splitlines() if ln.strip()]
    if not lines:
        return None
    last = lines[-1]
    return last[len("atdata.errors.") :] if last.startswith("atdata.errors.") else last


def _update(record: ShardStatus, result: ShardResult, job_id: str) -> None:
    record.attempts += 1
    record.job_id = job_id
    record.duration_s = round(result.busy_s, 6)
    record.cpu_s = round(result.cpu_s, 6)
    record.worker = result.worker or None
    record.samples_in = result.samples_in
    record.samples_out = result.samples_out
    record.samples_skipped = result.samples_skipped
    record.skipped_keys = list(result.skipped_keys)
    if result.ok:
        record.state = "done"
        record.error = None
    else:
        record.error = _summary(result.error)


def _dead_letter(task: ShardTask, record: ShardStatus, result: ShardResult) -> DeadLetter:
    return DeadLetter(
        task_id=task.task_id,
        input_shard=task.input_url,
        output_shard=task.output_url,
        job_id=task.job_id,
        attempts=record.attempts,
        error_type=result.error_type,
        error=record.error or "",
        traceback=result.error or "",
        failed_at=now_iso(),
    )


def _earlier_error(record: ShardStatus, letters: dict[str, DeadLetter]) -> str:
    letter = letters.get(record.task_id)
    text = letter.traceback if letter is not None else (record.error or "failed")
    return f"{text.rstrip()}\n(failed in an earlier run; pass retry=True to run it again)"


# -- the executor and the progress bar ----------------------------------------------------------


def _map(
    runner: Executor, tasks: list[ShardTask], bar: _MapProgress
) -> Generator[tuple[ShardTask, ShardResult | BaseException], None, None]:
    """``runner.map(tasks)``, reporting running tasks' samples to a shown progress bar.

    A generator, so that closing it closes the executor's iterator too.
    """
    if bar.bar.enabled and getattr(runner, "reports_progress", False):
        yield from runner.map(tasks, progress=bar.running)  # type: ignore[call-arg]
    else:
        yield from runner.map(tasks)


@contextlib.contextmanager
def _closing(executor: Executor) -> Iterator[Executor]:
    enter = getattr(executor, "__enter__", None)
    exit_ = getattr(executor, "__exit__", None)
    if enter is None or exit_ is None:
        try:
            yield executor
        finally:
            executor.close()
        return
    enter()
    try:
        yield executor
    except BaseException:
        if not exit_(*sys.exc_info()):
            raise
    else:
        exit_(None, None, None)


class _MapProgress:
    """The map's counts on the progress bar: finished tasks' samples plus running tasks' so far.

    Running tasks' samples come from executors that report them
    (``reports_progress``), on the executor's thread; finished tasks are
    counted on the driver's. The lock keeps the two apart.
    """

    def __init__(self, bar: Progress) -> None:
        self.bar = bar
        self._running: dict[str, int] = {}  # task id -> samples counted so far
        self._lock = threading.Lock()

    def running(self, task: ShardTask, samples: int) -> None:
        """A running task has read ``samples`` so far."""
        with self._lock:
            counted = self._running.get(task.task_id, 0)
            self._running[task.task_id] = samples
            self.bar.advance(samples - counted)

    def finished(self, result: ShardResult) -> None:
        """A task finished (for good)."""
        with self._lock:
            counted = self._running.pop(result.task_id, 0)
            self.bar.advance(result.samples_in - counted, shards=1)
