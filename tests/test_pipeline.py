"""Pipelines: events, triggers, the registry, the event ledger (SQLite, S3 server), the
service that claims and runs events, and the poller. HTTP is in test_pipeline_app.py,
Modal in test_pipeline_modal.py, the Worker-to-server path in test_pipeline_e2e.py."""

from __future__ import annotations

import dataclasses
import multiprocessing
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

import atdata
import atdata.pipeline as ap
from atdata.errors import InvalidEventError, LedgerError, PipelineError
from atdata.pipeline import (
    EventRecord,
    InlineRunner,
    ObjectEvent,
    PipelineRegistry,
    Service,
    SQLiteLedger,
    ThreadRunner,
    Trigger,
    ledger_for,
)

# -- sample types and helpers ------------------------------------------------------------


@atdata.packable
class RawSample:
    text: str
    value: int


@atdata.packable
class CleanSample:
    text: str
    doubled: int


def transform_sample(sample: RawSample) -> CleanSample:
    return CleanSample(text=sample.text.upper(), doubled=sample.value * 2)


def r2_event(
    key: str, etag: str = "etag-1", action: str = "PutObject", bucket: str = "bkt"
) -> dict[str, Any]:
    return {
        "account": "3f4b7e3dcab231cbfdaa90a6a28bd548",
        "bucket": bucket,
        "object": {"key": key, "size": 1024, "eTag": etag},
        "action": action,
        "eventTime": "2026-04-01T12:00:00.000Z",
    }


def write_raw(url: str, n: int = 20, offset: int = 0) -> str:
    with atdata.ShardWriter(url) as sink:
        for i in range(n):
            sink.write(RawSample(text=f"s{i + offset}", value=i + offset))
    return url


# -- events ----------------------------------------------------------------------------------


def test_r2_event_parses() -> None:
    ev = ObjectEvent.from_json(r2_event("incoming/a.tar", etag='"abc"'))
    assert (ev.bucket, ev.key, ev.etag, ev.size, ev.action) == (
        "bkt",
        "incoming/a.tar",
        "abc",
        1024,
        "PutObject",
    )
    assert ev.is_create and ev.is_shard and ev.ignore_reason() is None
    assert ObjectEvent.from_json(ev.to_json()) == ev


@pytest.mark.parametrize(
    ("key", "action", "reason"),
    [
        ("incoming/a.tar", "DeleteObject", "DeleteObject is not an object-create action"),
        ("incoming/a.tar", "LifecycleDeletion", "not an object-create action"),
        ("incoming/a.manifest.json", "PutObject", "is not a .tar shard"),
        ("incoming/a.manifest.parquet", "CopyObject", "is not a .tar shard"),
        ("incoming/a.tar.gz", "PutObject", "is not a .tar shard"),
        ("out/_atdata_job/x.tar", "PutObject", "atdata's own bookkeeping"),
        ("incoming/../etc/a.tar", "PutObject", "'..' path segment"),
    ],
)
def test_events_that_trigger_nothing(key: str, action: str, reason: str) -> None:
    data = r2_event(key, action=action)
    if action != "PutObject" and action != "CopyObject":
        del data["object"]["eTag"]  # deletions carry no ETag
    ev = ObjectEvent.from_json(data)
    assert reason in (ev.ignore_reason() or "")


