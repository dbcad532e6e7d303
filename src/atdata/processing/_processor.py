"""``@atdata.processor``: a per-sample (or per-batch) function with typed input and output.

The input and output sample types are read from the function's annotations; a
first parameter annotated ``SampleBatch[In]`` makes it a batched processor, fed
``batch_size`` samples at a time. The decorated object stays a plain callable
on one sample (or one batch) for unit tests;
``Dataset.map`` runs it over whole shards. Given a ``modal.App``, the decorator
also registers a Modal function on that app, with the requested resources, that
runs the same shard task every other executor runs.
"""

from __future__ import annotations

import collections.abc
import functools
import hashlib
import importlib
import inspect
import sys
import types
import typing
from collections.abc import Callable
from typing import Any, Generic, Literal, TypeVar, overload

from atdata.errors import MissingDependencyError, ProcessingError
from atdata.loader._batch import SampleBatch
from atdata.sample import is_packable

__all__ = ["DEFAULT_BATCH_SIZE", "Processor", "as_processor", "processor"]

DEFAULT_BATCH_SIZE = 64
"""Samples per batch for a function taking a ``SampleBatch`` when no ``batch_size`` is given."""

In = TypeVar("In")
Out = TypeVar("Out")
Emits = Literal["one", "many"]

_MANY = {
    list,
    tuple,
    collections.abc.Sequence,
    collections.abc.Iterable,
    collections.abc.Iterator,
    collections.abc.Generator,
    SampleBatch,
}


class Processor(Generic[In, Out]):
    """A per-sample function ``In -> Out`` that ``Dataset.map`` runs over shards.

    Create it with :func:`processor`. Calling it on one sample calls the
    function. The function may return a sample, ``None`` (drop the sample) or a
    list of samples (emit several; generator functions work too).

    A batched processor (first parameter ``SampleBatch[In]``) is called with a
    :class:`~atdata.SampleBatch` of up to ``batch_size`` samples and returns a
    ``SampleBatch``, a list or an iterator of output samples (or None).

    Attributes:
        fn: the undecorated function.
        input_type: the sample type it takes (from its first parameter; ``In``
            of ``SampleBatch[In]`` for a batched processor).
        output_type: the sample type it returns (from its return annotation).
        batch_size: samples per call for a batched processor; None: one sample per call.
        name: the function's name; also the Modal function's name.
        app: the ``modal.App`` it is registered on, or None.
        cpu, memory, gpu, timeout: resources requested from Modal (``timeout``
            also bounds a task on the local executor).
        retries: how many times a failing shard is retried.
        version: the pipeline version recorded in output manifests.
        modal_function: the registered ``modal.Function``, or None.

    Example:
        >>> proc = atdata.processor(embed)
        >>> proc.input_type.__name__, proc.output_type.__name__, proc.batch_size
        ('ImageSample', 'EmbeddingSample', None)
        >>> proc(sample).label
        'cat'
    """

    fn: Callable[[Any], Any]
    name: str
    input_type: type
    output_type: type
    emits: Emits
    batch_size: int | None

    def __init__(
        self,
        fn: Callable[[In], Any],
        *,
        app: Any = None,
        cpu: float | None = None,
        memory: int | None = None,
        gpu: str | None = None,
        timeout: float | None = None,
        retries: int = 0,
        name: str | None = None,
        version: str | None = None,
        batch_size: int | None = None,
        modal_options: dict[str, Any] | None = None,
    ) -> None:
        if isinstance(fn, Processor):
            fn = fn.fn  # re-wrapping: start from the plain function
        if not callable(fn):
            raise ProcessingError(f"@atdata.processor needs a function, got {fn!r}")
        if retries < 0:
            raise ValueError(f"retries must be 0 or more, got {retries}")
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        functools.update_wrapper(self, fn)
        self.fn = fn
        self.name = name or str(getattr(fn, "__name__", type(fn).__name__))
        self.input_type, self.output_type, self.emits, batched = signature_types(fn)
        if batch_size is not None and not batched:
            raise ProcessingError(
                f"{self.name}: batch_size={batch_size} needs a function that takes a batch: "
                f"annotate its parameter `SampleBatch[{self.input_type.__name__}]`"
            )
        self.batch_size = (batch_size or DEFAULT_BATCH_SIZE) if batched else None
        self.app = app
        self.cpu = cpu
        self.memory = memory
        self.gpu = gpu
        self.timeout = timeout
        self.retries = retries
        self.version = version or _code_version(fn)
        self.modal_options = dict(modal_options or {})
        self.modal_function: Any = None
        if app is not None:
            self.modal_function = _register_modal(self)

    def __call__(self, sample: In) -> Any:
        """Run the function on one sample (on one ``SampleBatch`` if it is batched).

        Raises:
            ProcessingError: a batched processor is given something other than a
                ``SampleBatch``.
        """
        if self.batch_size is not None and not isinstance(sample, SampleBatch):
            raise ProcessingError(
                f"{self.name} is a batched processor: call it with a SampleBatch of "
                f"{self.input_type.__name__}, e.g. {self.name}(atdata.SampleBatch([sample])); "
                f"got a {type(sample).__name__}"
            )
        return self.fn(sample)

    def __repr__(self) -> str:
        name = self.input_type.__name__
        batched = f"SampleBatch[{name}]" if self.batch_size is not None else name
        size = f" (batch_size={self.batch_size})" if self.batch_size is not None else ""
        return (
            f"<processor {self.name}: {batched} -> "
            f"{self.output_type.__name__}{'[]' if self.emits == 'many' else ''}{size}>"
        )

    def __reduce__(self) -> Any:
        # By reference when a worker can import it, so that module-level state
        # (a model loaded at import) is rebuilt there instead of pickled;
        # by value (without the Modal registration) otherwise. The version goes
        # along, so that a warm worker notices a module edited (and reloaded
        # here) since it imported it.
        module = getattr(self.fn, "__module__", None)
        qualname = getattr(self.fn, "__qualname__", "")
        if module and module != "__main__" and "<locals>" not in qualname:
            target: Any = sys.modules.get(module)
            for part in qualname.split("."):
                target = getattr(target, part, None)
            if target is self:
                return _import_processor, (module, qualname, self.version)
        state = {
            "fn": self.fn,
            "name": self.name,
            "input_type": self.input_type,
            "output_type": self.output_type,
            "emits": self.emits,
            "batch_size": self.batch_size,
            "retries": self.retries,
            "timeout": self.timeout,
            "version": self.version,
        }
        return _rebuild_processor, (state,)


