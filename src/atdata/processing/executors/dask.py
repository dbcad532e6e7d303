"""``executor="dask"``: run shard tasks on a ``dask.distributed`` cluster.

Workers need atdata installed (``pip install 'atdata[dask]'`` on every worker
image); your function travels inside each task, serialised by value when it
cannot be imported.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import distributed

from atdata.errors import ProcessingError
from atdata.processing._task import ShardResult, ShardTask, process_shard

__all__ = ["DaskExecutor"]


class DaskExecutor:
    """Run shard tasks on a Dask cluster.

    Args:
        client: a ``distributed.Client``, or a scheduler address such as
            ``"tcp://scheduler:8786"``; None uses the current default client.

    Raises:
        ProcessingError: no client is given and none is running.

    Example:
        >>> from distributed import Client, LocalCluster
        >>> client = Client(LocalCluster(n_workers=4))  # doctest: +SKIP
        >>> executor = DaskExecutor(client)  # doctest: +SKIP
        >>> out = ds.map(fn, output_prefix="s3://b/out", executor=executor)  # doctest: +SKIP
        >>> out = ds.map(fn, output_prefix="s3://b/out", executor="dask")  # doctest: +SKIP
    """

    def __init__(self, client: distributed.Client | str | None = None) -> None:
        self._owns_client = False
        if isinstance(client, str):
            client = distributed.Client(client)  # type: ignore[no-untyped-call]
            self._owns_client = True
        elif client is None:
            try:
                client = distributed.get_client()
            except ValueError:
                raise ProcessingError(
                    "executor='dask' needs a Dask cluster: create a distributed.Client first, "
                    "or pass executor=DaskExecutor(client) or "
                    "DaskExecutor('tcp://scheduler:8786')"
                ) from None
        self.client: distributed.Client = client

    @property
    def workers(self) -> int | None:
        """Tasks the cluster runs at once: the sum of its workers' threads."""
        nthreads = self.client.nthreads()  # type: ignore[no-untyped-call]
        return sum(nthreads.values()) or None

    def submit(self, task: ShardTask) -> distributed.Future[ShardResult]:
        """Submit one task; ``.result()`` on the returned future waits for it."""
        return self.client.submit(process_shard, task, key=_key(task), pure=False)

    def map(
        self, tasks: Iterable[ShardTask]
    ) -> Iterator[tuple[ShardTask, ShardResult | BaseException]]:
        """Submit every task; yield ``(task, result or exception)`` as each ends."""
        tasks = list(tasks)
        if not tasks:
            return
        futures = self.client.map(process_shard, tasks, key=[_key(t) for t in tasks], pure=False)
        by_key: dict[Any, ShardTask] = {f.key: t for f, t in zip(futures, tasks, strict=True)}
        try:
            for future in distributed.as_completed(futures):  # type: ignore[no-untyped-call]
                task = by_key[future.key]
                try:
                    yield task, future.result()
                except Exception as exc:  # noqa: BLE001 - KilledWorker and the like, as data
                    yield task, exc
        finally:
            self.client.cancel(futures)  # type: ignore[no-untyped-call]

    def close(self) -> None:
        """Close the client when this executor created it."""
        if self._owns_client:
            self.client.close()  # type: ignore[no-untyped-call]

    def __enter__(self) -> DaskExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"DaskExecutor({self.client!r})"


def _key(task: ShardTask) -> str:
    return f"atdata-{task.task_id}-{task.job_id[:8]}-{task.attempt}"
