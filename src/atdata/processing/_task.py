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
from atdata.processing._serialize import loads_cached
from atdata.sample import DictSample, PackableSample, Schema
from atdata.shards import ShardWriter
from atdata.shards._tar import end_of_archive
from atdata.shards.reader import ErrorPolicy, RawSample, decode_raw, iter_raw
from atdata.storage import LiteralURL, store_for

__all__ = ["OnError", "ShardResult", "ShardTask", "process_shard"]

OnError = ErrorPolicy[Exception]
"""The error policy of ``Dataset.map`` (``on_error=``): :data:`~atdata.shards.reader.ErrorPolicy`,
whose callable is given whatever a bad sample raised."""

_MAX_RECORDED_KEYS = 10_000


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
        """A failed result for a task whose worker raised or died instead of returning."""
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


class _Counts:
    __slots__ = ("samples_in", "samples_out", "skipped")

    def __init__(self) -> None:
        self.samples_in = 0
        self.samples_out = 0
        self.skipped: list[str] = []


def process_shard(task: ShardTask) -> ShardResult:
    """Run a task: read its samples, apply the function, commit the output shard.

    Never raises for a failure of the user's function or of storage: the error
    and its traceback come back in the :class:`ShardResult`, so every executor
    reports failures the same way.

    Args:
        task: the shard task.

    Returns:
        The result, with counts and the task's busy time.

    Example:
        >>> result = process_shard(task)            # doctest: +SKIP
        >>> result.ok, result.samples_out           # doctest: +SKIP
        (True, 2000)
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
            _run(task, counts)
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


def _run(task: ShardTask, counts: _Counts) -> None:
    payload: Payload = loads_cached(task.payload)
    # Types that travelled by value get their codec on first touch; touch them
    # now so that ``isinstance(x, PackableSample)`` holds before the first write.
    for tp in (payload.stored_type, payload.output_type):
        getattr(tp, "__atdata_codec__", None)
    fn, transform, out_type = payload.fn, payload.transform, payload.output_type
    decode = typing.cast(Any, payload.stored_type).from_bytes
    policy = payload.on_error
    writer = ShardWriter(
        LiteralURL(task.output_url),  # one output shard, named as planned ('%' included)
        maxcount=2**62,
        maxsize=float("inf"),
        manifest=True,
        provenance=task.provenance,
    )
    with writer:
        for raw in _members(task):
            key = raw.key if isinstance(raw, RawSample) else f"@{raw.offset}"
            try:
                if not isinstance(raw, RawSample):
                    raise raw
                counts.samples_in += 1
                sample = transform(decode_raw(decode, raw, task.input_url))
                if sample is None:
                    continue
                outputs = _outputs(fn(sample), key, out_type, payload.name)
            except SchemaMismatchError:
                raise  # every sample would fail alike: never skipped
            except Exception as exc:  # noqa: BLE001 - judged by the error policy
                _bad_sample(task, key, exc, counts, policy)
                continue
            try:
                for out in outputs:
                    writer.write(out)
            except (SchemaError, ShardError) as exc:  # a value its type refuses, a duplicate key
                _bad_sample(task, key, exc, counts, policy)
                continue
            counts.samples_out += len(outputs)
    if writer.count == 0:
        _commit_empty(task, out_type)


def _bad_sample(
    task: ShardTask, key: str, exc: Exception, counts: _Counts, policy: OnError
) -> None:
    """Apply the error policy to one bad sample: raise (fail the shard) or skip it."""
    failure = exc if policy == "raise" else None
    if callable(policy):
        try:
            policy(exc)
        except Exception as raised:  # noqa: BLE001 - the policy fails the shard with it
            failure = raised
    if failure is not None:
        raise ProcessingError(f"sample {key!r}: {type(failure).__name__}: {failure}") from failure
    counts.skipped.append(key)
    obs.log_event(
        "sample skipped",
        level="warning",
        job_id=task.job_id,
        shard=task.input_url,
        key=key,
        error=f"{type(exc).__name__}: {exc}",
    )


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
    many = isinstance(result, (list, tuple)) or (
        isinstance(result, Iterator) and not isinstance(result, Mapping)
    )
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