@pytest.mark.parametrize("action", ["PutObject", "CopyObject", "CompleteMultipartUpload"])
def test_create_actions(action: str) -> None:
    assert ObjectEvent.from_json(r2_event("in/a.tar", action=action)).is_create


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "expected a JSON object"),
        ({"object": {"key": "a.tar", "eTag": "x"}, "action": "PutObject"}, "'bucket'"),
        ({"bucket": "bkt", "object": {"key": "a.tar", "eTag": "x"}}, "'action'"),
        ({"bucket": "bkt", "action": "PutObject", "object": "a.tar"}, "'object'"),
        ({"bucket": "bkt", "action": "PutObject", "object": {"eTag": "x"}}, "'object.key'"),
        ({"bucket": "bkt", "action": "PutObject", "object": {"key": "a.tar"}}, "'object.eTag'"),
        (
            {
                "bucket": "bkt",
                "action": "PutObject",
                "object": {"key": "a.tar", "eTag": "x", "size": -1},
            },
            "'object.size'",
        ),
        (
            {
                "bucket": "bkt",
                "action": "PutObject",
                "object": {"key": "a.tar", "eTag": "x"},
                "eventTime": 5,
            },
            "'eventTime'",
        ),
    ],
)
def test_malformed_events_are_refused_with_one_line(body: Any, message: str) -> None:
    with pytest.raises(InvalidEventError) as info:
        ObjectEvent.from_json(body)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


# -- triggers ------------------------------------------------------------------------------


def test_trigger_prefix_is_a_folder() -> None:
    t = Trigger.parse("r2://bucket/incoming")
    assert (t.scheme, t.bucket, t.prefix) == ("r2", "bucket", "incoming/")
    assert t.matches("bucket", "incoming/a.tar")
    assert t.matches("bucket", "incoming/deep/b.tar")
    assert not t.matches("bucket", "incoming-old/a.tar")
    assert not t.matches("other", "incoming/a.tar")
    assert t.shard_url("incoming/a.tar") == "r2://bucket/incoming/a.tar"
    assert t.relative("incoming/deep/b.tar") == "deep/b.tar"


def test_trigger_whole_bucket_suffix_and_glob() -> None:
    assert Trigger.parse("s3://bucket").matches("bucket", "x/y.tar")
    assert Trigger.parse("s3://bucket/").prefix == ""
    suffixed = Trigger.parse("s3://bucket/in", suffix="-train.tar")
    assert suffixed.matches("bucket", "in/a-train.tar")
    assert not suffixed.matches("bucket", "in/a-test.tar")
    glob = Trigger.parse("r2://bucket/in/*/shard-??.tar")
    assert glob.prefix == "in/"
    assert glob.matches("bucket", "in/x/shard-01.tar")
    assert not glob.matches("bucket", "in/x/y/shard-01.tar")  # * stays within a folder
    deep = Trigger.parse("r2://bucket/in/**/*.tar")
    assert deep.matches("bucket", "in/a.tar") and deep.matches("bucket", "in/x/y/a.tar")
    ranged = Trigger.parse("s3://bucket/in/shard-[0-4].tar")
    assert ranged.matches("bucket", "in/shard-3.tar") and not ranged.matches(
        "bucket", "in/shard-7.tar"
    )


@pytest.mark.parametrize("url", ["/local/path", "gs://bucket/x", "s3://", "incoming"])
def test_bad_triggers(url: str) -> None:
    with pytest.raises(PipelineError, match="trigger"):
        Trigger.parse(url)


# -- registry and decorator -------------------------------------------------------------------


def test_decorator_registers_and_stays_callable() -> None:
    reg = PipelineRegistry()

    @atdata.pipeline.pipeline(
        trigger="r2://bucket/incoming", output="r2://bucket/processed", registry=reg
    )
    def process_uploads(shard_url: str) -> str:
        return shard_url.upper()

    assert isinstance(process_uploads, ap.Pipeline)
    assert reg.get("process_uploads") is process_uploads
    assert process_uploads("r2://x") == "R2://X"  # calling it calls the function
    assert process_uploads.describe()["trigger"] == "r2://bucket/incoming/"


def test_the_package_itself_is_the_decorator() -> None:
    # `atdata.pipeline` is both the package and the decorator (as the docs spell it)
    reg = PipelineRegistry()

    @ap(trigger="s3://bucket/in", output="s3://bucket/out", registry=reg, name="named")
    def fn(shard_url: str) -> None: ...

    assert "named" in reg and len(reg) == 1


