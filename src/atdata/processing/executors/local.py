"""``executor="local"``: a pool of worker processes on this machine (the default).

Why not ``concurrent.futures.ProcessPoolExecutor``: when one of its workers
dies (killed, out of memory), it marks the whole pool broken and terminates
every other worker, losing the work in flight on healthy ones. Here each worker
has its own pipe and one task at a time, so a dead worker fails exactly the
task it was running; the others carry on and the dead one is replaced.

Workers are started with ``spawn`` (never ``fork``: forking a process that has
threads can deadlock), so your script needs the usual
``if __name__ == "__main__":`` guard, as with ``multiprocessing``.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

from atdata.errors import ProcessingError, WorkerLostError
from atdata.processing._task import ShardResult, ShardTask, process_shard

__all__ = ["LocalExecutor"]


def _default_workers() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return os.cpu_count() or 1


def _worker_main(conn: multiprocessing.connection.Connection) -> None:
    # Ctrl-C reaches the whole process group; the driver decides what stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        result = process_shard(task)
        try:
            conn.send(result)
        except OSError:
            return


class _Worker:
    def __init__(self, context: Any) -> None:
        parent, child = context.Pipe()
        self.process = context.Process(
            target=_worker_main, args=(child,), name="atdata-worker", daemon=True
        )
        self.process.start()
        child.close()
        self.conn: multiprocessing.connection.Connection = parent
        self.job: tuple[ShardTask, concurrent.futures.Future[ShardResult]] | None = None
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

    Args:
        workers: processes to run at once; the number of usable CPUs by default.
        max_tasks_per_child: replace a worker after this many tasks (to cap
            memory growth in leaky functions); None keeps workers for the job.
        start_method: ``"spawn"`` (default) or ``"forkserver"``.

    Example:
        >>> with LocalExecutor(workers=4) as pool:
        ...     out = ds.map(fn, output_prefix="out/", executor=pool)
    """

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
        self._queue: collections.deque[tuple[ShardTask, concurrent.futures.Future[ShardResult]]] = (
            collections.deque()
        )
        self._slots: list[_Worker] = []
        self._retired: list[_Worker] = []
        self._wake_r, self._wake_w = multiprocessing.Pipe(duplex=False)
        self._thread: threading.Thread | None = None
        self._closing = False
        self._cancel = False

    # -- the verbs -------------------------------------------------------------------

    def submit(self, task: ShardTask) -> concurrent.futures.Future[ShardResult]:
        """Queue ``task``; the future fails with :class:`WorkerLostError` if its worker dies.

        Example:
            >>> with LocalExecutor(workers=1) as pool:
            ...     pool.submit(task).result().samples_out
            4
        """
        future: concurrent.futures.Future[ShardResult] = concurrent.futures.Future()
        with self._lock:
            if self._closing:
                raise ProcessingError("this LocalExecutor is closed; create a new one")
            self._queue.append((task, future))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="atdata-local-executor", daemon=True
                )
                self._thread.start()
        self._wake()
        return future

    def map(
        self, tasks: Iterable[ShardTask]
    ) -> Iterator[tuple[ShardTask, ShardResult | BaseException]]:
        """Run the tasks on the pool; yield ``(task, result or exception)`` as each ends.

        Example:
            >>> with LocalExecutor(workers=1) as pool:
            ...     [(t.task_id, r.ok) for t, r in pool.map([task])]
            [('shard-000000', True)]
        """
        futures = {self.submit(task): task for task in tasks}
        for future in concurrent.futures.as_completed(futures):
            task = futures[future]
            try:
                yield task, future.result()
            except BaseException as exc:  # noqa: BLE001 - handed to the caller as data
                yield task, exc

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
                        worker.job[1].set_exception(exc)
                        worker.job = None
                while self._queue:
                    self._queue.popleft()[1].set_exception(exc)
            raise

    def _dispatch(self) -> None:
        with self._lock:
            while self._queue and not self._cancel:
                worker = next((w for w in self._slots if w.job is None), None)
                if worker is None:
                    if len(self._slots) >= (self.workers or 1):
                        return
                    worker = _Worker(self._context)
                    self._slots.append(worker)
                task, future = self._queue.popleft()
                if not future.set_running_or_notify_cancel():
                    continue
                worker.job = (task, future)
                worker.deadline = (
                    time.monotonic() + task.timeout_s if task.timeout_s is not None else None
                )
                try:
                    worker.conn.send(task)
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
                    try:
                        result = worker.conn.recv()
                    except (EOFError, OSError):
                        self._lost(worker)
                        continue
                    future = worker.job[1]
                    worker.job = None
                    worker.completed += 1
                    future.set_result(result)
                    if self.max_tasks_per_child and worker.completed >= self.max_tasks_per_child:
                        self._slots.remove(worker)
                        self._retired.append(worker)
                        self._send_stop(worker)
                elif worker.process.sentinel in ready:
                    self._lost(worker)
                elif worker.job is not None and worker.deadline and now >= worker.deadline:
                    worker.process.kill()
                    timeout_s = worker.job[0].timeout_s
                    self._lost(worker, f"was stopped after the task's timeout of {timeout_s} s")

    def _lost(self, worker: _Worker, why: str | None = None) -> None:
        """Forget a dead worker; fail the task it was running (only that one)."""
        worker.process.join(timeout=5)
        code = worker.process.exitcode
        worker.conn.close()
        if worker in self._slots:
            self._slots.remove(worker)
        if worker.job is None:
            return
        task, future = worker.job
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
            self._queue.popleft()[1].cancel()
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
