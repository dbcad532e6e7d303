"""The executor conformance suite: every executor must pass the same tests.

Executors under test: ``inline``, ``local`` (2 processes), ``dask`` (a
``LocalCluster`` of 2 worker processes) and ``modal`` (the function registered
on a real ``modal.App``, called through Modal's in-process ``.local()`` path,
since no Modal server is reachable from the tests). Then the cases only some
executors can show: a worker killed mid-shard, object storage, Modal's
registration.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import atdata
from atdata.errors import PartialFailureError, ProcessingError, WorkerLostError
from atdata.processing import (
    InlineExecutor,
    LocalExecutor,
    Processor,
    ShardTask,
    job_status,
    process_shard,
    processor,
)
from atdata.processing.executors import Executor, get_executor, register_executor


@atdata.packable
class Reading:
    site: str
    value: float
    samples: atdata.NDArray


@atdata.packable
class Summary:
    site: str
    mean: float
    scaled: float


def summarise(r: Reading) -> Summary:
    return Summary(site=r.site, mean=float(r.samples.mean()), scaled=r.value * 10)


@processor(retries=1)
def halve(r: Reading) -> Summary:
    return Summary(site=r.site, mean=float(r.samples.mean()) / 2, scaled=r.value / 2)


@processor(batch_size=5)
def summarise_batch(batch: atdata.SampleBatch[Reading]) -> list[Summary]:
    """``summarise`` on a batch; also records the batch's size (in ``mean``'s place)."""
    assert batch.column("samples").shape == (len(batch), 8)  # stacked ('samples' is a field)
    return [
        Summary(site=site, mean=float(len(batch)), scaled=float(value) * 10)
        for site, value in zip(batch.site, batch.value, strict=True)
    ]


def write_readings(folder: Path, shards: int = 4, per_shard: int = 12) -> atdata.Dataset[Reading]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)  # seed 7
    with atdata.ShardWriter(str(folder / "r-%04d.tar"), maxcount=per_shard) as sink:
        for i in range(shards * per_shard):
            reading = Reading(site=f"s{i % 5}", value=float(i), samples=rng.random(8))
            sink.write(reading.with_key(f"r{i:04d}"))
    return atdata.Dataset[Reading](str(folder / f"r-{{0000..{shards - 1:04d}}}.tar"))


def expected(ds: atdata.Dataset[Reading], fn: Callable[[Reading], Summary]) -> dict[str, Any]:
    return {s.__key__: (fn(s).site, fn(s).mean, fn(s).scaled) for s in ds}


def as_dict(ds: atdata.Dataset[Summary]) -> dict[str, Any]:
    return {s.__key__: (s.site, s.mean, s.scaled) for s in ds}


# -- executors --------------------------------------------------------------------------


class LocalModalCalls:
    """Modal's ``Function.map`` answered by ``Function.local``: the in-process call path."""

    app = None  # stands for an app that is already running: never start a real one

    def __init__(self, function: Any) -> None:
        self.function = function

    def map(
        self, tasks: list[ShardTask], order_outputs: bool, return_exceptions: bool
    ) -> Iterator[Any]:
        assert order_outputs and return_exceptions
        for task in tasks:
            try:
                yield self.function.local(task)
            except Exception as exc:  # noqa: BLE001 - returned in place, like Modal does
                yield exc


class ModalLocal:
    """Runs a processor the way ``executor="modal"`` does, registered on a real modal.App."""

    def __init__(self) -> None:
        import modal

        self.app = modal.App(f"atdata-test-{uuid.uuid4().hex[:8]}")

    def bind(
        self, fn: Callable[..., Any] | Processor[Any, Any]
    ) -> tuple[Processor[Any, Any], Executor]:
        from atdata.processing import ModalExecutor

        raw = fn.fn if isinstance(fn, Processor) else fn
        retries = fn.retries if isinstance(fn, Processor) else 0
        batch_size = fn.batch_size if isinstance(fn, Processor) else None
        proc = processor(
            self.app, cpu=1, retries=retries, name=f"p{uuid.uuid4().hex[:8]}", batch_size=batch_size
        )(raw)
        return proc, ModalExecutor(LocalModalCalls(proc.modal_function))


