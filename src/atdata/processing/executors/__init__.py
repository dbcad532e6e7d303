"""Executors: where shard tasks run. One small interface, resolved by name.

Every executor has the same verbs:

- ``submit(task)`` runs one task and returns a handle whose ``result()``
  gives the :class:`~atdata.processing.ShardResult`;
- ``map(tasks)`` runs many and yields ``(task, result_or_exception)`` as they
  finish; an exception means the task never returned (its worker died);
- ``close()`` releases the workers (executors are context managers too);
- ``workers`` is the number of tasks that can run at once (None if elastic).

An executor whose class sets ``reports_progress = True`` also takes
``map(tasks, progress=callback)`` and calls ``callback(task, samples_read)``
while tasks run, for the progress bar.

Built in, by name: ``"inline"`` (in the calling process, for debugging),
``"local"`` (a process pool, the default), ``"dask"`` (``dask.distributed``)
and ``"modal"`` (Modal functions). Third parties add theirs with
:func:`register_executor`, or from their package's metadata in the
``atdata.executors`` entry-point group.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from atdata.errors import MissingDependencyError, ProcessingError

if TYPE_CHECKING:
    from atdata.processing._processor import Processor
    from atdata.processing._task import ShardResult, ShardTask

__all__ = ["ENTRY_POINT_GROUP", "Executor", "TaskHandle", "get_executor", "register_executor"]

# The entry-point group a package declares its executors in, read on the first unknown name.
ENTRY_POINT_GROUP = "atdata.executors"


@runtime_checkable
class TaskHandle(Protocol):
    """A submitted task; ``result()`` waits for it.

    Example:
        >>> handle = atdata.InlineExecutor().submit(task)
        >>> handle.result().ok
        True
    """

    def result(self, timeout: float | None = None) -> ShardResult:
        """The task's result, waiting up to ``timeout`` seconds (None: no limit)."""
        ...


@runtime_checkable
class Executor(Protocol):
    """What ``Dataset.map`` needs from a place to run shard tasks.

    Example:
        >>> isinstance(atdata.InlineExecutor(), atdata.Executor)
        True
        >>> out = ds.map(embed, output_prefix="out/", executor=atdata.InlineExecutor())
    """

    @property
    def workers(self) -> int | None:
        """Tasks that run at once (for utilisation); None when elastic or unknown.

        Example:
            >>> atdata.InlineExecutor().workers
            1
        """
        ...

    def submit(self, task: ShardTask) -> TaskHandle:
        """Start one task.

        Example:
            >>> atdata.InlineExecutor().submit(task).result().samples_out
            4
        """
        ...

    def map(
        self, tasks: Iterable[ShardTask]
    ) -> Iterator[tuple[ShardTask, ShardResult | BaseException]]:
        """Run tasks; yield each with its result (or the exception that lost it) as it ends.

        Example:
            >>> [(t.task_id, r.ok) for t, r in atdata.InlineExecutor().map([task])]
            [('shard-000000', True)]
        """
        ...

    def close(self) -> None:
        """Release the workers.

        Example:
            >>> executor = atdata.LocalExecutor(workers=2)   # workers start on first use
            >>> executor.close()
        """
        ...


_Target = str | Callable[..., Executor]
_Entry = tuple[_Target, tuple[str, str] | None]

# name -> (dotted path of the class or factory, (package, extra) needed, or None)
_REGISTRY: dict[str, _Entry] = {
    "inline": ("atdata.processing.executors.inline:InlineExecutor", None),
    "local": ("atdata.processing.executors.local:LocalExecutor", None),
    "dask": ("atdata.processing.executors.dask:DaskExecutor", ("distributed", "dask")),
    "modal": ("atdata.processing.executors.modal:ModalExecutor", ("modal", "modal")),
}


