"""The manifest's on-disk format: file names, the JSON header, and reading both files.

Beside ``shard-000042.tar``:

- ``shard-000042.manifest.parquet``: one row per sample, columns ``__key__``,
  ``__offset__`` (byte offset of the sample's tar header), ``__size__`` (bytes
  of the member, header and padding included), then one column per manifest
  field (categorical: string/int/bool, numeric: int64/float64/timestamp[us, UTC],
  set: list<...>);
- ``shard-000042.manifest.json`` (written last; a shard without it does not
  exist for queries)::

    {
      "format_version": 1,
      "shard_id": "shard-000042",
      "shard": "shard-000042.tar",
      "schema": {"name": ..., "version": ..., "fields": [...]},
      "provenance": {"created_at": ..., "source_job_id": ..., "parent_shards": [...],
                     "pipeline_version": ...},
      "num_samples": 5000, "size_bytes": 1234567, "checksum_sha256": "...",
      "keys": {"min": "sample_00000000", "max": "sample_00004999"},
      "time_bounds": {"captured_at": {"min": "...", "max": "..."}},
      "aggregates": {"label": {"kind": "categorical", "counts": {...}, ...}, ...},
      "parquet": {"file": "shard-000042.manifest.parquet", "size_bytes": 40960},
      "created_by": "atdata 0.3.0"
    }
"""

from __future__ import annotations

import dataclasses
import json
import posixpath
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from atdata.errors import ManifestError, StorageError
from atdata.manifest._aggregates import FieldStats
from atdata.manifest._fields import Column
from atdata.manifest._header import BUILD_HINT, FORMAT_VERSION, parse_header
from atdata.sample import Schema
from atdata.storage import sibling, store_for

__all__ = [
    "FORMAT_VERSION",
    "KEY",
    "OFFSET",
    "SIZE",
    "ShardManifest",
    "json_url",
    "parquet_url",
    "shard_id",
]

KEY, OFFSET, SIZE = "__key__", "__offset__", "__size__"
LOCATION_COLUMNS = (KEY, OFFSET, SIZE)
JSON_SUFFIX = ".manifest.json"
PARQUET_SUFFIX = ".manifest.parquet"


def json_url(shard: str) -> str:
    """The manifest JSON beside a shard."""
    return sibling(shard, JSON_SUFFIX)


def parquet_url(shard: str) -> str:
    """The manifest parquet file beside a shard."""
    return sibling(shard, PARQUET_SUFFIX)


def shard_id(shard: str) -> str:
    """A shard's id: its file name without ``.tar`` (``shard-000042``)."""
    name = posixpath.basename(shard.rstrip("/"))
    return name[: -len(".tar")] if name.endswith(".tar") else name


def dumps(doc: dict[str, Any]) -> bytes:
    """The manifest JSON as bytes (strict JSON: no NaN or Infinity)."""
    return json.dumps(doc, indent=1, allow_nan=False, default=str).encode("utf-8")


@dataclasses.dataclass
class ShardManifest:
    """One shard's manifest: the parsed JSON header, and access to its parquet rows.

    Attributes:
        shard: the shard's URL.
        header: the manifest JSON as a dict.
    """

    shard: str
    header: dict[str, Any]
    _stats: dict[str, FieldStats | None] = dataclasses.field(default_factory=dict, repr=False)

    @classmethod
    def parse(cls, shard: str, data: bytes) -> ShardManifest:
        """Parse a manifest JSON.

        Raises:
            ManifestError: unreadable JSON or a format version this atdata cannot read.
        """
        header = parse_header(json_url(shard), data)
        return cls(shard, header)

    # -- header facts ------------------------------------------------------------------

    @property
    def shard_id(self) -> str:
        """The shard id recorded in the manifest."""
        return str(self.header.get("shard_id", ""))

    @property
    def num_samples(self) -> int:
        """Samples in the shard."""
        return int(self.header["num_samples"])

    @property
    def size_bytes(self) -> int:
        """Bytes of the tar shard."""
        return int(self.header.get("size_bytes", 0))

    @property
    def schema(self) -> Schema:
        """The sample schema recorded with the shard."""
        return Schema.from_json(self.header["schema"])

    @property
    def aggregates(self) -> dict[str, dict[str, Any]]:
        """Field name -> its aggregate, as in the JSON."""
        return dict(self.header.get("aggregates", {}))

    @property
    def columns(self) -> dict[str, Column]:
        """Manifest columns of this shard: name -> :class:`Column`."""
        return {
            name: Column(name, agg.get("kind", "categorical"), agg.get("type", "str"))
            for name, agg in self.header.get("aggregates", {}).items()
        }

    def stats(self, field: str) -> FieldStats | None:
        """The parsed aggregate of ``field``, or None when this shard lacks the field."""
        if field not in self._stats:
            if field == KEY:  # keys are bounded by the recorded key range
                key_range = self.key_range() or (None, None)
                self._stats[field] = FieldStats(
                    "numeric", "str", self.num_samples, 0, min=key_range[0], max=key_range[1]
                )
            else:
                agg = self.header.get("aggregates", {}).get(field)
                self._stats[field] = FieldStats.from_json(agg) if agg is not None else None
        return self._stats[field]

    def key_range(self) -> tuple[str, str] | None:
        """The smallest and largest key in the shard, if recorded."""
        keys = self.header.get("keys")
        if not keys or keys.get("min") is None:
            return None
        return str(keys["min"]), str(keys["max"])

    # -- rows ------------------------------------------------------------------------------

    @property
    def parquet_url(self) -> str:
        """URL of the per-sample parquet file."""
        return parquet_url(self.shard)

    def read_table(
        self,
        columns: Sequence[str] | None = None,
        *,
        fill: Mapping[str, pa.DataType] | None = None,
    ) -> pa.Table:
        """The manifest rows (all columns, or just ``columns``).

        Columns this shard lacks (fields added to the type after it was written)
        come back as nulls, of the type ``fill`` gives for them.

        Raises:
            ManifestError: when the parquet file is missing or unreadable.
        """
        url = self.parquet_url
        present = self.header.get("aggregates", {})
        wanted = None
        missing: list[str] = []
        if columns is not None:
            wanted = [c for c in dict.fromkeys(columns) if c in present or c in LOCATION_COLUMNS]
            missing = [c for c in dict.fromkeys(columns) if c not in wanted]
        try:
            # Manifest files are small: one read of the whole file beats Arrow's
            # many small reads, locally as well as from object storage.
            store, path = store_for(url)
            parquet = pq.ParquetFile(pa.BufferReader(store.read(path)))
            try:
                table = parquet.read(columns=wanted, use_threads=False)
            finally:
                parquet.close()
        except (OSError, StorageError, pa.ArrowException) as exc:
            raise ManifestError(
                f"cannot read manifest rows {url}: {exc}. Rebuild the manifest with "
                f"`{BUILD_HINT}` after deleting {json_url(self.shard)}",
                url=url,
            ) from None
        for name in missing:
            kind = (fill or {}).get(name, pa.null())
            table = table.append_column(name, pa.nulls(table.num_rows, kind))
        return table