def test_names_are_unique_and_unknown_names_suggest() -> None:
    reg = PipelineRegistry()
    reg.pipeline("s3://b1/in", "s3://b1/out", name="clean")(lambda url: None)
    with pytest.raises(PipelineError, match="already registered"):
        reg.pipeline("s3://b1/in", "s3://b1/out2", name="clean")(transform_sample)
    with pytest.raises(PipelineError, match="Did you mean 'clean'"):
        reg.get("claen")
    reg.add_processor(transform_sample)
    assert reg.processor("transform_sample") is transform_sample
    with pytest.raises(PipelineError, match="Known processors: transform_sample"):
        reg.processor("nope")


def test_matching_skips_the_pipelines_own_output() -> None:
    reg = PipelineRegistry()
    p = reg.pipeline("s3://bkt/", "s3://bkt/processed", name="p")(lambda url: None)
    assert reg.matching(ObjectEvent("bkt", "incoming/a.tar", "e1")) == [p]
    assert reg.matching(ObjectEvent("bkt", "processed/a/e1/a.tar", "e2")) == []
    assert reg.matching(ObjectEvent("other", "incoming/a.tar", "e1")) == []


def test_output_prefix_is_per_object_version() -> None:
    reg = PipelineRegistry()
    p = reg.pipeline("r2://bkt/incoming", "r2://bkt/processed/", name="p")(lambda url: None)
    a1 = ObjectEvent("bkt", "incoming/day1/train-000001.tar", "c846ff7a18f28c2e262116d6e8719ef0")
    a2 = dataclasses.replace(a1, etag="0123456789abcdef0123456789abcdef-3")
    assert p.output_prefix_for(a1) == "r2://bkt/processed/day1/train-000001/c846ff7a18f28c2e"
    assert p.output_prefix_for(a2) != p.output_prefix_for(a1)
    assert p.output_prefix_for(a1) == p.output_prefix_for(dataclasses.replace(a1, size=5))
    odd = dataclasses.replace(a1, etag="w/'weird'")  # not path-safe: hashed
    assert p.output_prefix_for(odd).rsplit("/", 1)[1].isalnum()
    assert p.event_id(a1) != p.event_id(a2)


def test_current_run_is_set_only_inside_a_run(tmp_path: Path) -> None:
    seen: list[ap.PipelineRun | None] = []
    reg = PipelineRegistry()
    reg.pipeline("s3://bkt/in", str(tmp_path / "out"), name="p")(
        lambda url: seen.append(ap.current_run())
    )
    service = Service(reg)
    service.ingest(ObjectEvent("bkt", "in/a.tar", "etag-a-0123456789"))
    service.close()
    (run,) = seen
    assert run is not None and run.shard_url == "s3://bkt/in/a.tar"
    assert run.output_prefix == str(tmp_path / "out" / "a" / "etag-a-012345678")
    assert ap.current_run() is None and ap.current_output_prefix() is None


# -- ledgers ------------------------------------------------------------------------------------


def _record(event_id: str = "0" * 32, owner: str = "me") -> EventRecord:
    return EventRecord(
        id=event_id,
        pipeline="p",
        bucket="b",
        key="in/a.tar",
        etag="e",
        shard_url="s3://b/in/a.tar",
        output_prefix="out/a/e",
        owner=owner,
    )


@pytest.fixture(params=["sqlite", "memory", "s3"])
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ap.EventLedger]:
    if request.param == "sqlite":
        url = str(tmp_path / "out")
    elif request.param == "memory":
        url = f"memory://ledger-{uuid.uuid4().hex}/out"
    else:
        url = request.getfixturevalue("s3_bucket") + "/out"
    made = ledger_for(url)
    yield made
    close = getattr(made, "close", None)
    if close:
        close()


def test_ledger_claims_once_and_records_outcomes(ledger: ap.EventLedger) -> None:
    first = ledger.claim(_record(owner="a"))
    assert (first.acquired, first.reason, first.record.state) == (True, "new", "running")
    again = ledger.claim(_record(owner="b"))
    assert (again.acquired, again.reason, again.record.owner) == (False, "running", "a")
    ledger.finish(first.record.id, owner="a", outputs=["out/a/e/a.tar"])
    done = ledger.claim(_record(owner="c"))
    assert (done.acquired, done.reason, done.record.state) == (False, "done", "done")
    assert done.record.outputs == ["out/a/e/a.tar"]
    assert [r.state for r in ledger.records()] == ["done"]
    assert ledger.get("f" * 32) is None


