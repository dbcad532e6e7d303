"""Metrics: atdata's counters and histograms, kept in-process or in ``prometheus_client``.

Every metric is an attribute of :data:`metrics`. Values are counted
in-process (readable directly, or as Prometheus text through
:func:`metrics_text`) until :func:`enable_prometheus` moves them into
``prometheus_client`` collectors, which is imported only then.
"""

from __future__ import annotations

import itertools
import math
import threading
import time
from bisect import bisect_left
from collections.abc import Iterator
from typing import TYPE_CHECKING, Self

if TYPE_CHECKING:
    import prometheus_client

__all__ = [
    "Counter",
    "Histogram",
    "Metrics",
    "disable_prometheus",
    "enable_prometheus",
    "metrics",
    "metrics_text",
]


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
        # atdata.errors pulls in difflib, so it is imported only on this rare path.
        from atdata.errors import MissingDependencyError

        raise MissingDependencyError("prometheus-client", "metrics", "Prometheus metrics") from None
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
