"""Logging, metrics and tracing hooks for atdata; each one is a no-op until configured.

The rest of atdata calls these hooks on hot paths (per sample, per shard), so
the unconfigured case is kept to one global or attribute check and a return.
Nothing here imports ``structlog``, ``prometheus_client`` or ``opentelemetry``
at import time: the first two are only touched when you configure them, and
OpenTelemetry is only looked at once your program has imported it itself.

Three independent switches::

    import structlog
    import atdata

    atdata.configure_logging(structlog.get_logger())   # or a logging.Logger
    atdata.enable_prometheus()                          # metrics -> prometheus_client
    atdata.configure_tracing()                          # spans -> OpenTelemetry

    atdata.metrics.samples_processed.inc()
    atdata.metrics.shard_processing_time.observe(0.42)
    with atdata.trace("process_shard", shard_id="shard-00042"):
        ...
"""

from __future__ import annotations

import itertools
import math
import sys
import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Protocol, Self, TypeVar

if TYPE_CHECKING:
    import logging
    from contextlib import AbstractContextManager
    from types import TracebackType

    import prometheus_client
    from opentelemetry.context import Context
    from opentelemetry.trace import Tracer, TracerProvider
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

__all__ = [
    "Counter",
    "EventLogger",
    "Histogram",
    "Metrics",
    "attach_trace_context",
    "configure_logging",
    "configure_tracing",
    "disable_prometheus",
    "disable_tracing",
    "enable_prometheus",
    "extract_trace_context",
    "inject_trace_context",
    "log_event",
    "logging_enabled",
    "metrics",
    "metrics_text",
    "trace",
    "traced",
    "tracing_enabled",
]

_F = TypeVar("_F", bound=Callable[..., Any])


# =============================================================================
# Logging
# =============================================================================


class EventLogger(Protocol):
    """What a structlog-style logger offers: one method per level taking ``(event, **kw)``."""

    def debug(self, event: str, **kw: Any) -> Any: ...
    def info(self, event: str, **kw: Any) -> Any: ...
    def warning(self, event: str, **kw: Any) -> Any: ...
    def error(self, event: str, **kw: Any) -> Any: ...


# The stdlib's numeric levels, written out so that the silent default does not
# import ``logging`` (about 10 ms) just to name them.
_LEVELS: dict[str, int] = {
    "debug": 10,
    "info": 20,
    "warning": 30,
    "error": 40,
    "exception": 40,
    "critical": 50,
}

_Sink = Callable[[str, str, dict[str, Any]], None]

# The configured emitter, or None. A module global rather than an attribute so
# that the silent path of ``log_event`` is a single global load and a compare.
_log_sink: _Sink | None = None


def configure_logging(
    logger: logging.Logger | logging.LoggerAdapter[Any] | EventLogger | None = None,
) -> None:
    """Send atdata's structured events to ``logger``; ``None`` silences them again.

    A stdlib logger receives ``logger.log(level, "event key=value ...",
    extra={"atdata": fields})``, so a plain handler prints something readable
    while a structured handler finds the fields on ``record.atdata``. Any other
    object with ``debug/info/warning/error`` methods (a structlog logger) is
    called as ``logger.<level>(event, **fields)``.

    Args:
        logger: A ``logging.Logger`` (or ``LoggerAdapter``), a structlog-style
            logger, or ``None`` to turn logging off.

    Raises:
        TypeError: If ``logger`` is neither a stdlib logger nor has the
            structlog-style level methods.

    Example:
        >>> import logging
        >>> configure_logging(logging.getLogger("atdata"))
        >>> logging_enabled()
        True
        >>> configure_logging(None)
    """
    global _log_sink
    if logger is None:
        _log_sink = None
        return
    import logging

    if isinstance(logger, (logging.Logger, logging.LoggerAdapter)):
        _log_sink = _stdlib_sink(logger)
        return
    missing = [
        m for m in ("debug", "info", "warning", "error") if not callable(getattr(logger, m, None))
    ]
    if missing:
        raise TypeError(
            f"configure_logging expected a logging.Logger, a structlog logger or None, "
            f"got {type(logger).__name__!r}, which has no {', '.join(missing)} method(s). "
            "Pass logging.getLogger('atdata') or structlog.get_logger()."
        )
    _log_sink = _structlog_sink(logger)


