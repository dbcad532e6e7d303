"""``Dataset.map``: plan shard tasks, run them on an executor, keep the ledger.

The driver (this module) is the only writer of the job ledger. Per task the
order is: the worker commits the output shard (tar, then manifest parquet,
then manifest JSON last), returns its result, and only then the driver records
the task as done. A crash anywhere leaves at worst a task that is redone.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import os
import posixpath
import shutil
import sys
import tempfile
import time
import uuid
import warnings
import weakref
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from atdata import observability as obs
from atdata.errors import PartialFailureError, ProcessingError
from atdata.processing._defaults import output_prefix_default
from atdata.processing._ledger import (
    DeadLetter,
    JobRecord,
    Ledger,
    PlannedTask,
    RunRecord,
    ShardStatus,
    now_iso,
    unrecorded,
)
from atdata.processing._processor import Processor, as_processor
from atdata.processing._serialize import dumps
from atdata.processing._task import OnError, Payload, ShardResult, ShardTask
from atdata.processing.executors import Executor, get_executor
from atdata.storage import is_local, sibling, store_for

if TYPE_CHECKING:
    from atdata.dataset import Dataset

__all__ = ["map_dataset"]

_ON_ERROR = ("raise", "skip", "warn")


def map_dataset(
    ds: Dataset[Any],
    fn: Callable[[Any], Any] | Processor[Any, Any],
    output_prefix: str | None = None,
    *,
    executor: str | Executor | None = None,
    workers_per_shard: int = 1,
    shards: Sequence[str] | None = None,
    retry: bool = False,
    retries: int | None = None,
    on_error: OnError = "raise",
    overwrite: bool = False,
    progress: bool | None = None,
) -> Dataset[Any]:
    """Run ``fn`` over every sample of ``ds``, one task per shard, into a new dataset.

    Output shards are written under ``output_prefix``, one per input shard
    (``<stem>.tar``, or ``<stem>-part-NN.tar`` with ``workers_per_shard > 1``),
    each with its manifest; sample keys are the input keys (``key_N`` when a
    sample emits several), so a rerun writes the same names and keys. A job
    ledger under ``<output_prefix>/_atdata_job/`` makes a rerun resume: tasks
    whose output is committed are skipped.

    Args:
        ds: the input dataset.
        fn: a :func:`~atdata.processor`, or any function annotated
            ``(sample: In) -> Out`` (also ``Out | None``, ``list[Out]``).
        output_prefix: a folder or object-store prefix; None writes to a
            temporary folder removed when the returned dataset is garbage.
        executor: ``"local"`` (default), ``"inline"``, ``"dask"``, ``"modal"``
            (the default for processors registered on a ``modal.App``), an
            executor instance, a ``distributed.Client`` or a ``modal.Function``.
        workers_per_shard: split each shard into this many sample ranges
            (found from the manifest offsets) processed in parallel.
        shards: only these input shard URLs (e.g. ``e.failed_shards``).
        retry: also rerun tasks that failed in an earlier run (they are
            otherwise reported as failed again without running).
        retries: times a failing task is retried in this run; the
            processor's ``retries`` by default.
        on_error: ``"raise"`` (a bad sample fails its shard), ``"skip"`` (drop
            bad samples, count them and record their keys), ``"warn"`` (skip
            and warn).
        overwrite: start a new job, ignoring what the ledger records.
        progress: show a progress bar; by default only on a terminal.

    Returns:
        ``Dataset[Out]`` over the committed output shards of ``ds``, in input order.

    Raises:
        PartialFailureError: some shards failed after their retries; all
            others finished. Rerun with ``shards=e.failed_shards, retry=True``.
        ProcessingError: the function's annotations are missing or not
            sample types, or the output prefix holds an incompatible job.

    Example:
        >>> out = ds.map(embed_images, output_prefix="s3://bucket/embedded/v1")
        >>> try:
        ...     out = ds.map(embed_images, output_prefix="s3://bucket/embedded/v1")
        ... except atdata.PartialFailureError as e:
        ...     out = ds.map(embed_images, output_prefix="s3://bucket/embedded/v1",
        ...                  shards=e.failed_shards, retry=True)
    """
    proc = as_processor(fn)
    if on_error not in _ON_ERROR:
        raise ValueError(f"on_error must be one of {', '.join(_ON_ERROR)}, got {on_error!r}")
    if workers_per_shard < 1:
        raise ValueError(f"workers_per_shard must be at least 1, got {workers_per_shard}")
    budget = (proc.retries if retries is None else retries) + 1
    if budget < 1:
        raise ValueError(f"retries must be 0 or more, got {retries}")

    view = ds.as_type(proc.input_type)
    payload = _serialize(proc, view)
    all_shards = view.shards
    selected = _select(all_shards, shards)
    temporary = None
    if output_prefix is None:
        # e.g. inside an @atdata.pipeline run: the pipeline's output for this event
        output_prefix = output_prefix_default()
    if output_prefix is None:
        temporary = _TemporaryOutput(tempfile.mkdtemp(prefix="atdata-map-"))
        output_prefix = temporary.path

    plan = _plan(all_shards, output_prefix, workers_per_shard)
    inputs = set(all_shards)
    clash = next((t for t in plan if t.output_shard in inputs), None)
    if clash is not None:
        raise ProcessingError(
            f"output shard {clash.output_shard} would overwrite an input shard; "
            "choose an output_prefix outside the input folder"
        )
    ledger = Ledger(output_prefix)
    job = _open_job(ledger, proc, plan, all_shards, workers_per_shard, on_error, overwrite)
    recorded = {} if overwrite else ledger.read_shards(t.task_id for t in plan)
    records = {t.task_id: recorded.get(t.task_id) or unrecorded(t, job.job_id) for t in plan}

    wanted = set(selected)
    candidates = [t for t in plan if t.input_shard in wanted]
    committed = _committed_outputs([t for t in candidates if records[t.task_id].state == "done"])
    to_run = [
        t
        for t in candidates
        if not (records[t.task_id].state == "done" and t.task_id in committed)
        and not (records[t.task_id].state == "failed" and not retry)
    ]
    earlier_failures = [
        t for t in candidates if records[t.task_id].state == "failed" and not retry
    ]

    runner, owned = get_executor(executor, proc)
    if temporary is not None and not _reaches_local_disk(runner):
        raise ProcessingError(
            f"{type(runner).__name__} runs tasks on other machines, which cannot write to a "
            "local temporary folder: pass output_prefix='s3://bucket/prefix' (or r2://...)"
        )
    run = RunRecord(
        started_at=now_iso(),
        executor=type(runner).__name__,
        tasks_skipped=len(candidates) - len(to_run),
    )
    job.runs.append(run)
    ledger.write_job(job)

    obs.log_event(
        "map job started",
        job_id=job.job_id,
        processor=proc.name,
        output_prefix=output_prefix,
        tasks=len(to_run),
        skipped=len(candidates) - len(to_run),
    )
    errors: dict[str, str] = {}
    skipped_samples = 0
    clock = time.perf_counter()
    # (obs.trace's no-op span works in a `with` statement, not in an ExitStack)
    with (
        _closing(runner) if owned else contextlib.nullcontext(),
        obs.trace("map_job", job_id=job.job_id, processor=proc.name, tasks=len(to_run)) as span,
        _Progress(progress, len(to_run), proc.name) as bar,
    ):
        run.workers = runner.workers
        headers = obs.inject_trace_context()
        tasks = _tasks(to_run, job, proc, payload, on_error, headers, workers_per_shard)
        tries: dict[str, int] = {}
        while tasks:
            retry_next: list[ShardTask] = []
            for task, outcome in runner.map(tasks):
                result = (
                    outcome
                    if isinstance(outcome, ShardResult)
                    else ShardResult.from_exception(task, outcome)
                )
                tries[task.task_id] = tries.get(task.task_id, 0) + 1
                record = records[task.task_id]
                _update(record, result, job.job_id)
                run.busy_s += result.busy_s
                run.cpu_s += result.cpu_s
                obs.metrics.shard_processing_time.observe(result.busy_s)
                if result.ok:
                    ledger.write_shard(record)
                    if record.attempts > 1:
                        ledger.clear_dead_letter(task.task_id)
                    obs.metrics.samples_processed.inc(result.samples_in)
                    if result.samples_skipped:
                        obs.metrics.samples_skipped.inc(result.samples_skipped)
                        skipped_samples += result.samples_skipped
                    obs.log_event(
                        "map shard finished",
                        job_id=job.job_id,
                        shard=task.input_url,
                        task=task.task_id,
                        duration_s=round(result.busy_s, 6),
                        samples_in=result.samples_in,
                        samples_out=result.samples_out,
                    )
                    bar.advance(result)
                    continue
                final = tries[task.task_id] >= budget
                record.state = "failed" if final else "pending"
                ledger.write_shard(record)
                obs.log_event(
                    "map shard failed",
                    level="error" if final else "warning",
                    job_id=job.job_id,
                    shard=task.input_url,
                    task=task.task_id,
                    attempt=record.attempts,
                    final=final,
                    error=record.error,
                )
                if final:
                    run.tasks_failed += 1
                    errors.setdefault(task.input_url, result.error or record.error or "")
                    ledger.write_dead_letter(_dead_letter(task, record, result))
                    bar.advance(result)
                else:
                    obs.metrics.retries.inc()
                    retry_next.append(dataclasses.replace(task, attempt=record.attempts + 1))
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

    if earlier_failures:
        letters = {d.task_id: d for d in ledger.read_dead_letters()}
        for t in earlier_failures:
            errors.setdefault(t.input_shard, _earlier_error(records[t.task_id], letters))
    if on_error == "warn" and skipped_samples:
        warnings.warn(
            f"{proc.name}: {skipped_samples} bad samples were skipped; their keys are in "
            f"atdata.job_status({output_prefix!r}).shards[i].skipped_keys",
            RuntimeWarning,
            stacklevel=3,
        )
    if errors:
        unfinished = {t.input_shard for t in plan if records[t.task_id].state != "done"}
        failed = [s for s in selected if s in errors]
        succeeded = [s for s in selected if s not in errors and s not in unfinished]
        raise PartialFailureError(succeeded, failed, errors, output_prefix=output_prefix)
    return _output_dataset(proc, plan, records, temporary)


# -- the input -----------------------------------------------------------------------


def _select(all_shards: list[str], shards: Sequence[str] | None) -> list[str]:
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


def _open_job(
    ledger: Ledger,
    proc: Processor[Any, Any],
    plan: list[PlannedTask],
    all_shards: list[str],
    workers_per_shard: int,
    on_error: str,
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
    job.on_error = on_error
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


def _serialize(proc: Processor[Any, Any], view: Dataset[Any]) -> bytes:
    payload = Payload(
        fn=proc,
        stored_type=view.shard_set.stored_type,
        transform=view.transform_one,
        output_type=proc.output_type,
        name=proc.name,
    )
    try:
        return dumps(payload)
    except Exception as exc:
        raise ProcessingError(
            f"{proc.name} cannot be sent to workers: {type(exc).__name__}: {exc}. It (or a "
            "global it uses) holds something that cannot be pickled, such as an open file, "
            "a lock or a client; create such objects inside the function, lazily."
        ) from exc


def _tasks(
    planned: list[PlannedTask],
    job: JobRecord,
    proc: Processor[Any, Any],
    payload: bytes,
    on_error: OnError,
    headers: dict[str, str],
    workers_per_shard: int,
) -> list[ShardTask]:
    ranges: dict[str, list[tuple[int, int, int, int]]] = {}
    if workers_per_shard > 1:
        inputs = list(dict.fromkeys(t.input_shard for t in planned))
        with concurrent.futures.ThreadPoolExecutor(min(16, max(1, len(inputs)))) as pool:
            split = pool.map(lambda u: split_shard(u, workers_per_shard), inputs)
            ranges = dict(zip(inputs, split, strict=True))
    tasks = []
    for t in planned:
        byte_start, byte_end, sample_start, sample_stop = (
            ranges[t.input_shard][t.part] if t.input_shard in ranges else (0, None, 0, None)
        )
        tasks.append(
            ShardTask(
                job_id=job.job_id,
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
                on_error=on_error,
                provenance={
                    "source_job_id": job.job_id,
                    "parent_shards": [t.input_shard],
                    "pipeline_version": proc.version,
                },
                trace_headers=headers,
                attempt=1,
                timeout_s=proc.timeout,
            )
        )
    return tasks


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
                pa.BufferReader(store.read(manifest_path)), columns=["__offset__", "__size__"]
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


def _output_dataset(
    proc: Processor[Any, Any],
    plan: list[PlannedTask],
    records: dict[str, ShardStatus],
    temporary: _TemporaryOutput | None,
) -> Dataset[Any]:
    from atdata.dataset import Dataset

    urls = [t.output_shard for t in plan if records[t.task_id].state == "done"]
    if not urls:
        raise ProcessingError("no output shard is committed yet, so there is no dataset to return")
    out: Dataset[Any] = Dataset[proc.output_type](urls)  # type: ignore[name-defined]
    if temporary is not None:
        out.__dict__["_atdata_temporary_output"] = temporary
    return out


def _reaches_local_disk(executor: Executor) -> bool:
    from atdata.processing.executors.inline import InlineExecutor
    from atdata.processing.executors.local import LocalExecutor

    if isinstance(executor, (InlineExecutor, LocalExecutor)):
        return True
    # Dask on a LocalCluster shares this disk; a remote cluster would not.
    client = getattr(executor, "client", None)
    cluster = getattr(client, "cluster", None)
    return type(cluster).__name__ == "LocalCluster"


class _TemporaryOutput:
    """Owns a temporary output folder; removes it when no dataset refers to it any more."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._cleanup = weakref.finalize(self, shutil.rmtree, path, ignore_errors=True)

    def __reduce__(self) -> Any:
        # A copy in another process (a DataLoader worker) must not delete the folder.
        return _no_owner, ()


def _no_owner() -> None:
    return None


@contextlib.contextmanager
def _closing(executor: Executor) -> Any:
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


class _Progress:
    """A progress bar over shards and samples, shown only on a terminal by default."""

    def __init__(self, enabled: bool | None, total: int, name: str) -> None:
        self.total = total
        self.name = name
        self.samples = 0
        self._progress: Any = None
        self._task: Any = None
        if enabled is None:
            enabled = sys.stderr.isatty() and total > 0
        self.enabled = enabled

    def __enter__(self) -> _Progress:
        if self.enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("shards · {task.fields[samples]:,} samples"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=Console(stderr=True),
            )
            self._progress.__enter__()
            self._task = self._progress.add_task(self.name, total=self.total, samples=0)
        return self

    def advance(self, result: ShardResult) -> None:
        self.samples += result.samples_in
        if self._progress is not None:
            self._progress.update(self._task, advance=1, samples=self.samples)

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)