def _import_processor(module: str, qualname: str, version: str) -> Processor[Any, Any]:
    target = _resolve(importlib.import_module(module), qualname)
    if getattr(target, "version", version) != version:
        # imported before the sender's copy of the module changed: import it again
        target = _resolve(importlib.reload(sys.modules[module]), qualname)
    return target  # type: ignore[no-any-return]


def _resolve(module: types.ModuleType, qualname: str) -> Any:
    target: Any = module
    for part in qualname.split("."):
        target = getattr(target, part)
    return target


def _rebuild_processor(state: dict[str, Any]) -> Processor[Any, Any]:
    # Not through __init__: types that travelled by value are complete only
    # once unpickling ends, too late to check them again; they were checked here.
    proc: Processor[Any, Any] = Processor.__new__(Processor)
    functools.update_wrapper(proc, state["fn"])
    proc.__dict__.update(
        state, app=None, cpu=None, memory=None, gpu=None, modal_options={}, modal_function=None
    )
    return proc


@overload
def processor(fn: Callable[[In], Any], /) -> Processor[In, Any]: ...
@overload
def processor(
    app: Any = None,
    /,
    *,
    cpu: float | None = None,
    memory: int | None = None,
    gpu: str | None = None,
    timeout: float | None = None,
    retries: int = 0,
    name: str | None = None,
    version: str | None = None,
    batch_size: int | None = None,
    **modal_options: Any,
) -> Callable[[Callable[[In], Any]], Processor[In, Any]]: ...


