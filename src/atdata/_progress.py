"""One progress bar for long-running work: samples, and shards and bytes when known, on stderr.

``Dataset.map``, ``QueryResult.materialize``, ``atdata.manifest.build`` (and
``atdata manifest build``) and ``ShardWriter(progress=True)`` all draw this
bar. Their ``progress=`` takes ``None`` (show it only when stderr is a
terminal), ``True`` (always) or ``False`` (never). Counting is cheap: the
counters are plain integers, and rich (imported only for a bar that is shown)
is handed them at most ten times a second; it redraws on its own thread.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

__all__ = ["Progress"]

_PUSH_INTERVAL_S = 0.1  # hand the counts to rich at most this often


class Progress:
    """A progress bar counting samples, and shards and bytes when the work has them.

    It starts drawing on the first count (or on entering a ``with`` block) and
    stops at :meth:`close`, leaving its last state on screen. Counting from
    several threads needs the caller's lock.

    Args:
        description: what the work is, shown first (``"embed"``, ``"manifests"``).
        enabled: True shows the bar, False hides it, None (the default) shows
            it only when ``stream`` is a terminal.
        total: the samples expected, when known: the bar fills with them and
            gives the time left.
        shards_total: the shards expected, when known: the bar fills with
            shards when ``total`` is unknown.
        stream: where to draw; default ``sys.stderr`` (looked up when drawing,
            so a redirected stderr is followed).

    Attributes:
        samples: samples counted so far.
        shards: shards counted so far.
        bytes: bytes counted so far.
        enabled: whether the bar is drawn.

    Example:
        >>> import io
        >>> out = io.StringIO()
        >>> with Progress("copy", enabled=True, total=3, stream=out) as bar:
        ...     for _ in range(3):
        ...         bar.advance(bytes=1024)
        >>> "3/3 samples" in out.getvalue()
        True
        >>> Progress("copy", stream=io.StringIO()).enabled   # None: only on a terminal
        False
    """

    def __init__(
        self,
        description: str,
        *,
        enabled: bool | None = None,
        total: int | None = None,
        shards_total: int | None = None,
        stream: TextIO | None = None,
    ) -> None:
        self.description = description
        self.total = total
        self.shards_total = shards_total
        self.samples = 0
        self.shards = 0
        self.bytes = 0
        self.enabled = _on_a_terminal(stream) if enabled is None else enabled
        self._stream = stream
        self._rich: Any = None  # the rich Progress while drawing
        self._task: Any = None
        self._started = 0.0
        self._due = 0.0
        self._closed = False

    # -- counting -------------------------------------------------------------------------

    def advance(self, samples: int = 1, *, shards: int = 0, bytes: int = 0) -> None:
        """Count ``samples`` more samples (and ``shards``, ``bytes``).

        Example:
            >>> bar = Progress("copy", enabled=False)
            >>> bar.advance(10, shards=1, bytes=4096)
            >>> bar.samples, bar.shards, bar.bytes
            (10, 1, 4096)
        """
        self.samples += samples
        self.shards += shards
        self.bytes += bytes
        if self.enabled:
            self._maybe_push()

    def update(
        self, *, samples: int | None = None, shards: int | None = None, bytes: int | None = None
    ) -> None:
        """Set the counts (those given) to these totals.

        Example:
            >>> bar = Progress("copy", enabled=False)
            >>> bar.update(samples=120, shards=3)
            >>> bar.samples, bar.shards
            (120, 3)
        """
        if samples is not None:
            self.samples = samples
        if shards is not None:
            self.shards = shards
        if bytes is not None:
            self.bytes = bytes
        if self.enabled:
            self._maybe_push()

    def counts(self) -> str:
        """The counts as the bar shows them: samples, shards, bytes and the rate.

        Example:
            >>> bar = Progress("copy", enabled=False, total=5000, shards_total=4)
            >>> bar.advance(1234, shards=1)
            >>> bar.counts().split(" · ")[:2]
            ['1,234/5,000 samples', '1/4 shards']
        """
        parts = [_of(self.samples, self.total) + " samples"]
        if self.shards_total is not None or self.shards:
            parts.append(_of(self.shards, self.shards_total) + " shards")
        if self.bytes:
            parts.append(_size(self.bytes))
        elapsed = time.monotonic() - self._started if self._started else 0.0
        if elapsed > 0 and self.samples:
            parts.append(f"{self.samples / elapsed:,.0f} samples/s")
        return " · ".join(parts)

    # -- drawing --------------------------------------------------------------------------

    def start(self) -> Progress:
        """Start drawing now (counting starts it anyway); returns the bar.

        Example:
            >>> bar = Progress("copy", enabled=False).start()   # nothing to draw
            >>> bar.close()
        """
        if not self._started:
            self._started = time.monotonic()
        if self.enabled and self._rich is None and not self._closed:
            self._rich, self._task = self._make()
            self._rich.start()
        return self

    def close(self) -> None:
        """Draw the final counts and stop (the bar stays on screen).

        Example:
            >>> bar = Progress("copy", enabled=False)
            >>> bar.close()
        """
        if self._rich is not None:
            self._push()
            self._rich.stop()
            self._rich = None
        self._closed = True

    def __enter__(self) -> Progress:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _maybe_push(self) -> None:
        now = time.monotonic()
        if now >= self._due:
            self._due = now + _PUSH_INTERVAL_S
            if self._rich is None:
                self.start()
            self._push()

    def _push(self) -> None:
        if self._rich is None:
            return
        if self.total is not None:
            done, total = self.samples, self.total
        elif self.shards_total is not None:
            done, total = self.shards, self.shards_total
        else:
            done, total = self.samples, None
        self._rich.update(self._task, completed=done, total=total, counts=self.counts())

    def _make(self) -> tuple[Any, Any]:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        console = Console(stderr=True) if self._stream is None else Console(file=self._stream)
        columns: list[Any] = [
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[counts]}"),
            TimeElapsedColumn(),
        ]
        if self.total is not None or self.shards_total is not None:
            columns.append(TimeRemainingColumn())
        bar = Progress(*columns, console=console, refresh_per_second=5)
        task = bar.add_task(self.description, total=None, counts=self.counts())
        return bar, task


def _on_a_terminal(stream: TextIO | None) -> bool:
    stream = sys.stderr if stream is None else stream
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or closed
        return False


def _of(done: int, total: int | None) -> str:
    return f"{done:,}" if total is None else f"{done:,}/{total:,}"


def _size(n: int) -> str:
    size = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000:
            return f"{size:,.0f} {unit}" if unit == "B" else f"{size:,.1f} {unit}"
        size /= 1000
    return f"{size:,.1f} TB"