def logging_enabled() -> bool:
    """Return whether a logger is configured, so callers can skip building costly fields.

    Example:
        >>> if logging_enabled():
        ...     log_event("shard_read", shard="shard-00000.tar", size=len(b"..."))
    """
    return _log_sink is not None


def log_event(event: str, level: str = "info", **fields: Any) -> None:
    """Emit a structured event to the configured logger; does nothing when none is set.

    Args:
        event: A short snake_case event name, e.g. ``"shard_written"``.
        level: One of ``debug``, ``info``, ``warning``, ``error``,
            ``exception`` (error with the current traceback) or ``critical``.
        **fields: Context such as ``dataset``, ``shard``, ``key``, ``job_id``,
            ``duration_s``, ``error``, ``shards_pruned``, ``shards_scanned``.

    Raises:
        ValueError: If a logger is configured and ``level`` is not a known
            level (not checked while logging is off, to keep that path free).

    Example:
        >>> log_event("shard_written", shard="out/shard-00001.tar", duration_s=0.8)
    """
    sink = _log_sink
    if sink is None:
        return
    sink(event, level, fields)


def _level_number(level: str) -> int:
    try:
        return _LEVELS[level]
    except KeyError:
        raise ValueError(
            f"log_event level must be one of {', '.join(_LEVELS)}; got {level!r}."
        ) from None


def _stdlib_sink(logger: logging.Logger | logging.LoggerAdapter[Any]) -> _Sink:
    def emit(event: str, level: str, fields: dict[str, Any]) -> None:
        levelno = _level_number(level)
        # Skip building the message when the record would be dropped anyway.
        if not logger.isEnabledFor(levelno):
            return
        logger.log(
            levelno,
            _logfmt(event, fields),
            exc_info=level == "exception",
            extra={"atdata": fields},
            # 1 = this function, 2 = log_event, 3 = the code that called
            # log_event, which is the location a reader wants in the record.
            stacklevel=3,
        )

    return emit


def _structlog_sink(logger: EventLogger) -> _Sink:
    def emit(event: str, level: str, fields: dict[str, Any]) -> None:
        _level_number(level)
        # Looked up on every call (not cached at configure time) so that a
        # structlog.configure() made later still reaches lazy proxy loggers.
        getattr(logger, level)(event, **fields)

    return emit


def _logfmt(event: str, fields: Mapping[str, Any]) -> str:
    if not fields:
        return event
    return event + " " + " ".join(f"{k}={_logfmt_value(v)}" for k, v in fields.items())


def _logfmt_value(value: Any) -> str:
    text = str(value)
    # Quote only when needed, so the common case stays readable: shard=a.tar n=3
    if text and not any(c in text for c in ' "=\n\t\\'):
        return text
    escaped = (
        text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
    )
    return f'"{escaped}"'


# =============================================================================
# Metrics
# =============================================================================


def _missing(package: str, extra: str, feature: str) -> Exception:
    # errors.py pulls in difflib; import it only on this rare path.
    from atdata.errors import MissingDependencyError

    return MissingDependencyError(package, extra, feature)


