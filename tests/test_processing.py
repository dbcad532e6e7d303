"""Tests for atdata.processing: @processor, Dataset.map, the job ledger, resume and retry.

Most maps here run on the in-process ``"inline"`` executor (fast, same shard
task as every other executor); ``test_processing_executors.py`` runs the shared
conformance suite on every executor.
"""

from __future__ import annotations

import gc
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

import atdata
from atdata.errors import PartialFailureError, ProcessingError
from atdata.processing import Processor, job_status, processor
from atdata.processing._plan import output_names, split_shard

SRC = str(Path(__file__).resolve().parents[1] / "src")


@atdata.packable
class Item:
    x: int
    name: str
    vec: atdata.NDArray


@atdata.packable
class Doubled:
    y: int
    name: str


def double(item: Item) -> Doubled:
    return Doubled(y=2 * item.x, name=item.name)


def write_items(folder: Path, shards: int = 4, per_shard: int = 10) -> atdata.Dataset[Item]:
    """``shards`` shards of ``per_shard`` items, keys ``item_00000``..., x = 0, 1, 2..."""
    folder.mkdir(parents=True, exist_ok=True)
    with atdata.ShardWriter(str(folder / "items-%03d.tar"), maxcount=per_shard) as sink:
        for i in range(shards * per_shard):
            item = Item(x=i, name=f"n{i % 3}", vec=np.full(3, i, np.float32))
            sink.write(item.with_key(f"item_{i:05d}"))
    return atdata.Dataset[Item](str(folder / f"items-{{000..{shards - 1:03d}}}.tar"))


@pytest.fixture
def items(tmp_path: Path) -> atdata.Dataset[Item]:
    return write_items(tmp_path / "in")


def keyed(ds: atdata.Dataset[Doubled]) -> dict[str, tuple[int, str]]:
    return {s.__key__: (s.y, s.name) for s in ds}


# -- @processor ------------------------------------------------------------------------


def test_processor_reads_types_and_stays_callable() -> None:
    proc = processor(double)
    assert isinstance(proc, Processor)
    assert proc.input_type is Item and proc.output_type is Doubled and proc.emits == "one"
    out = proc(Item(x=4, name="a", vec=np.zeros(1)))
    assert out == Doubled(y=8, name="a")
    assert proc.__name__ == "double" and proc.__wrapped__ is double


def test_processor_decorator_forms() -> None:
    @processor(retries=2, timeout=30, version="v7")
    def plus(item: Item) -> Doubled | None:
        return None

    assert plus.retries == 2 and plus.timeout == 30 and plus.version == "v7"
    assert plus.emits == "one" and plus.output_type is Doubled

    @processor
    def fan(item: Item) -> list[Doubled]:
        return []

    @processor
    def gen(item: Item) -> Iterator[Doubled]:
        yield Doubled(y=1, name="g")

    assert fan.emits == "many" and gen.emits == "many" and gen.output_type is Doubled
    assert processor(plus) is not plus  # re-wrapping makes a fresh processor of the same fn
    assert processor(plus).fn is plus.fn


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("def f(item) -> Doubled: ...", "has no type annotation"),
        ("def f(item: Item): ...", "no return annotation"),
        ("def f(item: int) -> Doubled: ...", "input type must be an @atdata.packable"),
        ("def f(item: Item) -> dict: ...", "output type must be an @atdata.packable"),
        ("def f(item: Item) -> Doubled | Item: ...", "output type must be"),
        ("def f() -> Doubled: ...", "takes no sample argument"),
    ],
)
def test_processor_rejects_bad_annotations(source: str, message: str) -> None:
    namespace: dict[str, object] = {"Item": Item, "Doubled": Doubled}
    exec(source, namespace)
    with pytest.raises(ProcessingError, match=message):
        processor(namespace["f"])


def test_unresolvable_annotation_says_where_to_define_types() -> None:
    def f(item: NotDefinedAnywhere) -> Doubled:  # type: ignore[name-defined]  # noqa: F821
        return Doubled(y=0, name="")

    with pytest.raises(ProcessingError, match="module level"):
        processor(f)


def test_map_rejects_unannotated_function(items: atdata.Dataset[Item]) -> None:
    with pytest.raises(ProcessingError, match="no type annotation"):
        items.map(lambda s: s, executor="inline")


