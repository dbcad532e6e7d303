"""Logging, metrics and tracing hooks for atdata; each one is a no-op until configured.

The rest of atdata calls these hooks on hot paths (per sample, per shard), so
the unconfigured case is kept to one global or attribute check and a return.
Nothing here imports ``structlog``, ``prometheus_client`` or ``opentelemetry``
at import time: the first two are only touched when you configure them, and
OpenTelemetry is only looked at once your program has imported it itself.

Three independent switches, one module each (``_logging``, ``_metrics``,
``_tracing``), and :func:`reset` to turn all three back to the default::

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

from atdata.observability import _tracing
from atdata.observability._logging import (
    EventLogger,
    configure_logging,
    log_event,
    logging_enabled,
)
from atdata.observability._metrics import (
    Counter,
    Histogram,
    Metrics,
    disable_prometheus,
    enable_prometheus,
    metrics,
    metrics_text,
)
from atdata.observability._tracing import (
    attach_trace_context,
    configure_tracing,
    disable_tracing,
    extract_trace_context,
    inject_trace_context,
    trace,
    traced,
    tracing_enabled,
)

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
    "reset",
    "trace",
    "traced",
    "tracing_enabled",
]


def reset() -> None:
    """Put logging, metrics and tracing back to their import-time state (for tests).

    All three parts: logging is silenced (``configure_logging(None)``);
    metrics leave any Prometheus registry (``disable_prometheus()``) and every
    value goes back to zero; tracing forgets a :func:`configure_tracing` or
    :func:`disable_tracing` call and auto-detects a global tracer provider
    again.

    Example:
        >>> import logging
        >>> configure_logging(logging.getLogger("atdata"))
        >>> metrics.samples_read.inc()
        >>> disable_tracing()
        >>> reset()
        >>> (logging_enabled(), metrics.samples_read.value)
        (False, 0.0)
    """
    configure_logging(None)
    disable_prometheus()
    metrics.reset()
    _tracing.reset_tracing()
