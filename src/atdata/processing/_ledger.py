"""The job ledger: each shard task's state, kept beside the job's output.

Layout under ``<output_prefix>/_atdata_job/`` (format version 1)::

    job.json                   the job: id, types, plan (task ids), runs
    shards/<task_id>.json      one task: state, attempts, error, duration, counts
    dead_letter/<task_id>.json a task that exhausted its retries, with its traceback

One small object per task means no two writers ever touch the same object, and
every write is atomic (``Store.write``), so the ledger works the same on local
disk and on object stores. Only the job's driver writes it.
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
from collections.abc import Iterable
from typing import Literal

import msgspec

from atdata.errors import ProcessingError, UnreadableURLError
from atdata.storage import Store, is_local, store_for

__all__ = [
    "DeadLetter",
    "JobRecord",
    "JobStatus",
    "Ledger",
    "PlannedTask",
    "RunRecord",
    "ShardStatus",
    "job_status",
]

FORMAT_VERSION = 1
LEDGER_DIR = "_atdata_job"
State = Literal["pending", "done", "failed"]


def now_iso() -> str:
    """The current UTC time in ISO 8601."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


class ShardStatus(msgspec.Struct, kw_only=True):
    """One task's entry in the ledger.

    ``state`` is ``"pending"`` (not run yet, or waiting for a retry),
    ``"done"`` (output committed) or ``"failed"`` (retries exhausted; see the
    dead-letter record). ``attempts`` counts every run of the task, across
    reruns of the job.

    Example:
        >>> first = atdata.job_status("embedded/v1").shards[0]
        >>> first.task_id, first.state, first.samples_out
        ('shard-000000', 'done', 4)
    """

    task_id: str
    input_shard: str
    output_shard: str
    state: State = "pending"
    attempts: int = 0
    error: str | None = None
    duration_s: float | None = None
    cpu_s: float | None = None
    samples_in: int = 0
    samples_out: int = 0
    samples_skipped: int = 0
    skipped_keys: list[str] = msgspec.field(default_factory=list)
    part: int = 0
    parts: int = 1
    worker: str | None = None
    job_id: str | None = None
    updated_at: str | None = None


class DeadLetter(msgspec.Struct, kw_only=True):
    """A task that failed on every attempt, with the last traceback.

    Example:
        >>> letter = atdata.job_status("broken/v1").dead_letters[0]
        >>> letter.task_id, letter.attempts
        ('shard-000009', 1)
        >>> "no fish today" in letter.traceback
        True
    """

    task_id: str
    input_shard: str
    output_shard: str
    job_id: str
    attempts: int
    error_type: str | None
    error: str
    traceback: str
    failed_at: str


class RunRecord(msgspec.Struct, kw_only=True):
    """One run of a job (a first run, a resume or a retry).

    Example:
        >>> run = atdata.job_status("embedded/v1").last_run
        >>> run.executor, run.tasks_run, run.tasks_failed
        ('InlineExecutor', 10, 0)
    """

    started_at: str
    finished_at: str | None = None
    executor: str = ""
    workers: int | None = None
    tasks_run: int = 0
    tasks_failed: int = 0
    tasks_skipped: int = 0
    wall_s: float | None = None
    busy_s: float = 0.0
    cpu_s: float = 0.0
    utilisation: float | None = None


class PlannedTask(msgspec.Struct, kw_only=True):
    """One task of a job's plan: which input (range) goes to which output shard."""

    task_id: str
    input_shard: str
    output_shard: str
    part: int = 0
    parts: int = 1


class JobRecord(msgspec.Struct, kw_only=True):
    """The job: identity, what it computes, its plan and its runs."""

    format_version: int = FORMAT_VERSION
    job_id: str
    created_at: str
    processor: str
    input_type: str
    output_type: str
    pipeline_version: str
    workers_per_shard: int = 1
    on_error: str = "raise"
    input_shards: list[str] = msgspec.field(default_factory=list)
    tasks: list[PlannedTask] = msgspec.field(default_factory=list)
    runs: list[RunRecord] = msgspec.field(default_factory=list)


_ENCODER = msgspec.json.Encoder()


class Ledger:
    """Read and write the ledger of the job whose output is under ``output_prefix``."""

    def __init__(self, output_prefix: str) -> None:
        self.output_prefix = output_prefix
        self.store: Store
        self.store, base = store_for(output_prefix)
        self.root = f"{base.rstrip('/')}/{LEDGER_DIR}"
        self._remote = not is_local(output_prefix)

    def _path(self, *parts: str) -> str:
        return "/".join((self.root, *parts))

    # -- job ---------------------------------------------------------------------

    def read_job(self) -> JobRecord | None:
        """The job record, or None when no job has written here."""
        path = self._path("job.json")
        if not self.store.exists(path):
            return None
        job = msgspec.json.decode(self.store.read(path), type=JobRecord)
        if job.format_version > FORMAT_VERSION:
            raise ProcessingError(
                f"The job ledger at {self.output_prefix} has format version "
                f"{job.format_version}; this atdata reads up to {FORMAT_VERSION}. Upgrade atdata."
            )
        return job

    def write_job(self, job: JobRecord) -> None:
        """Write the job record (atomically)."""
        self.store.write(self._path("job.json"), _ENCODER.encode(job))

    # -- shards ------------------------------------------------------------------

    def read_shards(self, task_ids: Iterable[str]) -> dict[str, ShardStatus]:
        """The recorded status of each task that has one."""

        def read(task_id: str) -> ShardStatus | None:
            path = self._path("shards", f"{task_id}.json")
            try:
                data = self.store.read(path)
            except UnreadableURLError:
                return None
            return msgspec.json.decode(data, type=ShardStatus)

        ids = list(task_ids)
        if self._remote and len(ids) > 1:
            with concurrent.futures.ThreadPoolExecutor(16) as pool:
                found = list(pool.map(read, ids))
        else:
            found = [read(i) for i in ids]
        return {s.task_id: s for s in found if s is not None}

    def write_shard(self, status: ShardStatus) -> None:
        """Record a task's status (atomically)."""
        status.updated_at = now_iso()
        self.store.write(self._path("shards", f"{status.task_id}.json"), _ENCODER.encode(status))

    # -- dead letters --------------------------------------------------------------

    def write_dead_letter(self, letter: DeadLetter) -> None:
        """Record a task that exhausted its retries."""
        self.store.write(
            self._path("dead_letter", f"{letter.task_id}.json"), _ENCODER.encode(letter)
        )

    def clear_dead_letter(self, task_id: str) -> None:
        """Remove a task's dead-letter record (it has since succeeded)."""
        path = self._path("dead_letter", f"{task_id}.json")
        if self.store.exists(path):
            self.store.delete(path)

    def read_dead_letters(self) -> list[DeadLetter]:
        """Every dead-letter record, by task id."""
        paths = self.store.list(self._path("dead_letter", "*.json"))
        letters = [msgspec.json.decode(self.store.read(p), type=DeadLetter) for p in paths]
        return sorted(letters, key=lambda d: d.task_id)