def test_ledger_retries_failed_events_up_to_max_attempts(ledger: ap.EventLedger) -> None:
    rid = ledger.claim(_record()).record.id
    ledger.fail(rid, owner="me", error="ValueError: boom")
    retry = ledger.claim(_record(owner="x"), max_attempts=2)
    assert (retry.acquired, retry.reason, retry.record.attempts) == (True, "retry", 2)
    ledger.fail(rid, owner="x", error="ValueError: boom again")
    stuck = ledger.claim(_record(owner="y"), max_attempts=2)
    assert (stuck.acquired, stuck.reason, stuck.record.error) == (
        False,
        "exhausted",
        "ValueError: boom again",
    )
    forced = ledger.claim(_record(owner="z"), max_attempts=None)
    assert forced.acquired and forced.record.attempts == 3


def test_ledger_takes_over_a_stale_claim(ledger: ap.EventLedger) -> None:
    ledger.claim(_record(owner="dead-replica"))
    assert not ledger.claim(_record(owner="live"), lease_seconds=3600).acquired
    taken = ledger.claim(_record(owner="live"), lease_seconds=0.0)
    assert (taken.acquired, taken.reason, taken.record.owner) == (True, "takeover", "live")


def test_a_done_event_is_never_marked_failed(ledger: ap.EventLedger) -> None:
    rid = ledger.claim(_record()).record.id
    ledger.finish(rid, owner="me", outputs=[])
    ledger.fail(rid, owner="late", error="a slow duplicate failed")
    assert ledger.get(rid).state == "done"  # type: ignore[union-attr]


def test_a_superseded_event_is_final(ledger: ap.EventLedger) -> None:
    rid = ledger.claim(_record()).record.id
    ledger.supersede(rid, owner="me", current_etag="newer")
    ledger.fail(rid, owner="late", error="a slow duplicate failed")
    again = ledger.claim(_record(owner="x"), max_attempts=None, lease_seconds=0.0)
    assert (again.acquired, again.reason) == (False, "superseded")
    assert (again.record.state, again.record.superseded_by) == ("superseded", "newer")
    done = ledger.claim(_record(event_id="1" * 32)).record.id
    ledger.finish(done, owner="me", outputs=[])
    ledger.supersede(done, owner="me", current_etag="newer")  # too late: it ran
    assert ledger.get(done).state == "done"  # type: ignore[union-attr]


def test_concurrent_claims_have_one_winner(ledger: ap.EventLedger) -> None:
    barrier = threading.Barrier(16)

    def claim(i: int) -> bool:
        barrier.wait()
        return ledger.claim(_record(owner=f"t{i}")).acquired

    with ThreadPoolExecutor(16) as pool:
        wins = list(pool.map(claim, range(16)))
    assert sum(wins) == 1


def _claim_in_process(path: str, owner: str, start: Any, out: Any) -> None:
    ledger = SQLiteLedger(path)
    start.wait()
    out.put(ledger.claim(_record(owner=owner)).acquired)
    ledger.close()


