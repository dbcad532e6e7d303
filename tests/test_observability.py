"""Tests for atdata.observability: logging, metrics and tracing hooks."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from opentelemetry import context as otel_context
from opentelemetry import trace as otel_trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from prometheus_client import CollectorRegistry
from prometheus_client import Counter as PromCounter
from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import capture_logs

import atdata.observability as obs
from atdata.errors import MissingDependencyError
from atdata.observability import (
    Counter,
    Histogram,
    attach_trace_context,
    configure_logging,
    configure_tracing,
    disable_prometheus,
    disable_tracing,
    enable_prometheus,
    extract_trace_context,
    inject_trace_context,
    log_event,
    logging_enabled,
    metrics,
    metrics_text,
    trace,
    traced,
    tracing_enabled,
)

SRC = str(Path(__file__).resolve().parents[1] / "src")

COUNTERS = [
    "samples_processed",
    "samples_written",
    "samples_read",
    "shards_written",
    "shards_pruned",
    "shards_scanned",
    "events_received",
    "events_processed",
    "events_duplicate",
    "events_ignored",
    "retries",
    "samples_skipped",
]
HISTOGRAMS = ["shard_processing_time", "query_time", "shard_write_time"]


@pytest.fixture(autouse=True)
def _default_state() -> Iterator[None]:
    """Start and end every test with nothing configured."""
    obs.reset()
    yield
    obs.reset()


def _run_python(code: str, stdin: str = "") -> str:
    env = {**os.environ, "PYTHONPATH": SRC}
    env.pop("OTEL_PYTHON_TRACER_PROVIDER", None)
    proc = subprocess.run(
        [sys.executable, "-W", "error", "-c", textwrap.dedent(code)],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


# =============================================================================
# Logging
# =============================================================================


class Unprintable:
    """A field value that fails loudly if anything tries to render it."""

    def __str__(self) -> str:
        raise AssertionError("the field was rendered although nothing should log it")

    __repr__ = __str__


def test_structlog_logger_receives_event_and_fields() -> None:
    configure_logging(structlog.get_logger())
    with capture_logs() as logs:
        log_event("shard_written", dataset="mnist", shard="out/shard-00001.tar", duration_s=0.5)
        log_event("shard_failed", level="error", shard="s-2.tar", error="boom")
    assert logs == [
        {
            "event": "shard_written",
            "log_level": "info",
            "dataset": "mnist",
            "shard": "out/shard-00001.tar",
            "duration_s": 0.5,
        },
        {"event": "shard_failed", "log_level": "error", "shard": "s-2.tar", "error": "boom"},
    ]


def test_structlog_style_logger_with_custom_processor() -> None:
    seen: list[tuple[str, dict[str, Any]]] = []

    def collect(logger: Any, method_name: str, event_dict: Any) -> Any:
        seen.append((method_name, dict(event_dict)))
        raise structlog.DropEvent

    configure_logging(structlog.wrap_logger(structlog.ReturnLogger(), processors=[collect]))
    log_event("query_planned", level="warning", shards_pruned=7, shards_scanned=3)
    assert seen == [
        ("warning", {"event": "query_planned", "shards_pruned": 7, "shards_scanned": 3})
    ]


def test_stdlib_logger_gets_readable_message_and_structured_fields(
    caplog: pytest.LogCaptureFixture,
) -> None:
    logger = logging.getLogger("atdata.test.stdlib")
    caplog.set_level(logging.INFO, logger=logger.name)
    configure_logging(logger)
    log_event("query_done", dataset="my ds", shards_pruned=3, shards_scanned=1, job_id="j-1")

    assert len(caplog.records) == 1
    record = caplog.records[0]
    assert record.levelno == logging.INFO
    assert record.name == "atdata.test.stdlib"
    assert (
        record.getMessage()
        == 'query_done dataset="my ds" shards_pruned=3 shards_scanned=1 job_id=j-1'
    )
    assert record.atdata == {  # type: ignore[attr-defined]
        "dataset": "my ds",
        "shards_pruned": 3,
        "shards_scanned": 1,
        "job_id": "j-1",
    }
    # The record points at the code that called log_event, not at atdata.
    assert record.funcName == "test_stdlib_logger_gets_readable_message_and_structured_fields"
    assert record.pathname == __file__


def test_stdlib_message_quotes_awkward_values(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("atdata.test.quote")
    caplog.set_level(logging.DEBUG, logger=logger.name)
    configure_logging(logger)
    log_event("e", level="debug", error='bad "x"\nnext', empty="", plain=1.5)
    assert caplog.records[0].getMessage() == r'e error="bad \"x\"\nnext" empty="" plain=1.5'
    assert caplog.records[0].levelno == logging.DEBUG


def test_stdlib_level_filter_skips_formatting(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("atdata.test.filtered")
    caplog.set_level(logging.WARNING, logger=logger.name)
    configure_logging(logger)
    log_event("noisy", level="debug", key=Unprintable())
    log_event("kept", level="warning", key="k1")
    assert [r.getMessage() for r in caplog.records] == ["kept key=k1"]
    assert caplog.records[0].levelno == logging.WARNING


def test_stdlib_exception_level_attaches_traceback(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("atdata.test.exc")
    caplog.set_level(logging.INFO, logger=logger.name)
    configure_logging(logger)
    try:
        raise RuntimeError("disk full")
    except RuntimeError:
        log_event("shard_failed", level="exception", shard="s.tar")
    (record,) = caplog.records
    assert record.levelno == logging.ERROR
    assert record.exc_info is not None and isinstance(record.exc_info[1], RuntimeError)


def test_unknown_level_is_rejected_when_logging() -> None:
    configure_logging(logging.getLogger("atdata.test.level"))
    with pytest.raises(ValueError, match="level must be one of debug, info"):
        log_event("x", level="loud")


def test_configure_logging_rejects_non_loggers() -> None:
    with pytest.raises(TypeError, match=r"got 'object'.*structlog\.get_logger"):
        configure_logging(object())  # type: ignore[arg-type]
    assert not logging_enabled()


def test_silent_by_default(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)  # root and everything below it
    assert not logging_enabled()
    for level in ("debug", "info", "error", "not-a-level"):
        log_event("anything", level=level, key=Unprintable())
    assert caplog.records == []

    start = time.perf_counter()
    for _ in range(100_000):
        log_event("shard_read", shard="s.tar", key="k")
    elapsed = time.perf_counter() - start
    # ~50-150 ns a call in practice; the bound only catches real work sneaking in.
    assert elapsed < 1.0, f"100k silent log_event calls took {elapsed:.3f}s"


def test_configure_none_silences_again(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("atdata.test.toggle")
    caplog.set_level(logging.INFO, logger=logger.name)
    configure_logging(logger)
    assert logging_enabled()
    log_event("one")
    configure_logging(None)
    assert not logging_enabled()
    log_event("two")
    assert [r.getMessage() for r in caplog.records] == ["one"]


# =============================================================================
# Metrics
# =============================================================================


@pytest.fixture(params=["in-process", "prometheus"])
def backend(request: pytest.FixtureRequest) -> str:
    if request.param == "prometheus":
        enable_prometheus(CollectorRegistry())
    return str(request.param)


def test_every_roadmap_metric_exists() -> None:
    for name in COUNTERS:
        assert isinstance(getattr(metrics, name), Counter), name
    for name in HISTOGRAMS:
        assert isinstance(getattr(metrics, name), Histogram), name
    assert len(list(metrics)) == len(COUNTERS) + len(HISTOGRAMS)


def test_counter_exact_counts(backend: str) -> None:
    for _ in range(5):
        metrics.samples_processed.inc()
    metrics.samples_processed.inc(3)
    metrics.samples_processed.inc(0.5)
    metrics.shards_pruned.inc(2)
    assert metrics.samples_processed.value == 8.5
    # Reading must not disturb the count.
    assert metrics.samples_processed.value == 8.5
    snap = metrics.snapshot()
    assert snap["shards_pruned"] == 2.0
    assert all(
        snap[name] == 0.0 for name in COUNTERS if name not in ("samples_processed", "shards_pruned")
    )


def test_counter_rejects_negative(backend: str) -> None:
    with pytest.raises(ValueError):
        metrics.retries.inc(-1)
    assert metrics.retries.value == 0.0


def test_counter_is_thread_safe(backend: str) -> None:
    def work() -> None:
        for _ in range(10_000):
            metrics.samples_written.inc()
            metrics.samples_read.inc(2)
        # Reads racing with increments must not lose counts either.
        _ = metrics.samples_written.value

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert metrics.samples_written.value == 40_000
    assert metrics.samples_read.value == 80_000


def test_histogram_count_and_sum(backend: str) -> None:
    for v in (0.25, 0.75, 20.0):
        metrics.shard_processing_time.observe(v)
    assert metrics.shard_processing_time.count == 3.0
    assert metrics.shard_processing_time.sum == 21.0
    assert metrics.query_time.count == 0.0
    text = metrics_text().decode()
    assert 'atdata_shard_processing_time_seconds_bucket{le="0.25"} 1.0\n' in text
    assert 'atdata_shard_processing_time_seconds_bucket{le="10.0"} 2.0\n' in text
    assert 'atdata_shard_processing_time_seconds_bucket{le="+Inf"} 3.0\n' in text
    assert "atdata_shard_processing_time_seconds_count 3.0\n" in text
    assert "atdata_shard_processing_time_seconds_sum 21.0\n" in text


def test_histogram_timer_observes_elapsed_seconds(backend: str) -> None:
    with metrics.shard_write_time.time():
        time.sleep(0.01)
    assert metrics.shard_write_time.count == 1.0
    assert 0.005 < metrics.shard_write_time.sum < 5.0


def test_reset_zeroes_everything(backend: str) -> None:
    metrics.events_received.inc(4)
    metrics.query_time.observe(1.0)
    metrics.reset()
    assert set(metrics.snapshot().values()) == {0.0}
    metrics.events_received.inc()
    assert metrics.events_received.value == 1.0


def test_prometheus_exposition_with_fresh_registry() -> None:
    registry = CollectorRegistry()
    enable_prometheus(registry)
    assert metrics.prometheus_registry is registry
    for _ in range(3):
        metrics.samples_processed.inc()
    metrics.query_time.observe(0.3)

    text = metrics_text()
    assert b"# TYPE atdata_samples_processed_total counter\n" in text
    assert b"\natdata_samples_processed_total 3.0\n" in text
    assert registry.get_sample_value("atdata_samples_processed_total") == 3.0
    assert registry.get_sample_value("atdata_query_time_seconds_count") == 1.0
    assert metrics.samples_processed.value == 3.0
    assert metrics.query_time.sum == 0.3


def test_in_process_text_matches_prometheus_client() -> None:
    def exercise() -> None:
        metrics.samples_processed.inc(3)
        metrics.events_duplicate.inc()
        for v in (0.004, 0.3, 0.3, 12.0):
            metrics.shard_processing_time.observe(v)

    exercise()
    ours = metrics_text().decode()
    # Valid exposition: the reference parser reads it back with our values.
    families = {f.name: f for f in text_string_to_metric_families(ours)}
    assert families["atdata_samples_processed"].type == "counter"
    assert families["atdata_samples_processed"].samples[0].value == 3.0
    assert len(families) == len(COUNTERS) + len(HISTOGRAMS)

    enable_prometheus(CollectorRegistry())
    exercise()
    theirs = metrics_text().decode()
    # prometheus_client adds a *_created gauge per metric; everything else is identical.
    without_created = "".join(line + "\n" for line in theirs.splitlines() if "_created" not in line)
    assert ours == without_created


def test_enable_prometheus_twice_with_same_registry_is_a_no_op() -> None:
    registry = CollectorRegistry()
    enable_prometheus(registry)
    metrics.retries.inc()
    enable_prometheus(registry)
    assert metrics.retries.value == 1.0


def test_enable_prometheus_on_a_conflicting_registry_fails_cleanly() -> None:
    registry = CollectorRegistry()
    PromCounter("atdata_retries", "someone else's", registry=registry)
    with pytest.raises(ValueError, match=r"fresh prometheus_client\.CollectorRegistry"):
        enable_prometheus(registry)
    # Rolled back: still counting in-process, nothing of ours left in the registry.
    assert metrics.prometheus_registry is None
    metrics.samples_read.inc()
    assert metrics.samples_read.value == 1.0
    assert registry.get_sample_value("atdata_samples_read_total") is None


def test_disable_prometheus_unregisters_and_counts_in_process() -> None:
    registry = CollectorRegistry()
    enable_prometheus(registry)
    metrics.samples_read.inc(5)
    disable_prometheus()
    assert registry.get_sample_value("atdata_samples_read_total") is None
    assert metrics.samples_read.value == 0.0
    metrics.samples_read.inc()
    assert metrics.samples_read.value == 1.0
    assert b"atdata_samples_read_total 1.0\n" in metrics_text()


def test_enable_prometheus_without_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'atdata\[metrics\]'"):
        enable_prometheus()


# =============================================================================
# Tracing
# =============================================================================


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Tracing configured with an explicit provider (never the global one)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    configure_tracing(provider)
    yield exporter
    provider.shutdown()


def _by_name(exporter: InMemorySpanExporter) -> dict[str, ReadableSpan]:
    finished = exporter.get_finished_spans()
    out = {s.name: s for s in finished}
    assert len(out) == len(finished), "span names are not unique"
    return out


def test_nested_spans_have_the_right_parents(spans: InMemorySpanExporter) -> None:
    assert tracing_enabled()
    with trace("job", job_id="j-1") as job:
        with (
            trace("shard", shard=Path("s/shard-00001.tar"), index=1, missing=None),
            trace("batch", size=32, ratio=0.5, last=True) as batch,
        ):
            batch.set_attribute("samples", 32)
        with trace("shard2"):
            pass
    assert job.is_recording() is False  # ended on exit

    got = _by_name(spans)
    trace_id = got["job"].context.trace_id
    assert all(s.context.trace_id == trace_id for s in got.values())
    assert got["job"].parent is None
    assert got["shard"].parent is not None
    assert got["shard"].parent.span_id == got["job"].context.span_id
    assert got["batch"].parent is not None
    assert got["batch"].parent.span_id == got["shard"].context.span_id
    assert got["shard2"].parent is not None
    assert got["shard2"].parent.span_id == got["job"].context.span_id
    assert dict(got["shard"].attributes or {}) == {
        "shard": "s/shard-00001.tar",
        "index": 1,
        "missing": "None",
    }
    assert dict(got["batch"].attributes or {}) == {
        "size": 32,
        "ratio": 0.5,
        "last": True,
        "samples": 32,
    }


def test_exception_marks_span_as_error(spans: InMemorySpanExporter) -> None:
    with pytest.raises(KeyError), trace("process_shard"):
        raise KeyError("missing field")
    (span,) = spans.get_finished_spans()
    assert span.status.status_code is StatusCode.ERROR
    assert [e.name for e in span.events] == ["exception"]


def test_inject_extract_continues_trace_in_a_fresh_context(
    spans: InMemorySpanExporter,
) -> None:
    with trace("job"):
        headers = inject_trace_context()
    job = _by_name(spans)["job"]
    ctx = job.context
    assert headers["traceparent"] == (
        f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"
    )
    assert int(ctx.trace_flags) & 0x01  # sampled

    def worker() -> None:
        # A new thread starts with an empty contextvars context, like a worker.
        assert not otel_trace.get_current_span().get_span_context().is_valid
        # HTTP stacks often capitalise header names.
        with (
            attach_trace_context({"Traceparent": headers["traceparent"], "x-other": "1"}),
            trace("shard"),
            trace("batch"),
        ):
            pass
        assert not otel_trace.get_current_span().get_span_context().is_valid

    t = threading.Thread(target=worker)
    t.start()
    t.join()

    got = _by_name(spans)
    assert got["shard"].context.trace_id == job.context.trace_id
    assert got["shard"].parent is not None
    assert got["shard"].parent.span_id == job.context.span_id
    assert got["shard"].parent.is_remote
    assert got["batch"].parent is not None
    assert got["batch"].parent.span_id == got["shard"].context.span_id


def test_extract_ignores_the_callers_current_span(spans: InMemorySpanExporter) -> None:
    with trace("job"):
        headers = inject_trace_context()
    with trace("unrelated"):
        ctx = extract_trace_context(headers)
        assert ctx is not None
        token = otel_context.attach(ctx)
        try:
            with trace("shard"):
                pass
        finally:
            otel_context.detach(token)
    got = _by_name(spans)
    assert got["shard"].parent is not None
    assert got["shard"].parent.span_id == got["job"].context.span_id


def test_trace_context_crosses_a_process_boundary(spans: InMemorySpanExporter) -> None:
    with trace("job", job_id="j-7"):
        headers = inject_trace_context()
    worker = """
        import json, sys
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        from atdata.observability import attach_trace_context, configure_tracing, trace

        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        configure_tracing(provider)
        with attach_trace_context(json.load(sys.stdin)):
            with trace("shard"):
                with trace("batch"):
                    pass
        print(json.dumps({
            s.name: [s.context.trace_id, s.context.span_id, s.parent.span_id]
            for s in exporter.get_finished_spans()
        }))
    """
    result = json.loads(_run_python(worker, stdin=json.dumps(headers)))
    job = _by_name(spans)["job"]
    shard_trace, shard_id, shard_parent = result["shard"]
    batch_trace, _, batch_parent = result["batch"]
    assert shard_trace == batch_trace == job.context.trace_id
    assert shard_parent == job.context.span_id
    assert batch_parent == shard_id


def test_traced_decorator_sync_and_async(spans: InMemorySpanExporter) -> None:
    @traced("load_shard", stage="read")
    def load(url: str) -> int:
        return len(url)

    @traced()
    async def fetch() -> str:
        with trace("inner"):
            return "ok"

    assert load("abc") == 3
    assert asyncio.run(fetch()) == "ok"
    got = _by_name(spans)
    assert dict(got["load_shard"].attributes or {}) == {"stage": "read"}
    fetch_name = "test_traced_decorator_sync_and_async.<locals>.fetch"
    assert got["inner"].parent is not None
    assert got["inner"].parent.span_id == got[fetch_name].context.span_id
    assert load.__name__ == "load"


def test_trace_is_a_shared_no_op_when_not_configured() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()  # exists, but nobody configured atdata with it
    provider.add_span_processor(SimpleSpanProcessor(exporter))

    assert not tracing_enabled()
    first, second = trace("a", shard="s"), trace("b")
    assert first is second
    with first as span:
        span.set_attribute("k", 1)
        span.add_event("e")
        assert span.is_recording() is False
    with pytest.raises(ZeroDivisionError), trace("boom"):
        1 / 0  # noqa: B018
    with pytest.raises(TypeError, match="traced"):
        trace("x")(lambda: None)  # type: ignore[operator]

    @traced("off")
    def f() -> int:
        return 7

    assert f() == 7
    assert inject_trace_context() == {}
    assert extract_trace_context({"traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"}) is None
    with attach_trace_context({"traceparent": "garbage"}) as attached:
        assert attached is None
    assert exporter.get_finished_spans() == ()
    provider.shutdown()


def test_disable_tracing_stops_spans(spans: InMemorySpanExporter) -> None:
    with trace("before"):
        pass
    disable_tracing()
    assert not tracing_enabled()
    with trace("after"):
        pass
    assert inject_trace_context() == {}
    assert [s.name for s in spans.get_finished_spans()] == ["before"]


def test_reset_turns_off_logging_metrics_and_tracing(spans: InMemorySpanExporter) -> None:
    configure_logging(logging.getLogger("atdata.test.reset"))
    enable_prometheus(CollectorRegistry())
    metrics.samples_read.inc(3)
    metrics.query_time.observe(0.5)
    assert logging_enabled() and tracing_enabled()

    obs.reset()

    assert not logging_enabled()
    assert metrics.prometheus_registry is None
    assert set(metrics.snapshot().values()) == {0.0}
    assert not tracing_enabled()
    with trace("after_reset"):
        pass
    assert spans.get_finished_spans() == ()


def test_reset_undoes_disable_tracing() -> None:
    # Back to auto-detecting the global provider, which is once-per-process: in a child.
    out = _run_python(
        """
        import atdata.observability as obs
        from opentelemetry import trace as otel_trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        otel_trace.set_tracer_provider(provider)
        obs.disable_tracing()
        with obs.trace("disabled"):
            pass
        obs.reset()
        with obs.trace("auto_detected"):
            pass
        print(",".join(s.name for s in exporter.get_finished_spans()))
        """
    )
    assert out.strip() == "auto_detected"


def test_configure_tracing_without_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'atdata\[tracing\]'"):
        configure_tracing()
    assert not tracing_enabled()


def test_global_provider_is_picked_up_without_configuring() -> None:
    # Setting the global provider is once-per-process, so it happens in a child.
    out = _run_python(
        """
        import sys
        from atdata.observability import configure_tracing, inject_trace_context, trace

        with trace("before_import"):
            pass
        assert "opentelemetry" not in sys.modules

        from opentelemetry import trace as otel_trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        with trace("imported_but_no_provider"):
            pass
        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        otel_trace.set_tracer_provider(provider)
        with trace("global_provider"):
            assert inject_trace_context()["traceparent"].startswith("00-")
        configure_tracing()  # None: the global provider, explicitly
        with trace("configured_global"):
            pass
        print(",".join(s.name for s in exporter.get_finished_spans()))
        """
    )
    assert out.strip() == "global_provider,configured_global"


def test_unconfigured_hooks_import_no_optional_packages() -> None:
    out = _run_python(
        """
        import sys
        import atdata.observability as obs

        obs.log_event("shard_read", shard="s.tar")
        obs.metrics.samples_read.inc()
        obs.metrics.query_time.observe(0.1)
        with obs.trace("t", k=1):
            pass
        assert obs.inject_trace_context() == {}
        assert obs.metrics_text().startswith(b"# HELP atdata_")
        loaded = sorted(
            m for m in sys.modules
            if m.split(".")[0] in ("structlog", "prometheus_client", "opentelemetry")
        )
        print(loaded)
        """
    )
    assert out.strip() == "[]"


def test_all_is_sorted_and_importable() -> None:
    assert obs.__all__ == sorted(obs.__all__)
    for name in obs.__all__:
        assert hasattr(obs, name), name
    # "@py..." names come from pytest's assertion rewriting of plugin packages
    public = {n for n in vars(obs) if not n.startswith(("_", "@"))} - {"annotations"}
    assert public == set(obs.__all__)
