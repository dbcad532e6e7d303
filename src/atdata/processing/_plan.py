"""Planning a map job: which shards, which tasks, and what the ledger says is done.

:func:`plan_job` turns the input shards and the options into a :class:`JobPlan`:
one planned task per output shard (``workers_per_shard`` of them per input
shard), the job record opened or resumed from the ledger, and the tasks this
run has to do. :meth:`JobPlan.shard_tasks` then makes the tasks the executor
runs, with their byte ranges.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os
import posixpath
import uuid
from collections.abc import Sequence
from typing import Any

from atdata.errors import ProcessingError
from atdata.processing._ledger import (
    JobRecord,
    Ledger,
    PlannedTask,
    ShardStatus,
    now_iso,
    unrecorded,
)
from atdata.processing._processor import Processor
from atdata.processing._task import OnError, ShardTask
from atdata.storage import is_local, sibling, store_for

__all__ = ["JobPlan", "output_names", "plan_job", "select_shards", "split_shard"]


@dataclasses.dataclass
class JobPlan:
    """A map job planned against its ledger.

    Attributes:
        ledger: the job's ledger under the output prefix.
        job: the job record, opened or resumed (not yet written).
        tasks: the whole plan, for every input shard, in input order.
        records: task id -> the task's ledger record (a new one if unrecorded).
        selected: the input shards this run covers (``shards=``), in input order.
        to_run: the selected tasks that still have to run.
        earlier_failures: the selected tasks that failed in an earlier run and
            are not retried (``retry=False``).
        skipped: selected tasks not run now (done already, or failed earlier).
    """

    ledger: Ledger
    job: JobRecord
    tasks: list[PlannedTask]
    records: dict[str, ShardStatus]
    selected: list[str]
    to_run: list[PlannedTask]
    earlier_failures: list[PlannedTask]
    skipped: int

    def shard_tasks(
        self, proc: Processor[Any, Any], payload: bytes, headers: dict[str, str]
    ) -> list[ShardTask]:
        """The executor's tasks for :attr:`to_run`, each with its byte range of its shard.

        Args:
            proc: the processor (its version and timeout go into each task).
            payload: the serialised function and sample types.
            headers: the trace context the tasks continue.
        """
        parts = self.job.workers_per_shard
        ranges: dict[str, list[tuple[int, int, int, int]]] = {}
        if parts > 1:
            inputs = list(dict.fromkeys(t.input_shard for t in self.to_run))
            with concurrent.futures.ThreadPoolExecutor(min(16, max(1, len(inputs)))) as pool:
                split = pool.map(lambda u: split_shard(u, parts), inputs)
                ranges = dict(zip(inputs, split, strict=True))
        job_id = self.job.job_id
        tasks = []
        for t in self.to_run:
            byte_start, byte_end, sample_start, sample_stop = (
                ranges[t.input_shard][t.part] if t.input_shard in ranges else (0, None, 0, None)
            )
            tasks.append(
                ShardTask(
                    job_id=job_id,
                    task_id=t.task_id,
                    input_url=t.input_shard,
                    output_url=t.output_shard,
                    payload=payload,
                    byte_start=byte_start,
                    byte_end=byte_end,
                    sample_start=sample_start,
                    sample_stop=sample_stop,
                    part=t.part,
                    parts=t.parts,
                    provenance={
                        "source_job_id": job_id,
                        "parent_shards": [t.input_shard],
                        "pipeline_version": proc.version,
                    },
                    trace_headers=headers,
                    attempt=1,
                    timeout_s=proc.timeout,
                )
            )
        return tasks


def plan_job(
    all_shards: list[str],
    selected: list[str],
    output_prefix: str,
    proc: Processor[Any, Any],
    *,
    workers_per_shard: int,
    on_error: OnError,
    retry: bool,
    overwrite: bool,
) -> JobPlan:
    """Plan the job over ``all_shards`` and find, in its ledger, what is left to do.

    Args:
        all_shards: every input shard, in order.
        selected: the shards to process now (from :func:`select_shards`).
        output_prefix: where the output shards and the ledger go.
        proc: the processor.
        workers_per_shard: tasks per input shard.
        on_error: the error policy (recorded in the job).
        retry: also rerun tasks that failed in an earlier run.
        overwrite: start a new job, ignoring what the ledger records.

    Raises:
        ProcessingError: an output shard would overwrite an input shard, or the
            prefix holds an incompatible job.
    """
    tasks = _plan(all_shards, output_prefix, workers_per_shard)
    inputs = set(all_shards)
    clash = next((t for t in tasks if t.output_shard in inputs), None)
    if clash is not None:
        raise ProcessingError(
            f"output shard {clash.output_shard} would overwrite an input shard; "
            "choose an output_prefix outside the input folder"
        )
    ledger = Ledger(output_prefix)
    job = _open_job(ledger, proc, tasks, all_shards, workers_per_shard, on_error, overwrite)
    recorded = {} if overwrite else ledger.read_shards(t.task_id for t in tasks)
    records = {t.task_id: recorded.get(t.task_id) or unrecorded(t, job.job_id) for t in tasks}

    wanted = set(selected)
    candidates = [t for t in tasks if t.input_shard in wanted]
    committed = _committed_outputs([t for t in candidates if records[t.task_id].state == "done"])
    for t in candidates:
        if records[t.task_id].state == "done" and t.task_id not in committed:
            records[t.task_id].state = "pending"  # its output is gone (or never landed)
    to_run = [
        t
        for t in candidates
        if records[t.task_id].state != "done"
        and not (records[t.task_id].state == "failed" and not retry)
    ]
    earlier_failures = [t for t in candidates if records[t.task_id].state == "failed" and not retry]
    return JobPlan(
        ledger=ledger,
        job=job,
        tasks=tasks,
        records=records,
        selected=selected,
        to_run=to_run,
        earlier_failures=earlier_failures,
        skipped=len(candidates) - len(to_run),
    )


# -- the input -----------------------------------------------------------------------


def select_shards(all_shards: list[str], shards: Sequence[str] | None) -> list[str]:
    """The input shards named by ``shards=`` (all of them for None), in input order.

    Raises:
        ProcessingError: a URL that is not one of ``all_shards``.
    """
    if shards is None:
        return list(all_shards)
    if isinstance(shards, str):
        shards = [shards]
    known = set(all_shards)
    unknown = [s for s in shards if s not in known]
    if unknown:
        raise ProcessingError(
            f"shards= names {len(unknown)} URL(s) that are not shards of this dataset, "
            f"e.g. {unknown[0]!r}. Pass URLs from ds.shards or e.failed_shards."
        )
    wanted = set(shards)
    return [s for s in all_shards if s in wanted]


# -- the plan -----------------------------------------------------------------------------


def _stem(url: str) -> str:
    base = url.rstrip("/").rsplit("/", 1)[-1].split("?", 1)[0]
    return base[: -len(".tar")] if base.endswith(".tar") else base


def output_names(urls: Sequence[str]) -> list[str]:
    """Output shard names (without ``.tar``) for input shards: stable, one each.

    The file name when file names are unique; else the path below the inputs'
    common folder, so ``train/a.tar`` and ``test/a.tar`` stay apart.

    Raises:
        ProcessingError: two inputs cannot be told apart by their paths.
    """
    stems = [_stem(u) for u in urls]
    if len(set(stems)) == len(stems):
        return stems
    paths = [u.split("://", 1)[-1].split("?", 1)[0] for u in urls]
    try:
        common = posixpath.commonpath(paths)
    except ValueError:  # absolute and relative paths mixed
        common = ""
    rel = []
    for path in paths:
        name = posixpath.relpath(path, common) if common else path.lstrip("/")
        rel.append(name[: -len(".tar")] if name.endswith(".tar") else name)
    if len(set(rel)) != len(rel):
        dup = next(r for r in rel if rel.count(r) > 1)
        raise ProcessingError(
            f"two input shards map to the same output name {dup!r}; give them distinct paths"
        )
    return rel


def _join(prefix: str, name: str) -> str:
    if is_local(prefix):
        return os.path.join(prefix, name)
    return f"{prefix.rstrip('/')}/{name}"


def _plan(all_shards: list[str], prefix: str, parts: int) -> list[PlannedTask]:
    width = max(2, len(str(parts - 1)))
    plan = []
    for url, name in zip(all_shards, output_names(all_shards), strict=True):
        for part in range(parts):
            out = name if parts == 1 else f"{name}-part-{part:0{width}d}"
            plan.append(
                PlannedTask(
                    task_id=out.replace("/", "~"),
                    input_shard=url,
                    output_shard=_join(prefix, out + ".tar"),
                    part=part,
                    parts=parts,
                )
            )
    return plan


def _policy_name(on_error: OnError) -> str:
    """How the ledger records an error policy: its name, or ``callable:<qualname>``."""
    if isinstance(on_error, str):
        return on_error
    return "callable:" + getattr(on_error, "__qualname__", type(on_error).__qualname__)


def _open_job(
    ledger: Ledger,
    proc: Processor[Any, Any],
    plan: list[PlannedTask],
    all_shards: list[str],
    workers_per_shard: int,
    on_error: OnError,
    overwrite: bool,
) -> JobRecord:
    job = None if overwrite else ledger.read_job()
    out_name = proc.output_type.__name__
    if job is not None:
        if job.output_type != out_name:
            raise ProcessingError(
                f"{ledger.output_prefix} holds the output of job {job.job_id} "
                f"({job.processor}: {job.input_type} -> {job.output_type}); this map writes "
                f"{out_name}. Use another output_prefix, or overwrite=True."
            )
        if job.workers_per_shard != workers_per_shard:
            raise ProcessingError(
                f"{ledger.output_prefix} was written with workers_per_shard="
                f"{job.workers_per_shard}; rerun with that value to resume, or use another "
                "output_prefix, or overwrite=True."
            )
    if job is None:
        job = JobRecord(
            job_id=uuid.uuid4().hex,
            created_at=now_iso(),
            processor=proc.name,
            input_type=proc.input_type.__name__,
            output_type=out_name,
            pipeline_version=proc.version,
        )
        if overwrite:
            for letter in ledger.read_dead_letters():
                ledger.clear_dead_letter(letter.task_id)
    job.processor = proc.name
    job.pipeline_version = proc.version
    job.workers_per_shard = workers_per_shard
    job.on_error = _policy_name(on_error)
    job.input_shards = list(all_shards)
    job.tasks = plan
    return job


def _committed_outputs(tasks: list[PlannedTask]) -> set[str]:
    """Ids of the tasks whose output shard is committed (its manifest JSON exists)."""

    def check(task: PlannedTask) -> bool:
        store, path = store_for(sibling(task.output_shard, ".manifest.json"))
        return store.exists(path)

    if not tasks:
        return set()
    if is_local(tasks[0].output_shard) or len(tasks) == 1:
        found = [check(t) for t in tasks]
    else:
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            found = list(pool.map(check, tasks))
    return {t.task_id for t, ok in zip(tasks, found, strict=True) if ok}


# -- byte ranges ------------------------------------------------------------------------


def split_shard(url: str, parts: int) -> list[tuple[int, int, int, int]]:
    """Split a shard into ``parts`` ranges of whole samples, as even as possible.

    Offsets come from the shard's manifest when it has one, else from reading
    its tar headers. Returns ``(byte_start, byte_end, sample_start,
    sample_stop)`` per part; a part with no samples has ``byte_end == byte_start``.
    """
    offsets, sizes = _sample_offsets(url)
    n = len(offsets)
    out = []
    for i in range(parts):
        a, b = i * n // parts, (i + 1) * n // parts
        if a == b:
            out.append((0, 0, a, b))
        else:
            out.append((offsets[a], offsets[b - 1] + sizes[b - 1], a, b))
    return out


def _sample_offsets(url: str) -> tuple[list[int], list[int]]:
    store, manifest_path = store_for(sibling(url, ".manifest.parquet"))
    if store.exists(manifest_path):
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(
                pa.BufferReader(store.read(manifest_path)),
                columns=["__offset__", "__size__"],
                page_checksum_verification=True,
            )
        except (pa.ArrowException, KeyError, ValueError):
            pass  # unreadable manifest: fall back to the tar headers
        else:
            pairs = sorted(
                zip(
                    table.column("__offset__").to_pylist(),
                    table.column("__size__").to_pylist(),
                    strict=True,
                )
            )
            return [p[0] for p in pairs], [p[1] for p in pairs]
    from atdata.shards.reader import iter_raw

    offsets: list[int] = []
    sizes: list[int] = []
    for raw in iter_raw(url):
        offsets.append(raw.offset)
        sizes.append(raw.span)
    return offsets, sizes