def test_sqlite_claims_are_atomic_across_processes(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    start, out = ctx.Event(), ctx.Queue()
    url = str(tmp_path / "out" / "_atdata_pipeline")
    procs = [
        ctx.Process(target=_claim_in_process, args=(url, f"p{i}", start, out)) for i in range(4)
    ]
    for p in procs:
        p.start()
    start.set()
    results = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    assert sorted(results) == [False, False, False, True]


def test_s3_ledger_uses_conditional_writes(s3_bucket: str) -> None:
    """Two replicas (separate ledger objects, no shared lock) agree through the store."""
    import boto3

    one, two = ledger_for(s3_bucket + "/out"), ledger_for(s3_bucket + "/out")
    assert one.claim(_record(owner="replica-1")).acquired
    assert not two.claim(_record(owner="replica-2")).acquired
    bucket = s3_bucket.removeprefix("s3://")
    client = boto3.client("s3")
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"]]
    assert keys == [f"out/_atdata_pipeline/events/{'0' * 32}.json"]
    # the record is replaced only if nobody changed it since it was read
    record, etag = one._read("0" * 32)  # type: ignore[attr-defined]
    assert one._replace(dataclasses.replace(record, owner="one"), etag)  # type: ignore[attr-defined]
    assert not two._replace(dataclasses.replace(record, owner="two"), etag)  # type: ignore[attr-defined]


def test_ledger_for_refuses_stores_without_conditional_writes() -> None:
    with pytest.raises(LedgerError, match="local path, s3:// or r2://"):
        ledger_for("http://example.com/out")


def test_corrupt_ledger_record_says_what_to_do(tmp_path: Path) -> None:
    ledger = ledger_for(str(tmp_path / "out"))
    assert isinstance(ledger, SQLiteLedger)
    ledger._run("INSERT INTO events VALUES (?, 1, 'done', 'not json')", ("1" * 32,))
    with pytest.raises(LedgerError, match="delete it"):
        ledger.get("1" * 32)
    ledger.close()


# -- the service: routing, claiming, running -----------------------------------------------------


@pytest.fixture
def registry() -> PipelineRegistry:
    return PipelineRegistry()


def _service(registry: PipelineRegistry, **kw: Any) -> Service:
    return Service(registry, **kw)


def test_event_runs_pipeline_once_and_map_writes_under_its_output(
    registry: PipelineRegistry, s3_bucket: str
) -> None:
    @registry.pipeline(trigger=f"{s3_bucket}/incoming", output=f"{s3_bucket}/processed")
    def process_uploads(shard_url: str) -> Any:
        ds = atdata.Dataset[RawSample](shard_url)
        return ds.map(transform_sample, executor="inline")

    bucket = s3_bucket.removeprefix("s3://")
    write_raw(f"{s3_bucket}/incoming/train-000001.tar", n=30)
    etag = _etag(bucket, "incoming/train-000001.tar")
    service = _service(registry)
    event = ObjectEvent(bucket, "incoming/train-000001.tar", etag)
    first = service.ingest(event)
    assert first.status == "accepted" and first.runs[0].reason == "new"
    prefix = f"{s3_bucket}/processed/train-000001/{etag[:16]}"
    assert first.runs[0].output_prefix == prefix
    out = atdata.Dataset[CleanSample](f"{prefix}/*.tar")
    assert [s.doubled for s in out] == [2 * i for i in range(30)]
    assert atdata.Dataset(f"{prefix}/train-000001.tar").schema.name == "CleanSample"
    record = service.ledger(registry.get("process_uploads")).get(first.runs[0].event_id)
    assert (
        record is not None
        and record.state == "done"
        and record.outputs == [f"{prefix}/train-000001.tar"]
    )
    # a redelivery is a no-op
    second = service.ingest(event)
    assert (second.status, second.runs[0].reason) == ("duplicate", "done")
    service.close()


def _etag(bucket: str, key: str) -> str:
    import boto3

    return str(boto3.client("s3").head_object(Bucket=bucket, Key=key)["ETag"]).strip('"')


def test_a_failing_run_is_recorded_and_retried_by_the_next_delivery(
    registry: PipelineRegistry, tmp_path: Path
) -> None:
    calls: list[str] = []

    @registry.pipeline(trigger="s3://bkt/in", output=str(tmp_path / "out"))
    def flaky(shard_url: str) -> None:
        calls.append(shard_url)
        if len(calls) == 1:
            raise RuntimeError("transient\nfailure")

    service = _service(registry)
    event = ObjectEvent("bkt", "in/a.tar", "etag-1")
    assert service.ingest(event).status == "accepted"
    (record,) = service.ledger(flaky).records()
    assert record.state == "failed" and record.error == "RuntimeError: transient failure"
    retried = service.ingest(event)
    assert retried.runs[0].reason == "retry"
    assert service.ledger(flaky).records()[0].state == "done"
    assert len(calls) == 2
    service.close()


def test_one_event_can_trigger_several_pipelines(
    registry: PipelineRegistry, tmp_path: Path
) -> None:
    ran: list[str] = []
    registry.pipeline("s3://bkt/in", str(tmp_path / "a"), name="a")(lambda url: ran.append("a"))
    registry.pipeline("s3://bkt/in/", str(tmp_path / "b"), name="b")(lambda url: ran.append("b"))
    registry.pipeline("s3://bkt/other", str(tmp_path / "c"), name="c")(lambda url: ran.append("c"))
    service = _service(registry)
    result = service.ingest(ObjectEvent("bkt", "in/x.tar", "e"))
    assert [r.pipeline for r in result.runs] == ["a", "b"] and sorted(ran) == ["a", "b"]
    ignored = service.ingest(ObjectEvent("bkt", "elsewhere/x.tar", "e"))
    assert ignored.status == "ignored" and "no pipeline's trigger matches" in ignored.reason
    service.close()


def test_claims_are_answered_before_the_run_finishes(
    registry: PipelineRegistry, tmp_path: Path
) -> None:
    release = threading.Event()
    started = threading.Event()

    @registry.pipeline(trigger="s3://bkt/in", output=str(tmp_path / "out"))
    def slow(shard_url: str) -> None:
        started.set()
        assert release.wait(30)

    runner = ThreadRunner(2)
    service = _service(registry, runner=runner)
    event = ObjectEvent("bkt", "in/a.tar", "e")
    assert service.ingest(event).status == "accepted"
    assert started.wait(30)
    during = service.ingest(event)  # a concurrent redelivery while it runs
    assert (during.status, during.runs[0].reason) == ("duplicate", "running")
    release.set()
    assert runner.wait_idle(30)
    assert service.ledger(slow).records()[0].state == "done"
    service.close()


def test_submit_failure_releases_the_claim(registry: PipelineRegistry, tmp_path: Path) -> None:
    class Broken:
        def submit(self, task: Any, execute: Callable[[Any], Any]) -> None:
            raise ConnectionError("worker pool unreachable")

        def close(self, wait: bool = True) -> None: ...

    registry.pipeline("s3://bkt/in", str(tmp_path / "out"), name="p")(lambda url: None)
    service = _service(registry, runner=Broken())
    with pytest.raises(PipelineError, match="worker pool unreachable"):
        service.ingest(ObjectEvent("bkt", "in/a.tar", "e"))
    (record,) = service.ledger(registry.get("p")).records()
    assert record.state == "failed"  # so a redelivery runs it
    service.runner = InlineRunner()
    assert service.ingest(ObjectEvent("bkt", "in/a.tar", "e")).runs[0].reason == "retry"
    service.close()


def test_metrics_count_events(registry: PipelineRegistry, tmp_path: Path) -> None:
    registry.pipeline("s3://bkt/in", str(tmp_path / "out"), name="p")(lambda url: None)
    service = _service(registry)
    before = atdata.metrics.snapshot()
    service.ingest(ObjectEvent("bkt", "in/a.tar", "e"))
    service.ingest(ObjectEvent("bkt", "in/a.tar", "e"))
    service.ingest(ObjectEvent("bkt", "in/a.manifest.json", "e"))
    after = atdata.metrics.snapshot()
    service.close()

    def delta(name: str) -> float:
        return after[name] - before[name]

    assert delta("events_received") == 3
    assert delta("events_processed") == 1
    assert delta("events_duplicate") == 1
    assert delta("events_ignored") == 1


# -- the poller -----------------------------------------------------------------------------------


def test_poll_runs_unseen_shards_once(registry: PipelineRegistry, s3_bucket: str) -> None:
    ran: list[str] = []

    @registry.pipeline(trigger=f"{s3_bucket}/incoming", output=f"{s3_bucket}/processed")
    def record_it(shard_url: str) -> None:
        ran.append(shard_url)

    bucket = s3_bucket.removeprefix("s3://")
    for name in ("a", "b"):
        write_raw(f"{s3_bucket}/incoming/{name}.tar", n=2)
    write_raw(f"{s3_bucket}/elsewhere/c.tar", n=2)
    # "a" arrived through an event already; "b"'s event was lost
    service = _service(registry)
    service.ingest(ObjectEvent(bucket, "incoming/a.tar", _etag(bucket, "incoming/a.tar")))
    report = ap.poll(f"{s3_bucket}/incoming", service=service)
    assert (report.listed, report.accepted, report.duplicate, report.failed) == (2, 1, 1, 0)
    assert ran == [f"{s3_bucket}/incoming/a.tar", f"{s3_bucket}/incoming/b.tar"]
    assert ap.poll(f"{s3_bucket}/incoming", registry).accepted == 0
    # a re-upload (new ETag) is new work
    write_raw(f"{s3_bucket}/incoming/b.tar", n=3)
    again = ap.poll(f"{s3_bucket}/incoming", registry)
    assert again.accepted == 1 and ran[-1] == f"{s3_bucket}/incoming/b.tar"
    service.close()


def test_poll_reports_failures_and_needs_a_covering_pipeline(
    registry: PipelineRegistry, s3_bucket: str
) -> None:
    with pytest.raises(PipelineError, match="no pipeline is triggered"):
        ap.poll(f"{s3_bucket}/incoming", registry)

    @registry.pipeline(trigger=f"{s3_bucket}/incoming", output=f"{s3_bucket}/processed")
    def broken(shard_url: str) -> None:
        raise ValueError("bad shard")

    write_raw(f"{s3_bucket}/incoming/a.tar", n=1)
    report = ap.poll(f"{s3_bucket}/incoming", registry)
    assert report.failed == 1 and report.runs[0]["error"] == "ValueError: bad shard"


def test_list_objects_builds_put_events(s3_bucket: str) -> None:
    write_raw(f"{s3_bucket}/incoming/x/a.tar", n=1)
    events = ap.list_objects(f"{s3_bucket}/incoming")
    (ev,) = events  # the manifests beside it are not shards
    assert ev.key == "incoming/x/a.tar" and ev.action == "PutObject" and ev.etag and ev.size


# -- loading user modules -------------


def test_load_pipelines_from_a_file_registers_processors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "path", list(sys.path))
    module = tmp_path / f"user_pipes_{uuid.uuid4().hex[:8]}.py"
    monkeypatch.setitem(sys.modules, module.stem, None)  # absent now, and again afterwards
    del sys.modules[module.stem]
    module.write_text(
        "import atdata\n"
        "from atdata.processing import processor\n"
        "@atdata.packable\n"
        "class A:\n    x: int\n"
        "@processor\n"
        "def double(s: A) -> A:\n    return A(x=s.x * 2)\n"
    )
    registry = PipelineRegistry()
    (loaded,) = ap.load_pipelines([str(module)], registry)
    assert registry.processor_names == ["double"]
    assert ap.load_pipelines([str(module)], registry) == [loaded]  # loaded once
    with pytest.raises(PipelineError, match="does not exist"):
        ap.load_pipelines([str(tmp_path / "missing.py")], registry)
    with pytest.raises(PipelineError, match="cannot import"):
        ap.load_pipelines(["no_such_module_here"], registry)