# -- map -------------------------------------------------------------------------------


def test_map_writes_outputs_with_manifests_and_provenance(
    items: atdata.Dataset[Item], tmp_path: Path
) -> None:
    prefix = str(tmp_path / "out")
    out = items.map(double, output_prefix=prefix, executor="inline")
    assert type(out).sample_type is Doubled
    assert [Path(u).name for u in out.shards] == [f"items-{i:03d}.tar" for i in range(4)]
    assert keyed(out) == {f"item_{i:05d}": (2 * i, f"n{i % 3}") for i in range(40)}
    assert len(out) == 40  # from the manifests
    status = job_status(prefix)
    header = json.loads((tmp_path / "out" / "items-002.manifest.json").read_text())
    assert header["provenance"]["source_job_id"] == status.job_id
    assert header["provenance"]["parent_shards"] == [items.shards[2]]
    assert header["provenance"]["pipeline_version"] == processor(double).version
    assert status.counts == {"done": 4, "failed": 0, "pending": 0} and status.complete
    first = status.shards[0]
    assert (first.state, first.attempts, first.samples_in, first.samples_out) == ("done", 1, 10, 10)
    assert first.duration_s is not None and first.duration_s > 0
    assert first.cpu_s is not None and first.cpu_s > 0
    assert status.last_run is not None and status.last_run.tasks_run == 4


def test_none_drops_and_lists_emit_several(items: atdata.Dataset[Item], tmp_path: Path) -> None:
    def odd_only(item: Item) -> Doubled | None:
        return Doubled(y=item.x, name="odd") if item.x % 2 else None

    def twice(item: Item) -> list[Doubled]:
        return [Doubled(y=item.x, name="a"), Doubled(y=-item.x, name="b")] if item.x < 3 else []

    def gen(item: Item) -> Iterator[Doubled]:
        if item.x == 5:
            yield Doubled(y=5, name="g")

    odd = items.map(odd_only, output_prefix=str(tmp_path / "odd"), executor="inline")
    assert sorted(s.y for s in odd) == list(range(1, 40, 2))
    assert next(iter(odd)).__key__ == "item_00001"  # a single output keeps the input key

    two = items.map(twice, output_prefix=str(tmp_path / "two"), executor="inline")
    assert keyed(two) == {
        "item_00000_0": (0, "a"), "item_00000_1": (0, "b"),
        "item_00001_0": (1, "a"), "item_00001_1": (-1, "b"),
        "item_00002_0": (2, "a"), "item_00002_1": (-2, "b"),
    }  # fmt: skip
    assert len(two.shards) == 4  # shards whose samples were all dropped are committed empty
    assert len(two) == 6

    g = items.map(gen, output_prefix=str(tmp_path / "gen"), executor="inline")
    assert keyed(g) == {"item_00005_0": (5, "g")}


def test_untyped_output_from_plain_dicts(items: atdata.Dataset[Item], tmp_path: Path) -> None:
    def to_record(item: Item) -> atdata.DictSample:
        return {"x": item.x, "tag": item.name.upper()}  # type: ignore[return-value]

    out = items.map(to_record, output_prefix=str(tmp_path / "o"), executor="inline")
    first = next(iter(out))
    assert isinstance(first, atdata.DictSample)
    assert (first.__key__, first.x, first.tag) == ("item_00000", 0, "N0")
    assert len(out) == 40


def test_wrong_output_type_fails_the_shard(items: atdata.Dataset[Item], tmp_path: Path) -> None:
    def wrong(item: Item) -> Doubled:
        return item  # type: ignore[return-value]

    with pytest.raises(PartialFailureError) as info:
        items.map(wrong, output_prefix=str(tmp_path / "out"), executor="inline")
    assert "returned a Item, expected Doubled" in info.value.errors[items.shards[0]]


def test_untyped_dataset_is_read_as_the_function_input(
    items: atdata.Dataset[Item], tmp_path: Path
) -> None:
    untyped = atdata.Dataset(items.urls)
    out = untyped.map(double, output_prefix=str(tmp_path / "out"), executor="inline")
    assert len(keyed(out)) == 40