class Counter:
    """A monotonically increasing count, kept in-process or in ``prometheus_client``.

    Example:
        >>> c = Counter("atdata_demo", "Demo counter.")
        >>> c.inc(); c.inc(2)
        >>> c.value
        3.0
    """

    __slots__ = ("_extra", "_lock", "_ones", "_prom", "_reads", "documentation", "name")

    def __init__(self, name: str, documentation: str) -> None:
        self.name = name
        self.documentation = documentation
        self._lock = threading.Lock()
        # inc() by 1 is the hot case: ``next()`` on an itertools.count is a
        # single C call that the GIL makes atomic, about 15x cheaper than
        # taking a lock. Other amounts go to ``_extra`` under the lock.
        self._ones = itertools.count()
        self._reads = 0
        self._extra: float = 0
        self._prom: prometheus_client.Counter | None = None

    def inc(self, amount: float = 1) -> None:
        """Add ``amount`` (default 1) to the counter.

        Raises:
            ValueError: If ``amount`` is negative; counters only go up.

        Example:
            >>> metrics.samples_read.inc()
        """
        if self._prom is None:
            if amount == 1:
                next(self._ones)
                return
            if amount < 0:
                raise ValueError(f"Counter {self.name} can only increase; got inc({amount!r}).")
            with self._lock:
                self._extra += amount
        else:
            self._prom.inc(amount)

    @property
    def value(self) -> float:
        """The current total."""
        prom = self._prom
        if prom is not None:
            return _prom_sample(prom, "_total")
        with self._lock:
            # Reading an itertools.count advances it, so every read is
            # remembered and subtracted; the lock keeps concurrent reads apart.
            ones = next(self._ones) - self._reads
            self._reads += 1
            return float(ones + self._extra)

    def _reset_local(self) -> None:
        with self._lock:
            self._ones = itertools.count()
            self._reads = 0
            self._extra = 0

    def _exposition(self) -> list[str]:
        full = self.name + "_total"
        return [
            f"# HELP {full} {_escape_help(self.documentation)}",
            f"# TYPE {full} counter",
            f"{full} {_format_float(self.value)}",
        ]

    def __repr__(self) -> str:
        return f"Counter({self.name!r}, value={self.value!r})"


# Prometheus' default latency buckets (seconds), so both back ends agree.
_DEFAULT_BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, float("inf"),
)  # fmt: skip


