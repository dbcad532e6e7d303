"""Where claimed work runs: in the caller's thread, or in a background thread pool.

A runner has two verbs, ``submit(task, execute)`` and ``close(wait)``. A task
is a JSON-able dict, so a runner may also ship it to another machine and run
it there (``atdata.modal`` spawns a Modal function with it); local runners
just call ``execute(task)``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Protocol

from atdata import observability as obs

__all__ = ["InlineRunner", "Runner", "Task", "ThreadRunner"]

Task = dict[str, Any]
Execute = Callable[[Task], Any]


class Runner(Protocol):
    """Runs tasks the dispatcher has claimed.

    Example:
        >>> service = atdata.pipeline.Service(registry, runner=ThreadRunner(max_workers=2))
        >>> service.close()
    """

    def submit(self, task: Task, execute: Execute) -> None:
        """Start ``task``; return without waiting unless the runner is inline."""

    def close(self, wait: bool = True) -> None:
        """Stop accepting tasks; with ``wait``, return when the submitted ones are done."""


class InlineRunner:
    """Runs each task in the caller's thread before ``submit`` returns (poller, tests).

    Example:
        >>> InlineRunner().submit({"kind": "noop"}, print)
        {'kind': 'noop'}
    """

    def submit(self, task: Task, execute: Execute) -> None:
        """Run ``task`` now: ``execute(task)``."""
        execute(task)

    def close(self, wait: bool = True) -> None:
        """Nothing to stop."""
        return None


class ThreadRunner:
    """A bounded pool of background threads; ``submit`` returns at once.

    Args:
        max_workers: tasks running at the same time; more wait in a queue.

    Example:
        >>> runner = ThreadRunner(max_workers=4)
        >>> done = []
        >>> runner.submit({"kind": "noop"}, done.append)
        >>> runner.wait_idle(timeout=5), done
        (True, [{'kind': 'noop'}])
        >>> runner.close()
    """

    def __init__(self, max_workers: int = 4) -> None:
        if max_workers < 1:
            raise ValueError("max_workers must be at least 1")
        self.max_workers = max_workers
        self._pool = ThreadPoolExecutor(max_workers, thread_name_prefix="atdata-pipeline")
        self._pending = 0
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)

    def submit(self, task: Task, execute: Execute) -> None:
        """Queue ``execute(task)`` on a pool thread; return at once."""
        with self._lock:
            self._pending += 1
        try:
            future = self._pool.submit(execute, task)
        except BaseException:
            self._done(None)
            raise
        future.add_done_callback(self._done)

    def _done(self, future: Future[Any] | None) -> None:
        if future is not None and not future.cancelled() and future.exception() is not None:
            exc = future.exception()
            obs.log_event(
                "pipeline task crashed", level="error", error=f"{type(exc).__name__}: {exc}"
            )
        with self._lock:
            self._pending -= 1
            if self._pending == 0:
                self._idle.notify_all()

    @property
    def pending(self) -> int:
        """Tasks submitted and not yet finished."""
        with self._lock:
            return self._pending

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until no task is pending; False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def close(self, wait: bool = True) -> None:
        """Stop the pool; with ``wait``, once the queued and running tasks are done."""
        self._pool.shutdown(wait=wait)
