"""``executor="local"``: a pool of worker processes on this machine (the default).

Why not ``concurrent.futures.ProcessPoolExecutor``: when one of its workers
dies (killed, out of memory), it marks the whole pool broken and terminates
every other worker, losing the work in flight on healthy ones. Here each worker
has its own pipe and one task at a time, so a dead worker fails exactly the
task it was running; the others carry on and the dead one is replaced.

Workers are started with ``spawn`` (never ``fork``: forking a process that has
threads can deadlock), so your script needs the usual
``if __name__ == "__main__":`` guard, as with ``multiprocessing``.

Warm workers: ``executor="local"`` (the default) uses one pool per process,
:meth:`LocalExecutor.shared`, whose workers stay up between ``map`` calls (and
between the events of ``atdata serve``), so a small job does not pay for
starting processes. They are stopped at exit, or by :func:`shutdown_workers`.
A warm worker runs each task as a fresh one would: it adopts the driver's
current working directory, ``sys.path`` and environment variables, and gets
each job's function anew from the task (see ``loads_cached``); only modules it
has imported stay imported.

Ctrl-C: a terminal sends SIGINT to the whole process group, so workers ignore
it (from the moment they start) and the driver decides. An interrupted
``map`` stops its running tasks with SIGTERM, which discards their unfinished
output shards, and drops its queued ones; the pool stays usable, and workers
that were stopped are replaced when the next tasks need them.
"""

from __future__ import annotations

import atexit
import collections
import concurrent.futures
import contextlib
import functools
import multiprocessing
import multiprocessing.connection
import multiprocessing.resource_tracker
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NamedTuple

from atdata.errors import ProcessingError, WorkerLostError
from atdata.processing._task import ProgressCallback, ShardResult, ShardTask, process_shard

__all__ = ["LocalExecutor", "shutdown_workers"]

# What a worker adopts from the driver before each task: cwd, sys.path, environment.
_Context = tuple[str, list[str], dict[str, str]]

_STOP_GRACE_S = 5.0
"""Seconds a worker stopped with SIGTERM has to clean up before it is killed."""


def _default_workers() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return os.cpu_count() or 1


def _worker_main(conn: multiprocessing.connection.Connection) -> None:
    _install_worker_signals()
    # Every task commits a manifest: import its writer (pyarrow) before the first task.
    import atdata.manifest.builder  # noqa: F401

    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        task, context, wants_progress = message
        _adopt(context)
        # progress reports (ints) go up the same pipe as the result, before it
        result = process_shard(task, conn.send if wants_progress else None)
        try:
            conn.send(result)
        except OSError:
            return


def _install_worker_signals() -> None:
    """How a worker answers signals: SIGINT ignored, SIGTERM unwinds the task."""
    # Ctrl-C reaches the whole process group; the driver decides what stops. (The
    # worker started with SIGINT blocked, so a Ctrl-C during its start-up did not
    # raise KeyboardInterrupt here either; see _sigint_blocked.)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    # The driver stops an abandoned task with SIGTERM: unwinding it discards the
    # output shard in progress (its temporary file) before the worker exits.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    sys.unraisablehook = _stop_again_when_swallowed


class _Stopped(SystemExit):
    """The driver's SIGTERM, raised wherever the worker is."""


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise _Stopped(128 + signum)


def _stop_again_when_swallowed(unraisable: Any) -> None:
    # A signal handler's exception raised inside a weakref callback or __del__ is
    # swallowed (and printed as "Exception ignored in ..."), and the task goes on.
    # Deliver the signal again a moment later, from another thread, once this hook
    # has returned: its handler then runs in the task's own code (or lands here again).
    if isinstance(unraisable.exc_value, _Stopped):
        again = threading.Timer(_RESTOP_S, os.kill, (os.getpid(), signal.SIGTERM))
        again.daemon = True
        again.start()
        return
    sys.__unraisablehook__(unraisable)


_RESTOP_S = 0.01
"""How long after a swallowed stop the worker's SIGTERM is delivered again."""


@contextlib.contextmanager
def _sigint_blocked() -> Iterator[None]:
    """Block SIGINT in this thread while it starts a worker, which inherits the mask.

    Without it, a Ctrl-C while a worker imports (before ``_worker_main`` ignores
    SIGINT) prints a KeyboardInterrupt traceback from every starting worker.
    """
    if not hasattr(signal, "pthread_sigmask"):  # pragma: no cover - Windows
        yield
        return
    # Starting the resource tracker (on the first start) unblocks SIGINT: start it first.
    multiprocessing.resource_tracker.ensure_running()
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _driver_context() -> _Context:
    return os.getcwd(), list(sys.path), dict(os.environ)


