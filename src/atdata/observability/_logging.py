"""Structured logging: atdata's events go to a stdlib or structlog logger, once one is configured.

Until :func:`configure_logging` is given a logger, :func:`log_event` is a
global load, a compare and a return, and ``logging`` itself is not imported.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import logging

__all__ = ["EventLogger", "configure_logging", "log_event", "logging_enabled"]


class EventLogger(Protocol):
    """What a structlog-style logger offers: one method per level taking ``(event, **kw)``.

    Example:
        >>> class Printer:                     # any object with the four methods
        ...     def debug(self, event, **kw): print("debug", event, kw)
        ...     def info(self, event, **kw): print("info", event, kw)
        ...     def warning(self, event, **kw): print("warning", event, kw)
        ...     def error(self, event, **kw): print("error", event, kw)
        >>> atdata.configure_logging(Printer())
        >>> atdata.log_event("shard_written", shard="out/shard-000000.tar")
        info shard_written {'shard': 'out/shard-000000.tar'}
        >>> atdata.configure_logging(None)
    """

    def debug(self, event: str, **kw: Any) -> Any:
        """Log ``event`` at debug level with ``kw`` as fields."""

    def info(self, event: str, **kw: Any) -> Any:
        """Log ``event`` at info level with ``kw`` as fields."""

    def warning(self, event: str, **kw: Any) -> Any:
        """Log ``event`` at warning level with ``kw`` as fields."""

    def error(self, event: str, **kw: Any) -> Any:
        """Log ``event`` at error level with ``kw`` as fields."""


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
