"""``executor="inline"``: run every task in the calling process, one after another.

For debugging: a breakpoint in your function is hit, a traceback points into
your code, and nothing is forked. Tasks still go through the same
serialisation and :func:`~atdata.processing.process_shard` as on every other
executor, so what works inline works on the others. It is also the fake that
users' own tests can run ``Dataset.map`` on.
"""

from __future__ import annotations

import concurrent.futures
import functools
from collections.abc import Callable, Iterable, Iterator

from atdata.processing._task import ShardResult, ShardTask, process_shard

__all__ = ["InlineExecutor"]


class InlineExecutor:
    """Runs shard tasks synchronously in this process.

    Example:
        >>> out = ds.map(fn, output_prefix="out/", executor="inline")
        >>> out = ds.map(fn, output_prefix="out/", executor=InlineExecutor())
        >>> out.head(1)[0].label
        'cat'
    """

    workers: int | None = 1
    reports_progress = True  # map(tasks, progress=...) reports samples as the task runs

    def submit(self, task: ShardTask) -> concurrent.futures.Future[ShardResult]:
        """Run ``task`` now; return a finished future.

        Example:
            >>> InlineExecutor().submit(task).done()
            True
        """
        future: concurrent.futures.Future[ShardResult] = concurrent.futures.Future()
        future.set_result(process_shard(task))
        return future

    def map(
        self,
        tasks: Iterable[ShardTask],
        progress: Callable[[ShardTask, int], None] | None = None,
    ) -> Iterator[tuple[ShardTask, ShardResult | BaseException]]:
        """Run the tasks in order, yielding each result as it is ready.

        Args:
            tasks: the shard tasks.
            progress: called with the running task and the samples it has read so far.

        Example:
            >>> [(t.task_id, r.samples_in) for t, r in InlineExecutor().map([task])]
            [('shard-000000', 4)]
        """
        for task in tasks:
            report = None if progress is None else functools.partial(progress, task)
            yield task, process_shard(task, report)

    def close(self) -> None:
        """Nothing to release.

        Example:
            >>> with InlineExecutor() as executor:    # closed on leaving the block
            ...     executor.submit(task).result().ok
            True
        """

    def __enter__(self) -> InlineExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return "InlineExecutor()"
