"""``@atdata.pipeline`` and the name-keyed registry of pipelines and processors."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from atdata.errors import PipelineError, closest
from atdata.pipeline._events import ObjectEvent
from atdata.pipeline._trigger import Trigger

__all__ = ["Pipeline", "PipelineRegistry", "default_registry", "pipeline"]

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,127}$")
_TAG = re.compile(r"^[0-9A-Za-z-]{8,}$")


class Pipeline:
    """A function run once for every new shard that matches its trigger.

    Made by :func:`pipeline`; calling it calls the function unchanged. Inside a
    run started by the dispatcher or the poller, ``Dataset.map`` without an
    ``output_prefix`` writes to :meth:`output_prefix_for` the event.

    Attributes:
        name: unique within its registry (default: the function's name).
        func: the function, called as ``func(shard_url)``.
        trigger: which objects start it.
        output: the URL its outputs (and its event ledger) go under.
        version: recorded with each run.

    Example:
        >>> process = registry.get("process")
        >>> process
        Pipeline('process', trigger='s3://bucket/incoming/', output='out/processed')
        >>> process.matches(event), process.trigger.relative(event.key)
        (True, 'a.tar')
    """

    def __init__(
        self,
        func: Callable[[str], Any],
        trigger: Trigger,
        output: str,
        *,
        name: str,
        version: str | None = None,
    ) -> None:
        if not _NAME.match(name):
            raise PipelineError(
                f"pipeline name {name!r}: use letters, digits, '_', '-' or '.' (at most 128)"
            )
        if not output or not output.strip("/"):
            raise PipelineError(f"pipeline {name!r}: output must be a URL or path, got {output!r}")
        self.func = func
        self.trigger = trigger
        self.output = output.rstrip("/")
        self.name = name
        self.version = version
        self.__doc__ = getattr(func, "__doc__", None)
        self.__wrapped__ = func
        self._output_location = _bucket_prefix(self.output)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.func(*args, **kwargs)

    def __repr__(self) -> str:
        return f"Pipeline({self.name!r}, trigger={self.trigger.url!r}, output={self.output!r})"

    def matches(self, event: ObjectEvent) -> bool:
        """True when ``event`` is a new shard under this pipeline's trigger.

        Keys under the pipeline's own output never match, so a trigger that
        covers the output folder cannot feed the pipeline its own results.
        """
        if event.ignore_reason() is not None or not self.trigger.matches(event.bucket, event.key):
            return False
        location = self._output_location
        return not (
            location is not None
            and event.bucket == location[0]
            and event.key.startswith(location[1])
        )

    def event_id(self, event: ObjectEvent) -> str:
        """The ledger id of ``event`` for this pipeline: a hash of name, bucket, key and ETag."""
        text = "\n".join((self.name, event.bucket, event.key, event.etag))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]

    def output_prefix_for(self, event: ObjectEvent) -> str:
        """Where a run for ``event`` writes: ``<output>/<shard stem>/<etag tag>``.

        The same object version always gets the same prefix (so a retried run
        resumes in place), and a re-upload (new ETag) gets a new one.

        Example:
            >>> p = registry.get("process")
            >>> p.output_prefix_for(ObjectEvent("bucket", "incoming/a.tar", "etag1"))
            'out/processed/a/c156e15ea68fd899'
        """
        stem = self.trigger.relative(event.key)
        stem = stem[: -len(".tar")] if stem.endswith(".tar") else stem
        return f"{self.output}/{stem}/{etag_tag(event.etag)}"

    def describe(self) -> dict[str, Any]:
        """The pipeline as JSON: name, trigger, output, version."""
        return {
            "name": self.name,
            "trigger": self.trigger.url,
            "suffix": self.trigger.suffix,
            "output": self.output,
            "version": self.version,
            "function": f"{getattr(self.func, '__module__', '?')}."
            f"{getattr(self.func, '__qualname__', '?')}",
        }


def etag_tag(etag: str) -> str:
    """A short, path-safe tag for an ETag: its first 16 characters, else a hash of it."""
    tag = etag[:16]
    if _TAG.match(tag):
        return tag
    return hashlib.sha256(etag.encode("utf-8")).hexdigest()[:16]


def _bucket_prefix(url: str) -> tuple[str, str] | None:
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in ("s3", "r2"):
        return None
    bucket, _, path = rest.partition("/")
    path = path.strip("/")
    return bucket, (path + "/" if path else "")


class PipelineRegistry:
    """Pipelines and processors by name: what the dispatcher and the poller can run.

    ``@atdata.pipeline`` registers into :data:`default_registry` unless given
    ``registry=``; tests and embedding applications make their own.

    Example:
        >>> reg = PipelineRegistry()
        >>> @reg.pipeline(trigger="s3://bucket/incoming", output="s3://bucket/processed")
        ... def process(shard_url: str) -> None: ...
        >>> reg.get("process").trigger.prefix
        'incoming/'
    """

    def __init__(self) -> None:
        self._pipelines: dict[str, Pipeline] = {}
        self._processors: dict[str, Callable[..., Any]] = {}

    # -- pipelines -----------------------------------------------------------------

    def add(self, item: Pipeline) -> Pipeline:
        """Register a pipeline; re-registering the same function (a module reload) replaces it.

        Raises:
            PipelineError: another function already has this name.
        """
        old = self._pipelines.get(item.name)
        if old is not None and _origin(old.func) != _origin(item.func):
            raise PipelineError(
                f"a pipeline named {item.name!r} is already registered ({_origin(old.func)}); "
                "give this one another name with @atdata.pipeline(..., name='...')"
            )
        self._pipelines[item.name] = item
        return item

    def pipeline(
        self,
        trigger: str | Trigger,
        output: str,
        *,
        name: str | None = None,
        suffix: str | None = None,
        version: str | None = None,
    ) -> Callable[[Callable[[str], Any]], Pipeline]:
        """Decorator: register a pipeline in this registry (see :func:`pipeline`)."""
        parsed = trigger if isinstance(trigger, Trigger) else Trigger.parse(trigger, suffix=suffix)

        def decorate(func: Callable[[str], Any]) -> Pipeline:
            if not callable(func):
                raise PipelineError(f"@pipeline decorates a function, got {type(func).__name__}")
            item = Pipeline(func, parsed, output, name=name or func.__name__, version=version)
            return self.add(item)

        return decorate

    def get(self, name: str) -> Pipeline:
        """The pipeline called ``name``.

        Raises:
            PipelineError: no such pipeline (the message lists the close names).
        """
        try:
            return self._pipelines[name]
        except KeyError:
            raise PipelineError(_unknown("pipeline", name, self._pipelines)) from None

    def matching(self, event: ObjectEvent) -> list[Pipeline]:
        """The pipelines ``event`` triggers, in registration order."""
        return [p for p in self._pipelines.values() if p.matches(event)]

    def __iter__(self) -> Iterator[Pipeline]:
        return iter(list(self._pipelines.values()))

    def __len__(self) -> int:
        return len(self._pipelines)

    def __contains__(self, name: object) -> bool:
        return name in self._pipelines

    # -- processors ------------------------------------------------------------------

    def add_processor(
        self, func: Callable[..., Any], name: str | None = None
    ) -> Callable[..., Any]:
        """Make ``func`` startable by name through ``POST /jobs``; returns it unchanged.

        Raises:
            PipelineError: another function already has this name.
        """
        key = name or getattr(func, "__name__", None) or getattr(func, "name", None)
        if not isinstance(key, str) or not _NAME.match(key):
            raise PipelineError(f"processor name {key!r}: pass name='...' (letters, digits, _ - .)")
        old = self._processors.get(key)
        if old is not None and old is not func and _origin(old) != _origin(func):
            raise PipelineError(
                f"a processor named {key!r} is already registered ({_origin(old)}); "
                "register this one under another name"
            )
        self._processors[key] = func
        return func

    def add_processors(
        self, funcs: Mapping[str, Callable[..., Any]] | Iterable[Callable[..., Any]]
    ) -> None:
        """Register several processors, from a ``{name: function}`` mapping or an iterable."""
        if isinstance(funcs, Mapping):
            for key, func in funcs.items():
                self.add_processor(func, key)
        else:
            for func in funcs:
                self.add_processor(func)

    def processor(self, name: str) -> Callable[..., Any]:
        """The processor registered as ``name``.

        Raises:
            PipelineError: no such processor (the message lists the known ones).
        """
        try:
            return self._processors[name]
        except KeyError:
            raise PipelineError(_unknown("processor", name, self._processors)) from None

    @property
    def processor_names(self) -> list[str]:
        """Registered processor names, sorted."""
        return sorted(self._processors)

    def describe(self) -> dict[str, Any]:
        """Pipelines and processor names as JSON."""
        return {
            "pipelines": [p.describe() for p in self],
            "processors": self.processor_names,
        }


def _origin(func: Any) -> str:
    inner = getattr(func, "__wrapped__", func)
    return f"{getattr(inner, '__module__', '?')}.{getattr(inner, '__qualname__', repr(inner))}"


def _unknown(kind: str, name: str, known: Mapping[str, Any]) -> str:
    close = closest(name, known)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    listing = ", ".join(sorted(known)) or "(none registered)"
    return f"unknown {kind} {name!r}.{hint} Known {kind}s: {listing}"


default_registry = PipelineRegistry()
"""Where ``@atdata.pipeline`` registers by default; ``atdata serve`` serves it."""


def pipeline(
    trigger: str | Trigger,
    output: str,
    *,
    name: str | None = None,
    suffix: str | None = None,
    version: str | None = None,
    registry: PipelineRegistry | None = None,
) -> Callable[[Callable[[str], Any]], Pipeline]:
    """Run the decorated function for every new ``.tar`` shard that matches ``trigger``.

    The function receives the shard's URL. Inside it, ``Dataset.map`` without
    an ``output_prefix`` writes under ``output``, in a folder per object version
    (``<output>/<shard stem>/<etag>``), so a redelivered event lands in the same
    place and a re-upload in a new one. Events are processed once per (bucket,
    key, ETag): a ledger under ``<output>/_atdata_pipeline/`` records each.

    Args:
        trigger: ``r2://bucket/prefix`` or ``s3://bucket/prefix``, optionally a
            glob (``r2://bucket/incoming/**/*-train.tar``).
        output: the URL (or local path) outputs go under.
        name: the pipeline's name (default: the function's name).
        suffix: only keys ending with this fire.
        version: recorded in each run (``current_run().version``).
        registry: where to register (default: :data:`default_registry`).

    Raises:
        PipelineError: the trigger is not an s3:// or r2:// URL, or the name is taken.

    Example:
        >>> @atdata.pipeline(trigger="r2://bucket/incoming", output="r2://bucket/processed")
        ... def process_uploads(shard_url: str):
        ...     ds = atdata.Dataset[RawSample](shard_url)
        ...     return ds.map(transform_sample)
    """
    return (registry if registry is not None else default_registry).pipeline(
        trigger, output, name=name, suffix=suffix, version=version
    )