def test_an_overwritten_object_runs_once_for_its_current_version(
    registry: PipelineRegistry, s3_bucket: str
) -> None:
    seen: list[int] = []

    @registry.pipeline(trigger=f"{s3_bucket}/incoming", output=f"{s3_bucket}/processed")
    def record_rows(shard_url: str) -> None:
        seen.append(len(list(atdata.Dataset[RawSample](shard_url))))

    bucket = s3_bucket.removeprefix("s3://")
    key = "incoming/train-000002.tar"
    write_raw(f"{s3_bucket}/{key}", n=3)
    v1 = _etag(bucket, key)
    write_raw(f"{s3_bucket}/{key}", n=5)  # overwritten before v1's event arrives
    v2 = _etag(bucket, key)
    assert v1 != v2
    service = _service(registry)
    stale = service.ingest(ObjectEvent(bucket, key, v1))  # claimed; its run reads nothing
    (record,) = service.ledger(record_rows).records()
    assert (stale.status, record.state, record.superseded_by) == ("accepted", "superseded", v2)
    redelivered = service.ingest(ObjectEvent(bucket, key, v1))
    assert redelivered.status == "superseded" and v2 in redelivered.reason
    fresh = service.ingest(ObjectEvent(bucket, key, v2))
    again = service.ingest(ObjectEvent(bucket, key, v2))
    assert fresh.status == "accepted" and again.status == "duplicate"
    assert seen == [5] and fresh.runs[0].output_prefix.endswith(v2[:16])
    service.close()


