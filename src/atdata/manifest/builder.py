"""Writing manifests: ``ManifestBuilder`` (fed by ``ShardWriter``) and ``build`` for old shards.

``ShardWriter(..., manifest=True)`` creates one :class:`ManifestBuilder` per
shard, calls :meth:`~ManifestBuilder.add` for every sample it writes and
:meth:`~ManifestBuilder.commit` once the tar is in place. ``add`` only appends
to Python lists; Arrow arrays, aggregates and files are built at commit.

Example:
    >>> import atdata
    >>> atdata.manifest.build("data/shard-{000000..000009}.tar")   # all have manifests
    []
    >>> atdata.manifest.build("data/shard-{000000..000009}.tar", overwrite=True)
    ['data/shard-000000.tar', ...]
"""

from __future__ import annotations

import datetime as dt
import hashlib
import operator
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import IO, Any

import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from atdata import observability as obs
from atdata._interrupt import Interruptible
from atdata._progress import Progress
from atdata._version import __version__
from atdata.errors import ManifestError, ShardCorruptError, ShardError
from atdata.manifest import _aggregates
from atdata.manifest._fields import Column, columns_of, to_arrow
from atdata.manifest._format import (
    FORMAT_VERSION,
    KEY,
    OFFSET,
    SIZE,
    dumps,
    json_url,
    parquet_url,
    shard_id,
)
from atdata.sample import InferredSchema, Schema, SchemaInference, schema_of
from atdata.storage import expand_urls, store_for

__all__ = ["ManifestBuilder", "build"]

_RAW = msgspec.msgpack.Decoder()
# values no manifest column holds (arrays, bytes, dicts): an untyped shard's rows drop them
_NOT_INDEXABLE = (bytes, bytearray, memoryview, msgspec.msgpack.Ext, np.ndarray, Mapping)