def test_dataset_views_apply_before_the_function(
    items: atdata.Dataset[Item], tmp_path: Path
) -> None:
    small = items.filter(lambda s: s.x < 5)
    out = small.map(double, output_prefix=str(tmp_path / "out"), executor="inline")
    assert sorted(s.y for s in out) == [0, 2, 4, 6, 8]


def test_output_keys_and_bytes_are_stable_across_reruns(
    items: atdata.Dataset[Item], tmp_path: Path
) -> None:
    a = items.map(double, output_prefix=str(tmp_path / "a"), executor="inline")
    b = items.map(double, output_prefix=str(tmp_path / "b"), executor="inline")
    for ua, ub in zip(a.shards, b.shards, strict=True):
        assert Path(ua).read_bytes() == Path(ub).read_bytes()


def test_map_without_output_prefix_uses_a_managed_temporary_folder(
    items: atdata.Dataset[Item],
) -> None:
    out = items.map(double, executor="inline")
    assert len(out.head(10)) == 10
    folder = Path(out.shards[0]).parent
    assert folder.is_dir()
    view = out.filter(lambda s: s.y > 0)
    del out
    gc.collect()
    assert folder.is_dir()  # a view still refers to it
    assert len(list(view)) == 39
    del view
    gc.collect()
    assert not folder.exists()


def test_workers_per_shard_splits_by_manifest_offsets(
    items: atdata.Dataset[Item], tmp_path: Path
) -> None:
    one = items.map(double, output_prefix=str(tmp_path / "one"), executor="inline")
    three = items.map(
        double, output_prefix=str(tmp_path / "three"), executor="inline", workers_per_shard=3
    )
    assert [Path(u).name for u in three.shards[:3]] == [
        "items-000-part-00.tar", "items-000-part-01.tar", "items-000-part-02.tar",
    ]  # fmt: skip
    assert keyed(three) == keyed(one)
    assert [s.samples_in for s in job_status(str(tmp_path / "three")).shards[:3]] == [3, 3, 4]


def test_split_shard_without_a_manifest_reads_the_tar_headers(tmp_path: Path) -> None:
    ds = write_items(tmp_path / "in", shards=1, per_shard=7)
    url = ds.shards[0]
    with_manifest = split_shard(url, 3)
    for suffix in (".manifest.json", ".manifest.parquet"):
        os.remove(url[: -len(".tar")] + suffix)
    assert split_shard(url, 3) == with_manifest
    assert [(a, b) for _, _, a, b in with_manifest] == [(0, 2), (2, 4), (4, 7)]
    # more parts than samples: the extra parts are empty
    assert [(a, b) for _, _, a, b in split_shard(url, 9)][:2] == [(0, 0), (0, 1)]


def test_output_names_keep_folders_only_when_needed() -> None:
    assert output_names(["s3://b/x/a.tar", "s3://b/x/b.tar"]) == ["a", "b"]
    assert output_names(["/d/train/a.tar", "/d/test/a.tar"]) == ["train/a", "test/a"]
    with pytest.raises(ProcessingError, match="same output name"):
        output_names(["s3://b/a.tar", "r2://b/a.tar"])


# -- failures, retries, resume ------------------------------------------------------------


def _failing_on(shard_x: int, flag: Path):  # type: ignore[no-untyped-def]
    """A function that raises on one shard's samples while ``flag`` exists."""

    def fragile(item: Item) -> Doubled:
        if item.x // 10 == shard_x and flag.exists():
            raise ValueError(f"cannot handle {item.x}")
        return Doubled(y=2 * item.x, name=item.name)

    return fragile


