"""Warm workers: ``executor="local"``'s process-wide pool, kept across ``map`` calls.

Each test starts from no pool (``shutdown_workers``) and leaves none behind.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import atdata
from atdata.errors import PartialFailureError
from atdata.processing import LocalExecutor, job_status, processor, shutdown_workers
from atdata.processing.executors import get_executor


@atdata.packable
class Num:
    x: int


@atdata.packable
class Seen:
    x: int
    pid: int
    note: str


def tag(n: Num) -> Seen:
    return Seen(x=n.x, pid=os.getpid(), note=os.environ.get("ATDATA_TEST_NOTE", ""))


def slow_after_first(n: Num) -> Seen:
    """``tag``, but the samples after the first shard's (of two samples) hang for a minute."""
    if n.x >= 2:
        time.sleep(60)
    return tag(n)


def write_nums(folder: Path, shards: int = 4, per_shard: int = 5) -> atdata.Dataset[Num]:
    folder.mkdir(parents=True, exist_ok=True)
    with atdata.ShardWriter(str(folder / "n-%03d.tar"), maxcount=per_shard) as sink:
        for i in range(shards * per_shard):
            sink.write(Num(x=i).with_key(f"n{i:04d}"))
    return atdata.Dataset[Num](str(folder / f"n-{{000..{shards - 1:03d}}}.tar"))


@pytest.fixture
def nums(tmp_path: Path) -> atdata.Dataset[Num]:
    return write_nums(tmp_path / "in")


@pytest.fixture(autouse=True)
def no_pool() -> Iterator[None]:
    shutdown_workers()
    yield
    shutdown_workers()