class Histogram:
    """A distribution of observed values (durations in seconds), with count and sum.

    Example:
        >>> h = Histogram("atdata_demo_seconds", "Demo histogram.")
        >>> h.observe(0.25); h.observe(0.75)
        >>> (h.count, h.sum)
        (2.0, 1.0)
    """

    __slots__ = ("_count", "_counts", "_lock", "_prom", "_sum", "buckets", "documentation", "name")

    def __init__(
        self, name: str, documentation: str, buckets: tuple[float, ...] = _DEFAULT_BUCKETS
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.buckets = buckets if buckets[-1] == float("inf") else (*buckets, float("inf"))
        self._lock = threading.Lock()
        self._counts = [0] * len(self.buckets)
        self._count = 0
        self._sum = 0.0
        self._prom: prometheus_client.Histogram | None = None

    def observe(self, value: float) -> None:
        """Record one observation.

        Example:
            >>> metrics.query_time.observe(0.012)
        """
        if self._prom is None:
            # Upper bounds are inclusive ("le"), hence bisect_left.
            i = bisect_left(self.buckets, value)
            with self._lock:
                self._counts[i] += 1
                self._count += 1
                self._sum += value
        else:
            self._prom.observe(value)

    def time(self) -> _Timer:
        """Return a context manager that observes the seconds spent inside it.

        Example:
            >>> with metrics.shard_write_time.time():
            ...     pass
        """
        return _Timer(self)

    @property
    def count(self) -> float:
        """How many values were observed."""
        if self._prom is not None:
            return _prom_sample(self._prom, "_count")
        return float(self._count)

    @property
    def sum(self) -> float:
        """The sum of the observed values."""
        if self._prom is not None:
            return _prom_sample(self._prom, "_sum")
        return float(self._sum)

    def _reset_local(self) -> None:
        with self._lock:
            self._counts = [0] * len(self.buckets)
            self._count = 0
            self._sum = 0.0

    def _exposition(self) -> list[str]:
        with self._lock:
            counts, count, total = list(self._counts), self._count, self._sum
        lines = [
            f"# HELP {self.name} {_escape_help(self.documentation)}",
            f"# TYPE {self.name} histogram",
        ]
        cumulative = 0
        for bound, n in zip(self.buckets, counts, strict=True):
            cumulative += n
            lines.append(
                f'{self.name}_bucket{{le="{_format_float(bound)}"}} {_format_float(cumulative)}'
            )
        lines.append(f"{self.name}_count {_format_float(count)}")
        lines.append(f"{self.name}_sum {_format_float(total)}")
        return lines

    def __repr__(self) -> str:
        return f"Histogram({self.name!r}, count={self.count!r}, sum={self.sum!r})"


class _Timer:
    __slots__ = ("_histogram", "_start")

    def __init__(self, histogram: Histogram) -> None:
        self._histogram = histogram
        self._start = 0.0

    def __enter__(self) -> Self:
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self._histogram.observe(time.perf_counter() - self._start)


def _prom_sample(
    collector: prometheus_client.Counter | prometheus_client.Histogram, suffix: str
) -> float:
    # collect() is public API; reading ``_value`` would not be.
    for family in collector.collect():
        for sample in family.samples:
            if sample.name.endswith(suffix) and not sample.labels:
                return float(sample.value)
    return 0.0


def _format_float(value: float) -> str:
    # The exposition spellings of the special values; repr() covers the rest
    # and matches what prometheus_client writes for ordinary magnitudes.
    value = float(value)
    if value == float("inf"):
        return "+Inf"
    if value == float("-inf"):
        return "-Inf"
    if math.isnan(value):
        return "NaN"
    return repr(value)


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


class Metrics:
    """atdata's metrics, one attribute each; read ``.value`` / ``.count`` / ``.sum``.

    Counters are exposed as ``atdata_<name>_total`` and histograms (all in
    seconds) as ``atdata_<name>_seconds``.

    Example:
        >>> metrics.samples_processed.inc()
        >>> metrics.shard_processing_time.observe(1.5)
        >>> metrics.reset()
    """

    def __init__(self) -> None:
        # -- samples ----------------------------------------------------------
        self.samples_processed = Counter(
            "atdata_samples_processed", "Samples a processor has handled."
        )
        self.samples_written = Counter("atdata_samples_written", "Samples written to shards.")
        self.samples_read = Counter("atdata_samples_read", "Samples read from shards.")
        self.samples_skipped = Counter(
            "atdata_samples_skipped", "Samples skipped by an error policy instead of raising."
        )
        # -- shards -----------------------------------------------------------
        self.shards_written = Counter(
            "atdata_shards_written", "Shards committed (tar, manifest parquet and JSON)."
        )
        self.shards_pruned = Counter(
            "atdata_shards_pruned",
            "Shards a query ruled out from manifest aggregates without opening.",
        )
        self.shards_scanned = Counter("atdata_shards_scanned", "Shards a query had to scan.")
        self.retries = Counter("atdata_retries", "Shard tasks retried after a failure.")
        # -- pipeline events --------------------------------------------------
        self.events_received = Counter("atdata_events_received", "Object-created events received.")
        self.events_processed = Counter("atdata_events_processed", "Events that led to processing.")
        self.events_duplicate = Counter(
            "atdata_events_duplicate", "Events dropped because the ledger had already seen them."
        )
        self.events_ignored = Counter(
            "atdata_events_ignored", "Events ignored (not a .tar object)."
        )
        # -- durations --------------------------------------------------------
        self.shard_processing_time = Histogram(
            "atdata_shard_processing_time_seconds", "Seconds spent processing one shard."
        )
        self.shard_write_time = Histogram(
            "atdata_shard_write_time_seconds", "Seconds spent writing and committing one shard."
        )
        self.query_time = Histogram(
            "atdata_query_time_seconds", "Seconds spent answering one query."
        )
        self._registry: prometheus_client.CollectorRegistry | None = None
        self._switch_lock = threading.Lock()

    def __iter__(self) -> Iterator[Counter | Histogram]:
        """Iterate over every metric, in a stable order."""
        return (m for m in vars(self).values() if isinstance(m, (Counter, Histogram)))

    @property
    def prometheus_registry(self) -> prometheus_client.CollectorRegistry | None:
        """The registry metrics are exported to, or ``None`` when kept in-process."""
        return self._registry

    def snapshot(self) -> dict[str, float]:
        """Every value by attribute name (histograms: ``<name>_count`` and ``<name>_sum``).

        Example:
            >>> metrics.snapshot()["samples_read"]
            0.0
        """
        out: dict[str, float] = {}
        for attr, m in vars(self).items():
            if isinstance(m, Counter):
                out[attr] = m.value
            elif isinstance(m, Histogram):
                out[attr + "_count"] = m.count
                out[attr + "_sum"] = m.sum
        return out

    def reset(self) -> None:
        """Set every value back to zero (for tests), whichever back end is active.

        Example:
            >>> metrics.reset()
        """
        with self._switch_lock:
            registry = self._registry
            if registry is None:
                for m in self:
                    m._reset_local()
            else:
                # prometheus_client has no public reset for histograms, so the
                # collectors are replaced in the same registry.
                self._detach_prometheus()
                self._attach_prometheus(registry)

    def _attach_prometheus(self, registry: prometheus_client.CollectorRegistry) -> None:
        import prometheus_client

        made: list[prometheus_client.Counter | prometheus_client.Histogram] = []
        try:
            for m in self:
                if isinstance(m, Counter):
                    made.append(
                        prometheus_client.Counter(m.name, m.documentation, registry=registry)
                    )
                else:
                    made.append(
                        prometheus_client.Histogram(
                            m.name, m.documentation, buckets=m.buckets, registry=registry
                        )
                    )
        except ValueError as exc:
            for collector in made:
                registry.unregister(collector)
            raise ValueError(
                "enable_prometheus: this registry already holds a metric named like "
                f"atdata's ({exc}). "
                "Pass a fresh prometheus_client.CollectorRegistry(), or call enable_prometheus() "
                "only once per registry."
            ) from exc
        for m, collector in zip(self, made, strict=True):
            m._prom = collector
        self._registry = registry

    def _detach_prometheus(self) -> None:
        registry = self._registry
        if registry is None:
            return
        for m in self:
            if m._prom is not None:
                registry.unregister(m._prom)
            m._prom = None
        self._registry = None


#: The metrics atdata updates. Read them directly, or export with
#: :func:`enable_prometheus` / :func:`metrics_text`.
metrics = Metrics()


def enable_prometheus(registry: prometheus_client.CollectorRegistry | None = None) -> None:
    """Record metrics in ``prometheus_client`` collectors from now on (starting at zero).

    Counters register as ``atdata_<name>`` (exposed as ``atdata_<name>_total``),
    histograms as ``atdata_<name>_seconds``. ``.value``, ``.count`` and ``.sum``
    keep working. Calling again with the same registry does nothing; another
    registry moves the collectors there.

    Args:
        registry: Where to register; ``prometheus_client.REGISTRY`` by default.

    Raises:
        MissingDependencyError: If ``prometheus-client`` is not installed.
        ValueError: If the registry already has metrics with atdata's names.

    Example:
        >>> from prometheus_client import CollectorRegistry
        >>> enable_prometheus(CollectorRegistry())
        >>> metrics.samples_processed.inc()
        >>> b"atdata_samples_processed_total 1.0" in metrics_text()
        True
        >>> disable_prometheus()
    """
    try:
        import prometheus_client
    except ImportError:
        raise _missing("prometheus-client", "metrics", "Prometheus metrics") from None
    target = registry if registry is not None else prometheus_client.REGISTRY
    with metrics._switch_lock:
        if metrics._registry is target:
            return
        metrics._detach_prometheus()
        metrics._attach_prometheus(target)


def disable_prometheus() -> None:
    """Unregister atdata's collectors and count in-process again, starting from zero.

    Example:
        >>> disable_prometheus()
        >>> metrics.prometheus_registry is None
        True
    """
    with metrics._switch_lock:
        if metrics._registry is None:
            return
        metrics._detach_prometheus()
        for m in metrics:
            m._reset_local()


def metrics_text() -> bytes:
    """Return all metrics in the Prometheus text exposition format.

    With :func:`enable_prometheus` this is ``prometheus_client.generate_latest``
    of that registry (which also holds anything else registered there);
    otherwise the in-process values are rendered in the same format.

    Example:
        >>> b"# TYPE atdata_query_time_seconds histogram" in metrics_text()
        True
    """
    registry = metrics._registry
    if registry is not None:
        from prometheus_client import generate_latest

        return generate_latest(registry)
    lines: list[str] = []
    for m in metrics:
        lines.extend(m._exposition())
    return ("\n".join(lines) + "\n").encode("utf-8")


# =============================================================================
# Tracing
# =============================================================================


class _NoopSpan:
    """Stands in for a span when tracing is off; every method does nothing."""

    __slots__ = ()

    # ``with trace(...)`` is on hot paths, so the no-op's __enter__/__exit__
    # are C callables instead of Python methods (about 60 ns saved per block).
    # Builtin functions are not descriptors, so they are called without self:
    # ``"".format`` accepts (exc_type, exc, tb) and returns "", which is falsy,
    # so exceptions propagate; __enter__ is set below, once the instance exists.
    if TYPE_CHECKING:

        def __enter__(self) -> Self: ...

        def __exit__(
            self,
            exc_type: type[BaseException] | None,
            exc: BaseException | None,
            tb: TracebackType | None,
        ) -> None: ...

    else:
        __exit__ = "".format

    def __call__(self, func: Any) -> Any:
        # Whether to trace must be decided per call, not when a decorator is
        # applied at import time (before tracing is configured).
        raise TypeError(
            "trace() is a context manager; to decorate a function use @atdata.traced(name)."
        )

    def set_attribute(self, key: str, value: Any) -> None:
        return None

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        return None

    def add_event(self, name: str, attributes: Mapping[str, Any] | None = None) -> None:
        return None

    def record_exception(self, exception: BaseException, **kwargs: Any) -> None:
        return None

    def is_recording(self) -> bool:
        return False


class _NoopAttach:
    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


_NOOP_SPAN = _NoopSpan()
# A C callable with no arguments that returns the shared no-op span.
_NoopSpan.__enter__ = itertools.repeat(_NOOP_SPAN).__next__  # type: ignore[method-assign, assignment]
_NOOP_ATTACH = _NoopAttach()

# Tracing states. AUTO (the default) traces only if the program has imported
# OpenTelemetry and installed a real global tracer provider; ON traces with
# the tracer configure_tracing() made; OFF never traces.
_AUTO, _ON, _OFF = 0, 1, 2
_tracing_mode = _AUTO
_tracer: Tracer | None = None
_w3c: TraceContextTextMapPropagator | None = None
# Bound once: a dict lookup here tells whether OpenTelemetry was ever imported,
# without importing it ourselves.
_modules = sys.modules
_UNKNOWN = object()
_env_provider: bool | None = None


def _provider_env_var() -> bool:
    global _env_provider
    if _env_provider is None:
        import os

        _env_provider = "OTEL_PYTHON_TRACER_PROVIDER" in os.environ
    return _env_provider


def configure_tracing(tracer_provider: TracerProvider | None = None) -> None:
    """Create OpenTelemetry spans for :func:`trace` from now on.

    Without this call, spans are created only if your program has installed a
    global tracer provider (``opentelemetry.trace.set_tracer_provider``).

    Args:
        tracer_provider: The provider to take atdata's tracer from; ``None``
            uses the global provider (even one installed later).

    Raises:
        MissingDependencyError: If ``opentelemetry-api`` is not installed.

    Example:
        >>> from opentelemetry.sdk.trace import TracerProvider
        >>> configure_tracing(TracerProvider())
        >>> with trace("process_shard", shard_id="shard-00042") as span:
        ...     span.set_attribute("samples", 1000)
        >>> disable_tracing()
    """
    global _tracer, _tracing_mode
    try:
        from opentelemetry import trace as otel_trace
    except ImportError:
        raise _missing("opentelemetry-api", "tracing", "Tracing") from None
    provider = tracer_provider if tracer_provider is not None else otel_trace.get_tracer_provider()
    _tracer = provider.get_tracer("atdata")
    _tracing_mode = _ON


def disable_tracing() -> None:
    """Stop creating spans, even if a global tracer provider is installed.

    Example:
        >>> disable_tracing()
        >>> tracing_enabled()
        False
    """
    global _tracer, _tracing_mode
    _tracer = None
    _tracing_mode = _OFF


def tracing_enabled() -> bool:
    """Return whether :func:`trace` currently creates real spans.

    Example:
        >>> tracing_enabled()
        False
    """
    return _active_tracer() is not None


def _active_tracer() -> Tracer | None:
    global _tracer
    tracer = _tracer
    if tracer is not None or _tracing_mode != _AUTO:
        return tracer
    otel_trace = _modules.get("opentelemetry.trace")
    if otel_trace is None:
        return None
    # get_tracer_provider() checks os.environ on every call while no provider
    # is set (~800 ns), too slow for a per-sample hook. So peek at the module's
    # private global first (falling back to the public call if it is renamed),
    # and read the environment variable that can name a provider only once.
    if getattr(otel_trace, "_TRACER_PROVIDER", _UNKNOWN) is None and not _provider_env_var():
        return None
    provider = otel_trace.get_tracer_provider()
    if isinstance(provider, (otel_trace.ProxyTracerProvider, otel_trace.NoOpTracerProvider)):
        return None
    # The global provider can be set only once, so a real one is safe to cache.
    real: Tracer = provider.get_tracer("atdata")
    _tracer = real
    return real


def trace(name: str, **attributes: Any) -> AbstractContextManager[Any]:
    """Return a context manager around a span named ``name``; a shared no-op when tracing is off.

    Spans nest through the current OpenTelemetry context (job -> shard ->
    batch). An exception leaving the block is recorded on the span and marks
    it as an error. Attribute values other than str/int/float/bool are stored
    as ``str(value)``. Entering the context yields the span, so more
    attributes can be set; when tracing is off it yields a no-op span with the
    same methods.

    Args:
        name: The span name, e.g. ``"process_shard"``.
        **attributes: Span attributes, e.g. ``shard_id="shard-00042"``.

    Returns:
        A context manager yielding the span.

    Example:
        >>> with trace("process_shard", shard_id="shard-00042") as span:
        ...     span.set_attribute("samples", 1000)
    """
    tracer = _tracer
    if tracer is None:
        # Fast path: never configured and OpenTelemetry never imported.
        if _tracing_mode != _AUTO or "opentelemetry.trace" not in _modules:
            return _NOOP_SPAN
        tracer = _active_tracer()
        if tracer is None:
            return _NOOP_SPAN
    return tracer.start_as_current_span(name, attributes=_span_attributes(attributes))


def traced(name: str | None = None, **attributes: Any) -> Callable[[_F], _F]:
    """Decorate a function (sync or async) so that each call runs inside :func:`trace`.

    Whether a call is traced is decided at call time, so decorating at import
    time, before tracing is configured, works.

    Args:
        name: The span name; the function's qualified name by default.
        **attributes: Span attributes added to every call's span.

    Example:
        >>> @traced("load_shard", stage="read")
        ... def load(url: str) -> int:
        ...     return len(url)
        >>> load("shard-00000.tar")
        15
    """
    import functools

    def decorate(func: _F) -> _F:
        span_name = name or func.__qualname__
        # CO_COROUTINE; checked by hand because importing inspect costs ~10 ms.
        if getattr(getattr(func, "__code__", None), "co_flags", 0) & 0x80:

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                with trace(span_name, **attributes):
                    return await func(*args, **kwargs)

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with trace(span_name, **attributes):
                return func(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


def _span_attributes(attributes: dict[str, Any]) -> dict[str, str | bool | int | float] | None:
    if not attributes:
        return None
    return {
        k: v if isinstance(v, (str, bool, int, float)) else str(v) for k, v in attributes.items()
    }


def _propagator() -> TraceContextTextMapPropagator:
    global _w3c
    if _w3c is None:
        # W3C trace context explicitly, rather than the global propagator,
        # which opentelemetry.propagate builds from entry points on import.
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        _w3c = TraceContextTextMapPropagator()
    return _w3c


def inject_trace_context() -> dict[str, str]:
    """Return W3C ``traceparent``/``tracestate`` headers for the current span.

    Send them with a task (to a worker process, a Modal function, a queue
    message) and continue the trace there with :func:`attach_trace_context`.

    Returns:
        The headers; empty when tracing is off or no span is active.

    Example:
        >>> with trace("job"):
        ...     headers = inject_trace_context()
        >>> sorted(headers) in ([], ["traceparent"], ["traceparent", "tracestate"])
        True
    """
    if _active_tracer() is None:
        return {}
    carrier: dict[str, str] = {}
    _propagator().inject(carrier)
    return carrier


def extract_trace_context(carrier: Mapping[str, str]) -> Context | None:
    """Turn headers from :func:`inject_trace_context` into an OpenTelemetry context.

    Header names are matched case-insensitively. Most callers want
    :func:`attach_trace_context` instead.

    Args:
        carrier: A mapping holding ``traceparent`` (and maybe ``tracestate``).

    Returns:
        The context to parent new spans on, or ``None`` when tracing is off.

    Example:
        >>> extract_trace_context({}) is None or True
        True
    """
    if _active_tracer() is None:
        return None
    wanted = {"traceparent", "tracestate"}
    headers = {k.lower(): v for k, v in carrier.items() if k.lower() in wanted}
    from opentelemetry.context import Context

    # An empty Context (not the caller's current one) so that only the
    # carrier decides the parent.
    return _propagator().extract(headers, context=Context())


class _AttachedContext:
    __slots__ = ("_context", "_token")

    def __init__(self, context: Context) -> None:
        self._context = context
        self._token: Any = None

    def __enter__(self) -> None:
        from opentelemetry import context as otel_context

        self._token = otel_context.attach(self._context)

    def __exit__(self, *exc: object) -> None:
        from opentelemetry import context as otel_context

        otel_context.detach(self._token)


def attach_trace_context(carrier: Mapping[str, str]) -> _AttachedContext | _NoopAttach:
    """Continue the trace described by ``carrier`` inside a ``with`` block.

    Spans started in the block become children of the span that produced the
    headers. A no-op when tracing is off in this process.

    Args:
        carrier: Headers from :func:`inject_trace_context`.

    Example:
        >>> def run_shard_task(shard: str, headers: dict[str, str]) -> None:
        ...     with attach_trace_context(headers), trace("process_shard", shard=shard):
        ...         pass
        >>> run_shard_task("shard-00000.tar", {})
    """
    context = extract_trace_context(carrier)
    if context is None:
        return _NOOP_ATTACH
    return _AttachedContext(context)
