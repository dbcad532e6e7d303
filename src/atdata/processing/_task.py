"""The shard task: one input shard (or a byte range of it) in, one output shard out.

:func:`process_shard` is the only code that touches samples during a map job.
Every executor (inline, local processes, Dask, Modal) runs this same function
on the same :class:`ShardTask`, so a job behaves identically wherever it runs;
executors differ only in where the call happens.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import socket
import time
import traceback
import typing
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from atdata import observability as obs
from atdata.errors import (
    ProcessingError,
    SchemaError,
    SchemaMismatchError,
    ShardCorruptError,
    ShardError,
)
from atdata.loader._batch import SampleBatch
from atdata.processing._serialize import loads_cached
from atdata.sample import DictSample, PackableSample, Schema
from atdata.shards import ShardWriter
from atdata.shards._tar import end_of_archive
from atdata.shards.reader import ErrorPolicy, RawSample, decode_raw, iter_raw
from atdata.storage import LiteralURL, store_for

__all__ = ["OnError", "ProgressCallback", "ShardResult", "ShardTask", "process_shard"]

OnError = ErrorPolicy[Exception]
"""The error policy of ``Dataset.map`` (``on_error=``): :data:`~atdata.shards.reader.ErrorPolicy`,
whose callable is given whatever a bad sample (or a batched function's failing batch) raised."""

ProgressCallback = Callable[[int], None]
"""Called with the number of input samples a task has read so far (see :func:`process_shard`)."""

_MAX_RECORDED_KEYS = 10_000
PROGRESS_INTERVAL_S = 0.2
"""At most one progress report per this many seconds from a running task."""


@dataclasses.dataclass(frozen=True)
class ShardTask:
    """Everything a worker needs to process one shard (or one range of it).

    Small and picklable: the user's function (and a callable ``on_error``)
    travels inside ``payload`` as cloudpickle bytes, so the task can be sent to
    a local process, a Dask worker or a Modal container alike.

    Attributes:
        job_id: the map job this task belongs to.
        task_id: stable name of the task (the output shard's name).
        input_url: the input shard.
        output_url: where the output shard is committed.
        payload: the serialised function, sample types and error policy (see ``_map``).
        byte_start: first byte of the range to read (a sample's tar header).
        byte_end: end of the range; None reads to the end of the shard.
        sample_start: index of the first sample in the range (for the ledger).
        sample_stop: index after the last sample in the range, when known.
        part: which range of the input shard this is (0 for a whole shard).
        parts: how many ranges the input shard was split into.
        provenance: recorded in the output manifest.
        trace_headers: W3C trace context, to continue the job's trace.
        attempt: 1 for the first attempt of this task.
        timeout_s: seconds a local worker may spend on the task; None: no limit.

    Example:
        >>> task.task_id, task.input_url, task.part, task.parts   # as Dataset.map plans it
        ('shard-000000', 'data/shard-000000.tar', 0, 1)
        >>> atdata.InlineExecutor().submit(task).result().samples_out
        4
    """

    job_id: str
    task_id: str
    input_url: str
    output_url: str
    payload: bytes
    byte_start: int = 0
    byte_end: int | None = None
    sample_start: int = 0
    sample_stop: int | None = None
    part: int = 0
    parts: int = 1
    provenance: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    trace_headers: Mapping[str, str] = dataclasses.field(default_factory=dict)
    attempt: int = 1
    timeout_s: float | None = None


@dataclasses.dataclass(frozen=True)
class ShardResult:
    """What a shard task reports back; failures are data, not exceptions.

    Attributes:
        task_id: the task's id.
        ok: True when the output shard is committed.
        samples_in: input samples read.
        samples_out: output samples written.
        samples_skipped: samples dropped by the error policy (``on_error``).
        skipped_keys: keys of the dropped samples (at most 10,000).
        error: the formatted traceback when ``ok`` is False.
        error_type: the exception's class name when ``ok`` is False.
        busy_s: seconds spent in the task, for worker utilisation.
        cpu_s: CPU seconds the worker process used in the task (busy_s much
            larger means waiting: on storage, or on a crowded machine).
        started_at: Unix time the task started.
        worker: ``host:pid`` of the process that ran it.

    Example:
        >>> result = atdata.InlineExecutor().submit(task).result()
        >>> result.ok, result.samples_in, result.samples_out, result.error
        (True, 4, 4, None)
    """

    task_id: str
    ok: bool
    samples_in: int = 0
    samples_out: int = 0
    samples_skipped: int = 0
    skipped_keys: tuple[str, ...] = ()
    error: str | None = None
    error_type: str | None = None
    busy_s: float = 0.0
    cpu_s: float = 0.0
    started_at: float = 0.0
    worker: str = ""

    @classmethod
    def from_exception(cls, task: ShardTask, exc: BaseException) -> ShardResult:
        """A failed result for a task whose worker raised or died instead of returning.

        Example:
            >>> failed = ShardResult.from_exception(task, MemoryError("out of memory"))
            >>> failed.ok, failed.error_type, failed.error
            (False, 'MemoryError', 'out of memory\\n')
        """
        text = "".join(traceback.format_exception(exc)) if exc.__traceback__ else f"{exc}\n"
        return cls(
            task_id=task.task_id,
            ok=False,
            error=text,
            error_type=type(exc).__name__,
            started_at=time.time(),
        )


@dataclasses.dataclass(frozen=True)
class Payload:
    """The per-job part of every task: the function, how to read and write samples,
    and what to do with a bad one."""

    fn: Callable[[Any], Any]
    stored_type: type
    transform: Callable[[Any], Any]  # the input view's lenses and filters; None: filtered out
    output_type: type
    name: str
    on_error: OnError = "raise"
    batch_size: int | None = None  # None: the function takes one sample per call


class _Counts:
    __slots__ = ("samples_in", "samples_out", "skipped")

    def __init__(self) -> None:
        self.samples_in = 0
        self.samples_out = 0
        self.skipped: list[str] = []


def process_shard(task: ShardTask, progress: ProgressCallback | None = None) -> ShardResult:
    """Run a task: read its samples, apply the function, commit the output shard.

    Never raises for a failure of the user's function or of storage: the error
    and its traceback come back in the :class:`ShardResult`, so every executor
    reports failures the same way.

    Args:
        task: the shard task.
        progress: called with the samples read so far, at most every
            :data:`PROGRESS_INTERVAL_S` seconds while the task runs.

    Returns:
        The result, with counts and the task's busy time.

    Example:
        >>> result = process_shard(task)
        >>> result.ok, result.samples_out
        (True, 4)
    """
    started = time.time()
    clock = time.perf_counter()
    cpu = time.process_time()
    counts = _Counts()
    worker = f"{socket.gethostname()}:{os.getpid()}"
    try:
        with (
            obs.attach_trace_context(task.trace_headers),
            obs.trace(
                "process_shard",
                shard=task.input_url,
                part=task.part,
                job_id=task.job_id,
                attempt=task.attempt,
            ) as span,
        ):
            _run(task, counts, _Throttled(progress) if progress is not None else None)
            span.set_attribute("samples_out", counts.samples_out)
    except Exception as exc:  # noqa: BLE001 - a failure is reported as data, with its traceback
        return ShardResult(
            task_id=task.task_id,
            ok=False,
            samples_in=counts.samples_in,
            samples_out=counts.samples_out,
            samples_skipped=len(counts.skipped),
            skipped_keys=tuple(counts.skipped[:_MAX_RECORDED_KEYS]),
            error="".join(traceback.format_exception(exc)),
            error_type=type(exc).__name__,
            busy_s=time.perf_counter() - clock,
            cpu_s=time.process_time() - cpu,
            started_at=started,
            worker=worker,
        )
    return ShardResult(
        task_id=task.task_id,
        ok=True,
        samples_in=counts.samples_in,
        samples_out=counts.samples_out,
        samples_skipped=len(counts.skipped),
        skipped_keys=tuple(counts.skipped[:_MAX_RECORDED_KEYS]),
        busy_s=time.perf_counter() - clock,
        cpu_s=time.process_time() - cpu,
        started_at=started,
        worker=worker,
    )


def _run(task: ShardTask, counts: _Counts, progress: ProgressCallback | None) -> None:
    payload: Payload = loads_cached(task.payload, task.job_id)
    # Types that travelled by value get their codec on first touch; touch them
    # now so that ``isinstance(x, PackableSample)`` holds before the first write.
    for tp in (payload.stored_type, payload.output_type):
        getattr(tp, "__atdata_codec__", None)
    writer = ShardWriter(
        LiteralURL(task.output_url),  # one output shard, named as planned ('%' included)
        maxcount=2**62,
        maxsize=float("inf"),
        manifest=True,
        provenance=task.provenance,
    )
    with writer:
        shard = _Shard(task, payload, counts, writer, progress)
        if payload.batch_size is None:
            shard.run_samples()
        else:
            shard.run_batches(payload.batch_size)
    if writer.count == 0:
        _commit_empty(task, payload.output_type)


class _Shard:
    """One task's loop: read and decode the inputs, call the function, write its outputs.

    Input samples that cannot be read or decoded are judged one by one by the
    error policy; a call of the function is judged as a whole (for a batched
    function, all the samples of the batch).
    """

    def __init__(
        self,
        task: ShardTask,
        payload: Payload,
        counts: _Counts,
        writer: ShardWriter,
        progress: ProgressCallback | None,
    ) -> None:
        self.task = task
        self.payload = payload
        self.counts = counts
        self.writer = writer
        self.progress = progress

    def inputs(self) -> Iterator[tuple[str, Any]]:
        """``(key, sample)`` for each input the view keeps; bad ones go to the policy."""
        decode = typing.cast(Any, self.payload.stored_type).from_bytes
        transform, url, counts, progress = (
            self.payload.transform,
            self.task.input_url,
            self.counts,
            self.progress,
        )
        for raw in _members(self.task):
            if not isinstance(raw, RawSample):
                self.bad([f"@{raw.offset}"], raw)
                continue
            counts.samples_in += 1
            if progress is not None:
                progress(counts.samples_in)
            try:
                sample = transform(decode_raw(decode, raw, url))
            except SchemaMismatchError:
                raise  # every sample would fail alike: never skipped
            except Exception as exc:  # noqa: BLE001 - judged by the error policy
                self.bad([raw.key], exc)
                continue
            if sample is not None:
                yield raw.key, sample

    def run_samples(self) -> None:
        """Call the function on each sample."""
        fn, out_type, name = self.payload.fn, self.payload.output_type, self.payload.name
        for key, sample in self.inputs():
            try:
                outputs = _outputs(fn(sample), key, out_type, name)
            except SchemaMismatchError:
                raise
            except Exception as exc:  # noqa: BLE001 - judged by the error policy
                self.bad([key], exc)
                continue
            self.write(outputs, [key])

    def run_batches(self, size: int) -> None:
        """Call the function on batches of ``size`` samples (the last one may be short)."""
        keys: list[str] = []
        samples: list[Any] = []
        for key, sample in self.inputs():
            keys.append(key)
            samples.append(sample)
            if len(samples) == size:
                self.call_batch(keys, samples)
                keys, samples = [], []
        if samples:
            self.call_batch(keys, samples)

    def call_batch(self, keys: list[str], samples: list[Any]) -> None:
        """Call the function on one batch and write what it returns."""
        payload = self.payload
        try:
            result = payload.fn(SampleBatch(samples))
            outputs = _batch_outputs(result, keys, payload.output_type, payload.name)
        except SchemaMismatchError:
            raise
        except Exception as exc:  # noqa: BLE001 - judged by the error policy
            self.bad(keys, exc)
            return
        self.write(outputs, keys)

    def write(self, outputs: list[Any], keys: list[str]) -> None:
        """Write one call's outputs; a value its type refuses or a duplicate key is bad input."""
        try:
            for out in outputs:
                self.writer.write(out)
                self.counts.samples_out += 1
        except (SchemaError, ShardError) as exc:
            self.bad(keys, exc)

    def bad(self, keys: list[str], exc: Exception) -> None:
        """Apply the error policy to bad input samples: raise (fail the shard) or skip them."""
        policy = self.payload.on_error
        failure = exc if policy == "raise" else None
        if callable(policy):
            try:
                policy(exc)
            except Exception as raised:  # noqa: BLE001 - the policy fails the shard with it
                failure = raised
        what = f"sample {keys[0]!r}" if len(keys) == 1 else _batch_name(keys)
        if failure is not None:
            raise ProcessingError(f"{what}: {type(failure).__name__}: {failure}") from failure
        self.counts.skipped.extend(keys)
        obs.log_event(
            "sample skipped" if len(keys) == 1 else "batch skipped",
            level="warning",
            job_id=self.task.job_id,
            shard=self.task.input_url,
            key=keys[0] if len(keys) == 1 else what,
            error=f"{type(exc).__name__}: {exc}",
        )


class _Throttled:
    """A progress callback called at most every :data:`PROGRESS_INTERVAL_S` seconds."""

    __slots__ = ("due", "report")

    def __init__(self, report: ProgressCallback) -> None:
        self.report = report
        self.due = time.monotonic() + PROGRESS_INTERVAL_S

    def __call__(self, samples: int) -> None:
        now = time.monotonic()
        if now >= self.due:
            self.due = now + PROGRESS_INTERVAL_S
            self.report(samples)


def _batch_name(keys: list[str]) -> str:
    return f"batch of {len(keys)} samples {keys[0]!r}..{keys[-1]!r}"


def _members(task: ShardTask) -> Iterator[RawSample | ShardCorruptError]:
    """Each sample in the task's range; damage that ends the range (a bad tar header
    cannot be skipped past) comes last, as the error, for the error policy to judge."""
    try:
        yield from iter_raw(task.input_url, byte_range=(task.byte_start, task.byte_end))
    except ShardCorruptError as error:
        yield error


def _key_of(obj: Any) -> str | None:
    if isinstance(obj, Mapping) and not isinstance(obj, DictSample):
        key = obj.get("__key__")
    elif isinstance(obj, DictSample):
        key = obj.__key__
    else:
        key = getattr(obj, "__dict__", {}).get("__key__")
    return key if isinstance(key, str) else None


def _outputs(result: Any, key: str, out_type: type, name: str) -> list[Any]:
    """The samples a function call emitted, type-checked and keyed."""
    if type(result) is out_type and out_type is not DictSample:  # the common case, fast
        fields = result.__dict__
        if fields.get("__key__") is None:
            fields["__key__"] = key
        return [result]
    if result is None:
        return []
    many = _is_many(result)
    items = list(result) if many else [result]
    out = []
    for i, item in enumerate(items):
        _check_output(item, out_type, name)
        own = _key_of(item)
        if many:
            new_key = own if own is not None and own != key else f"{key}_{i}"
        else:
            new_key = own if own is not None else key
        out.append(_with_key(item, new_key))
    return out


def _batch_outputs(result: Any, keys: list[str], out_type: type, name: str) -> list[Any]:
    """The samples a call on a batch emitted, type-checked and keyed.

    As many outputs as inputs: the i-th takes the i-th input's key; otherwise
    each is named ``<first input key>_<i>``. An output's own key always wins.
    """
    if result is None:
        return []
    if not _is_many(result):
        raise ProcessingError(
            f"{name} returned a {type(result).__name__} for a batch; a batched processor "
            f"returns a SampleBatch, a list or an iterator of {out_type.__name__} (or None)"
        )
    items = list(result)
    aligned = len(items) == len(keys)

    def default_key(i: int) -> str:
        return keys[i] if aligned else f"{keys[0]}_{i}"

    fast = out_type is not DictSample
    for i, item in enumerate(items):
        if fast and type(item) is out_type:  # the common case, fast
            fields = item.__dict__
            if fields.get("__key__") is None:
                fields["__key__"] = default_key(i)
            continue
        _check_output(item, out_type, name)
        own = _key_of(item)
        items[i] = _with_key(item, own if own is not None else default_key(i))
    return items


def _is_many(result: Any) -> bool:
    """A function's result holds several samples (and is not itself one)."""
    return isinstance(result, (list, tuple, SampleBatch)) or (
        isinstance(result, Iterator) and not isinstance(result, Mapping)
    )


def _check_output(item: Any, out_type: type, name: str) -> None:
    if out_type is DictSample:
        if isinstance(item, (DictSample, Mapping, PackableSample)):
            return
    elif isinstance(item, out_type):
        return
    raise ProcessingError(
        f"{name} returned a {type(item).__name__}, expected {out_type.__name__} "
        f"(its return annotation), None, or a list of {out_type.__name__}"
    )


def _with_key(item: Any, key: str) -> Any:
    if isinstance(item, DictSample):
        item.__key__ = key
        return item
    if isinstance(item, Mapping):
        return {**item, "__key__": key}
    item.__dict__["__key__"] = key
    return item


def _commit_empty(task: ShardTask, out_type: type) -> None:
    """Commit an empty shard and its manifest, so every task has one output shard."""
    from atdata.manifest.builder import ManifestBuilder

    store, path = store_for(task.output_url)
    data = end_of_archive(0)
    store.write(path, data)
    schema = getattr(out_type, "__schema__", None) or Schema(out_type.__name__, "1.0.0", ())
    builder = ManifestBuilder(task.output_url, schema=schema, provenance=task.provenance)
    builder.commit(size_bytes=len(data), checksum_sha256=hashlib.sha256(data).hexdigest())