class ManifestBuilder:
    """Collects one shard's manifest rows while it is written; writes both files at commit.

    Args:
        url: the shard's URL (the manifest files go beside it).
        schema: the sample schema; None infers it from the samples (see
            :class:`~atdata.sample.SchemaInference`: str/bool fields become
            categorical, int/float/datetime numeric, list[str] sets).
        provenance: ``source_job_id``, ``parent_shards``, ``pipeline_version``,
            ``created_at`` (default: now) and any other JSON-able facts.

    Example:
        >>> builder = ManifestBuilder("out/shard-000000.tar", schema=None, provenance={})
        >>> builder.add("a", 0, 1024, {"label": "cat", "score": 0.5}, b"")
        >>> builder.commit(size_bytes=10240, checksum_sha256="0" * 64)["num_samples"]
        1
    """

    def __init__(
        self, url: str, *, schema: Schema | None = None, provenance: Mapping[str, Any] | None = None
    ) -> None:
        self.url = url
        self.schema = schema
        self.provenance = dict(provenance or {})
        self.header: dict[str, Any] | None = None
        self._keys: list[str] = []
        self._offsets: list[int] = []
        self._sizes: list[int] = []
        self._columns: list[Column] | None = None
        self._names: tuple[str, ...] = ()
        self._pick: Callable[[Any], tuple[Any, ...]] = lambda values: ()
        self._rows: list[tuple[Any, ...]] = []
        self._values: dict[str, list[Any]] | None = None
        # untyped samples: their schema is inferred, their indexable values kept per row
        self._inference = SchemaInference() if schema is None else None
        self._loose_rows: list[dict[str, Any]] = []
        self.inferred: InferredSchema | None = None
        if schema is not None:
            self._use_columns(columns_of(schema))

    def _use_columns(self, columns: list[Column]) -> None:
        self._columns = columns
        self._names = tuple(c.name for c in columns)
        if len(self._names) > 1:
            self._pick = operator.itemgetter(*self._names)  # one C call per sample
        elif self._names:
            only = self._names[0]
            self._pick = lambda values: (values[only],)

    def _pick_loosely(self, values: Any) -> tuple[Any, ...]:
        """The manifest fields of a sample that lacks some (they read as None)."""
        get = values.get
        return tuple(get(name) for name in self._names)

    def _columns_values(self) -> dict[str, list[Any]]:
        """The collected rows as one list per column (built once, at commit)."""
        if self._values is None:
            transposed = zip(*self._rows, strict=True) if self._rows else [[]] * len(self._names)
            self._values = {n: list(col) for n, col in zip(self._names, transposed, strict=True)}
        return self._values

    @property
    def num_samples(self) -> int:
        """Samples added so far.

        Example:
            >>> builder = ManifestBuilder("out/shard-000000.tar")
            >>> builder.add("a", 0, 1024, {"label": "cat"}, b"")
            >>> builder.num_samples
            1
        """
        return len(self._keys)

    def add(self, key: str, offset: int, span: int, fields: Any, packed: bytes) -> None:
        """Record one sample.

        Args:
            key: its key.
            offset: byte offset of its tar header in the shard.
            span: bytes of its tar member, header and padding included.
            fields: the sample (a ``@packable`` instance, a ``DictSample`` or a
                dict of field values), or None to decode ``packed``.
            packed: its msgpack bytes (decoded only when ``fields`` is None).

        Example:
            >>> builder = ManifestBuilder("out/shard-000000.tar", schema=ImageSample.__schema__)
            >>> builder.add("sample_0001", 0, 1024, sample, b"")
            >>> builder.add("sample_0002", 1024, 1024, None, sample.packed)   # decoded
            >>> builder.num_samples
            2
        """
        self._keys.append(key)
        self._offsets.append(offset)
        self._sizes.append(span)
        if fields is None:
            values = _RAW.decode(packed)
        elif type(fields) is dict or isinstance(fields, Mapping):
            values = fields  # a dict of values or a DictSample
        else:
            values = fields.__dict__  # packable samples keep their fields there
        if self._inference is not None:
            self._inference.observe(values)
            self._loose_rows.append(
                {k: v for k, v in values.items() if not isinstance(v, _NOT_INDEXABLE)}
            )
            return
        try:
            self._rows.append(self._pick(values))
        except KeyError:
            self._rows.append(self._pick_loosely(values))

    def _settle_inferred(self) -> list[Column]:
        """The schema of untyped samples, from all of them; their manifest columns."""
        assert self._inference is not None
        self.inferred = self._inference.result()
        self.schema = self.inferred.schema
        columns = columns_of(self.schema)
        rows = self._loose_rows
        self._values = {c.name: [row.get(c.name) for row in rows] for c in columns}
        return columns

    def commit(self, *, size_bytes: int, checksum_sha256: str) -> dict[str, Any]:
        """Write ``<shard>.manifest.parquet``, then ``<shard>.manifest.json`` last.

        Args:
            size_bytes: bytes of the committed tar.
            checksum_sha256: its SHA-256, hex.

        Returns:
            The manifest JSON written, as a dict.

        Example:
            >>> import os
            >>> os.makedirs("out", exist_ok=True)
            >>> builder = ManifestBuilder("out/shard-000000.tar")
            >>> builder.add("a", 0, 1024, {"label": "cat", "score": 0.5}, b"")
            >>> header = builder.commit(size_bytes=1536, checksum_sha256="0" * 64)
            >>> header["num_samples"], sorted(os.listdir("out"))
            (1, ['shard-000000.manifest.json', 'shard-000000.manifest.parquet'])
        """
        with obs.trace("manifest_commit", shard=self.url, samples=self.num_samples):
            if self._inference is not None:
                columns = self._settle_inferred()
            else:
                columns = list(self._columns or [])
            arrays: dict[str, pa.Array] = {
                KEY: pa.array(self._keys, pa.string()),
                OFFSET: pa.array(self._offsets, pa.int64()),
                SIZE: pa.array(self._sizes, pa.int64()),
            }
            aggregates: dict[str, Any] = {}
            time_bounds: dict[str, Any] = {}
            for column in columns:
                values = self._columns_values()[column.name]
                array = to_arrow(column, values)
                arrays[column.name] = array
                naive = False
                if column.value_type == "datetime":
                    first = next((v for v in values if v is not None), None)
                    naive = isinstance(first, str) or (
                        isinstance(first, dt.datetime) and first.tzinfo is None
                    )
                agg = _aggregates.compute(column, array, naive_times=naive)
                aggregates[column.name] = agg
                if column.value_type == "datetime" and column.kind == "numeric":
                    time_bounds[column.name] = {"min": agg.get("min"), "max": agg.get("max")}
            table = pa.table(arrays)
            sink = pa.BufferOutputStream()
            # Keys, offsets and sizes are unique per row: dictionary pages only slow them down.
            dictionary = [f"{c.name}.list.element" if c.kind == "set" else c.name for c in columns]
            # Page checksums: a flipped bit in the rows is an error on read, never a wrong
            # value (without them, about half of single-bit flips decode silently).
            pq.write_table(
                table, sink, use_dictionary=dictionary or False, write_page_checksum=True
            )
            parquet_bytes = sink.getvalue().to_pybytes()
            header = self._header(size_bytes, checksum_sha256, aggregates, time_bounds)
            header["parquet"] = {
                "file": parquet_url(self.url).rsplit("/", 1)[-1],
                "size_bytes": len(parquet_bytes),
            }
            store, _ = store_for(self.url)
            # The JSON goes last: until it exists the shard is invisible to queries.
            store.write(store_for(parquet_url(self.url))[1], parquet_bytes)
            store.write(store_for(json_url(self.url))[1], dumps(header))
        self.header = header
        return header

    def _header(
        self,
        size_bytes: int,
        checksum: str,
        aggregates: dict[str, Any],
        time_bounds: dict[str, Any],
    ) -> dict[str, Any]:
        provenance: dict[str, Any] = {
            "created_at": dt.datetime.now(dt.UTC).isoformat(),
            "source_job_id": None,
            "parent_shards": [],
            "pipeline_version": None,
        }
        provenance.update(self.provenance)
        parents = provenance.get("parent_shards")
        if isinstance(parents, str):
            provenance["parent_shards"] = [parents]
        elif parents is not None:
            provenance["parent_shards"] = list(parents)
        assert self.schema is not None  # given, or inferred by now
        schema = self.inferred.to_json() if self.inferred is not None else self.schema.to_json()
        return {
            "format_version": FORMAT_VERSION,
            "shard_id": shard_id(self.url),
            "shard": self.url.rstrip("/").rsplit("/", 1)[-1],
            "schema": schema,
            "provenance": provenance,
            "num_samples": len(self._keys),
            "size_bytes": int(size_bytes),
            "checksum_sha256": checksum,
            "keys": {
                "min": min(self._keys) if self._keys else None,
                "max": max(self._keys) if self._keys else None,
            },
            "time_bounds": time_bounds,
            "aggregates": aggregates,
            "created_by": f"atdata {__version__}",
        }