def test_partial_failure_then_retry(items: atdata.Dataset[Item], tmp_path: Path) -> None:
    prefix = str(tmp_path / "out")
    flag = tmp_path / "broken"
    flag.touch()
    fragile = processor(retries=1)(_failing_on(1, flag))
    with pytest.raises(PartialFailureError) as info:
        items.map(fragile, output_prefix=prefix, executor="inline")
    e = info.value
    assert e.failed_shards == [items.shards[1]]
    assert e.succeeded_shards == [items.shards[i] for i in (0, 2, 3)]
    assert "ValueError: cannot handle 10" in e.errors[items.shards[1]]
    assert e.output_prefix == prefix
    status = job_status(prefix)
    assert status.counts == {"done": 3, "failed": 1, "pending": 0}
    failed = status.failed[0]
    assert failed.attempts == 2
    assert failed.error == "ProcessingError: sample 'item_00010': ValueError: cannot handle 10"
    (letter,) = status.dead_letters
    assert letter.task_id == "items-001" and "Traceback" in letter.traceback
    assert "in fragile" in letter.traceback  # the user's frame is in the traceback

    # a plain rerun does not burn another attempt on a dead-lettered shard
    with pytest.raises(PartialFailureError, match="1 of 4 shards failed") as again:
        items.map(fragile, output_prefix=prefix, executor="inline")
    assert "pass retry=True" in again.value.errors[items.shards[1]]
    assert job_status(prefix).failed[0].attempts == 2

    flag.unlink()  # the cause is fixed
    out = items.map(
        fragile, output_prefix=prefix, shards=e.failed_shards, retry=True, executor="inline"
    )
    assert len(keyed(out)) == 40
    status = job_status(prefix)
    assert status.complete and status.dead_letters == []
    assert [s.attempts for s in status.shards] == [1, 3, 1, 1]


def test_on_error_skip_counts_and_records_keys(items: atdata.Dataset[Item], tmp_path: Path) -> None:
    def picky(item: Item) -> Doubled:
        if item.x in (3, 17, 18):
            raise ValueError("bad sample")
        return Doubled(y=item.x, name=item.name)

    prefix = str(tmp_path / "out")
    out = items.map(picky, output_prefix=prefix, executor="inline", on_error="skip")
    assert len(keyed(out)) == 37
    shards = job_status(prefix).shards
    assert [s.samples_skipped for s in shards] == [1, 2, 0, 0]
    assert shards[1].skipped_keys == ["item_00017", "item_00018"]
    assert atdata.metrics.samples_skipped.value >= 3

    with pytest.warns(RuntimeWarning, match="3 bad samples were skipped"):
        items.map(picky, output_prefix=str(tmp_path / "warn"), executor="inline", on_error="warn")


def test_on_error_skip_covers_outputs_their_type_refuses(
    items: atdata.Dataset[Item], tmp_path: Path
) -> None:
    def sloppy(item: Item) -> Doubled:
        return Doubled(y="many" if item.x == 4 else item.x, name=item.name)  # type: ignore[arg-type]

    prefix = str(tmp_path / "out")
    out = items.map(sloppy, output_prefix=prefix, executor="inline", on_error="skip")
    assert len(keyed(out)) == 39
    assert job_status(prefix).shards[0].skipped_keys == ["item_00004"]


def test_on_error_skip_covers_corrupt_input(tmp_path: Path) -> None:
    ds = write_items(tmp_path / "in", shards=1, per_shard=5)
    path = Path(ds.shards[0])
    data = bytearray(path.read_bytes())
    first = data.index(b"item_00002.msgpack")  # the third member's header
    data[first + 512 : first + 520] = b"\xc1" * 8  # garbage msgpack
    path.write_bytes(bytes(data))
    prefix = str(tmp_path / "out")
    with pytest.raises(PartialFailureError, match="corrupt"):
        ds.map(double, output_prefix=prefix, executor="inline")
    out = ds.map(double, output_prefix=prefix, executor="inline", on_error="skip", retry=True)
    assert sorted(keyed(out)) == ["item_00000", "item_00001", "item_00003", "item_00004"]
    assert job_status(prefix).shards[0].skipped_keys == ["item_00002"]


def _recorder(folder: Path) -> Callable[[Exception], None]:
    """An ``on_error`` callable that writes each error it is given to a file in ``folder``.

    (A copy of it runs in the worker, so it reports through the disk.)
    """
    folder.mkdir()

    def record(error: Exception) -> None:
        entry = [type(error).__name__, str(error), os.getpid()]
        (folder / uuid.uuid4().hex).write_text(json.dumps(entry))

    return record


def _recorded(folder: Path) -> list[tuple[str, str, int]]:
    """``(error type, message, worker pid)`` for each error ``_recorder(folder)`` was given."""
    return sorted(tuple(json.loads(p.read_text())) for p in folder.iterdir())