def pids(ds: atdata.Dataset[Seen]) -> set[int]:
    return {s.pid for s in ds}


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def eventually(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_local_is_one_shared_pool_the_caller_does_not_own() -> None:
    executor, owned = get_executor("local")
    assert executor is LocalExecutor.shared() and not owned
    again, _ = get_executor(None)
    assert again is executor


def test_the_same_workers_run_consecutive_maps(nums: atdata.Dataset[Num], tmp_path: Path) -> None:
    first = pids(nums.map(tag, output_prefix=str(tmp_path / "a")))
    workers = set(LocalExecutor.shared().worker_pids)
    second = pids(nums.map(tag, output_prefix=str(tmp_path / "b")))
    assert os.getpid() not in first and first <= workers and second <= workers
    assert set(LocalExecutor.shared().worker_pids) == workers  # none started for the second


def test_shutdown_stops_the_workers_and_the_next_map_starts_new_ones(
    nums: atdata.Dataset[Num], tmp_path: Path
) -> None:
    first = pids(nums.map(tag, output_prefix=str(tmp_path / "a")))
    shutdown_workers()  # stops and reaps them
    assert not any(alive(pid) for pid in first)
    second = pids(nums.map(tag, output_prefix=str(tmp_path / "b")))
    assert second and not second & first


def test_a_worker_killed_between_maps_is_replaced(
    nums: atdata.Dataset[Num], tmp_path: Path
) -> None:
    first = pids(nums.map(tag, output_prefix=str(tmp_path / "a")))
    victim = min(first)
    os.kill(victim, signal.SIGKILL)
    assert eventually(lambda: victim not in LocalExecutor.shared().worker_pids)  # noticed
    out = nums.map(tag, output_prefix=str(tmp_path / "b"))
    assert [s.x for s in out] == list(range(20))
    assert victim not in pids(out)
    assert job_status(str(tmp_path / "b")).complete


def test_a_worker_killed_mid_task_is_a_worker_lost_error_and_is_replaced(
    nums: atdata.Dataset[Num], tmp_path: Path
) -> None:
    marker = tmp_path / "killed"

    def kill_once(n: Num) -> Seen:
        if n.x == 7 and not marker.exists():
            marker.touch()
            os.kill(os.getpid(), signal.SIGKILL)
        return tag(n)

    with pytest.raises(PartialFailureError) as info:
        nums.map(processor(kill_once), output_prefix=str(tmp_path / "a"))
    assert info.value.failed_shards == [nums.shards[1]]
    assert "killed by SIGKILL" in info.value.errors[nums.shards[1]]
    assert job_status(str(tmp_path / "a")).dead_letters[0].error_type == "WorkerLostError"
    out = nums.map(tag, output_prefix=str(tmp_path / "b"))  # the pool carries on
    assert len(pids(out)) >= 1 and job_status(str(tmp_path / "b")).complete


def test_each_job_gets_its_function_afresh(tmp_path: Path) -> None:
    ds = write_nums(tmp_path / "in", shards=1, per_shard=3)
    calls: list[int] = []

    def count(n: Num) -> Seen:
        calls.append(n.x)  # state in the worker's copy of the function
        return Seen(x=len(calls), pid=os.getpid(), note="")

    with LocalExecutor(workers=1) as pool:
        a = ds.map(count, output_prefix=str(tmp_path / "a"), executor=pool)
        b = ds.map(count, output_prefix=str(tmp_path / "b"), executor=pool)
        assert pids(a) == pids(b)  # one warm worker ran both
    assert [s.x for s in a] == [s.x for s in b] == [1, 2, 3]


def test_warm_workers_adopt_the_drivers_environment_and_directory(
    nums: atdata.Dataset[Num], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    nums.map(tag, output_prefix=str(tmp_path / "a"))  # the workers are up
    monkeypatch.setenv("ATDATA_TEST_NOTE", "set after the workers started")
    monkeypatch.chdir(tmp_path)
    out = nums.map(tag, output_prefix="relative-out")
    assert {s.note for s in out} == {"set after the workers started"}
    assert (tmp_path / "relative-out" / "n-000.tar").exists()


def test_an_interrupted_map_frees_the_pool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from atdata.processing import _run

    ds = write_nums(tmp_path / "in", shards=3, per_shard=2)

    def interrupted(*args: object) -> None:
        raise KeyboardInterrupt  # a Ctrl-C as the driver records the first result

    with LocalExecutor(workers=1) as pool:
        with monkeypatch.context() as patch:
            patch.setattr(_run._Tally, "record", interrupted)
            with pytest.raises(KeyboardInterrupt):
                ds.map(slow_after_first, output_prefix=str(tmp_path / "a"), executor=pool)
        started = time.monotonic()
        out = ds.map(tag, output_prefix=str(tmp_path / "b"), executor=pool)
        assert len(list(out)) == 6
        assert time.monotonic() - started < 30  # not behind the abandoned 60 s tasks


def test_no_worker_starts_for_the_tasks_an_interrupted_map_dropped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A process started as the driver exits dies reading its start-up data, with a traceback.
    from atdata.processing import _run
    from atdata.processing.executors import local

    ds = write_nums(tmp_path / "in", shards=3, per_shard=2)
    started: list[object] = []

    class CountedWorker(local._Worker):
        def __init__(self, context: object) -> None:
            started.append(self)
            super().__init__(context)

    def interrupted(*args: object) -> None:
        time.sleep(0.5)  # the worker is on the second task by now: it is stopped
        raise KeyboardInterrupt

    monkeypatch.setattr(local, "_Worker", CountedWorker)
    monkeypatch.setattr(_run._Tally, "record", interrupted)
    with LocalExecutor(workers=1) as pool, pytest.raises(KeyboardInterrupt):
        ds.map(slow_after_first, output_prefix=str(tmp_path / "a"), executor=pool)
    assert len(started) == 1  # the pool's one worker; none for the dropped third task


def test_pipeline_events_share_the_warm_workers(s3_bucket: str, tmp_path: Path) -> None:
    import boto3

    from atdata.pipeline import ObjectEvent, PipelineRegistry, Service

    registry = PipelineRegistry()

    @registry.pipeline(trigger=f"{s3_bucket}/incoming", output=str(tmp_path / "out"))
    def tag_uploads(shard_url: str) -> atdata.Dataset[Seen]:
        return atdata.Dataset[Num](shard_url).map(tag)  # the default executor

    bucket = s3_bucket.removeprefix("s3://")
    service = Service(registry)
    outputs = []
    for name in ("a", "b"):
        with atdata.ShardWriter(f"{s3_bucket}/incoming/{name}.tar") as sink:
            for i in range(5):
                sink.write(Num(x=i).with_key(f"{name}{i}"))
        head = boto3.client("s3").head_object(Bucket=bucket, Key=f"incoming/{name}.tar")
        result = service.ingest(ObjectEvent(bucket, f"incoming/{name}.tar", head["ETag"]))
        outputs.append(result.runs[0].output_prefix)
    service.close()
    first, second = (pids(atdata.Dataset[Seen](f"{prefix}/*.tar")) for prefix in outputs)
    assert first | second <= set(LocalExecutor.shared().worker_pids)  # no new workers