class HeldRunner:
    """Keeps submitted tasks until ``release()`` runs them (a busy runner's queue)."""

    def __init__(self) -> None:
        self.held: list[tuple[Any, Callable[[Any], Any]]] = []

    def submit(self, task: Any, execute: Callable[[Any], Any]) -> None:
        self.held.append((task, execute))

    def release(self) -> list[Any]:
        done = [execute(task) for task, execute in self.held]
        self.held.clear()
        return done

    def close(self, wait: bool = True) -> None: ...


def test_an_object_overwritten_while_its_run_waits_is_not_run(
    registry: PipelineRegistry, s3_bucket: str
) -> None:
    seen: list[int] = []

    @registry.pipeline(trigger=f"{s3_bucket}/incoming", output=f"{s3_bucket}/processed")
    def count_rows(shard_url: str) -> None:
        seen.append(len(list(atdata.Dataset[RawSample](shard_url))))

    bucket = s3_bucket.removeprefix("s3://")
    key = "incoming/train-000003.tar"
    write_raw(f"{s3_bucket}/{key}", n=3)
    v1 = _etag(bucket, key)
    runner = HeldRunner()
    service = _service(registry, runner=runner)
    assert service.ingest(ObjectEvent(bucket, key, v1)).status == "accepted"
    write_raw(f"{s3_bucket}/{key}", n=5)  # overwritten after acceptance, before the run
    v2 = _etag(bucket, key)
    (outcome,) = runner.release()
    assert (outcome["status"], outcome["current_etag"], seen) == ("superseded", v2, [])
    record = service.ledger(count_rows).get(outcome["event_id"])
    assert record is not None and (record.state, record.outputs) == ("superseded", [])
    assert service.ingest(ObjectEvent(bucket, key, v2)).status == "accepted"
    assert [r["status"] for r in runner.release()] == ["done"] and seen == [5]
    service.close()


def test_acceptance_asks_the_ledger_only(
    registry: PipelineRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """/ingest's rate is the ledger's: the object's ETag is asked by the run, not on acceptance."""
    from atdata.storage import FsspecStore

    asked: list[str] = []
    real_etag = FsspecStore.etag

    def etag(self: FsspecStore, path: str) -> str | None:
        asked.append(path)
        return real_etag(self, path)

    monkeypatch.setattr(FsspecStore, "etag", etag)
    registry.pipeline("s3://bkt/in", str(tmp_path / "out"), name="p")(lambda url: None)
    runner = HeldRunner()
    service = _service(registry, runner=runner)
    for i in range(3):
        assert service.ingest(ObjectEvent("bkt", f"in/{i}.tar", "e")).status == "accepted"
    assert asked == []
    assert [r["status"] for r in runner.release()] == ["done"] * 3
    assert asked == [f"bkt/in/{i}.tar" for i in range(3)]
    service.close()