@pytest.fixture(scope="module")
def local_pool() -> Iterator[LocalExecutor]:
    with LocalExecutor(workers=2) as pool:
        yield pool


@pytest.fixture(scope="module")
def dask_client() -> Iterator[Any]:
    from distributed import Client, LocalCluster

    cluster = LocalCluster(
        # ":0": a free port for its HTTP server; the default 8787 may be taken (a warning)
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=":0",
        silence_logs=40,
    )
    client = Client(cluster)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


EXECUTORS = ["inline", "local", "dask", "modal"]


@pytest.fixture(params=EXECUTORS)
def run_map(request: pytest.FixtureRequest) -> Callable[..., atdata.Dataset[Any]]:
    """``run_map(ds, fn, **options)``: ``ds.map`` on the executor under test."""
    name = request.param
    if name == "local":
        executor: Any = request.getfixturevalue("local_pool")
    elif name == "dask":
        from atdata.processing import DaskExecutor

        executor = DaskExecutor(request.getfixturevalue("dask_client"))
    elif name == "modal":
        modal_local = ModalLocal()
    else:
        executor = InlineExecutor()

    def run(ds: atdata.Dataset[Any], fn: Any, **options: Any) -> atdata.Dataset[Any]:
        if name == "modal":
            fn, modal_executor = modal_local.bind(fn)
            return ds.map(fn, executor=modal_executor, **options)
        return ds.map(fn, executor=executor, **options)

    run.executor_name = name  # type: ignore[attr-defined]
    return run


@pytest.fixture
def readings(tmp_path: Path) -> atdata.Dataset[Reading]:
    return write_readings(tmp_path / "in")


# -- the conformance suite ------------------------------------------------------------------


def test_same_output_on_every_executor(
    run_map: Callable[..., Any], readings: atdata.Dataset[Reading], tmp_path: Path
) -> None:
    out = run_map(readings, summarise, output_prefix=str(tmp_path / "out"))
    assert as_dict(out) == expected(readings, summarise)
    assert [Path(u).name for u in out.shards] == [f"r-{i:04d}.tar" for i in range(4)]
    status = job_status(str(tmp_path / "out"))
    assert status.complete and all(s.attempts == 1 for s in status.shards)
    assert all(s.worker for s in status.shards)


def test_workers_per_shard_gives_the_same_samples(
    run_map: Callable[..., Any], readings: atdata.Dataset[Reading], tmp_path: Path
) -> None:
    out = run_map(readings, summarise, output_prefix=str(tmp_path / "out"), workers_per_shard=2)
    assert len(out.shards) == 8
    assert as_dict(out) == expected(readings, summarise)


@pytest.mark.parametrize("workers_per_shard", [1, 2])
def test_batched_processor_on_every_executor(
    run_map: Callable[..., Any],
    readings: atdata.Dataset[Reading],
    tmp_path: Path,
    workers_per_shard: int,
) -> None:
    prefix = str(tmp_path / "out")
    out = run_map(
        readings, summarise_batch, output_prefix=prefix, workers_per_shard=workers_per_shard
    )
    got = list(out)
    # in order, keyed by input: 12 samples per shard (6 per part) in batches of 5
    assert [s.__key__ for s in got] == [s.__key__ for s in readings]
    assert [(s.site, s.scaled) for s in got] == [(r.site, r.value * 10) for r in readings]
    sizes = [5.0] * 10 + [2.0] * 2 if workers_per_shard == 1 else [5.0] * 5 + [1.0]
    assert [s.mean for s in got] == sizes * (4 * workers_per_shard)  # per shard, or per part
    assert job_status(prefix).complete


