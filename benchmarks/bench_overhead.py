"""What atdata's logging, metrics and tracing hooks cost on the hot paths.

Three workloads, each timed best-of-N with the modes taking turns every round
(so a burst of machine load hits every mode alike):

- write: small samples (a short string and an int) with ``ShardWriter``,
  manifests on, 8 shards;
- read: ``Dataset.ordered()`` over those shards;
- map: ``Dataset.map`` with the ``inline`` executor over the 8 shards.

Modes:

- ``stubbed``: the hooks themselves replaced by empty functions (``log_event``,
  ``trace``, the metric counters...): the floor, as if atdata had no hooks;
- ``off``: the default, nothing configured (what every user pays);
- ``on``: a stdlib logger at INFO whose handler formats every record (and
  drops it), in-process metrics, and an OpenTelemetry ``TracerProvider`` with
  a ``SimpleSpanProcessor`` whose exporter discards the spans.

The target is ``off`` within 2 % of ``stubbed``.

Usage:
    python benchmarks/bench_overhead.py                # 20,000 samples, best of 5
    python benchmarks/bench_overhead.py --quick        # 4,000 samples, best of 3
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import atdata
import atdata.observability as obs
from _common import Result, best_interleaved
from atdata import Dataset, ShardWriter

SHARDS = 8


@atdata.packable
class Small:
    text: str
    value: int


@atdata.packable
class SmallOut:
    text: str
    doubled: int


def double(sample: Small) -> SmallOut:
    return SmallOut(text=sample.text, doubled=sample.value * 2)


# -- modes -------------------------------------------------------------------------------


class _StubSpan:
    def __enter__(self) -> _StubSpan:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def set_attribute(self, key: str, value: Any) -> None:
        return None


class _StubMetric:
    def inc(self, amount: float = 1) -> None:
        return None

    def observe(self, value: float) -> None:
        return None


class _StubMetrics:
    def __getattr__(self, name: str) -> _StubMetric:
        return _STUB_METRIC


_STUB_SPAN = _StubSpan()
_STUB_METRIC = _StubMetric()
_ORIGINAL = {
    name: getattr(obs, name)
    for name in ("log_event", "trace", "metrics", "inject_trace_context", "attach_trace_context")
}
_STUBS: dict[str, Any] = {
    "log_event": lambda *a, **k: None,
    "trace": lambda *a, **k: _STUB_SPAN,
    "metrics": _StubMetrics(),
    "inject_trace_context": lambda: {},
    "attach_trace_context": lambda carrier: _STUB_SPAN,
}


class _FormatAndDrop(logging.Handler):
    """Formats every record, as a real handler would, then throws it away."""

    def emit(self, record: logging.LogRecord) -> None:
        self.format(record)


class _DiscardExporter:
    def export(self, spans: Sequence[Any]) -> Any:
        from opentelemetry.sdk.trace.export import SpanExportResult

        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


def _provider() -> Any:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(_DiscardExporter()))  # type: ignore[arg-type]
    return provider


def _logger() -> logging.Logger:
    logger = logging.getLogger("atdata.bench.overhead")
    logger.handlers[:] = [_FormatAndDrop()]
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return logger


def set_mode(mode: str, provider: Any) -> None:
    for name, value in _ORIGINAL.items():
        setattr(obs, name, value)
    # back to the default (tracing auto-detects a global provider; none is installed
    # here), which OpenTelemetry being imported makes the slower of the two "off" paths
    obs.reset()
    if mode == "stubbed":
        for name, value in _STUBS.items():
            setattr(obs, name, value)
    elif mode == "on":
        obs.configure_logging(_logger())
        obs.configure_tracing(provider)


# -- workloads -----------------------------------------------------------------------------


def write(folder: str, n: int) -> list[str]:
    shutil.rmtree(folder, ignore_errors=True)
    per_shard = -(-n // SHARDS)
    with ShardWriter(os.path.join(folder, "shard-%06d.tar"), maxcount=per_shard) as sink:
        for i in range(n):
            sink.write(Small(text=f"sample text {i}", value=i))
    return sink.shards


def read(shards: list[str]) -> int:
    return sum(1 for _ in Dataset[Small](shards).ordered())


def map_once(shards: list[str], out: str) -> int:
    shutil.rmtree(out, ignore_errors=True)
    result = Dataset[Small](shards).map(double, output_prefix=out, executor="inline")
    return len(result.shards)


def _moded(
    mode: str, provider: Any, fn: Callable[[], int], n: int
) -> Callable[[], tuple[int, int]]:
    def run() -> tuple[int, int]:
        set_mode(mode, provider)
        try:
            fn()
        finally:
            set_mode("off", provider)
        return n, 0

    return run


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="4,000 samples, best of 3")
    args = parser.parse_args(argv)
    n, repeat = (4_000, 3) if args.quick else (args.samples, args.repeat)
    modes = ("stubbed", "off", "on")
    provider = _provider()
    tmp = tempfile.mkdtemp(prefix="atdata-bench-overhead-")
    try:
        shards = write(os.path.join(tmp, "input"), n)
        workloads: dict[str, Callable[[str], Callable[[], int]]] = {
            "write": lambda m: lambda: len(write(os.path.join(tmp, f"w-{m}"), n)),
            "read": lambda m: lambda: read(shards),
            "map": lambda m: lambda: map_once(shards, os.path.join(tmp, f"m-{m}")),
        }
        print(f"{n:,} samples in {SHARDS} shards, best of {repeat}, modes interleaved")
        print(
            f"{'workload':<8} {'stubbed':>10} {'off':>10} {'on':>10} {'off vs stub':>12} "
            f"{'on vs off':>10}"
        )
        for name, make in workloads.items():
            runs = {m: _moded(m, provider, make(m), n) for m in modes}
            best: dict[str, Result] = best_interleaved(repeat, runs)
            s, off, on = (best[m].seconds for m in modes)
            print(
                f"{name:<8} {s * 1e3:>8.1f}ms {off * 1e3:>8.1f}ms {on * 1e3:>8.1f}ms "
                f"{(off / s - 1) * 100:>+11.1f}% {(on / off - 1) * 100:>+9.1f}%"
            )
    finally:
        set_mode("off", provider)
        provider.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
