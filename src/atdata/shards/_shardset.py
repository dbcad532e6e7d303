"""``ShardSet``: the shards of a dataset, the type they are stored as, the error policy.

It is what every layer below :class:`~atdata.Dataset` takes and returns: the
manifest layer queries a ``ShardSet``, the map job reads one and writes
another, the index and the atmosphere resolve names into one. ``Dataset`` adds
the view (lenses, filters, iteration order) on top.

``ShardSet.resolve(ref)`` picks a resolver by what ``ref`` looks like, from a
registry keyed by name — ``"local"`` (``@local/name``, the SQLite index),
``"atmosphere"`` (``@handle/name``, ``at://``), ``"urls"`` (paths, patterns,
globs, folders) — whose entries are imported only when first used, so reading
a local folder never imports the AT Protocol client.

Example:
    >>> shards = ShardSet.resolve("data/shard-{000000..000009}.tar")
    >>> shards.shards[:2]
    ['data/shard-000000.tar', 'data/shard-000001.tar']
"""

from __future__ import annotations

import dataclasses
import importlib
import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from atdata._refs import ref_kind
from atdata.errors import MissingDependencyError, UnreadableURLError
from atdata.sample import DictSample
from atdata.shards.reader import ErrorHandler
from atdata.storage import LiteralURL, expand_urls, is_local, shards_under

if TYPE_CHECKING:
    from atdata.sample import Schema

__all__ = ["Resolver", "ShardSet", "register_resolver", "shards_under"]

Resolver = Callable[[str, ErrorHandler], "ShardSet"]
"""Turns a reference and an error policy into a ``ShardSet``."""


@dataclasses.dataclass(eq=False)
class ShardSet:
    """Shard URLs (patterns allowed), the type their samples are stored as, an error policy.

    Args:
        urls: a path or URL, a brace pattern, a glob, a folder, or a list of those.
        stored_type: the ``@packable`` type that decodes the samples (or ``DictSample``).
        handler: what to do with corrupt samples (see :data:`~atdata.shards.ErrorHandler`).
        literal: the URLs are final, each names one shard: no pattern expansion
            (for URLs from a listing or an event, and for names holding ``*``,
            ``[``, ``{`` or ``?`` that are not meant as patterns).
        schema: the schema recorded with the dataset (index or atmosphere), if any.

    Example:
        >>> s = ShardSet(["a.tar", "b.tar"], literal=True)
        >>> s.shards, s.stored_type.__name__
        (['a.tar', 'b.tar'], 'DictSample')
    """

    urls: str | Sequence[str]
    stored_type: type = DictSample
    handler: ErrorHandler = "raise"
    literal: bool = False
    schema: Schema | None = None
    _expanded: list[str] | None = dataclasses.field(default=None, repr=False)

    def __post_init__(self) -> None:
        if isinstance(self.urls, os.PathLike):
            self.urls = os.fspath(self.urls)
        if not self.urls:
            raise UnreadableURLError("A dataset needs at least one shard URL", url="")
        if isinstance(self.urls, LiteralURL):
            self.literal = True
        if self.literal:
            urls = [self.urls] if isinstance(self.urls, str) else self.urls
            self._expanded = [str(u) for u in urls]

    @property
    def shards(self) -> list[str]:
        """The shard URLs, expanded from patterns, globs and folders (once)."""
        if self._expanded is None:
            # plain strings: LiteralURL marks input, and does not serialise
            self._expanded = [str(u) for u in _expand(self.urls)]
        return self._expanded

    def replace(self, **changes: Any) -> ShardSet:
        """A copy with some fields changed (an expanded shard list is kept).

        Example:
            >>> ShardSet("a.tar").replace(handler="skip").handler
            'skip'
        """
        keep = self._expanded if "urls" not in changes else None
        return dataclasses.replace(self, _expanded=keep, **changes)

    def recorded_type(self) -> type:
        """The type built from the recorded schema, else ``stored_type``.

        Example:
            >>> ShardSet("a.tar").recorded_type().__name__
            'DictSample'
        """
        return self.schema.to_type() if self.schema is not None else self.stored_type

    @classmethod
    def resolve(cls, ref: str | Sequence[str], *, handler: ErrorHandler = "raise") -> ShardSet:
        """The shards a reference names, through the resolver its form selects.

        Args:
            ref: ``@local/name``, ``@handle/name[@version]``, ``at://...``, or
                shard URLs (paths, patterns, globs, folders, lists of them).
            handler: the error policy of the result.

        Raises:
            DatasetNotFoundError: ``@local/name`` is not in the index.
            MissingDependencyError: the resolver needs an extra that is not installed.

        Example:
            >>> ShardSet.resolve(["a.tar", "b.tar"]).urls
            ['a.tar', 'b.tar']
        """
        if isinstance(ref, os.PathLike):
            ref = os.fspath(ref)
        kind = ref_kind(ref) if isinstance(ref, str) else "urls"
        return _resolver(kind)(ref, handler)  # type: ignore[arg-type]


# -- the resolver registry ------------------------------------------------------------


@dataclasses.dataclass
class _Entry:
    target: str | Resolver  # "module:function", imported on first use
    extra: str | None = None  # the atdata extra that installs what it imports


def _resolve_urls(ref: str | Sequence[str], handler: ErrorHandler) -> ShardSet:
    return ShardSet(ref, handler=handler)


_RESOLVERS: dict[str, _Entry] = {
    "urls": _Entry(_resolve_urls),
    "local": _Entry("atdata.index:resolve_shard_set"),
    "atmosphere": _Entry(
        "atdata.atmosphere:resolve_shard_set",
        extra="atmosphere",
    ),
}


def register_resolver(
    kind: str, target: str | Resolver, *, extra: str | None = None, overwrite: bool = False
) -> None:
    """Make ``ShardSet.resolve`` read references of ``kind`` with ``target``.

    Args:
        kind: the resolver's name (``"local"``, ``"atmosphere"``, ``"urls"``).
        target: a ``(ref, handler) -> ShardSet`` callable, or ``"module:function"``
            imported on first use.
        extra: the ``atdata[extra]`` to suggest when importing ``target`` fails.
        overwrite: replace an existing resolver of that name.

    Raises:
        ValueError: ``kind`` is taken and ``overwrite`` is false.

    Example:
        >>> register_resolver("local", "my_index:resolve", overwrite=True)   # doctest: +SKIP
    """
    if kind in _RESOLVERS and not overwrite:
        raise ValueError(f"a resolver named {kind!r} exists; pass overwrite=True to replace it")
    _RESOLVERS[kind] = _Entry(target, extra)


def _resolver(kind: str) -> Resolver:
    entry = _RESOLVERS[kind]
    if callable(entry.target):
        return entry.target
    module_name, _, attr = entry.target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        if entry.extra is None:
            raise
        raise MissingDependencyError(
            exc.name or module_name, entry.extra, f"Reading {kind} datasets"
        ) from exc
    resolver: Resolver = getattr(module, attr)
    entry.target = resolver
    return resolver


# -- URL expansion ---------------------------------------------------------------------


def _expand(urls: str | Sequence[str]) -> list[str]:
    if isinstance(urls, LiteralURL):
        return [urls]
    if isinstance(urls, str) and _is_folder(urls):
        return shards_under(urls)
    return expand_urls(urls)


def _is_folder(path: str) -> bool:
    if path.endswith("/"):
        return True
    return is_local(path) and os.path.isdir(path.removeprefix("file://"))
