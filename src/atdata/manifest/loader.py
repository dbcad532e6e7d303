"""Loading the manifests of many shards at once, from local disk or object storage.

Manifest JSONs are small and numerous, so they are fetched concurrently (a
dataset of 1,000 shards on S3 does not pay 1,000 sequential round trips). A
shard whose JSON does not exist has no manifest: queries skip it, ``len()``
refuses to guess.

Example:
    >>> from atdata.manifest import load_manifests
    >>> manifests = load_manifests("data/shard-{000000..000009}.tar")   # or s3://...
    >>> sum(m.num_samples for m in manifests)
    40
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal, TypeVar

from atdata._semver import precedence
from atdata.errors import ManifestError, UnreadableURLError
from atdata.manifest._format import ShardManifest, json_url
from atdata.manifest._header import BUILD_HINT
from atdata.sample import Schema
from atdata.storage import expand_urls, is_local, store_for

__all__ = ["count_samples", "dataset_schema", "load_manifests"]

MAX_CONCURRENCY = 32
"""Most manifest files fetched at once from an object store."""
LOCAL_THREADS = 4
"""Threads reading manifests from local (possibly network-mounted) paths."""
LOCAL_CHUNK = 16
"""Fewest local manifests handed to a thread at once."""

A = TypeVar("A")
B = TypeVar("B")


def concurrent_map(
    fn: Callable[[A], B], items: Sequence[A], *, remote: bool, local_threads: bool = True
) -> list[B]:
    """``[fn(x) for x in items]`` in order, overlapping the waits on storage.

    Remote items run one per thread, up to :data:`MAX_CONCURRENCY` at once:
    round trips dominate. Local items (which may still sit on a network file
    system) run in chunks on up to :data:`LOCAL_THREADS` threads, so thread
    hand-offs stay cheap next to the work; ``local_threads=False`` keeps them
    on the calling thread.
    """
    items = list(items)
    if remote:
        workers, chunk = min(MAX_CONCURRENCY, len(items)), 1
    elif local_threads and len(items) >= 2 * LOCAL_CHUNK:
        workers = min(LOCAL_THREADS, len(items) // LOCAL_CHUNK)
        chunk = -(-len(items) // (workers * 2))
    else:
        workers, chunk = 1, len(items)
    if workers <= 1:
        return [fn(x) for x in items]
    chunks = [items[i : i + chunk] for i in range(0, len(items), chunk)]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="atdata-manifest") as pool:
        done = pool.map(lambda part: [fn(x) for x in part], chunks)
        return [result for part in done for result in part]


def _shard_list(shards: Any) -> list[str]:
    if isinstance(shards, str | os.PathLike):
        return expand_urls(os.fspath(shards))
    if hasattr(shards, "shards"):  # a Dataset
        return list(shards.shards)
    return expand_urls(list(shards))


def _read_one(shard: str) -> ShardManifest | None:
    store, path = store_for(json_url(shard))
    try:
        data = store.read(path)
    except UnreadableURLError:
        return None
    return ShardManifest.parse(shard, data)


def missing_manifest(shard: str) -> ManifestError:
    """The error for a shard without a manifest, with the command that builds one."""
    return ManifestError(
        f"shard {shard} has no manifest ({json_url(shard)} not found). "
        f"Build it with: {BUILD_HINT.replace('URL', shard)}",
        url=shard,
    )


def load_all(shards: Sequence[str]) -> list[ShardManifest | None]:
    """Each shard's manifest, or None where a shard has none; concurrently, in order."""
    remote = any(not is_local(s) for s in shards)
    return concurrent_map(_read_one, list(shards), remote=remote)


def load_manifests(
    shards: str | Sequence[str] | Any, *, missing: Literal["skip", "raise"] = "skip"
) -> list[ShardManifest]:
    """The manifests of a dataset's shards, loaded concurrently, in shard order.

    Args:
        shards: a ``Dataset``, shard URLs, or a brace pattern / glob.
        missing: ``"skip"`` shards without a manifest (as queries do) or
            ``"raise"`` a :class:`~atdata.errors.ManifestError` naming the first.

    Raises:
        ManifestError: a manifest is unreadable, or missing with ``missing="raise"``.

    Example:
        >>> for m in load_manifests("data/shard-00000[01].tar"):
        ...     print(m.shard, m.num_samples, m.aggregates["label"]["counts"])
        data/shard-000000.tar 4 {'bird': 1, 'cat': 1, 'dog': 1, 'fish': 1}
        data/shard-000001.tar 4 {'bird': 1, 'cat': 1, 'dog': 1, 'fish': 1}
    """
    return _present(_shard_list(shards), missing)


def _present(urls: list[str], missing: Literal["skip", "raise"]) -> list[ShardManifest]:
    out = []
    for url, manifest in zip(urls, load_all(urls), strict=True):
        if manifest is None:
            if missing == "raise":
                raise missing_manifest(url)
            continue
        out.append(manifest)
    return out


def count_samples(shards: Sequence[str]) -> int:
    """The number of samples in these shards (URLs, already expanded), from their manifests.

    Raises:
        ManifestError: a shard has no manifest (the message says how to build one).

    Example:
        >>> atdata.manifest.count_samples(ds.shards)
        40
    """
    return sum(m.num_samples for m in _present(list(shards), "raise"))


def dataset_schema(shards: Sequence[str]) -> Schema:
    """The sample schema recorded in the shards' manifests.

    When shards were written with different versions of a type, the newest
    schema wins, and fields not present in every shard become optional (so
    ``schema.to_type()`` reads old and new shards alike).

    Raises:
        ManifestError: a shard has no manifest, or none of them records a schema.

    Example:
        >>> atdata.manifest.dataset_schema(ds.shards).field_names
        ['image', 'label', 'confidence']
    """
    manifests = _present(list(shards), "raise")
    schemas = [m.schema for m in manifests if m.header.get("schema")]
    if not schemas:
        raise ManifestError(
            f"no schema recorded in the manifests of {len(manifests)} shards; "
            f"rebuild them with `{BUILD_HINT}`"
        )
    return merge_schemas(schemas)


def merge_schemas(schemas: Sequence[Schema]) -> Schema:
    """One schema for shards written with several versions of a type.

    See :func:`dataset_schema` for the rules.
    """
    unique = list(dict.fromkeys(schemas))
    if len(unique) == 1:
        return unique[0]
    newest = max(enumerate(unique), key=lambda p: (precedence(p[1].version), p[0]))[1]
    everywhere = set.intersection(*(set(s.field_names) for s in schemas))
    fields = {f.name: f for f in newest.fields}
    for schema in unique:
        for f in schema.fields:
            fields.setdefault(f.name, f)
    merged = tuple(
        f
        if f.name in everywhere or f.has_default
        else dataclasses.replace(f, type=dataclasses.replace(f.type, optional=True))
        for f in fields.values()
    )
    return dataclasses.replace(newest, fields=merged)