def _reject(*xs: int) -> Callable[[Item], Doubled]:
    def picky(item: Item) -> Doubled:
        if item.x in xs:
            raise ValueError(f"bad sample {item.x}")
        return Doubled(y=item.x, name=item.name)

    return picky


def test_on_error_callable_is_given_each_bad_sample_then_it_is_skipped(
    items: atdata.Dataset[Item], tmp_path: Path
) -> None:
    prefix = str(tmp_path / "out")
    before = atdata.metrics.samples_skipped.value
    out = items.map(
        _reject(3, 17, 18),
        output_prefix=prefix,
        executor="inline",
        on_error=_recorder(tmp_path / "seen"),
    )
    assert len(keyed(out)) == 37
    assert [e[:2] for e in _recorded(tmp_path / "seen")] == [
        ("ValueError", "bad sample 17"),
        ("ValueError", "bad sample 18"),
        ("ValueError", "bad sample 3"),
    ]
    status = job_status(prefix)
    assert [s.samples_skipped for s in status.shards] == [1, 2, 0, 0]
    assert status.shards[1].skipped_keys == ["item_00017", "item_00018"]
    assert atdata.metrics.samples_skipped.value - before == 3
    assert status.job.on_error == "callable:_recorder.<locals>.record"


def test_on_error_callable_is_given_damage_that_ends_the_shard(tmp_path: Path) -> None:
    ds = write_items(tmp_path / "in", shards=1, per_shard=5)
    path = Path(ds.shards[0])
    data = path.read_bytes()
    path.write_bytes(data[: data.index(b"item_00002.msgpack") + 700])  # cut in the third sample
    prefix = str(tmp_path / "out")
    out = ds.map(
        double, output_prefix=prefix, executor="inline", on_error=_recorder(tmp_path / "e")
    )
    assert sorted(keyed(out)) == ["item_00000", "item_00001"]
    ((kind, message, _),) = _recorded(tmp_path / "e")
    assert kind == "ShardCorruptError" and str(path) in message
    assert job_status(prefix).shards[0].skipped_keys[0].startswith("@")


def test_on_error_callable_that_raises_fails_the_shard(
    items: atdata.Dataset[Item], tmp_path: Path
) -> None:
    def not_17(error: Exception) -> None:
        if "17" in str(error):
            raise RuntimeError("17 must not be skipped") from error

    prefix = str(tmp_path / "out")
    with pytest.raises(PartialFailureError) as info:
        items.map(_reject(3, 17), output_prefix=prefix, executor="inline", on_error=not_17)
    assert info.value.failed_shards == [items.shards[1]]
    error = info.value.errors[items.shards[1]]
    assert "sample 'item_00017': RuntimeError: 17 must not be skipped" in error
    status = job_status(prefix)
    assert [s.state for s in status.shards] == ["done", "failed", "done", "done"]
    assert status.shards[0].skipped_keys == ["item_00003"]


def test_on_error_callable_travels_by_value_to_local_processes(
    items: atdata.Dataset[Item], tmp_path: Path
) -> None:
    prefix = str(tmp_path / "out")
    with atdata.processing.LocalExecutor(workers=2) as pool:
        out = items.map(
            _reject(3, 17, 18),
            output_prefix=prefix,
            executor=pool,
            on_error=_recorder(tmp_path / "seen"),
        )
    assert len(keyed(out)) == 37
    seen = _recorded(tmp_path / "seen")
    assert [message for _, message, _ in seen] == ["bad sample 17", "bad sample 18", "bad sample 3"]
    assert os.getpid() not in {pid for _, _, pid in seen}
    assert sum(s.samples_skipped for s in job_status(prefix).shards) == 3


def test_on_error_must_be_a_policy_name_or_a_callable(items: atdata.Dataset[Item]) -> None:
    with pytest.raises(ValueError, match="or a callable, got 'ignore'"):
        items.map(double, executor="inline", on_error="ignore")