def test_partial_failure_then_retry_on_every_executor(
    run_map: Callable[..., Any], readings: atdata.Dataset[Reading], tmp_path: Path
) -> None:
    flag = tmp_path / "broken"
    flag.touch()

    def fragile(r: Reading) -> Summary:
        if r.value >= 36 and flag.exists():  # the last shard
            raise RuntimeError("upstream service unavailable")
        return summarise(r)

    prefix = str(tmp_path / "out")
    with pytest.raises(PartialFailureError) as info:
        run_map(readings, processor(retries=1)(fragile), output_prefix=prefix)
    e = info.value
    assert e.failed_shards == readings.shards[3:]
    assert e.succeeded_shards == readings.shards[:3]
    assert "upstream service unavailable" in e.errors[readings.shards[3]]
    status = job_status(prefix)
    assert [s.attempts for s in status.shards] == [1, 1, 1, 2]
    assert [d.task_id for d in status.dead_letters] == ["r-0003"]

    flag.unlink()
    out = run_map(readings, fragile, output_prefix=prefix, shards=e.failed_shards, retry=True)
    assert as_dict(out) == expected(readings, summarise)
    assert job_status(prefix).dead_letters == []


def test_on_error_skip_on_every_executor(
    run_map: Callable[..., Any], readings: atdata.Dataset[Reading], tmp_path: Path
) -> None:
    def no_site_zero(r: Reading) -> Summary:
        if r.site == "s0":
            raise ValueError("site 0 is decommissioned")
        return summarise(r)

    prefix = str(tmp_path / "out")
    out = run_map(readings, no_site_zero, output_prefix=prefix, on_error="skip")
    want = {k: v for k, v in expected(readings, summarise).items() if v[0] != "s0"}
    assert as_dict(out) == want
    skipped = [k for s in job_status(prefix).shards for k in s.skipped_keys]
    assert sorted(skipped) == sorted(f"r{i:04d}" for i in range(0, 48, 5))


def test_importable_processors_travel_by_reference_others_by_value(
    local_pool: LocalExecutor, readings: atdata.Dataset[Reading], tmp_path: Path
) -> None:
    from atdata.processing._serialize import dumps, loads

    assert loads(dumps(halve)) is halve  # workers import it: module state is rebuilt there
    unnamed = processor(summarise)
    copy = loads(dumps(unnamed))
    assert copy is not unnamed and copy.fn is summarise and copy.output_type is Summary
    out = readings.map(halve, output_prefix=str(tmp_path / "o"), executor=local_pool)
    assert as_dict(out) == expected(readings, halve)


# -- a worker killed mid-shard --------------------------------------------------------------


def _killer(marker: Path) -> Processor[Reading, Summary]:
    def kill_once(r: Reading) -> Summary:
        if r.__key__ == "r0017" and not marker.exists():
            marker.touch()
            os.kill(os.getpid(), signal.SIGKILL)
        return summarise(r)

    return processor(retries=1)(kill_once)


def test_a_dask_client_can_be_passed_as_the_executor(
    dask_client: Any, readings: atdata.Dataset[Reading], tmp_path: Path
) -> None:
    executor, owned = get_executor(dask_client)
    assert type(executor).__name__ == "DaskExecutor" and not owned
    assert executor.workers == 2
    out = readings.map(summarise, output_prefix=str(tmp_path / "o"), executor=dask_client)
    assert as_dict(out) == expected(readings, summarise)
    assert dask_client.status != "closed"  # the caller still owns it


