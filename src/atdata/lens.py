"""Lenses: typed views of samples, registered by (source, view) and composable.

A lens has a getter ``source -> view`` (the decorated function, types read
from its annotations) and optionally a putter ``(view, source) -> source`` that
writes a changed view back. ``Dataset.as_type(View)`` finds a lens, or a chain
of lenses, from the dataset's type to ``View``.

Example:
    >>> import dataclasses
    >>> @atdata.lens
    ... def label_only(s: ImageSample) -> LabelSample:
    ...     return LabelSample(label=s.label)
    >>> @label_only.putter
    ... def _(view: LabelSample, source: ImageSample) -> ImageSample:
    ...     return dataclasses.replace(source, label=view.label)
    >>> ds.as_type(LabelSample).head(1)
    [LabelSample(label='cat')]
    >>> label_only.put(LabelSample(label="dog"), sample).label
    'dog'
"""

from __future__ import annotations

import collections
import sys
import types
import typing
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from atdata.errors import LensNotFoundError, SchemaError
from atdata.sample import DictSample, is_packable

__all__ = ["Lens", "LensRegistry", "find_lens", "lens", "registry"]

S = TypeVar("S")
V = TypeVar("V")
W = TypeVar("W")


class Lens(Generic[S, V]):
    """A getter from ``source`` to ``view`` and an optional putter back.

    Example:
        >>> to_label = Lens(lambda s: LabelSample(label=s.label), ImageSample, LabelSample)
        >>> to_label(sample)
        LabelSample(label='cat')
    """

    def __init__(
        self,
        get: Callable[[S], V],
        source: type[S],
        view: type[V],
        name: str | None = None,
        put: Callable[[V, S], S] | None = None,
    ) -> None:
        self.get = get
        self.source = source
        self.view = view
        self.name = name or getattr(get, "__name__", "lens")
        self._put = put

    def __call__(self, sample: S) -> V:
        return self.get(sample)

    def put(self, view: V, source: S) -> S:
        """Write ``view`` back into ``source``; raises when the lens has no putter."""
        if self._put is None:
            raise SchemaError(
                f"lens {self.name} ({self.source.__name__} → {self.view.__name__}) has no putter; "
                f"add one with @{self.name}.putter"
            )
        return self._put(view, source)

    def putter(self, fn: Callable[[V, S], S]) -> Callable[[V, S], S]:
        """Decorator registering the putter ``(view, source) -> source``."""
        self._put = fn
        return fn

    def then(self, other: Lens[V, W]) -> Lens[S, W]:
        """This lens followed by ``other``; the putter composes when both have one."""
        if other.source is not self.view:
            raise SchemaError(
                f"cannot compose {self} with {other}: {self.view.__name__} is not "
                f"{other.source.__name__}"
            )
        first = self

        def get(s: S) -> W:
            return other.get(first.get(s))

        put = None
        if self._put is not None and other._put is not None:

            def put(w: W, s: S) -> S:
                return first.put(other.put(w, first.get(s)), s)

        return Lens(get, self.source, other.view, f"{self.name} >> {other.name}", put)

    def __rshift__(self, other: Lens[V, W]) -> Lens[S, W]:
        return self.then(other)

    def __repr__(self) -> str:
        return f"{self.source.__name__} → {self.view.__name__} (via {self.name})"