def processor(
    app: Any = None,
    /,
    *,
    cpu: float | None = None,
    memory: int | None = None,
    gpu: str | None = None,
    timeout: float | None = None,
    retries: int = 0,
    name: str | None = None,
    version: str | None = None,
    batch_size: int | None = None,
    **modal_options: Any,
) -> Any:
    """Make a per-sample (or per-batch) function a processor for ``Dataset.map``.

    The input type is the annotation of the function's first parameter and
    the output type its return annotation (``Out``, ``Out | None``,
    ``list[Out]`` or ``Iterator[Out]``); both must be ``@atdata.packable``
    classes (or ``DictSample``).

    A function whose parameter is annotated ``SampleBatch[In]`` is batched:
    ``map`` calls it with :class:`~atdata.SampleBatch` es of ``batch_size``
    samples (the last one of a task may be shorter) whose fields read as
    stacked arrays, and it returns ``SampleBatch[Out]``, ``list[Out]`` or
    ``Iterator[Out]``. Outputs are written in order; when there are as many as
    inputs, the i-th output takes the i-th input's key (unless it has its own),
    otherwise outputs without a key are named ``<first key>_<i>``. The error
    policy (``on_error``) judges a batch as a whole: when the call fails, all
    of the batch's samples are skipped (and recorded) or fail the shard.

    Args:
        app: a ``modal.App``; the processor then registers a Modal function on
            it now, and ``map`` runs on Modal by default.
        cpu: CPU cores to request from Modal.
        memory: memory to request from Modal, in MiB.
        gpu: GPU type to request from Modal, e.g. ``"A10G"``.
        timeout: seconds one shard may take (Modal's function timeout; also
            enforced by the local executor).
        retries: times a failing shard is retried before it counts as failed.
        name: the name shown in logs and on Modal; the function's by default.
        version: the pipeline version recorded in output manifests; by default
            the function's qualified name and a hash of its code.
        batch_size: samples per call of a batched function
            (:data:`DEFAULT_BATCH_SIZE` by default).
        **modal_options: passed to ``app.function`` (``image``, ``secrets``,
            ``volumes``...).

    Raises:
        ProcessingError: an annotation is missing or is not a sample type, or
            ``batch_size`` is given for a function that does not take a batch.
        MissingDependencyError: ``app`` is given and ``modal`` is not installed.

    Example:
        >>> @atdata.processor
        ... def double(sample: Reading) -> Reading:
        ...     return Reading(value=2 * sample.value)
        >>> double(Reading(value=1.5)).value
        3.0
        >>> import modal
        >>> app = modal.App("embed")
        >>> @atdata.processor(app, cpu=2, memory=4096, gpu="A10G", retries=2)
        ... def embed(sample: ImageSample) -> EmbeddingSample:
        ...     ...
        >>> @atdata.processor(batch_size=64)
        ... def embed_many(batch: atdata.SampleBatch[ImageSample]) -> list[EmbeddingSample]:
        ...     vectors = model(batch.image)            # one call on a (64, ...) array
        ...     return [EmbeddingSample(embedding=v) for v in vectors]
    """
    bare = app if app is not None and _is_plain_callable(app) else None
    if bare is not None:  # @atdata.processor without parentheses
        app = None

    def decorate(fn: Callable[[In], Any]) -> Processor[In, Any]:
        return Processor(
            fn,
            app=app,
            cpu=cpu,
            memory=memory,
            gpu=gpu,
            timeout=timeout,
            retries=retries,
            name=name,
            version=version,
            batch_size=batch_size,
            modal_options=modal_options,
        )

    return decorate if bare is None else decorate(bare)


def as_processor(fn: Callable[[Any], Any] | Processor[Any, Any]) -> Processor[Any, Any]:
    """``fn`` itself when it is a processor, else a processor made from its annotations.

    A plain function gets the decorator's defaults: its ``__name__`` as the
    name, ``<module>.<qualname>@<hash of its code>`` as the version (so the
    ledger tells an edited function from the one that wrote a job), no
    retries and, if it takes a ``SampleBatch``, :data:`DEFAULT_BATCH_SIZE`.

    Example:
        >>> proc = as_processor(embed)
        >>> proc.name, proc.version                 # doctest: +ELLIPSIS
        ('embed', '...embed@...')
    """
    return fn if isinstance(fn, Processor) else Processor(fn)


def _is_plain_callable(obj: Any) -> bool:
    # A modal.App is not callable, but check its shape too, in case that changes.
    return callable(obj) and not hasattr(obj, "function")


# -- annotations -----------------------------------------------------------------