@pytest.mark.parametrize("executor_name", ["local", "dask"])
def test_a_worker_killed_mid_shard_fails_only_that_shard(
    executor_name: str,
    readings: atdata.Dataset[Reading],
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    if executor_name == "local":
        executor: Any = LocalExecutor(workers=2)
    else:
        from atdata.processing import DaskExecutor

        executor = DaskExecutor(request.getfixturevalue("dask_client"))
    prefix = str(tmp_path / "out")
    with executor:
        out = readings.map(_killer(tmp_path / "killed"), output_prefix=prefix, executor=executor)
    assert (tmp_path / "killed").exists()
    assert as_dict(out) == expected(readings, summarise)
    attempts = [s.attempts for s in job_status(prefix).shards]
    if executor_name == "local":
        assert attempts == [1, 2, 1, 1]  # only the shard on the dead worker ran again
    else:
        assert attempts == [1, 1, 1, 1]  # Dask itself reschedules a task lost with its worker


def test_a_killed_worker_without_retries_is_a_partial_failure(
    readings: atdata.Dataset[Reading], tmp_path: Path
) -> None:
    proc = _killer(tmp_path / "killed")
    proc.retries = 0
    prefix = str(tmp_path / "out")
    with pytest.raises(PartialFailureError) as info:
        readings.map(proc, output_prefix=prefix, executor=LocalExecutor(workers=2))
    assert info.value.failed_shards == [readings.shards[1]]
    assert "killed by SIGKILL" in info.value.errors[readings.shards[1]]
    status = job_status(prefix)
    assert status.counts == {"done": 3, "failed": 1, "pending": 0}
    assert status.dead_letters[0].error_type == "WorkerLostError"


SIGTERM_IN_A_CALLBACK = """
import os, signal, time, weakref
from atdata.processing.executors.local import _install_worker_signals

_install_worker_signals()

class Thing:
    pass

def collected(ref):  # a weakref callback, as the garbage collector runs them mid-task
    os.kill(os.getpid(), signal.SIGTERM)  # the driver stops the task right now
    for _ in range(10_000):  # the handler runs here, inside the callback
        pass

thing = Thing()
ref = weakref.ref(thing, collected)
del thing
give_up = time.monotonic() + 30
while time.monotonic() < give_up:  # the task's own work, for long enough to be stopped
    pass
print("the task went on")
"""


def test_a_stop_that_lands_in_a_weakref_callback_still_stops_the_task() -> None:
    import subprocess

    done = subprocess.run(
        [sys.executable, "-c", SIGTERM_IN_A_CALLBACK],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stdout, done.stderr) == (128 + signal.SIGTERM, "", "")


def test_local_executor_submit_and_timeout(tmp_path: Path) -> None:
    ds = write_readings(tmp_path / "in", shards=1, per_shard=2)

    def sleepy(r: Reading) -> Summary:
        time.sleep(30)
        return summarise(r)

    proc = processor(timeout=0.5)(sleepy)
    with LocalExecutor(workers=1) as pool, pytest.raises(PartialFailureError) as info:
        ds.map(proc, output_prefix=str(tmp_path / "out"), executor=pool)
    assert "timeout of 0.5 s" in info.value.errors[ds.shards[0]]

    task = _task_for(ds, summarise, tmp_path / "direct.tar")
    with LocalExecutor(workers=1, max_tasks_per_child=1) as pool:
        first, second = pool.submit(task), pool.submit(task)
        assert first.result().ok and second.result().ok
        assert first.result().worker != second.result().worker  # a fresh worker per task


def test_worker_lost_error_is_a_processing_error() -> None:
    err = WorkerLostError("gone", task_id="t", exitcode=-9)
    assert isinstance(err, ProcessingError) and err.exitcode == -9 and str(err) == "gone"


# -- object storage ----------------------------------------------------------------------------


def test_map_from_and_to_s3(s3_bucket: str, tmp_path: Path) -> None:
    local = write_readings(tmp_path / "in", shards=2, per_shard=6)
    remote = atdata.Dataset[Reading]([f"{s3_bucket}/in/{Path(u).name}" for u in local.shards])
    for url, path in zip(remote.shards, local.shards, strict=True):
        for suffix in (".tar", ".manifest.parquet", ".manifest.json"):
            src = path[: -len(".tar")] + suffix
            store, key = atdata.storage.store_for(url[: -len(".tar")] + suffix)
            store.write(key, Path(src).read_bytes())
    prefix = f"{s3_bucket}/out/v1"
    # the warm pool's workers adopt the environment (the S3 endpoint) with each task
    out = remote.map(summarise, output_prefix=prefix, executor="local", workers_per_shard=2)
    assert out.shards[0] == f"{prefix}/r-0000-part-00.tar"
    assert as_dict(out) == expected(local, summarise)
    status = job_status(prefix)
    assert status.complete and len(status.shards) == 4
    again = remote.map(summarise, output_prefix=prefix, executor="inline", workers_per_shard=2)
    assert job_status(prefix).job.runs[-1].tasks_skipped == 4
    assert again.shards == out.shards


# -- Modal ---------------------------------------------------------------------------------------


def _task_for(ds: atdata.Dataset[Reading], fn: Any, output: Path) -> ShardTask:
    from atdata.processing._processor import as_processor
    from atdata.processing._serialize import dumps
    from atdata.processing._task import Payload

    proc = as_processor(fn)
    payload = Payload(
        fn=proc, stored_type=Reading, transform=ds.transform_one, output_type=Summary, name="t"
    )
    return ShardTask(
        job_id="job",
        task_id="t",
        input_url=ds.shards[0],
        output_url=str(output),
        payload=dumps(payload),
    )


def test_processor_registers_a_modal_function_with_its_resources(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import modal

    calls: list[dict[str, Any]] = []
    original = modal.App.function

    def spy(self: Any, **kwargs: Any) -> Any:
        calls.append(kwargs)
        return original(self, **kwargs)

    monkeypatch.setattr(modal.App, "function", spy)
    app = modal.App("atdata-registration-test")
    secret = modal.Secret.from_dict({"TOKEN": "x"})

    @processor(app, cpu=2.0, memory=4096, gpu="A10G", timeout=900, retries=3, secrets=[secret])
    def embed(r: Reading) -> Summary:
        return summarise(r)

    (kwargs,) = calls
    assert kwargs == {
        "serialized": True,
        "name": "embed",
        "cpu": 2.0,
        "memory": 4096,
        "gpu": "A10G",
        "timeout": 900,
        "secrets": [secret],
    }
    fn = embed.modal_function
    assert isinstance(fn, modal.Function)
    spec = fn._spec_  # what Modal will request for the containers
    assert (spec.cpu, spec.memory, spec.gpus) == (2.0, 4096, "A10G")
    assert embed.retries == 3  # retried by atdata's ledger, the same on every executor

    # the registered function runs the very shard task every executor runs
    ds = write_readings(tmp_path / "in", shards=1, per_shard=5)
    task = _task_for(ds, embed, tmp_path / "via-modal.tar")
    via_modal = fn.local(task)
    direct = process_shard(dataclasses.replace(task, output_url=str(tmp_path / "direct.tar")))
    assert via_modal.ok and direct.ok and via_modal.samples_out == direct.samples_out == 5
    assert (tmp_path / "via-modal.tar").read_bytes() == (tmp_path / "direct.tar").read_bytes()

    # map defaults to Modal for such a processor, which needs a shared output location
    with pytest.raises(ProcessingError, match="output_prefix='s3://"):
        ds.map(embed)
    executor, owned = get_executor(None, embed)
    assert type(executor).__name__ == "ModalExecutor" and owned


def test_modal_executor_starts_an_app_only_when_none_is_running(tmp_path: Path) -> None:
    import modal

    from atdata.processing import ModalExecutor

    deployed = ModalExecutor(modal.Function.from_name("embed-images", "embed"))
    assert deployed._app_running()  # a deployed function: nothing to start
    app = modal.App("atdata-not-running")
    local = ModalExecutor(processor(app, name="fresh")(summarise).modal_function)
    assert not local._app_running()  # map() would wrap the job in `with app.run():`
    ds = write_readings(tmp_path / "in", shards=1, per_shard=1)
    with pytest.raises(ProcessingError, match="needs a running app"):
        local.submit(_task_for(ds, summarise, tmp_path / "o.tar"))


def test_modal_executor_needs_a_registered_processor() -> None:
    with pytest.raises(ProcessingError, match=r"@atdata.processor\(app="):
        get_executor("modal", processor(summarise))


# -- the registry --------------------------------------------------------------------------------


@pytest.fixture
def own_registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    from atdata.processing import executors

    monkeypatch.setattr(executors, "_REGISTRY", dict(executors._REGISTRY))
    executors._entry_points.cache_clear()
    yield
    executors._entry_points.cache_clear()  # forget the entry points a test installed


@pytest.mark.usefixtures("own_registry")
def test_register_executor_refuses_to_replace_a_name() -> None:
    register_executor("test-inline", InlineExecutor)
    with pytest.raises(ValueError, match=r"'test-inline' is already registered.*overwrite=True"):
        register_executor("test-inline", LocalExecutor)
    with pytest.raises(ValueError, match="'local'"):
        register_executor("local", InlineExecutor)
    assert isinstance(get_executor("test-inline")[0], InlineExecutor)


@pytest.mark.usefixtures("own_registry")
def test_register_executor_replaces_with_overwrite() -> None:
    register_executor("local", InlineExecutor, overwrite=True)
    executor, owned = get_executor("local")
    assert isinstance(executor, InlineExecutor) and owned


def _install_fake_plugin(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A distribution ``fake_exec`` declaring the executor ``fake`` in ``atdata.executors``."""
    info = root / "fake_exec-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fake_exec\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[atdata.executors]\nfake = fake_exec_plugin:FakeExecutor\n"
    )
    (root / "fake_exec_plugin.py").write_text(
        "from atdata.processing import InlineExecutor\n\n\n"
        "class FakeExecutor(InlineExecutor):\n"
        "    pass\n"
    )
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.delitem(sys.modules, "fake_exec_plugin", raising=False)


@pytest.mark.usefixtures("own_registry")
def test_executors_are_found_through_entry_points(
    readings: atdata.Dataset[Reading], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site"
    site.mkdir()
    _install_fake_plugin(site, monkeypatch)

    executor, owned = get_executor("fake")
    assert type(executor).__name__ == "FakeExecutor" and owned
    assert type(executor).__module__ == "fake_exec_plugin"
    out = readings.map(summarise, output_prefix=str(tmp_path / "o"), executor="fake")
    assert len(as_dict(out)) == 48
    # loaded once, then registered like any other name
    with pytest.raises(ValueError, match="'fake' is already registered"):
        register_executor("fake", InlineExecutor)


@pytest.mark.usefixtures("own_registry")
def test_unknown_executor_names_the_entry_point_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _install_fake_plugin(tmp_path, monkeypatch)
    with pytest.raises(ProcessingError, match=r"Unknown executor 'fak'\. Did you mean 'fake'\?"):
        get_executor("fak")
    assert "fake_exec_plugin" not in sys.modules  # listing names imports nothing


@pytest.mark.usefixtures("own_registry")
def test_register_executor_by_dotted_path(
    readings: atdata.Dataset[Reading], tmp_path: Path
) -> None:
    register_executor("test-inline", "atdata.processing.executors.inline:InlineExecutor")
    out = readings.map(summarise, output_prefix=str(tmp_path / "o"), executor="test-inline")
    assert len(as_dict(out)) == 48


@pytest.mark.usefixtures("own_registry")
def test_missing_package_names_the_extra() -> None:
    from atdata.errors import MissingDependencyError

    register_executor("test-missing", "no_such_pkg_xyz:Executor", requires=("ray", "ray"))
    with pytest.raises(MissingDependencyError, match=r"pip install 'atdata\[ray\]'"):
        get_executor("test-missing")


def test_builtin_executors_satisfy_the_protocol(local_pool: LocalExecutor) -> None:
    assert isinstance(InlineExecutor(), Executor)
    assert isinstance(local_pool, Executor)