def test_rerun_skips_committed_shards(items: atdata.Dataset[Item], tmp_path: Path) -> None:
    prefix = tmp_path / "out"
    items.map(double, output_prefix=str(prefix), executor="inline")
    before = {p.name: p.stat().st_mtime_ns for p in prefix.glob("*.tar")}
    (prefix / "items-002.manifest.json").unlink()  # as if the job died mid-commit
    out = items.map(double, output_prefix=str(prefix), executor="inline")
    after = {p.name: p.stat().st_mtime_ns for p in prefix.glob("*.tar")}
    changed = sorted(n for n in before if before[n] != after[n])
    assert changed == ["items-002.tar"]
    assert [s.attempts for s in job_status(str(prefix)).shards] == [1, 1, 2, 1]
    assert len(keyed(out)) == 40
    assert job_status(str(prefix)).job.runs[-1].tasks_skipped == 3


def test_incompatible_job_in_the_same_prefix_is_refused(
    items: atdata.Dataset[Item], tmp_path: Path
) -> None:
    prefix = str(tmp_path / "out")
    items.map(double, output_prefix=prefix, executor="inline")

    def same(item: Item) -> Item:
        return item

    with pytest.raises(ProcessingError, match="overwrite=True"):
        items.map(same, output_prefix=prefix, executor="inline")
    with pytest.raises(ProcessingError, match="workers_per_shard=1"):
        items.map(double, output_prefix=prefix, executor="inline", workers_per_shard=2)
    old = job_status(prefix).job_id
    items.map(same, output_prefix=prefix, executor="inline", overwrite=True)
    assert job_status(prefix).job_id != old


def test_shards_option_checks_its_urls(items: atdata.Dataset[Item], tmp_path: Path) -> None:
    with pytest.raises(ProcessingError, match="not shards of this dataset"):
        items.map(double, output_prefix=str(tmp_path / "o"), shards=["nope.tar"], executor="inline")
    out = items.map(
        double, output_prefix=str(tmp_path / "o"), shards=items.shards[1:2], executor="inline"
    )
    assert out.shards == [str(tmp_path / "o" / "items-001.tar")]


def test_output_must_not_overwrite_the_input(items: atdata.Dataset[Item]) -> None:
    with pytest.raises(ProcessingError, match="would overwrite an input shard"):
        items.map(double, output_prefix=str(Path(items.shards[0]).parent), executor="inline")