def signature_types(fn: Callable[..., Any]) -> tuple[type, type, Emits, bool]:
    """``(input type, output type, "one" | "many", batched)`` from a function's annotations.

    ``batched`` is True when the first parameter is annotated ``SampleBatch[In]``
    (``In`` is then the input type); a batched function must return several
    samples (``SampleBatch[Out]``, ``list[Out]``, ``Iterator[Out]``).

    Raises:
        ProcessingError: an annotation is missing, unresolvable or not a sample type.

    Example:
        >>> def embed_many(batch: atdata.SampleBatch[ImageSample]) -> list[EmbeddingSample]:
        ...     return [EmbeddingSample(embedding=v) for v in model(batch.image)]
        >>> [getattr(t, "__name__", t) for t in signature_types(embed_many)]
        ['ImageSample', 'EmbeddingSample', 'many', True]
    """
    name = getattr(fn, "__name__", repr(fn))
    example = f"`def {name}(sample: InSample) -> OutSample:`"
    try:
        params = [
            p
            for p in inspect.signature(fn).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
    except (TypeError, ValueError):
        params = []
    if not params:
        raise ProcessingError(
            f"{name} takes no sample argument; a processor is called with one sample: "
            f"write {example}"
        )
    param = params[0]
    try:
        hints = typing.get_type_hints(fn)
    except NameError as exc:
        raise ProcessingError(
            f"{name}: cannot resolve its annotations ({exc}). Define the sample types at "
            "module level, where the function's globals can see them."
        ) from None
    except TypeError:
        hints = {}
    if param.name not in hints:
        raise ProcessingError(
            f"{name}({param.name}): the parameter has no type annotation, and atdata reads "
            f"the input sample type from it. Write {example} with @atdata.packable types."
        )
    annotation = in_type = hints[param.name]
    batched = in_type is SampleBatch or typing.get_origin(in_type) is SampleBatch
    if batched:
        (in_type,) = typing.get_args(in_type) or (None,)
        example = f"`def {name}(batch: SampleBatch[InSample]) -> list[OutSample]:`"
    if not is_packable(in_type):
        raise ProcessingError(
            f"{name}({param.name}: {_type_name(annotation)}): the input type must be an "
            "@atdata.packable class (or atdata.DictSample), or SampleBatch[T] of one; "
            "decorate the class with @atdata.packable"
        )
    if "return" not in hints:
        raise ProcessingError(
            f"{name}: the function has no return annotation, and atdata reads the output "
            f"sample type from it. Write {example} (or `-> OutSample | None`, "
            "`-> list[OutSample]`)."
        )
    out_type, emits = _output_type(hints["return"])
    if batched and emits != "many":
        raise ProcessingError(
            f"{name} -> {_type_name(hints['return'])}: a function taking a SampleBatch "
            f"returns several samples; write {example} (or `-> SampleBatch[OutSample]`, "
            "`-> Iterator[OutSample]`)"
        )
    if out_type is None or not is_packable(out_type):
        raise ProcessingError(
            f"{name} -> {_type_name(hints['return'])}: the output type must be an "
            "@atdata.packable class (or DictSample), optionally as `T | None`, `list[T]` "
            "or `Iterator[T]`"
        )
    return in_type, out_type, emits, batched


def _output_type(annotation: Any) -> tuple[type | None, Emits]:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) != 1:
            return None, "one"
        return _output_type(args[0])
    if origin in _MANY:
        items = typing.get_args(annotation)
        if not items:
            return None, "many"
        return items[0], "many"
    return annotation, "one"


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or repr(tp)


def _code_version(fn: Callable[..., Any]) -> str:
    """A pipeline version that changes when the function's code changes."""
    code = getattr(fn, "__code__", None)
    name = f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', '?')}"
    if code is None:
        return name
    digest = hashlib.sha256(code.co_code)
    digest.update(repr((code.co_consts, code.co_names)).encode("utf-8", "replace"))
    return f"{name}@{digest.hexdigest()[:12]}"


# -- Modal -----------------------------------------------------------------------


def _register_modal(proc: Processor[Any, Any]) -> Any:
    """Register a Modal function running the shard task, with the processor's resources."""
    try:
        import modal  # noqa: F401 - only to fail early with the install hint
    except ImportError:
        raise MissingDependencyError("modal", "modal", "@atdata.processor(app=...)") from None
    options = dict(proc.modal_options)
    for key, value in (("cpu", proc.cpu), ("memory", proc.memory), ("gpu", proc.gpu)):
        if value is not None:
            options[key] = value
    if proc.timeout is not None:
        options["timeout"] = int(proc.timeout)
    # Built per processor, so it is not a global-scope function: Modal must ship
    # it by value (serialized=True). Retries stay with atdata's job ledger, which
    # counts attempts the same way on every executor.
    entry = _modal_entry(proc.name)
    return proc.app.function(serialized=True, name=proc.name, **options)(entry)


def _modal_entry(name: str) -> Callable[[Any], Any]:
    from atdata.processing._task import process_shard

    def run_shard(task: Any) -> Any:
        return process_shard(task)

    run_shard.__name__ = name
    run_shard.__qualname__ = name
    run_shard.__doc__ = f"atdata shard task for processor {name}"
    return run_shard