# -- manifests for shards that have none --------------------------------------------------


class _HashingReader:
    """A read-only stream wrapper that hashes and counts every byte read."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream = stream
        self.hash = hashlib.sha256()
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        data = self.stream.read(n)
        self.hash.update(data)
        self.size += len(data)
        return data

    def drain(self) -> None:
        while self.read(8 << 20):
            pass


def _build_one(
    url: str, sample_type: type | None, provenance: Mapping[str, Any]
) -> ManifestBuilder:
    from atdata.shards.reader import decode_raw, iter_raw

    schema = schema_of(sample_type) if sample_type is not None else None
    decode: Callable[[memoryview, str], Any]
    if sample_type is not None:
        decode = sample_type.from_bytes  # type: ignore[attr-defined]
    else:
        decode = lambda data, key: _RAW.decode(data)  # noqa: E731
    builder = ManifestBuilder(url, schema=schema, provenance=provenance)
    store, path = store_for(url)
    with store.open(path) as raw:
        stream = _HashingReader(raw)
        try:
            for sample in iter_raw(url, stream=stream):  # type: ignore[arg-type]
                builder.add(
                    sample.key, sample.offset, sample.span, decode_raw(decode, sample, url), b""
                )
        except ShardCorruptError:
            raise
        except ShardError as exc:  # a member that is not a sample
            raise ManifestError(
                f"{exc}; manifests can only be built for atdata shards", url=url
            ) from None
        stream.drain()
    builder.commit(size_bytes=stream.size, checksum_sha256=stream.hash.hexdigest())
    return builder


def _record_one_schema(builders: Sequence[ManifestBuilder]) -> None:
    """Give every shard built from untyped samples the schema inferred from all of them.

    Each shard's manifest was written with what its own samples showed; the
    dataset's schema (a field some shards lack is optional, ints in one shard
    and floats in another are floats) replaces it in the JSON headers where it
    differs. The rows and aggregates stay those of the shard.
    """
    inferences = [b._inference for b in builders if b._inference is not None]
    if len(inferences) < 2:
        return
    merged = SchemaInference().update(inferences).result()
    recorded = merged.to_json()
    for builder in builders:
        if builder.header is None or builder.header["schema"] == recorded:
            continue
        builder.inferred, builder.schema = merged, merged.schema
        builder.header["schema"] = recorded
        store, path = store_for(json_url(builder.url))
        store.write(path, dumps(builder.header))


def build(
    urls: str | Sequence[str],
    sample_type: type | None = None,
    *,
    overwrite: bool = False,
    provenance: Mapping[str, Any] | None = None,
    max_workers: int = 4,
    progress: bool | None = None,
) -> list[str]:
    """Write manifests for existing shards that lack one (each shard is read once).

    Ctrl-C lets the shards being read finish, then says in one line how many
    manifests were built; building again skips the shards that have one.

    Args:
        urls: shard URLs, brace patterns or globs.
        sample_type: the ``@packable`` type the shards hold; None infers the
            schema from the samples of all the shards built (see
            :class:`~atdata.sample.SchemaInference`) and records it in each manifest.
        overwrite: rebuild manifests that already exist too.
        provenance: recorded in each manifest (``source_job_id``...).
        max_workers: shards processed at once.
        progress: show a progress bar (shards, samples) on stderr; None: only
            when stderr is a terminal.

    Returns:
        The shard URLs whose manifests were written, in order.

    Raises:
        ShardCorruptError: a shard does not parse.
        SchemaMismatchError: samples do not fit ``sample_type``.

    Example:
        >>> atdata.manifest.build("data/shard-00000[01].tar", ImageSample, overwrite=True)
        ['data/shard-000000.tar', 'data/shard-000001.tar']
    """
    shards = expand_urls(urls)
    todo = []
    for url in shards:
        store, path = store_for(json_url(url))
        if overwrite or not store.exists(path):
            todo.append(url)
    prov = {"built_by": "atdata.manifest.build", **(provenance or {})}
    if not todo:
        return []
    workers = max(1, min(max_workers, len(todo)))
    builders = []
    built: list[str] = []  # as each manifest lands, in the pool's threads

    def build_one(url: str) -> ManifestBuilder:
        builder = _build_one(url, sample_type, prov)
        built.append(url)
        return builder

    with (
        Interruptible(lambda: _interrupted(len(built), len(todo), overwrite=overwrite)),
        Progress("manifests", enabled=progress, shards_total=len(todo)) as bar,
        ThreadPoolExecutor(max_workers=workers) as pool,
    ):
        for builder in pool.map(build_one, todo):
            obs.log_event("manifest built", shard=builder.url)
            builders.append(builder)
            bar.advance(builder.num_samples, shards=1)
    if sample_type is None:
        _record_one_schema(builders)
    return todo


def _interrupted(built: int, total: int, *, overwrite: bool) -> str:
    if overwrite:
        return f"{built} of {total} manifests rebuilt; a rerun with overwrite (--force) starts over"
    return f"{built} of {total} manifests built; run the same build again to resume"
