"""``executor="modal"``: fan shard tasks out to a Modal function with ``.map()``.

``@atdata.processor(app, cpu=..., memory=..., gpu=...)`` registers that Modal
function on your app when the module is imported; it runs
:func:`~atdata.processing.process_shard`, the same task every executor runs.
See ``docs/processing.md`` for ``modal run`` / ``modal deploy``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Any

import modal

from atdata.errors import ProcessingError
from atdata.processing._task import ShardResult, ShardTask

__all__ = ["ModalExecutor"]


class ModalExecutor:
    """Run shard tasks on Modal, through a processor's registered Modal function.

    When the function's app is not running yet (a plain ``python script.py``),
    ``map`` runs it for the duration of the job (``with app.run():``); under
    ``modal run`` or in a deployed app it uses the running app.

    Args:
        function: the ``modal.Function`` registered by ``@atdata.processor(app)``
            (``processor.modal_function``).

    Example:
        >>> out = ds.map(embed, output_prefix="r2://bucket/embedded/v1")  # doctest: +SKIP
        >>> out = ds.map(embed, output_prefix="s3://b/out",  # doctest: +SKIP
        ...              executor=ModalExecutor(embed.modal_function))
    """

    workers: int | None = None  # elastic

    def __init__(self, function: Any) -> None:
        self.function = function

    @classmethod
    def from_processor(cls, processor: Any) -> ModalExecutor:
        """The executor for a processor registered on a ``modal.App``.

        Raises:
            ProcessingError: the processor has no Modal function.
        """
        if getattr(processor, "modal_function", None) is None:
            raise ProcessingError(
                f"executor='modal' needs a processor registered on a modal.App; decorate "
                f"{getattr(processor, 'name', 'the function')} with "
                "@atdata.processor(app=modal.App('my-app'), cpu=..., memory=...)"
            )
        return cls(processor.modal_function)

    def _app_running(self) -> bool:
        try:
            app = getattr(self.function, "app", None)
        except modal.exception.ExecutionError:
            app = None  # looked up with Function.from_name: a deployed app
        return app is None or getattr(app, "app_id", None) is not None or not modal.is_local()

    def _running(self) -> contextlib.AbstractContextManager[Any]:
        if self._app_running():
            return contextlib.nullcontext()
        return self.function.app.run()  # type: ignore[no-any-return]

    def submit(self, task: ShardTask) -> _Call:
        """Spawn one task on Modal; ``.result()`` waits for it.

        Raises:
            ProcessingError: the app is not running (``submit`` cannot keep it
                running after it returns; ``map`` can).
        """
        if not self._app_running():
            raise ProcessingError(
                "ModalExecutor.submit needs a running app: call it under `modal run`, or "
                "inside `with app.run():`"
            )
        return _Call(self.function.spawn(task))

    def map(
        self, tasks: Iterable[ShardTask]
    ) -> Iterator[tuple[ShardTask, ShardResult | BaseException]]:
        """Run the tasks with ``Function.map``; a lost container comes back as an exception."""
        tasks = list(tasks)
        if not tasks:
            return
        with self._running():
            outcomes = self.function.map(tasks, order_outputs=True, return_exceptions=True)
            yield from zip(tasks, outcomes, strict=True)

    def close(self) -> None:
        """Nothing to release: Modal scales containers down by itself."""

    def __enter__(self) -> ModalExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ModalExecutor({self.function!r})"


class _Call:
    """A spawned Modal call with the ``result()`` verb of the other executors."""

    def __init__(self, call: Any) -> None:
        self.call = call

    def result(self, timeout: float | None = None) -> ShardResult:
        return self.call.get(timeout=timeout)  # type: ignore[no-any-return]