def register_executor(
    name: str,
    target: _Target,
    *,
    requires: tuple[str, str] | None = None,
    overwrite: bool = False,
) -> None:
    """Make ``executor=name`` resolve to ``target``.

    A package can instead declare its executors in its metadata, under the
    ``atdata.executors`` entry-point group (:data:`ENTRY_POINT_GROUP`); the
    group is read the first time an unregistered name is asked for, and each
    entry point's object is a class or factory, as ``target`` here. Names
    registered in code, and the built-in ones, take precedence.

    Args:
        name: the name users pass as ``executor=``.
        target: a class or factory, or its dotted path ``"package.module:Name"``
            (imported only when first used). It is called with no arguments,
            or, when it has a ``from_processor`` classmethod, with the job's
            processor; when it has a ``shared`` classmethod instead, that
            gives a process-wide instance which stays open after the job
            (how ``"local"`` keeps its workers warm).
        requires: ``(package, extra)`` to name in the install hint when the
            import fails, e.g. ``("ray", "ray")``.
        overwrite: replace an executor already registered under ``name``
            (a built-in one too).

    Raises:
        ValueError: ``name`` is taken and ``overwrite`` is false.

    Example:
        >>> atdata.processing.register_executor("ray", "my_pkg.executors:RayExecutor")
        >>> ds.map(fn, output_prefix="s3://b/out", executor="ray")  # doctest: +SKIP
        >>> atdata.processing.register_executor("local", atdata.InlineExecutor, overwrite=True)
        >>> ds.map(fn, output_prefix="out/").shards[0]               # now runs in-process
        'out/shard-000000.tar'

        Or, without any code at import time, in the plugin's ``pyproject.toml``:

        .. code-block:: toml

            [project.entry-points."atdata.executors"]
            ray = "my_pkg.executors:RayExecutor"
    """
    if name in _REGISTRY and not overwrite:
        raise ValueError(
            f"an executor named {name!r} is already registered; pass overwrite=True to replace it"
        )
    _REGISTRY[name] = (target, requires)


@functools.cache
def _entry_points() -> dict[str, importlib.metadata.EntryPoint]:
    """The installed packages' executors by name (the first one wins a clash), read once."""
    found: dict[str, importlib.metadata.EntryPoint] = {}
    for point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(point.name, point)
    return found


def _lookup(name: str) -> _Entry | None:
    """A registered executor, else one from an entry point (then registered), else None."""
    entry = _REGISTRY.get(name)
    if entry is None:
        point = _entry_points().get(name)
        if point is not None:
            entry = _REGISTRY.setdefault(name, (point.load(), None))
    return entry


def get_executor(
    executor: str | Executor | None, processor: Processor[Any, Any] | None = None
) -> tuple[Executor, bool]:
    """Resolve ``executor=`` to an instance; also say whether the caller owns (closes) it.

    ``None`` picks ``"modal"`` for a processor registered on a ``modal.App``,
    else ``"local"``, whose process-wide pool of warm workers the caller does
    not own.

    A name that is not registered is looked up in the ``atdata.executors``
    entry points (see :func:`register_executor`).

    Raises:
        ProcessingError: the name is unknown.
        MissingDependencyError: the executor's package is not installed.

    Example:
        >>> executor, owned = atdata.processing.get_executor("inline")
        >>> type(executor).__name__, owned
        ('InlineExecutor', True)
    """
    if executor is None:
        executor = "modal" if processor is not None and processor.app is not None else "local"
    if not isinstance(executor, str):
        return _wrap_native(executor), False
    entry = _lookup(executor)
    if entry is None:
        from atdata.errors import closest

        known = sorted({*_REGISTRY, *_entry_points()})
        hint = closest(executor, known)
        extra = f" Did you mean {hint[0]!r}?" if hint else ""
        raise ProcessingError(
            f"Unknown executor {executor!r}.{extra} Known: {', '.join(known)}; "
            "or pass an executor instance, or add one with register_executor()."
        )
    target, requires = entry
    if isinstance(target, str):
        module_name, _, attr = target.partition(":")
        try:
            factory = getattr(importlib.import_module(module_name), attr)
        except ImportError as exc:
            if requires is not None:
                raise MissingDependencyError(
                    requires[0], requires[1], f"executor={executor!r}"
                ) from exc
            raise
    else:
        factory = target
    from_processor = getattr(factory, "from_processor", None)
    if from_processor is not None and processor is not None:
        return from_processor(processor), True
    shared = getattr(factory, "shared", None)
    if shared is not None:
        return shared(), False
    return factory(), True


def _wrap_native(executor: Any) -> Executor:
    """A ``distributed.Client`` or a ``modal.Function`` given as ``executor=``, wrapped."""
    module = type(executor).__module__
    if module.startswith("distributed.") and type(executor).__name__ == "Client":
        from atdata.processing.executors.dask import DaskExecutor

        return DaskExecutor(executor)
    if module.startswith("modal.") and type(executor).__name__ == "Function":
        from atdata.processing.executors.modal import ModalExecutor

        return ModalExecutor(executor)
    return executor  # type: ignore[no-any-return]
