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
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from atdata.errors import ManifestError, SchemaError, StorageError
from atdata.manifest._aggregates import FieldStats
from atdata.manifest._fields import Column
from atdata.manifest._header import (
    FORMAT_VERSION,
    REBUILD_HINT,
    Header,
    invalid,
    load_json,
    validate_header,
)
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
    """One shard's manifest: the validated JSON header, and access to its parquet rows.

    The header is checked once, when the manifest is made (see
    :func:`atdata.manifest._header.validate_header`): a malformed one is a
    :class:`~atdata.errors.ManifestError`, so nothing downstream meets it.

    Attributes:
        shard: the shard's URL.
        header: the manifest JSON as a dict.
        parsed: the same header, typed (:class:`~atdata.manifest._header.Header`).

    Example:
        >>> manifest = atdata.manifest.load_manifests("data/shard-000000.tar")[0]
        >>> manifest.shard_id, manifest.num_samples, list(manifest.columns)
        ('shard-000000', 4, ['label', 'confidence'])
        >>> manifest.stats("label").values
        {'bird': 1, 'cat': 1, 'dog': 1, 'fish': 1}
        >>> manifest.read_table(["__key__", "label"]).column("label").to_pylist()
        ['cat', 'dog', 'bird', 'fish']
    """

    shard: str
    header: dict[str, Any]
    parsed: Header = dataclasses.field(init=False, repr=False)
    _stats: dict[str, FieldStats | None] = dataclasses.field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.parsed = validate_header(json_url(self.shard), self.header, shard=self.shard)

    @classmethod
    def parse(cls, shard: str, data: bytes) -> ShardManifest:
        """Parse a manifest JSON.

        Raises:
            ManifestError: unreadable JSON, a format version this atdata cannot
                read, or a field that is missing, mistyped or inconsistent.
        """
        return cls(shard, load_json(json_url(shard), data, shard=shard))

    # -- header facts ------------------------------------------------------------------

    @property
    def shard_id(self) -> str:
        """The shard id recorded in the manifest."""
        return self.parsed.shard_id

    @property
    def num_samples(self) -> int:
        """Samples in the shard."""
        return self.parsed.num_samples

    @property
    def size_bytes(self) -> int:
        """Bytes of the tar shard."""
        return self.parsed.size_bytes

    @property
    def schema(self) -> Schema:
        """The sample schema recorded with the shard.

        Raises:
            ManifestError: a field's type is not one atdata knows.
        """
        try:
            return Schema.from_json(self.header["schema"])
        except (ValueError, SyntaxError, TypeError, RecursionError, SchemaError) as exc:
            # a field type that does not parse (an enum's choices are Python literals)
            raise self._invalid(f"schema: {exc}") from None

    @property
    def aggregates(self) -> dict[str, dict[str, Any]]:
        """Field name -> its aggregate, as in the JSON (validated)."""
        return dict(self.header.get("aggregates", {}))

    @property
    def columns(self) -> dict[str, Column]:
        """Manifest columns of this shard: name -> :class:`Column`."""
        return {
            name: Column(name, agg.kind, agg.type) for name, agg in self.parsed.aggregates.items()
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
                agg = self.parsed.aggregates.get(field)
                self._stats[field] = FieldStats.from_aggregate(agg) if agg is not None else None
        return self._stats[field]

    def key_range(self) -> tuple[str, str] | None:
        """The smallest and largest key in the shard, if recorded."""
        return self.parsed.keys

    def _invalid(self, problem: str, url: str | None = None) -> ManifestError:
        return invalid(url or json_url(self.shard), problem, shard=self.shard)

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
            ManifestError: the parquet file is missing or unreadable, lacks a
                column its header promises, holds a column of another type, or
                has another number of rows than ``num_samples``.
        """
        url = self.parquet_url
        present = self.parsed.aggregates
        wanted = None
        missing: list[str] = []
        if columns is not None:
            wanted = [c for c in dict.fromkeys(columns) if c in present or c in LOCATION_COLUMNS]
            missing = [c for c in dict.fromkeys(columns) if c not in wanted]
        try:
            # Manifest files are small: one read of the whole file beats Arrow's
            # many small reads, locally as well as from object storage.
            store, path = store_for(url)
            parquet = pq.ParquetFile(
                pa.BufferReader(store.read(path)), page_checksum_verification=True
            )
            try:
                names = set(parquet.schema_arrow.names)
                absent = [c for c in (wanted or [*LOCATION_COLUMNS, *present]) if c not in names]
                if absent:
                    raise self._invalid(f"no column {absent[0]!r}", url)
                table = parquet.read(columns=wanted, use_threads=False)
            finally:
                parquet.close()
        except (OSError, StorageError, pa.ArrowException, UnicodeDecodeError) as exc:
            # (UnicodeDecodeError: pyarrow decodes a corrupt footer's column names)
            raise ManifestError(
                f"cannot read manifest rows {url}: {exc}. Rebuild the manifest with "
                f"`{REBUILD_HINT.replace('URL', self.shard)}`",
                url=url,
            ) from None
        self._check_rows(table, url)
        for name in missing:
            kind = (fill or {}).get(name, pa.null())
            table = table.append_column(name, pa.nulls(table.num_rows, kind))
        return table

    def _check_rows(self, table: pa.Table, url: str) -> None:
        """Rows as many as the header says, each column of its recorded type.

        (Offsets that lie about where samples are surface when the shard is read.)

        Raises:
            ManifestError: naming the parquet file and the column.
        """
        if table.num_rows != self.num_samples:
            raise self._invalid(
                f"{table.num_rows} rows, but the header says num_samples {self.num_samples}", url
            )
        aggregates = self.parsed.aggregates
        for name, column in zip(table.column_names, table.columns, strict=True):
            if name in aggregates:
                agg = aggregates[name]
                ok = _holds(column.type, agg.kind, agg.type)
                want = f"{agg.kind} {agg.type}"
            else:
                ok = _holds(column.type, "categorical", "str" if name == KEY else "int")
                want = "a string" if name == KEY else "an integer"
            if not ok:
                raise self._invalid(f"column {name!r} is {column.type}, not {want}", url)
            if name in (OFFSET, SIZE) and column.null_count:
                raise self._invalid(f"column {name!r} has nulls", url)


def _holds(data_type: pa.DataType, kind: str, value_type: str) -> bool:
    """Whether a parquet column of ``data_type`` can be a manifest column of this kind."""
    if pa.types.is_null(data_type):
        return True
    if kind == "set":
        if not (pa.types.is_list(data_type) or pa.types.is_large_list(data_type)):
            return False
        return _holds(data_type.value_type, "categorical", value_type)
    checks: dict[str, Callable[[pa.DataType], bool]] = {
        "str": lambda t: pa.types.is_string(t) or pa.types.is_large_string(t),
        "int": pa.types.is_integer,
        "float": lambda t: pa.types.is_floating(t) or pa.types.is_integer(t),
        "bool": pa.types.is_boolean,
        "datetime": pa.types.is_timestamp,
    }
    return checks[value_type](data_type)
