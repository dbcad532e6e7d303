"""What the user typed -> shard URLs.

Every command takes the same kinds of target: a local shard, folder, brace
pattern or glob; an ``s3://``/``r2://``/``http(s)://`` URL or pattern (a URL
ending in ``/`` is a folder); ``@local/name`` from the local index; or a dataset
published on the AT Protocol network, ``@handle/name[@version]`` or an ``at://``
URI (resolved by ``atdata.atmosphere.resolve``, imported only for those).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from atdata._refs import is_published_ref
from atdata.errors import UnreadableURLError, closest

if TYPE_CHECKING:
    from atdata.atmosphere import ResolvedDataset
    from atdata.index import DatasetRecord

__all__ = ["Target", "is_dataset_ref", "is_published_ref", "resolve"]

_PATTERN_CHARS = "{*?["
_MANIFEST_SUFFIXES = (".manifest.json", ".manifest.parquet")


@dataclass(frozen=True)
class Target:
    """A resolved dataset argument.

    Attributes:
        text: what the user typed.
        shards: the shard URLs, in order.
        urls: what to store when registering it: local paths made absolute,
            patterns kept as patterns, a folder as its list of shards.
        record: the index entry, for ``@local/name``.
        schema: the published schema (a JSON dict, as in the index), for
            ``@handle/name`` and ``at://``: known without reading the shards.
        published: the resolved entry, for ``@handle/name`` and ``at://``.
    """

    text: str
    shards: list[str]
    urls: list[str] = field(default_factory=list)
    record: DatasetRecord | None = None
    schema: dict[str, Any] | None = None
    published: ResolvedDataset | None = None

    @property
    def is_local(self) -> bool:
        """True when every shard is on local disk."""
        return all("://" not in s or s.startswith("file://") for s in self.shards)


def is_dataset_ref(text: str) -> bool:
    """True when ``text`` names data (a path, URL, pattern, ``@local/`` or a published
    ``@handle/name``), not a schema."""
    return (
        text.startswith("@")
        or "://" in text
        or "/" in text
        or os.sep in text
        or any(ch in text for ch in _PATTERN_CHARS)
        or text.endswith(".tar")
        or os.path.exists(text)
    )


def resolve(text: str) -> Target:
    """Resolve a dataset argument to its shards.

    Raises:
        UnreadableURLError: nothing is there (the message suggests close names).
        DatasetNotFoundError: an unknown ``@local/`` name.
        AtmosphereError: a published dataset cannot be resolved (e.g.
            ``RecordNotFoundError`` for an unknown handle or name).
    """
    text = text.strip()
    if is_published_ref(text):
        return _resolve_published(text)
    if not text:
        raise UnreadableURLError(
            "Empty dataset argument. Give a path, a pattern such as "
            "'data/shard-{000000..000099}.tar', an s3:// URL or @local/NAME.",
            url=text,
        )
    if text.startswith("@"):
        return _resolve_local_name(text)
    if "://" in text and not text.startswith("file://"):
        return _resolve_remote(text)
    return _resolve_path(text)


def _resolve_published(text: str) -> Target:
    from atdata.atmosphere import resolve as resolve_published

    published = resolve_published(text)
    # The URLs are final (PDS blob URLs carry a query string that must not be globbed).
    urls = list(published.urls)
    return Target(text, urls, urls, schema=published.schema.to_json(), published=published)


def _resolve_local_name(text: str) -> Target:
    if not text.startswith("@local/"):
        raise UnreadableURLError(
            f"Unknown dataset namespace in {text!r}: give @local/NAME (the local index), "
            "@HANDLE/NAME or an at:// URI (published on the AT Protocol network). "
            "List registered datasets with `atdata ls`.",
            url=text,
        )
    from atdata.index import Catalog
    from atdata.storage import expand_urls

    with Catalog() as catalog:
        record = catalog.get_dataset(text)
    return Target(text, expand_urls(record.urls), list(record.urls), record)


def _resolve_remote(text: str) -> Target:
    from atdata.storage import expand_urls, shards_under

    if any(ch in text for ch in _PATTERN_CHARS):
        shards = expand_urls(text)
        return Target(text, shards, [text])
    if text.endswith(_MANIFEST_SUFFIXES):
        shard = _shard_of(text)
        return Target(text, [shard], [shard])
    if text.endswith(".tar"):
        return Target(text, [text], [text])
    # Anything else is a folder (prefix) of shards.
    shards = shards_under(text)
    return Target(text, shards, shards)


def _resolve_path(text: str) -> Target:
    from atdata.storage import expand_urls, shards_under

    path = os.path.expanduser(text.removeprefix("file://"))
    if any(ch in path for ch in _PATTERN_CHARS):
        shards = expand_urls(path)
        missing = [s for s in shards if not os.path.exists(s)]
        folder = os.path.dirname(path)
        if missing and folder and not any(ch in folder for ch in _PATTERN_CHARS):
            if not os.path.isdir(folder):
                raise UnreadableURLError(
                    _missing_path_message(os.path.dirname(text), folder), url=text
                )
            if len(missing) == len(shards):
                present = sorted(n for n in os.listdir(folder) if n.endswith(".tar"))
                some = ", ".join(present[:3]) + (", ..." if len(present) > 3 else "")
                raise UnreadableURLError(
                    f"None of the {len(shards)} shards in {text} exist. "
                    + (
                        f"The folder holds {len(present)} shards ({some}); fix the pattern."
                        if present
                        else "The folder holds no .tar shards."
                    ),
                    url=text,
                )
        if missing:
            some = ", ".join(missing[:3]) + (", ..." if len(missing) > 3 else "")
            raise UnreadableURLError(
                f"{len(missing)} of the {len(shards)} shards in {text} do not exist ({some}). "
                "Check the range in the pattern, or give the folder instead.",
                url=text,
            )
        return Target(text, shards, [os.path.abspath(path)])
    if os.path.isdir(path):
        shards = shards_under(path)  # the library's listing of a folder
        return Target(text, shards, [os.path.abspath(s) for s in shards])
    if path.endswith(_MANIFEST_SUFFIXES):
        path = _shard_of(path)
    if os.path.isfile(path):
        return Target(text, [path], [os.path.abspath(path)])
    raise UnreadableURLError(_missing_path_message(text, path), url=text)


def _shard_of(manifest_url: str) -> str:
    for suffix in _MANIFEST_SUFFIXES:
        if manifest_url.endswith(suffix):
            return manifest_url[: -len(suffix)] + ".tar"
    return manifest_url


def _missing_path_message(text: str, path: str) -> str:
    message = f"No such file or folder: {text}."
    parent = os.path.dirname(path) or "."
    hints: list[str] = []
    if os.path.isdir(parent):
        names = [n for n in os.listdir(parent) if not n.startswith(".")]
        hints = [
            os.path.join(os.path.dirname(text), n) for n in closest(os.path.basename(path), names)
        ]
    if "/" not in text and _is_registered(text):
        hints.insert(0, f"@local/{text}")
    if hints:
        message += " Did you mean " + " or ".join(repr(h) for h in hints[:3]) + "?"
    else:
        message += (
            " Give a shard, a folder, a pattern such as 'data/shard-{000000..000099}.tar', "
            "an s3:// URL or @local/NAME."
        )
    return message


def _is_registered(name: str) -> bool:
    from atdata.errors import AtdataError
    from atdata.index import Catalog

    try:
        with Catalog() as catalog:
            return name in catalog
    except AtdataError:
        return False