class JobStatus:
    """A map job's state, read from its ledger by :func:`job_status`.

    Attributes:
        output_prefix: where the job writes.
        job: the job record (id, types, plan, runs).
        shards: every planned task's status, in plan order.
        dead_letters: tasks that exhausted their retries, with tracebacks.

    Example:
        >>> atdata.job_status("broken/v1")
        JobStatus('broken/v1', job_id='...', done=9, failed=1, pending=0)
    """

    def __init__(
        self,
        output_prefix: str,
        job: JobRecord,
        shards: list[ShardStatus],
        dead_letters: list[DeadLetter],
    ) -> None:
        self.output_prefix = output_prefix
        self.job = job
        self.shards = shards
        self.dead_letters = dead_letters

    @property
    def job_id(self) -> str:
        """The job's id (also in every output manifest's provenance).

        Example:
            >>> len(atdata.job_status("embedded/v1").job_id)
            32
        """
        return self.job.job_id

    def _in(self, state: str) -> list[ShardStatus]:
        return [s for s in self.shards if s.state == state]

    @property
    def done(self) -> list[ShardStatus]:
        """Tasks whose output is committed.

        Example:
            >>> len(atdata.job_status("broken/v1").done)
            9
        """
        return self._in("done")

    @property
    def failed(self) -> list[ShardStatus]:
        """Tasks that exhausted their retries.

        Example:
            >>> [s.task_id for s in atdata.job_status("broken/v1").failed]
            ['shard-000009']
        """
        return self._in("failed")

    @property
    def pending(self) -> list[ShardStatus]:
        """Tasks not run yet, or interrupted.

        Example:
            >>> atdata.job_status("embedded/v1").pending
            []
        """
        return self._in("pending")

    @property
    def complete(self) -> bool:
        """True when every task is done.

        Example:
            >>> atdata.job_status("embedded/v1").complete, atdata.job_status("broken/v1").complete
            (True, False)
        """
        return all(s.state == "done" for s in self.shards)

    @property
    def counts(self) -> dict[str, int]:
        """Number of tasks per state.

        Example:
            >>> atdata.job_status("broken/v1").counts
            {'done': 9, 'failed': 1, 'pending': 0}
        """
        out = {"done": 0, "failed": 0, "pending": 0}
        for s in self.shards:
            out[s.state] += 1
        return out

    @property
    def last_run(self) -> RunRecord | None:
        """The latest run: wall time, busy time, worker utilisation.

        Example:
            >>> atdata.job_status("embedded/v1").last_run.tasks_run
            10
        """
        return self.job.runs[-1] if self.job.runs else None

    def __repr__(self) -> str:
        c = self.counts
        return (
            f"JobStatus({self.output_prefix!r}, job_id={self.job_id!r}, done={c['done']}, "
            f"failed={c['failed']}, pending={c['pending']})"
        )


def job_status(output_prefix: str) -> JobStatus:
    """Read the state of the map job writing to ``output_prefix``.

    Args:
        output_prefix: the ``output_prefix`` given to ``Dataset.map``.

    Returns:
        Per-task states (pending, done, failed), attempts, errors and
        durations, the dead-letter records, and the job's runs.

    Raises:
        ProcessingError: no job has written under ``output_prefix``.

    Example:
        >>> status = atdata.job_status("broken/v1")
        >>> status.counts
        {'done': 9, 'failed': 1, 'pending': 0}
        >>> "ValueError: no fish today" in status.dead_letters[0].traceback
        True
    """
    ledger = Ledger(output_prefix)
    job = ledger.read_job()
    if job is None:
        raise ProcessingError(
            f"No atdata job ledger under {output_prefix} (expected "
            f"{output_prefix.rstrip('/')}/{LEDGER_DIR}/job.json). Pass the output_prefix "
            "that was given to Dataset.map."
        )
    recorded = ledger.read_shards(t.task_id for t in job.tasks)
    shards = [recorded.get(t.task_id) or unrecorded(t, job.job_id) for t in job.tasks]
    return JobStatus(output_prefix, job, shards, ledger.read_dead_letters())


def unrecorded(task: PlannedTask, job_id: str) -> ShardStatus:
    """The status of a planned task that has never reported: pending, no attempts."""
    return ShardStatus(
        task_id=task.task_id,
        input_shard=task.input_shard,
        output_shard=task.output_shard,
        part=task.part,
        parts=task.parts,
        job_id=job_id,
    )
