"""``Dataset.map``: plan shard tasks, run them on an executor, keep the ledger.

:func:`map_dataset` checks the options and serialises the function, plans the
job against its ledger (``_plan``), runs it (``_run``) and returns the output
dataset.

The driver is the only writer of the job ledger. Per task the order is: the
worker commits the output shard (tar, then manifest parquet, then manifest
JSON last), returns its result, and only then the driver records the task as
done. A crash anywhere leaves at worst a task that is redone.
"""

from __future__ import annotations

import shutil
import tempfile
import weakref
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from atdata._interrupt import Interruptible
from atdata.errors import ProcessingError
from atdata.processing._defaults import output_prefix_default
from atdata.processing._plan import JobPlan, plan_job, select_shards
from atdata.processing._processor import Processor, as_processor
from atdata.processing._run import raise_for_failures, run_job, warn_skipped
from atdata.processing._serialize import dumps
from atdata.processing._task import OnError, Payload
from atdata.processing.executors import Executor, get_executor

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

    Ctrl-C stops the running tasks (their unfinished output shards are
    discarded; committed ones stay) and says what was done in one line, e.g.
    ``Interrupted: 3 of 8 shards done; run the same map again to resume.``
    In a script it is printed to stderr and the process exits with status 130,
    without a traceback (the exception is a ``KeyboardInterrupt`` that is also
    a ``SystemExit(130)``, so ``except KeyboardInterrupt`` still catches it);
    in an interactive session (the REPL, IPython, Jupyter) a plain
    ``KeyboardInterrupt`` carrying that line is raised, and the session goes on.

    Args:
        ds: the input dataset.
        fn: a :func:`~atdata.processor`, or any function annotated
            ``(sample: In) -> Out`` (also ``Out | None``, ``list[Out]``) or
            ``(batch: SampleBatch[In]) -> list[Out]`` (batched, 64 samples per
            call). A plain function is named after itself, and its version
            (recorded in the ledger and the output manifests) is its qualified
            name and a hash of its code.
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
        on_error: what a bad sample does: ``"raise"`` (fails its shard),
            ``"skip"``, ``"warn"``, or a callable given each error; see
            :data:`~atdata.shards.reader.ErrorPolicy`.
        overwrite: start a new job, ignoring what the ledger records.
        progress: show a progress bar (shards, and samples as they are read)
            on stderr; None (default): only when stderr is a terminal.

    Returns:
        ``Dataset[Out]`` over the committed output shards of ``ds``, in input order.

    Raises:
        PartialFailureError: some shards failed after their retries; all
            others finished. Rerun with ``shards=e.failed_shards, retry=True``.
        ProcessingError: the function's annotations are missing or not
            sample types, or the output prefix holds an incompatible job.

    Example:
        >>> out = ds.map(embed, output_prefix="out/embedded/v1")
        >>> try:
        ...     out = ds.map(embed, output_prefix="out/embedded/v1")
        ... except atdata.PartialFailureError as e:
        ...     out = ds.map(embed, output_prefix="out/embedded/v1",
        ...                  shards=e.failed_shards, retry=True)
        >>> len(out.shards)
        10
        >>> out = ds.map(embed, output_prefix="out/embedded/v1", progress=False)  # no bar
    """
    proc = as_processor(fn)
    budget = _attempts(proc, on_error, workers_per_shard, retries)
    view: Dataset[Any] = ds.as_type(proc.input_type)
    payload = _serialize(proc, view, on_error)
    selected = select_shards(view.shards, shards)
    output_prefix, temporary = _output_prefix(output_prefix)
    plan = plan_job(
        view.shards,
        selected,
        output_prefix,
        proc,
        workers_per_shard=workers_per_shard,
        on_error=on_error,
        retry=retry,
        overwrite=overwrite,
    )
    runner, owned = get_executor(executor, proc)
    if temporary is not None:
        _check_reaches_local_disk(runner)
    with Interruptible(lambda: _interrupted(plan, overwrite, temporary=temporary is not None)):
        outcome = run_job(
            plan, runner, owned=owned, proc=proc, payload=payload, budget=budget, progress=progress
        )
    if on_error == "warn":
        warn_skipped(plan, outcome, proc.name)
    raise_for_failures(plan, outcome)
    return _output_dataset(proc, plan, temporary)


# -- the options and the payload --------------------------------------------------------


def _attempts(
    proc: Processor[Any, Any], on_error: OnError, workers_per_shard: int, retries: int | None
) -> int:
    """Check the options; returns the attempts each task gets in this run."""
    if not callable(on_error) and on_error not in _ON_ERROR:
        raise ValueError(
            f"on_error must be one of {', '.join(_ON_ERROR)} or a callable, got {on_error!r}"
        )
    if workers_per_shard < 1:
        raise ValueError(f"workers_per_shard must be at least 1, got {workers_per_shard}")
    budget = (proc.retries if retries is None else retries) + 1
    if budget < 1:
        raise ValueError(f"retries must be 0 or more, got {retries}")
    return budget


def _serialize(proc: Processor[Any, Any], view: Dataset[Any], on_error: OnError) -> bytes:
    payload = Payload(
        fn=proc,
        stored_type=view.shard_set.stored_type,
        transform=view.transform_one,
        output_type=proc.output_type,
        name=proc.name,
        on_error=on_error,
        batch_size=proc.batch_size,
    )
    try:
        return dumps(payload)
    except Exception as exc:
        raise ProcessingError(
            f"{proc.name} cannot be sent to workers: {type(exc).__name__}: {exc}. It (or a "
            "global it uses, or the on_error callable) holds something that cannot be "
            "pickled, such as an open file, a lock or a client; create such objects inside "
            "the function, lazily."
        ) from exc


def _output_prefix(output_prefix: str | None) -> tuple[str, _TemporaryOutput | None]:
    """The prefix to write under, and the temporary folder that is it, if one is made."""
    if output_prefix is None:
        # e.g. inside an @atdata.pipeline run: the pipeline's output for this event
        output_prefix = output_prefix_default()
    if output_prefix is not None:
        return output_prefix, None
    temporary = _TemporaryOutput(tempfile.mkdtemp(prefix="atdata-map-"))
    return temporary.path, temporary


# -- the output ---------------------------------------------------------------------------


def _interrupted(plan: JobPlan, overwrite: bool, *, temporary: bool) -> str:
    """What an interrupted job had done, and what a rerun of the same call does."""
    selected = set(plan.selected)
    tasks = [t for t in plan.tasks if t.input_shard in selected]
    done = sum(plan.records[t.task_id].state == "done" for t in tasks)
    noun = "shards" if plan.job.workers_per_shard == 1 else "tasks"
    what = f"{done} of {len(tasks)} {noun} done"
    if temporary:
        return f"{what} in a temporary folder; pass output_prefix= to make a rerun resume"
    if overwrite:
        return f"{what}; run the same map again without overwrite=True to resume"
    return f"{what}; run the same map again to resume"


def _output_dataset(
    proc: Processor[Any, Any], plan: JobPlan, temporary: _TemporaryOutput | None
) -> Dataset[Any]:
    """``Dataset[Out]`` over the plan's committed output shards; it keeps ``temporary`` alive."""
    from atdata.dataset import Dataset

    urls = [t.output_shard for t in plan.tasks if plan.records[t.task_id].state == "done"]
    if not urls:
        raise ProcessingError("no output shard is committed yet, so there is no dataset to return")
    out: Dataset[Any] = Dataset[proc.output_type](urls)  # type: ignore[name-defined]
    if temporary is not None:
        out.__dict__["_atdata_temporary_output"] = temporary
    return out


def _check_reaches_local_disk(executor: Executor) -> None:
    """Refuse an executor whose workers cannot write to this machine's temporary folder."""
    from atdata.processing.executors.inline import InlineExecutor
    from atdata.processing.executors.local import LocalExecutor

    if isinstance(executor, (InlineExecutor, LocalExecutor)):
        return
    # Dask on a LocalCluster shares this disk; a remote cluster would not.
    client = getattr(executor, "client", None)
    cluster = getattr(client, "cluster", None)
    if type(cluster).__name__ != "LocalCluster":
        raise ProcessingError(
            f"{type(executor).__name__} runs tasks on other machines, which cannot write to a "
            "local temporary folder: pass output_prefix='s3://bucket/prefix' (or r2://...)"
        )


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