def test_progress_bar_reports_shards_and_samples(
    items: atdata.Dataset[Item], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    items.map(double, output_prefix=str(tmp_path / "o"), executor="inline", progress=True)
    err = capsys.readouterr().err
    assert "double" in err and "4/4" in err and "40 samples" in err


def test_job_status_without_a_job_says_what_to_pass(tmp_path: Path) -> None:
    with pytest.raises(ProcessingError, match="No atdata job ledger"):
        job_status(str(tmp_path))


def test_unpicklable_function_is_reported_before_running(
    items: atdata.Dataset[Item], tmp_path: Path
) -> None:
    import threading

    lock = threading.Lock()

    def locked(item: Item) -> Doubled:
        with lock:
            return Doubled(y=item.x, name="")

    with pytest.raises(ProcessingError, match="cannot be sent to workers"):
        items.map(locked, output_prefix=str(tmp_path / "o"), executor="inline")


def test_unknown_executor_suggests_a_name(items: atdata.Dataset[Item]) -> None:
    with pytest.raises(ProcessingError, match="Did you mean 'local'"):
        items.map(double, executor="lcoal")


def test_map_traces_the_job_and_each_shard(items: atdata.Dataset[Item], tmp_path: Path) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    atdata.configure_tracing(provider)
    try:
        items.map(double, output_prefix=str(tmp_path / "o"), executor="inline")
    finally:
        atdata.disable_tracing()
    spans = exporter.get_finished_spans()
    job = next(s for s in spans if s.name == "map_job")
    shard_spans = [s for s in spans if s.name == "process_shard"]
    assert len(shard_spans) == 4
    assert all(
        s.parent is not None and s.parent.span_id == job.context.span_id for s in shard_spans
    )


# -- a job killed midway --------------------------------------------------------------------


_KILLED_JOB = """
import sys, time
sys.path[:0] = [{src!r}, {tests!r}]
import atdata
from test_processing import Item, Doubled

def slow(item: Item) -> Doubled:
    time.sleep(0.03)
    return Doubled(y=2 * item.x, name=item.name)

if __name__ == "__main__":
    ds = atdata.Dataset[Item]({urls!r})
    ds.map(slow, output_prefix={prefix!r}, executor=atdata.processing.LocalExecutor(workers=1))
"""


@pytest.mark.slow
def test_resume_after_the_job_is_killed_redoes_no_committed_shard(tmp_path: Path) -> None:
    ds = write_items(tmp_path / "in", shards=8, per_shard=10)
    prefix = tmp_path / "out"
    script = tmp_path / "job.py"
    tests = str(Path(__file__).parent)
    script.write_text(_KILLED_JOB.format(src=SRC, tests=tests, urls=ds.shards, prefix=str(prefix)))
    proc = subprocess.Popen([sys.executable, str(script)], start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        done: list[str] = []
        while len(done) < 2:
            assert proc.poll() is None, "the job ended before it could be killed"
            assert time.monotonic() < deadline, "the job made no progress"
            time.sleep(0.05)
            done = [
                p.stem
                for p in (prefix / "_atdata_job" / "shards").glob("*.json")
                if json.loads(p.read_text())["state"] == "done"
            ]
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert len(done) < 8
    before = {s.task_id: s for s in job_status(str(prefix)).shards}
    mtimes = {t: (prefix / f"{t}.tar").stat().st_mtime_ns for t in done}

    out = ds.map(double, output_prefix=str(prefix), executor="inline")

    after = {s.task_id: s for s in job_status(str(prefix)).shards}
    for t in done:
        assert after[t].attempts == 1
        assert after[t].updated_at == before[t].updated_at
        assert (prefix / f"{t}.tar").stat().st_mtime_ns == mtimes[t]
    assert all(s.state == "done" for s in after.values())
    assert keyed(out) == {f"item_{i:05d}": (2 * i, f"n{i % 3}") for i in range(80)}


# -- __main__ functions ---------------------------------------------------------------------


_MAIN_SCRIPT = """
import json, sys
sys.path.insert(0, {src!r})
import numpy as np
import atdata
from atdata.processing import processor

@atdata.packable
class Point:
    x: int

@atdata.packable
class Label:
    text: str
    square: int

@processor(retries=0)
def describe(p: Point) -> Label:
    return Label(text=f"p{{p.x}}", square=int(np.square(p.x)))

if __name__ == "__main__":
    from atdata.processing import ModalExecutor
    import modal
    with atdata.ShardWriter({data!r} + "/pts-%03d.tar", maxcount=3) as sink:
        for i in range(6):
            sink.write(Point(x=i).with_key(f"pt{{i}}"))
    ds = atdata.Dataset[Point]({data!r} + "/pts-{{000..001}}.tar")
    results = {{}}
    for name in sys.argv[1:]:
        executor = name
        if name == "dask":
            from distributed import Client, LocalCluster
            cluster = LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                                   dashboard_address=":0", silence_logs=40)
            client = Client(cluster)
            executor = atdata.processing.DaskExecutor(client)
        if name == "modal":
            app = modal.App("main-script")
            registered = processor(app, cpu=1)(describe.fn)

            class Local:  # Modal's in-process call path, as no Modal server is reachable
                def map(self, tasks, order_outputs, return_exceptions):
                    return [registered.modal_function.local(t) for t in tasks]

            executor = ModalExecutor(Local())
        out = ds.map(describe, output_prefix={data!r} + "/out-" + name, executor=executor)
        results[name] = {{s.__key__: [s.text, s.square] for s in out}}
        if name == "dask":
            client.close()
            cluster.close()
    print(json.dumps(results))
"""


@pytest.mark.slow
def test_functions_and_types_defined_in_main_work_on_every_executor(tmp_path: Path) -> None:
    script = tmp_path / "script.py"
    script.write_text(_MAIN_SCRIPT.format(src=SRC, data=str(tmp_path)))
    done = subprocess.run(
        [sys.executable, "-W", "error", str(script), "inline", "local", "dask", "modal"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout.strip().splitlines()[-1])
    expected = {f"pt{i}": [f"p{i}", i * i] for i in range(6)}
    assert results == {"inline": expected, "local": expected, "dask": expected, "modal": expected}


def test_script_guard_note_is_in_the_local_executor_docs() -> None:
    from atdata.processing.executors import local

    assert 'if __name__ == "__main__":' in textwrap.dedent(local.__doc__ or "")