class LensRegistry:
    """Lenses keyed by (source type, view type); finds chains by breadth-first search.

    Example:
        >>> reg = LensRegistry()
        >>> reg.add(Lens(lambda s: LabelSample(label=s.label), ImageSample, LabelSample))
        >>> reg.find(ImageSample, LabelSample)
        ImageSample → LabelSample (via <lambda>)
    """

    def __init__(self) -> None:
        self._lenses: dict[tuple[type, type], Lens[Any, Any]] = {}

    def add(self, lens: Lens[Any, Any]) -> None:
        """Register ``lens`` (replacing one with the same source and view)."""
        self._lenses[(lens.source, lens.view)] = lens

    def from_type(self, source: type) -> list[Lens[Any, Any]]:
        """Lenses whose source is ``source``."""
        return [ln for (src, _), ln in self._lenses.items() if src is source]

    def find(self, source: type, view: type) -> Lens[Any, Any]:
        """A lens, or the shortest chain of lenses, from ``source`` to ``view``.

        Raises:
            LensNotFoundError: listing the lenses that exist from ``source``.
        """
        if source is DictSample and is_packable(view) and view is not DictSample:
            return Lens(_from_dict_getter(view), DictSample, view, f"DictSample→{view.__name__}")
        direct = self._lenses.get((source, view))
        if direct is not None:
            return direct
        previous: dict[type, Lens[Any, Any]] = {}
        queue = collections.deque([source])
        seen = {source}
        while queue:
            here = queue.popleft()
            for ln in self.from_type(here):
                if ln.view in seen:
                    continue
                previous[ln.view] = ln
                if ln.view is view:
                    chain = [ln]
                    while chain[0].source is not source:
                        chain.insert(0, previous[chain[0].source])
                    out = chain[0]
                    for nxt in chain[1:]:
                        out = out.then(nxt)
                    return out
                seen.add(ln.view)
                queue.append(ln.view)
        raise LensNotFoundError(
            source.__name__, view.__name__, [repr(ln) for ln in self.from_type(source)]
        )


def _from_dict_getter(view: type) -> Callable[[DictSample], Any]:
    def get(sample: DictSample) -> Any:
        return view.from_dict(sample, sample.__key__)  # type: ignore[attr-defined]

    return get


registry = LensRegistry()
"""The registry ``@lens`` adds to and ``Dataset.as_type`` searches."""


def find_lens(source: type, view: type) -> Lens[Any, Any]:
    """A lens from ``source`` to ``view`` in the default registry.

    Raises:
        LensNotFoundError: no lens or chain of lenses leads there.

    Example:
        >>> atdata.lens.find_lens(ImageSample, LabelOnly)
        ImageSample → LabelOnly (via image_to_label)
    """
    return registry.find(source, view)


def lens(fn: Callable[[S], V]) -> Lens[S, V]:
    """Register a function ``source -> view`` as a lens; types come from its annotations.

    Raises:
        SchemaError: when the annotations are missing.

    Example:
        >>> @atdata.packable
        ... class RGBSample:
        ...     image: atdata.NDArray
        >>> @atdata.packable
        ... class GraySample:
        ...     image: atdata.NDArray
        >>> @atdata.lens
        ... def to_gray(s: RGBSample) -> GraySample:
        ...     return GraySample(image=s.image.mean(axis=-1))
        >>> to_gray(RGBSample(image=np.ones((2, 2, 3)))).image.shape
        (2, 2)
    """
    try:
        hints = typing.get_type_hints(fn)
    except NameError:
        # Types defined inside a function (with postponed annotations) are
        # only in the defining frame's locals.
        try:
            hints = typing.get_type_hints(fn, localns=_caller_locals())
        except NameError as exc:
            raise SchemaError(
                f"lens {fn.__name__}: cannot resolve its annotations ({exc}); define the "
                "source and view types before the lens"
            ) from None
    params = [p for p in hints if p != "return"]
    if not params or "return" not in hints:
        raise SchemaError(
            f"lens {fn.__name__} needs annotations for its argument and return type, e.g. "
            f"def {fn.__name__}(s: Source) -> View"
        )
    made: Lens[S, V] = Lens(fn, hints[params[0]], hints["return"], fn.__name__)
    registry.add(made)
    return made


def _caller_locals() -> dict[str, Any]:
    """Local names of the nearest frame outside this module (the decorator's caller)."""
    frame = sys._getframe(1)
    while frame.f_back is not None and frame.f_globals.get("__name__") == __name__:
        frame = frame.f_back
    return dict(frame.f_locals)


class _CallableModule(types.ModuleType):
    """This module, callable as the ``lens`` decorator.

    Importing ``atdata.lens`` (the module) makes Python set the package
    attribute ``atdata.lens`` to it, replacing the lazily exported function;
    being callable keeps ``@atdata.lens`` working either way.
    """

    def __call__(self, fn: Callable[[S], V]) -> Lens[S, V]:
        return lens(fn)


sys.modules[__name__].__class__ = _CallableModule
