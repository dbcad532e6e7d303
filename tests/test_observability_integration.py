"""Observability through real workloads: the events, metric values and spans that a
write, a query, a map (with a failing shard) and the dispatcher actually produce."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient
from structlog.testing import capture_logs

import atdata
import atdata.observability as obs
from atdata import Dataset, ShardWriter
from atdata.errors import PartialFailureError
from atdata.observability import configure_logging, configure_tracing, metrics
from atdata.pipeline import InlineRunner, PipelineRegistry, create_app

TOKEN = "test-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PER_SHARD = 10


@atdata.packable
class ObsSample:
    text: str
    value: int


@atdata.packable
class ObsOut:
    text: str
    doubled: int


def double(sample: ObsSample) -> ObsOut:
    return ObsOut(text=sample.text.upper(), doubled=sample.value * 2)


def fail_on_second_shard(sample: ObsSample) -> ObsOut:
    if PER_SHARD <= sample.value < 2 * PER_SHARD:
        raise RuntimeError(f"boom at {sample.value}")
    return ObsOut(text=sample.text, doubled=sample.value * 2)


@pytest.fixture(autouse=True)
def _default_state() -> Iterator[None]:
    """Nothing configured and every metric at zero, before and after each test."""
    obs.reset()
    yield
    obs.reset()


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    configure_tracing(provider)
    yield exporter
    provider.shutdown()


def write_shards(folder: Path, shards: int = 3) -> list[str]:
    with ShardWriter(str(folder / "shard-%06d.tar"), maxcount=PER_SHARD, manifest=True) as sink:
        for i in range(shards * PER_SHARD):
            sink.write(ObsSample(text=f"t{i}", value=i))
    return sink.shards


def dataset(folder: Path, shards: int = 3) -> Dataset[ObsSample]:
    write_shards(folder, shards)
    return Dataset[ObsSample](str(folder / f"shard-{{000000..{shards - 1:06d}}}.tar"))


def _events(logs: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e for e in logs if e["event"] == name]


def _parent_id(span: ReadableSpan) -> int | None:
    return None if span.parent is None else span.parent.span_id


# -- logging: structlog ---------------------------------------------------------------------


def test_write_emits_shard_committed_with_fields(tmp_path: Path) -> None:
    configure_logging(structlog.get_logger())
    with capture_logs() as logs:
        shards = write_shards(tmp_path)
    committed = _events(logs, "shard committed")
    assert [e["shard"] for e in committed] == shards
    for e in committed:
        assert e["log_level"] == "info"
        assert e["samples"] == PER_SHARD
        assert e["size_bytes"] == Path(e["shard"]).stat().st_size
        assert e["duration_s"] >= 0


def test_query_plan_event_reports_pruning(tmp_path: Path) -> None:
    ds = dataset(tmp_path)
    configure_logging(structlog.get_logger())
    with capture_logs() as logs:
        result = ds.query(where=lambda m: m.value >= 25)
    assert len(result) == 5
    (plan,) = _events(logs, "query plan")
    assert plan["shards_pruned"] == 2 and plan["shards_scanned"] == 1
    assert plan["log_level"] == "info"
    assert "value" in plan["predicate"]
    assert plan["duration_s"] >= 0


def test_failing_map_logs_failed_and_retried_shard(tmp_path: Path) -> None:
    ds = dataset(tmp_path / "in")
    shards = ds.shards
    configure_logging(structlog.get_logger())
    with capture_logs() as logs, pytest.raises(PartialFailureError) as info:
        ds.map(
            fail_on_second_shard,
            output_prefix=str(tmp_path / "out"),
            executor="inline",
            retries=1,
        )
    assert info.value.failed_shards == [shards[1]]

    (started,) = _events(logs, "map job started")
    job_id = started["job_id"]
    assert started["tasks"] == 3
    failed = _events(logs, "map shard failed")
    # first attempt: a warning and a retry; second: final, an error
    assert [(e["log_level"], e["attempt"], e["final"]) for e in failed] == [
        ("warning", 1, False),
        ("error", 2, True),
    ]
    for e in failed:
        assert e["job_id"] == job_id
        assert e["shard"] == shards[1]
        assert "boom at 10" in e["error"]
    finished = _events(logs, "map shard finished")
    assert sorted(e["shard"] for e in finished) == [shards[0], shards[2]]
    assert all(e["job_id"] == job_id and e["samples_in"] == PER_SHARD for e in finished)
    (done,) = _events(logs, "map job finished")
    assert done["tasks_failed"] == 1 and done["job_id"] == job_id


# -- logging: stdlib ----------------------------------------------------------------------


def test_stdlib_logger_sees_the_same_workload(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    logger = logging.getLogger("atdata.test.integration")
    caplog.set_level(logging.INFO, logger=logger.name)
    configure_logging(logger)

    ds = dataset(tmp_path / "in")
    ds.query(where=lambda m: m.value >= 25)
    with pytest.raises(PartialFailureError):
        ds.map(fail_on_second_shard, output_prefix=str(tmp_path / "out"), executor="inline")

    by_event: dict[str, list[logging.LogRecord]] = {}
    for record in caplog.records:
        by_event.setdefault(record.getMessage().split(" ", 1)[0], []).append(record)
    messages = [r.getMessage() for r in caplog.records]

    committed = [r for r in caplog.records if r.getMessage().startswith("shard committed ")]
    # 3 input shards, then 2 output shards from the map
    assert len(committed) == 5
    assert all(r.atdata["samples"] == PER_SHARD for r in committed)  # type: ignore[attr-defined]
    assert committed[0].getMessage().startswith(f"shard committed shard={ds.shards[0]} ")

    (plan,) = [r for r in caplog.records if r.getMessage().startswith("query plan ")]
    assert plan.atdata["shards_pruned"] == 2  # type: ignore[attr-defined]
    assert plan.atdata["shards_scanned"] == 1  # type: ignore[attr-defined]
    assert "shards_pruned=2 shards_scanned=1" in plan.getMessage()

    (failed,) = [r for r in caplog.records if r.getMessage().startswith("map shard failed ")]
    assert failed.levelno == logging.ERROR
    fields = failed.atdata  # type: ignore[attr-defined]
    assert fields["shard"] == ds.shards[1] and fields["final"] is True
    assert fields["job_id"] and "boom at 10" in fields["error"]
    assert any(m.startswith("map job finished ") for m in messages)


def test_debug_events_are_filtered_by_the_stdlib_level(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    logger = logging.getLogger("atdata.test.integration.warn")
    caplog.set_level(logging.WARNING, logger=logger.name)
    configure_logging(logger)
    write_shards(tmp_path)
    assert caplog.records == []


# -- metrics --------------------------------------------------------------------------------


def test_write_query_map_metric_counts(tmp_path: Path) -> None:
    write_shards(tmp_path / "in")
    assert metrics.shards_written.value == 3
    assert metrics.samples_written.value == 30
    assert metrics.shard_write_time.count == 3

    ds = Dataset[ObsSample](str(tmp_path / "in" / "shard-{000000..000002}.tar"))
    ds.query(where=lambda m: m.value >= 25)
    ds.query(where=lambda m: m.value < 5)
    assert metrics.shards_pruned.value == 4
    assert metrics.shards_scanned.value == 2
    assert metrics.query_time.count == 2

    metrics.reset()
    ds.map(double, output_prefix=str(tmp_path / "out"), executor="inline")
    assert metrics.samples_processed.value == 30
    assert metrics.shard_processing_time.count == 3
    assert metrics.shards_written.value == 3  # the map's output shards
    assert metrics.samples_written.value == 30
    assert metrics.retries.value == 0


def test_failing_map_counts_retries(tmp_path: Path) -> None:
    ds = dataset(tmp_path / "in")
    metrics.reset()
    with pytest.raises(PartialFailureError):
        ds.map(
            fail_on_second_shard,
            output_prefix=str(tmp_path / "out"),
            executor="inline",
            retries=2,
        )
    assert metrics.retries.value == 2
    assert metrics.samples_processed.value == 20  # only the shards that succeeded
    assert metrics.shard_processing_time.count == 2 + 3  # 2 good, 3 attempts of the bad one
    assert metrics.shards_written.value == 2


def test_skipped_samples_are_counted(tmp_path: Path) -> None:
    ds = dataset(tmp_path / "in")
    metrics.reset()
    with pytest.warns(RuntimeWarning, match="10 bad samples"):
        ds.map(
            fail_on_second_shard,
            output_prefix=str(tmp_path / "out"),
            executor="inline",
            on_error="warn",
        )
    assert metrics.samples_skipped.value == 10
    assert metrics.samples_processed.value == 30
    assert metrics.samples_written.value == 20


# -- tracing --------------------------------------------------------------------------------


def test_map_spans_nest_job_then_shards(tmp_path: Path, spans: InMemorySpanExporter) -> None:
    ds = dataset(tmp_path / "in")
    spans.clear()
    with pytest.raises(PartialFailureError):
        ds.map(fail_on_second_shard, output_prefix=str(tmp_path / "out"), executor="inline")
    finished = spans.get_finished_spans()
    (job,) = [s for s in finished if s.name == "map_job"]
    shard_spans = [s for s in finished if s.name == "process_shard"]
    assert len(shard_spans) == 3
    assert job.parent is None
    assert all(s.context.trace_id == job.context.trace_id for s in shard_spans)
    assert all(_parent_id(s) == job.context.span_id for s in shard_spans)
    assert sorted(str((s.attributes or {})["shard"]) for s in shard_spans) == ds.shards
    job_id = (job.attributes or {})["job_id"]
    assert all((s.attributes or {})["job_id"] == job_id for s in shard_spans)
    assert (job.attributes or {})["failed"] == 1
    (bad,) = [s for s in shard_spans if (s.attributes or {})["shard"] == ds.shards[1]]
    assert not bad.status.is_ok
    # the shard writer's manifest commits nest under the shards that wrote them
    commits = [s for s in finished if s.name == "manifest_commit"]
    good_ids = {s.context.span_id for s in shard_spans if s is not bad}
    assert commits and {_parent_id(s) for s in commits} <= good_ids


def test_ingest_to_shard_spans_share_one_trace(tmp_path: Path, spans: InMemorySpanExporter) -> None:
    dataset(tmp_path / "bkt" / "incoming")
    bucket_root = tmp_path / "bkt"

    registry = PipelineRegistry()

    @registry.pipeline("s3://bkt/incoming", str(tmp_path / "processed"), name="doubler")
    def run(url: str) -> Any:
        # the bucket is a local folder in this test
        local = str(bucket_root / url.removeprefix("s3://bkt/"))
        return Dataset[ObsSample](local).map(double, executor="inline")

    app = create_app(registry, token=TOKEN, runner=InlineRunner(), job_executor="inline")
    spans.clear()
    with TestClient(app) as client:
        event = {
            "account": "acct",
            "bucket": "bkt",
            "object": {"key": "incoming/shard-000001.tar", "size": 10, "eTag": "etag-01234567"},
            "action": "PutObject",
            "eventTime": "2026-04-01T12:00:00.000Z",
        }
        answer = client.post("/ingest", json=event, headers=AUTH)
        assert answer.status_code == 202, answer.text

    got = {s.name: s for s in spans.get_finished_spans()}
    ingest, run_span = got["atdata.dispatcher.ingest"], got["atdata.pipeline.run"]
    job, shard = got["map_job"], got["process_shard"]
    trace_id = ingest.context.trace_id
    assert {s.context.trace_id for s in spans.get_finished_spans()} == {trace_id}
    assert ingest.parent is None
    assert _parent_id(run_span) == ingest.context.span_id
    assert _parent_id(job) == run_span.context.span_id
    assert _parent_id(shard) == job.context.span_id
    assert (ingest.attributes or {})["key"] == "incoming/shard-000001.tar"
    assert str((shard.attributes or {})["shard"]).endswith("shard-000001.tar")


def test_jobs_route_spans_share_one_trace(tmp_path: Path, spans: InMemorySpanExporter) -> None:
    ds = dataset(tmp_path / "in", shards=2)
    registry = PipelineRegistry()
    registry.add_processor(atdata.processor(double))
    app = create_app(registry, token=TOKEN, runner=InlineRunner(), job_executor="inline")
    spans.clear()
    with TestClient(app) as client:
        body = {"input": ds.shards, "output_prefix": str(tmp_path / "out"), "processor": "double"}
        answer = client.post("/jobs", json=body, headers=AUTH)
        assert answer.status_code == 202, answer.text

    finished = spans.get_finished_spans()
    assert len({s.context.trace_id for s in finished}) == 1
    by_name = {s.name: s for s in finished}
    start, job = by_name["atdata.dispatcher.start_job"], by_name["atdata.dispatcher.job"]
    map_job = by_name["map_job"]
    assert start.parent is None
    assert _parent_id(job) == start.context.span_id
    assert _parent_id(map_job) == job.context.span_id
    shard_spans = [s for s in finished if s.name == "process_shard"]
    assert len(shard_spans) == 2
    assert all(_parent_id(s) == map_job.context.span_id for s in shard_spans)


# -- /metrics ---------------------------------------------------------------------------------


def test_metrics_route_serves_prometheus_text(tmp_path: Path) -> None:
    write_shards(tmp_path)
    registry = PipelineRegistry()
    app = create_app(registry, token=TOKEN, runner=InlineRunner())
    with TestClient(app) as client:
        assert client.get("/metrics").status_code == 401
        answer = client.get("/metrics", headers=AUTH)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    values = {
        sample.name: sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    }
    assert values["atdata_shards_written_total"] == 3
    assert values["atdata_samples_written_total"] == 30
    assert values["atdata_shard_write_time_seconds_count"] == 3


def test_metrics_route_uses_the_prometheus_registry(tmp_path: Path) -> None:
    from prometheus_client import CollectorRegistry

    obs.enable_prometheus(CollectorRegistry())
    write_shards(tmp_path, shards=2)
    app = create_app(PipelineRegistry(), token=TOKEN, runner=InlineRunner())
    with TestClient(app) as client:
        text = client.get("/metrics", headers=AUTH).text
    assert "atdata_shards_written_total 2.0" in text
    assert "atdata_samples_written_total 20.0" in text


def test_samples_read_counts_every_sample_read(tmp_path) -> None:
    import numpy as np

    import atdata
    from atdata import observability as obs

    @atdata.packable
    class Tiny:
        x: atdata.NDArray

    with atdata.ShardWriter(str(tmp_path / "s-%06d.tar"), maxcount=4, manifest=False) as sink:
        for i in range(10):
            sink.write(Tiny(x=np.full(2, i)))
    obs.metrics.reset()
    assert len(list(atdata.Dataset[Tiny](sink.shards))) == 10
    assert obs.metrics.samples_read.value == 10
