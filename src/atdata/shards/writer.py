"""``ShardWriter``: samples in, atomically committed tar shards (and manifests) out."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Mapping
from typing import IO, Any

from atdata import observability as obs
from atdata.errors import SchemaError, ShardError
from atdata.sample import DictSample, PackableSample, Schema, WdsRecord, encode_mapping
from atdata.shards._tar import BLOCK, end_of_archive, member_header, padding
from atdata.storage import Store, is_local, store_for, temporary_spool

__all__ = ["ShardWriter", "check_key"]

_MAX_KEY_BYTES = 100 - len(".msgpack")


def check_key(key: Any) -> str:
    """Validate a sample key by WebDataset's rules; return it.

    Raises:
        ShardError: for an empty key, a dot in it, or one too long for a tar name.
    """
    if not isinstance(key, str) or not key:
        raise ShardError(f"sample key must be a non-empty string, got {key!r}")
    if "." in key.rpartition("/")[2] or "\x00" in key:
        raise ShardError(
            f"sample key {key!r} contains a dot; WebDataset keys end at the first dot, "
            "so use '_' or '-' instead"
        )
    if len(key.encode("utf-8")) > _MAX_KEY_BYTES:
        raise ShardError(f"sample key {key!r} is longer than {_MAX_KEY_BYTES} bytes; shorten it")
    return key


class _OpenShard:
    """The shard being written: a temporary file, its hash, and its manifest builder."""

    def __init__(self, url: str, builder: Any) -> None:
        self.url = url
        self.store, self.path = store_for(url)
        if is_local(url):
            parent = os.path.dirname(self.path) or "."
            os.makedirs(parent, exist_ok=True)
            self.tmp = os.path.join(
                parent, f".{os.path.basename(self.path)}.tmp-{os.getpid()}-{time.monotonic_ns()}"
            )
            self.file: IO[bytes] = open(self.tmp, "wb", buffering=1 << 20)  # noqa: SIM115
        else:
            fd, self.tmp = temporary_spool()
            self.file = os.fdopen(fd, "wb", buffering=1 << 20)
        self.hash = hashlib.sha256()
        self.position = 0
        self.count = 0
        self.builder = builder
        self.started = time.perf_counter()

    def append(self, chunk: bytes) -> None:
        self.file.write(chunk)
        self.hash.update(chunk)
        self.position += len(chunk)

    def commit(self) -> None:
        self.append(end_of_archive(self.position))
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        try:
            self.store.put(self.tmp, self.path)
        finally:
            _remove_quietly(self.tmp)
        if self.builder is not None:
            self.builder.commit(size_bytes=self.position, checksum_sha256=self.hash.hexdigest())

    def abort(self) -> None:
        self.file.close()
        _remove_quietly(self.tmp)


def _remove_quietly(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


class ShardWriter:
    """Write samples into numbered tar shards, each committed atomically.

    A shard is written under a temporary name and renamed (on object stores,
    put whole) only when it is complete, then its manifest is written (parquet,
    then JSON last). A process killed mid-shard leaves no file at a shard's
    final name; leaving the ``with`` block on an exception discards the shard in
    progress and keeps the committed ones.

    Args:
        pattern: shard URL with a ``%d``-style field, e.g. ``"out/shard-%06d.tar"``
            or ``"s3://bucket/train-%06d.tar"``.
        maxcount: most samples per shard.
        maxsize: most bytes per shard (a shard always holds at least one sample).
        manifest: write ``.manifest.parquet`` and ``.manifest.json`` beside each shard.
        start_shard: number of the first shard.
        key_prefix: prefix of the keys given to samples that carry none; keys are
            ``f"{key_prefix}{index:08d}"``, so equal input gives equal keys.
        provenance: ``source_job_id``, ``parent_shards``, ``pipeline_version``...
            recorded in every manifest.

    Example:
        >>> with atdata.ShardWriter("out/shard-%06d.tar", maxcount=1000) as sink:
        ...     for sample in samples:
        ...         sink.write(sample)          # or sink.write(sample.as_wds)
        >>> sink.shards
        ['out/shard-000000.tar', ...]
    """

    def __init__(
        self,
        pattern: str,
        maxcount: int = 100_000,
        maxsize: float = 3e9,
        *,
        manifest: bool = True,
        start_shard: int = 0,
        key_prefix: str = "sample_",
        provenance: Mapping[str, Any] | None = None,
    ) -> None:
        if maxcount < 1 or maxsize < 1:
            raise ValueError("maxcount and maxsize must be positive")
        if "%" not in pattern and not pattern.endswith(".tar"):
            raise ShardError(
                f"shard pattern {pattern!r} needs a number field such as %06d "
                "(e.g. 'out/shard-%06d.tar')"
            )
        self.pattern = pattern
        self.maxcount = maxcount
        self.maxsize = maxsize
        self.manifest = manifest
        self.key_prefix = key_prefix
        self.provenance = dict(provenance or {})
        self.shards: list[str] = []
        self.count = 0
        self._next_shard = start_shard
        self._current: _OpenShard | None = None
        self._keys: set[str] = set()
        self._schema: Schema | None = None

    # -- writing ------------------------------------------------------------------

    def write(self, sample: Any) -> str:
        """Append one sample; returns its key.

        Accepts a ``@packable`` instance, its ``as_wds`` record, a WebDataset
        dict ``{"__key__": ..., "msgpack": bytes}``, a ``DictSample``, or a plain
        dict of field values (with an optional ``"__key__"``).
        """
        key, packed, fields = self._encode(sample)
        if key is None:
            key = f"{self.key_prefix}{self.count:08d}"
        else:
            check_key(key)
        if key in self._keys:
            raise ShardError(
                f"duplicate sample key {key!r}: keys must be unique within a dataset"
            )
        self._keys.add(key)
        name = key.encode("utf-8") + b".msgpack"
        span = BLOCK + len(packed) + (-len(packed) % BLOCK)
        shard = self._current
        if shard is not None and (
            shard.count >= self.maxcount or shard.position + span > self.maxsize
        ):
            self._commit()
            shard = None
        if shard is None:
            shard = self._current = self._open()
        offset = shard.position
        shard.append(member_header(name, len(packed)))
        shard.append(packed)
        shard.append(padding(len(packed)))
        shard.count += 1
        self.count += 1
        if shard.builder is not None:
            shard.builder.add(key, offset, span, fields, packed)
        return key

    def _encode(self, sample: Any) -> tuple[str | None, bytes, Any]:
        """(key, msgpack bytes, object the manifest can read fields from)."""
        if isinstance(sample, PackableSample):
            if self._schema is None:
                self._schema = type(sample).__schema__
            return sample.__dict__.get("__key__"), sample.packed, sample
        if isinstance(sample, WdsRecord):
            if self._schema is None and isinstance(sample.sample, PackableSample):
                self._schema = type(sample.sample).__schema__
            return sample["__key__"], sample["msgpack"], sample.sample
        if isinstance(sample, DictSample):
            return sample.__key__, sample.packed, sample
        if isinstance(sample, Mapping):
            if "msgpack" in sample:
                packed = sample["msgpack"]
                if not isinstance(packed, (bytes, bytearray, memoryview)):
                    raise SchemaError("a WebDataset record's 'msgpack' entry must be bytes")
                return sample.get("__key__"), bytes(packed), None
            fields = {k: v for k, v in sample.items() if k != "__key__"}
            return sample.get("__key__"), encode_mapping(fields), fields
        raise SchemaError(
            f"cannot write a {type(sample).__name__}: pass a @packable sample, its "
            ".as_wds record, or a dict of field values"
        )

    # -- shard lifecycle -----------------------------------------------------------

    def _open(self) -> _OpenShard:
        if "%" in self.pattern:
            url = self.pattern % self._next_shard
        elif not self.shards:
            url = self.pattern
        else:
            raise ShardError(
                f"shard {self.pattern!r} is full ({self.maxcount} samples or "
                f"{self.maxsize:.0f} bytes); use a pattern with %06d to write several shards"
            )
        self._next_shard += 1
        builder = None
        if self.manifest:
            from atdata.manifest.builder import ManifestBuilder

            builder = ManifestBuilder(url, schema=self._schema, provenance=self.provenance)
        return _OpenShard(url, builder)

    def _commit(self) -> None:
        shard, self._current = self._current, None
        if shard is None:
            return
        try:
            shard.commit()
        except BaseException:
            shard.abort()
            raise
        self.shards.append(shard.url)
        duration = time.perf_counter() - shard.started
        obs.metrics.shards_written.inc()
        obs.metrics.samples_written.inc(shard.count)
        obs.metrics.shard_write_time.observe(duration)
        obs.log_event(
            "shard committed",
            shard=shard.url,
            samples=shard.count,
            size_bytes=shard.position,
            duration_s=round(duration, 6),
        )

    def close(self) -> list[str]:
        """Commit the shard in progress; returns the URLs of all committed shards."""
        self._commit()
        return self.shards

    def abort(self) -> None:
        """Discard the shard in progress (committed shards stay)."""
        shard, self._current = self._current, None
        if shard is not None:
            shard.abort()

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    @property
    def store(self) -> Store:
        """The store shards are written to."""
        return store_for(self.pattern)[0]
