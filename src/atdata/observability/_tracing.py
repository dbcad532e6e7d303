"""Tracing: OpenTelemetry spans around atdata's work, and W3C trace context across processes.

OpenTelemetry is never imported here at import time. By default spans are
made only once the program has imported it and installed a real global tracer
provider; :func:`configure_tracing` and :func:`disable_tracing` force tracing
on or off. When tracing is off, :func:`trace` returns a shared no-op span.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Self, TypeVar

if TYPE_CHECKING:
    from contextlib import AbstractContextManager
    from types import TracebackType

    from opentelemetry.context import Context
    from opentelemetry.trace import Tracer, TracerProvider
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

__all__ = [
    "attach_trace_context",
    "configure_tracing",
    "disable_tracing",
    "extract_trace_context",
    "inject_trace_context",
    "trace",
    "traced",
    "tracing_enabled",
]

_F = TypeVar("_F", bound=Callable[..., Any])


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
        # atdata.errors pulls in difflib, so it is imported only on this rare path.
        from atdata.errors import MissingDependencyError

        raise MissingDependencyError("opentelemetry-api", "tracing", "Tracing") from None
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


def reset_tracing() -> None:
    """Go back to the import-time default: trace only under a real global tracer provider.

    Unlike :func:`disable_tracing` (always off), this forgets any tracer from
    :func:`configure_tracing` and re-reads ``OTEL_PYTHON_TRACER_PROVIDER``.
    Part of :func:`atdata.observability.reset`; not exported on its own.

    Example:
        >>> configure_tracing()
        >>> reset_tracing()
    """
    global _env_provider, _tracer, _tracing_mode
    _tracer = None
    _tracing_mode = _AUTO
    _env_provider = None


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