def _adopt(context: _Context) -> None:
    """Make this worker's cwd, ``sys.path`` and environment the driver's."""
    cwd, path, env = context
    if os.getcwd() != cwd:
        os.chdir(cwd)
    if sys.path != path:
        sys.path[:] = path
    if os.environ != env:
        os.environ.clear()
        os.environ.update(env)


class _Job(NamedTuple):
    task: ShardTask
    future: concurrent.futures.Future[ShardResult]
    progress: ProgressCallback | None


class _Worker:
    def __init__(self, context: Any) -> None:
        parent, child = context.Pipe()
        self.process = context.Process(
            target=_worker_main, args=(child,), name="atdata-worker", daemon=True
        )
        with _sigint_blocked():
            self.process.start()
        child.close()
        self.conn: multiprocessing.connection.Connection = parent
        self.job: _Job | None = None
        self.deadline: float | None = None
        self.completed = 0


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"


class LocalExecutor:
    """Run shard tasks in a pool of worker processes on this machine.

    Workers start when the first task needs them and stay up until
    :meth:`close`, across as many ``map`` calls as use the executor; a worker
    that dies is replaced. ``executor="local"`` uses the process-wide pool,
    :meth:`shared`.

    Args:
        workers: processes to run at once; the number of usable CPUs by default.
        max_tasks_per_child: replace a worker after this many tasks (to cap
            memory growth in leaky functions); None keeps workers until closed.
        start_method: ``"spawn"`` (default) or ``"forkserver"``.

    Example:
        >>> with LocalExecutor(workers=4) as pool:          # doctest: +SKIP
        ...     out = ds.map(fn, output_prefix="out/", executor=pool)
        ...     again = ds.map(fn, output_prefix="out2/", executor=pool)  # same workers
        >>> len(ds.map(fn, output_prefix="out/", executor=pool).shards)  # a warm pool
        10
    """

    reports_progress = True  # map(tasks, progress=...) reports samples from running tasks

    def __init__(
        self,
        workers: int | None = None,
        *,
        max_tasks_per_child: int | None = None,
        start_method: str = "spawn",
    ) -> None:
        if workers is not None and workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self.workers: int | None = workers or _default_workers()
        self.max_tasks_per_child = max_tasks_per_child
        self._context = multiprocessing.get_context(start_method)
        self._lock = threading.Lock()
        self._queue: collections.deque[_Job] = collections.deque()
        self._slots: list[_Worker] = []
        self._retired: list[_Worker] = []
        self._wake_r, self._wake_w = multiprocessing.Pipe(duplex=False)
        self._thread: threading.Thread | None = None
        self._closing = False
        self._cancel = False

    @classmethod
    def shared(cls) -> LocalExecutor:
        """This process's pool of warm workers, the one ``executor="local"`` uses.

        Created on first use (with the default number of workers) and kept
        across ``map`` calls; closed at exit or by :func:`shutdown_workers`,
        after which the next call creates a new one.

        Example:
            >>> LocalExecutor.shared() is LocalExecutor.shared()
            True
        """
        global _shared
        with _shared_lock:
            if _shared is None or _shared[1] != os.getpid() or _shared[0]._closing:
                _shared = (cls(), os.getpid())  # a forked child gets its own
            return _shared[0]

    @property
    def worker_pids(self) -> list[int]:
        """Process ids of the workers now in the pool (started, not yet lost or stopped).

        Example:
            >>> with LocalExecutor(workers=1) as pool:
            ...     pool.start()
            ...     len(pool.worker_pids)
            1
        """
        with self._lock:
            return [w.process.pid for w in self._slots if w.process.pid is not None]

    # -- the verbs -------------------------------------------------------------------

    def start(self) -> None:
        """Start every worker now, rather than when the first tasks need them.

        Example:
            >>> pool.start()              # pool = LocalExecutor(workers=1), e.g. at start-up
        """
        with self._lock:
            self._check_open()
            while len(self._slots) < (self.workers or 1):
                self._slots.append(_Worker(self._context))
            self._ensure_thread()
        self._wake()

    def submit(
        self, task: ShardTask, progress: ProgressCallback | None = None
    ) -> concurrent.futures.Future[ShardResult]:
        """Queue ``task``; the future fails with :class:`WorkerLostError` if its worker dies.

        Args:
            task: the shard task.
            progress: called (in the executor's thread) with the samples the task
                has read so far, a few times a second while it runs.

        Example:
            >>> pool.submit(task).result().samples_out      # pool = LocalExecutor(workers=1)
            4
        """
        future: concurrent.futures.Future[ShardResult] = concurrent.futures.Future()
        with self._lock:
            self._check_open()
            self._queue.append(_Job(task, future, progress))
            self._ensure_thread()
        self._wake()
        return future

    def map(
        self,
        tasks: Iterable[ShardTask],
        progress: Callable[[ShardTask, int], None] | None = None,
    ) -> Iterator[tuple[ShardTask, ShardResult | BaseException]]:
        """Run the tasks on the pool; yield ``(task, result or exception)`` as each ends.

        Closing the iterator early (or an exception in the loop over it) stops
        the tasks not yet done: queued ones are dropped, running ones' workers
        are stopped (and replaced), so the pool is free for the next ``map``.

        Args:
            tasks: the shard tasks.
            progress: called with a running task and the samples it has read so far.

        Example:
            >>> [(t.task_id, r.ok) for t, r in pool.map([task])]  # pool = LocalExecutor(workers=1)
            [('shard-000000', True)]
        """
        futures = {
            self.submit(task, None if progress is None else functools.partial(progress, task)): task
            for task in tasks
        }
        try:
            for future in concurrent.futures.as_completed(futures):
                try:
                    outcome: ShardResult | BaseException = future.result()
                except BaseException as exc:  # noqa: BLE001 - handed to the caller as data
                    outcome = exc
                yield futures[future], outcome
        finally:
            self._abandon([f for f in futures if not f.done()])

    def close(self, cancel: bool = False) -> None:
        """Stop the workers once queued tasks are done (``cancel=True``: at once).

        Example:
            >>> pool = LocalExecutor(workers=2)
            >>> pool.close()
            >>> pool.submit(task)
            Traceback (most recent call last):
            ...
            atdata.errors.ProcessingError: this LocalExecutor is closed; create a new one
        """
        with self._lock:
            self._closing = True
            self._cancel = self._cancel or cancel
            thread = self._thread
        self._wake()
        if thread is not None:
            thread.join()
        for worker in self._slots + self._retired:
            self._stop(worker)
        self._slots.clear()
        self._retired.clear()

    def __enter__(self) -> LocalExecutor:
        return self

    def _check_open(self) -> None:
        if self._closing:
            raise ProcessingError("this LocalExecutor is closed; create a new one")

    def _ensure_thread(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="atdata-local-executor", daemon=True
            )
            self._thread.start()

    def _abandon(self, futures: list[concurrent.futures.Future[ShardResult]]) -> None:
        """Stop the given tasks: drop the queued ones, stop the workers running the others.

        A running task's worker gets SIGTERM, which unwinds the task (discarding
        its unfinished output shard), then SIGKILL if it is still up after
        :data:`_STOP_GRACE_S` seconds (stuck in native code). New workers replace them.
        """
        if not futures:
            return
        doomed = set(futures)
        with self._lock:
            for future in futures:
                future.cancel()  # a queued one; the dispatcher skips it
            stopping = [w for w in self._slots if w.job is not None and w.job.future in doomed]
            for worker in stopping:
                worker.process.terminate()
            deadline = time.monotonic() + _STOP_GRACE_S
            for worker in stopping:
                worker.process.join(max(0.0, deadline - time.monotonic()))
                if worker.process.is_alive():
                    worker.process.kill()
                self._lost(worker, "was stopped because its map was abandoned")
        self._wake()

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.close(cancel=exc_type is not None)

    def __repr__(self) -> str:
        return f"LocalExecutor(workers={self.workers})"

    # -- the dispatcher thread ------------------------------------------------------------

    def _wake(self) -> None:
        # OSError: closed during interpreter shutdown
        with contextlib.suppress(OSError):
            self._wake_w.send_bytes(b"\0")

    def _run(self) -> None:
        try:
            while True:
                self._dispatch()
                with self._lock:
                    busy = any(w.job is not None for w in self._slots)
                    if self._closing and (self._cancel or not self._queue) and not busy:
                        break
                    if self._cancel:
                        self._cancel_all()
                        continue
                self._wait()
        except BaseException as exc:  # every waiting future must hear of it
            with self._lock:
                for worker in self._slots:
                    if worker.job is not None:
                        worker.job.future.set_exception(exc)
                        worker.job = None
                while self._queue:
                    future = self._queue.popleft().future
                    if future.set_running_or_notify_cancel():
                        future.set_exception(exc)
            raise

    def _dispatch(self) -> None:
        with self._lock:
            while self._queue and not self._cancel:
                if self._queue[0].future.cancelled():  # abandoned: no worker starts for it
                    self._queue.popleft()
                    continue
                worker = next((w for w in self._slots if w.job is None), None)
                if worker is None:
                    if len(self._slots) >= (self.workers or 1):
                        return
                    worker = _Worker(self._context)
                    self._slots.append(worker)
                elif not worker.process.is_alive():  # died idle, not yet noticed: replace it
                    self._lost(worker)
                    continue
                job = self._queue.popleft()
                if not job.future.set_running_or_notify_cancel():
                    continue
                task = job.task
                worker.job = job
                worker.deadline = (
                    time.monotonic() + task.timeout_s if task.timeout_s is not None else None
                )
                try:
                    worker.conn.send((task, _driver_context(), job.progress is not None))
                except OSError:
                    self._lost(worker, "could not be sent its task")

    def _wait(self) -> None:
        waitables: list[Any] = [self._wake_r]
        for w in self._slots:
            waitables.append(w.process.sentinel)
            if w.job is not None:
                waitables.append(w.conn)
        deadlines = [w.deadline for w in self._slots if w.job is not None and w.deadline]
        timeout = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
        ready = set(multiprocessing.connection.wait(waitables, timeout))
        if self._wake_r in ready:
            while self._wake_r.poll():
                self._wake_r.recv_bytes()
        now = time.monotonic()
        with self._lock:
            for worker in list(self._slots):
                if worker.job is not None and worker.conn in ready:
                    self._receive(worker)
                elif worker.process.sentinel in ready:
                    self._lost(worker)
                elif worker.job is not None and worker.deadline and now >= worker.deadline:
                    worker.process.kill()
                    timeout_s = worker.job.task.timeout_s
                    self._lost(worker, f"was stopped after the task's timeout of {timeout_s} s")

    def _receive(self, worker: _Worker) -> None:
        """Read what a busy worker sent: progress reports (ints), then its result."""
        job = worker.job
        assert job is not None
        try:
            message = worker.conn.recv()
            while isinstance(message, int):
                if job.progress is not None:
                    job.progress(message)
                if not worker.conn.poll():
                    return
                message = worker.conn.recv()
        except (EOFError, OSError):
            self._lost(worker)
            return
        worker.job = None
        worker.completed += 1
        job.future.set_result(message)
        if self.max_tasks_per_child and worker.completed >= self.max_tasks_per_child:
            self._slots.remove(worker)
            self._retired.append(worker)
            self._send_stop(worker)

    def _lost(self, worker: _Worker, why: str | None = None) -> None:
        """Forget a dead worker; fail the task it was running (only that one)."""
        worker.process.join(timeout=5)
        code = worker.process.exitcode
        worker.conn.close()
        if worker in self._slots:
            self._slots.remove(worker)
        if worker.job is None:
            return
        task, future, _ = worker.job
        worker.job = None
        if why is not None:
            reason = why
        elif code is not None and code > 0 and worker.completed == 0:
            reason = (
                f"died before running any task ({_describe_exit(code)}); see its error above. "
                'A script that starts a job needs an `if __name__ == "__main__":` guard'
            )
        else:
            reason = (
                f"died ({_describe_exit(code)}): killed, out of memory, or crashed in native code"
            )
        future.set_exception(
            WorkerLostError(
                f"Worker process {worker.process.pid} running {task.task_id} ({task.input_url}) "
                f"{reason}. The task is failed; other tasks continue.",
                task_id=task.task_id,
                exitcode=code,
            )
        )

    def _cancel_all(self) -> None:
        while self._queue:
            self._queue.popleft().future.cancel()
        for worker in list(self._slots):
            if worker.job is not None:
                worker.process.kill()
                self._lost(worker, "was stopped because the job was cancelled")

    @staticmethod
    def _send_stop(worker: _Worker) -> None:
        with contextlib.suppress(OSError):
            worker.conn.send(None)

    def _stop(self, worker: _Worker) -> None:
        if worker.process.is_alive():
            self._send_stop(worker)
            worker.process.join(timeout=5)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join()
        worker.conn.close()


_shared: tuple[LocalExecutor, int] | None = None  # the pool and the process it belongs to
_shared_lock = threading.Lock()


def shutdown_workers(cancel: bool = False) -> None:
    """Stop the warm workers of ``executor="local"`` (:meth:`LocalExecutor.shared`).

    Called at exit (with ``cancel=True``); call it yourself to free the
    workers' memory sooner. The next ``map`` starts new workers.

    Args:
        cancel: stop running tasks at once instead of letting them finish.

    Example:
        >>> atdata.processing.shutdown_workers()    # the next map starts new workers
    """
    global _shared
    with _shared_lock:
        pool = _shared[0] if _shared is not None and _shared[1] == os.getpid() else None
        _shared = None
    if pool is not None:
        pool.close(cancel=cancel)


atexit.register(shutdown_workers, cancel=True)
