"""Queries over manifests: ``Dataset.query``, ``get``, ``describe`` and materialised views.

A ``where=`` query runs in two phases:

1. **plan** — every shard's manifest JSON is loaded (concurrently) and the
   predicate is judged against its aggregates; shards that cannot hold a match
   are skipped without opening their parquet file;
2. **scan** — the remaining shards' manifest rows are filtered vectorised
   (``pyarrow.compute``); the parts of a predicate that could not be translated
   are settled by calling it on the rows still undecided.

A ``sql=`` query follows the same plan when atdata's own parser reads its
``WHERE`` clause (comparisons, ``IN``, ``BETWEEN``, ``IS NULL``,
``list_contains``, ``AND``/``OR``/``NOT``: :mod:`atdata.manifest._sqlparse`),
with SQL's rules for missing values; any other clause is run by DuckDB over
the same rows, pruned with the parse tree DuckDB reads. ``QueryResult.engine``
says which ran.

Example:
    >>> result = ds.query(where=lambda m: m.confidence > 0.9 and m.label in ["dog", "cat"])
    >>> len(result), result.shards_pruned, result.shards_scanned      # doctest: +SKIP
    >>> sample = ds.get_sample(result[0])                             # doctest: +SKIP
    >>> subset = result.materialize("out/shard-%06d.tar")             # doctest: +SKIP
"""

from __future__ import annotations

import bisect
import contextlib
import dataclasses
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, overload

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from atdata import observability as obs
from atdata.errors import QueryError, SampleNotFoundError
from atdata.manifest._aggregates import merge
from atdata.manifest._arrow import FALSE, from_numpy, scalar, to_numpy
from atdata.manifest._expr import Expr, Lit, bounds, evaluate, simplify
from atdata.manifest._fields import Column
from atdata.manifest._format import KEY, OFFSET, SIZE, ShardManifest
from atdata.manifest._header import NumericAggregate
from atdata.manifest._lambda import Predicate, compile_where
from atdata.manifest._sql import sql_predicate
from atdata.manifest._sqlparse import parse_where
from atdata.manifest._sqlterms import SqlTerms
from atdata.manifest.loader import concurrent_map, load_all, missing_manifest
from atdata.sample import DictSample
from atdata.shards.reader import SampleLocation, read_samples
from atdata.storage import is_local

if TYPE_CHECKING:
    from atdata.shards import ShardSet

__all__ = [
    "QueryResult",
    "SampleLocation",
    "describe_dataset",
    "locate_key",
    "run_query",
]

_KEY_COLUMN = Column(KEY, "categorical", "str")


@dataclasses.dataclass
class _Part:
    """The matches in one shard."""

    shard: str
    keys: pa.Array
    offsets: np.ndarray
    sizes: np.ndarray

    def __len__(self) -> int:
        return len(self.offsets)

    def location(self, i: int) -> SampleLocation:
        return SampleLocation(
            self.shard, self.keys[i].as_py(), int(self.offsets[i]), int(self.sizes[i])
        )

    def locations(self) -> Iterator[SampleLocation]:
        shard = self.shard
        for key, offset, size in zip(
            self.keys.to_pylist(), self.offsets.tolist(), self.sizes.tolist(), strict=True
        ):
            yield SampleLocation(shard, key, offset, size)


class QueryResult(Sequence[SampleLocation]):
    """The samples a query matched, as :class:`SampleLocation` s in dataset order.

    Locations are built on access, so a result of millions of samples stays
    small. ``shards_pruned`` shards were ruled out by their aggregates (their
    rows were never read), ``shards_scanned`` had their rows filtered.
    ``engine`` is ``"arrow"`` when the rows were filtered with
    ``pyarrow.compute`` (with ``vectorized`` False when a ``where=`` function
    also ran on some rows), ``"duckdb"`` when DuckDB ran a SQL clause.

    Example:
        >>> result = ds.query(where=lambda m: m.label == "dog")
        >>> result.count, result.shards_pruned, result.shards_scanned
        (10, 0, 10)
        >>> for loc in result:
        ...     sample = ds.get_sample(loc)
        >>> ds.query(sql="label = 'dog'").engine, ds.query(sql="label LIKE 'd%'").engine
        ('arrow', 'duckdb')
    """

    def __init__(
        self,
        source: ShardSet,
        parts: Sequence[_Part],
        *,
        shards_pruned: int,
        shards_scanned: int,
        shards_without_manifest: int = 0,
        predicate: str = "",
        vectorized: bool = True,
        engine: str = "arrow",
        seconds: float = 0.0,
        wrap: Callable[[ShardSet], Any] | None = None,
    ) -> None:
        self.source = source
        self._wrap = wrap
        self._parts = [p for p in parts if len(p)]
        self._starts = np.cumsum([0] + [len(p) for p in self._parts]).tolist()
        self.shards_pruned = shards_pruned
        self.shards_scanned = shards_scanned
        self.shards_without_manifest = shards_without_manifest
        self.predicate = predicate
        self.vectorized = vectorized
        self.engine = engine
        self.seconds = seconds

    @property
    def count(self) -> int:  # type: ignore[override]
        """Number of matching samples (a property, unlike ``Sequence.count(value)``).

        Example:
            >>> ds.query(where=lambda m: m.label == "dog").count
            10
        """
        return int(self._starts[-1])

    def __len__(self) -> int:
        return self.count

    @overload
    def __getitem__(self, index: int) -> SampleLocation: ...
    @overload
    def __getitem__(self, index: slice) -> list[SampleLocation]: ...

    def __getitem__(self, index: int | slice) -> SampleLocation | list[SampleLocation]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        n = len(self)
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError(f"query result index {index} out of range ({n} matches)")
        part = bisect.bisect_right(self._starts, index) - 1
        return self._parts[part].location(index - self._starts[part])

    def __iter__(self) -> Iterator[SampleLocation]:
        for part in self._parts:
            yield from part.locations()

    def __bool__(self) -> bool:
        return self.count > 0

    @property
    def shards(self) -> list[str]:
        """The shards holding at least one match, in order.

        Example:
            >>> ds.query(where=lambda m: m.__key__ < "sample_00000008").shards
            ['data/shard-000000.tar', 'data/shard-000001.tar']
        """
        return [p.shard for p in self._parts]

    @property
    def keys(self) -> list[str]:
        """The matching keys, in dataset order.

        Example:
            >>> ds.query(sql="label = 'dog'").keys[:3]
            ['sample_00000001', 'sample_00000005', 'sample_00000009']
        """
        return [k for p in self._parts for k in p.keys.to_pylist()]

    def to_arrow(self) -> pa.Table:
        """The matches as a table with columns ``shard``, ``key``, ``offset``, ``size``.

        Example:
            >>> table = ds.query(sql="label = 'dog'").to_arrow()
            >>> table.column_names, table.num_rows
            (['shard', 'key', 'offset', 'size'], 10)
        """
        if not self._parts:
            return pa.table(
                {
                    "shard": pa.array([], pa.string()),
                    "key": pa.array([], pa.string()),
                    "offset": pa.array([], pa.int64()),
                    "size": pa.array([], pa.int64()),
                }
            )
        return pa.table(
            {
                "shard": pa.array([p.shard for p in self._parts for _ in range(len(p))]),
                "key": pa.concat_arrays([p.keys.cast(pa.string()) for p in self._parts]),
                "offset": np.concatenate([p.offsets for p in self._parts]),
                "size": np.concatenate([p.sizes for p in self._parts]),
            }
        )

    def __repr__(self) -> str:
        return (
            f"QueryResult(count={self.count}, shards_scanned={self.shards_scanned}, "
            f"shards_pruned={self.shards_pruned}, predicate={self.predicate!r})"
        )

    # -- materialised views ------------------------------------------------------------

    def read(self) -> Iterator[tuple[SampleLocation, bytes]]:
        """Each match's location and msgpack bytes, in order, with few range reads.

        Neighbouring samples of a shard are fetched with one request; shards
        are fetched concurrently a few at a time.

        Example:
            >>> for loc, packed in ds.query(sql="label = 'dog'").read():
            ...     sample = ImageSample.from_bytes(packed, loc.key)
            >>> sample.label, sample.__key__
            ('dog', 'sample_00000037')
        """
        parts = self._parts
        remote = any(not is_local(p.shard) for p in parts)
        window = 8 if remote else 1
        for start in range(0, len(parts), window):
            batch = parts[start : start + window]
            for chunk in concurrent_map(_read_part, batch, remote=remote):
                yield from chunk

    def materialize(
        self,
        pattern: str,
        *,
        provenance: Mapping[str, Any] | None = None,
        progress: bool | None = None,
        **writer_options: Any,
    ) -> Any:
        """Copy the matching samples into a new dataset, with manifests.

        The samples' bytes are copied as stored (no re-encoding); the new
        shards' manifests record the source shards as ``parent_shards``.

        Args:
            pattern: output shard pattern, e.g. ``"out/shard-%06d.tar"`` or ``s3://...``.
            provenance: extra provenance for the new manifests.
            progress: show a progress bar (samples copied, of the matches) on
                stderr; None: only when stderr is a terminal.
            **writer_options: passed to :class:`~atdata.ShardWriter` (``maxcount``...).

        Returns:
            A ``Dataset`` of the queried dataset's sample type over the new shards
            (a :class:`~atdata.shards.ShardSet` for a query run on one directly).

        Raises:
            QueryError: the query matched nothing.

        Example:
            >>> dogs = ds.query(where=lambda m: m.label == "dog").materialize("dogs/%06d.tar")
        """
        from atdata.sample import WdsRecord
        from atdata.shards import ShardWriter

        if not self.count:
            raise QueryError(
                f"the query ({self.predicate}) matched no samples, so there is nothing to "
                "materialize; check it with len(result) first"
            )
        stored = self.source.stored_type
        typed: Any = None if stored is DictSample else stored
        if typed is None:
            try:
                typed = self.source.recorded_type()
                if typed is DictSample:
                    from atdata.manifest.loader import dataset_schema

                    typed = dataset_schema(self.source.shards).to_type()
            except Exception:  # noqa: BLE001 - any failure: copy untyped records instead
                typed = None
        prov = {"parent_shards": self.shards, "query": self.predicate, **(provenance or {})}
        writer_options.setdefault("manifest", True)
        with ShardWriter(
            pattern, provenance=prov, progress=progress, progress_total=self.count, **writer_options
        ) as sink:
            for loc, packed in self.read():
                if typed is not None:
                    sink.write(WdsRecord(loc.key, packed, typed.from_bytes(packed, loc.key)))
                else:
                    sink.write({"__key__": loc.key, "msgpack": packed})
        obs.log_event("query materialized", samples=self.count, shards=len(sink.shards))
        out = self.source.replace(urls=list(sink.shards), literal=True)
        return self._wrap(out) if self._wrap is not None else out


def _read_part(part: _Part) -> list[tuple[SampleLocation, bytes]]:
    """One shard's matches, reading each run of neighbouring samples in one request."""
    return list(read_samples(part.locations(), _raw_bytes))


def _raw_bytes(data: memoryview, key: str) -> bytes:
    return bytes(data)


# -- planning and scanning ---------------------------------------------------------------


def _known_columns(manifests: Sequence[ShardManifest]) -> dict[str, Column]:
    """Every manifest field of the dataset (older shards may lack newer ones)."""
    seen: dict[str, tuple[str, str]] = {}
    for m in manifests:
        for name, agg in m.parsed.aggregates.items():
            kind_type = (agg.kind, agg.type)
            before = seen.setdefault(name, kind_type)
            if before != kind_type and {before[1], kind_type[1]} <= {"int", "float", "bool"}:
                seen[name] = (before[0], "float")  # a number field whose type widened
    columns = {name: Column(name, kind, vt) for name, (kind, vt) in seen.items()}
    columns[KEY] = _KEY_COLUMN
    return columns


def _nan_fields(manifests: Sequence[ShardManifest]) -> set[str]:
    """Float fields that may hold NaN in some shard (a NaN-free one has a numeric aggregate
    that counts none)."""
    return {
        name
        for m in manifests
        for name, agg in m.parsed.aggregates.items()
        if agg.type == "float" and not (isinstance(agg, NumericAggregate) and agg.nans == 0)
    }


def _naive_time_fields(manifests: Sequence[ShardManifest]) -> set[str]:
    naive = set()
    for m in manifests:
        for name, agg in m.parsed.aggregates.items():
            if isinstance(agg, NumericAggregate) and agg.type == "datetime" and not agg.timezone:
                naive.add(name)
    return naive


class ManifestRow:
    """One manifest row, as the ``where=`` function sees it when it runs per row.

    Fields are attributes (or items); a field the row's shard lacks is None, a
    name no shard has is a :class:`~atdata.errors.QueryError`.

    Example:
        >>> rows = []
        >>> hits = ds.query(where=lambda m: rows.append(m) or m.label.startswith("d"))
        >>> rows[0].label, rows[0]["__key__"], len(hits)
        ('cat', 'sample_00000000', 10)
        >>> rows[0].lable
        Traceback (most recent call last):
        atdata.errors.QueryError: Unknown field 'lable' in query. Did you mean 'label'? ...
    """

    __slots__ = ("_known", "_values")

    def __init__(self, values: dict[str, Any], known: Mapping[str, Column]) -> None:
        self._values = values
        self._known = known

    def __getattr__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            if name in self._known:
                return None
            if name.startswith("__") and name.endswith("__"):
                raise AttributeError(name) from None
            raise QueryError.unknown_field(
                name, [c for c in self._known if not c.startswith("__")]
            ) from None

    def __getitem__(self, name: str) -> Any:
        return self.__getattr__(name)

    def __repr__(self) -> str:
        return f"ManifestRow({self._values!r})"


def _per_row(
    predicate: Predicate,
    table: pa.Table,
    known: Mapping[str, Column],
    naive: set[str],
    shards: Sequence[str],
) -> np.ndarray:
    """The Python predicate on each row (the fallback for what was not translated)."""
    names = [c for c in table.column_names if c not in (OFFSET, SIZE, _SHARD)]
    columns = {name: table.column(name).to_pylist() for name in names}
    for name in naive & set(names):
        columns[name] = [v.replace(tzinfo=None) if v is not None else None for v in columns[name]]
    where = table.column(_SHARD).to_pylist()
    fn = predicate.fn
    out = np.zeros(table.num_rows, dtype=bool)
    for i in range(table.num_rows):
        values = {name: columns[name][i] for name in names}
        try:
            out[i] = bool(fn(ManifestRow(values, known)))
        except QueryError:
            raise
        except TypeError as exc:
            if any(v is None for v in values.values()):
                continue  # a missing value compared: it does not match (as in SQL)
            raise QueryError(
                f"the where= function raised TypeError on sample {values.get(KEY)!r} of "
                f"{shards[where[i]]}: {exc}"
            ) from exc
        except Exception as exc:  # reported with the row it failed on
            raise QueryError(
                f"the where= function raised {type(exc).__name__} on sample "
                f"{values.get(KEY)!r} of {shards[where[i]]}: {exc}"
            ) from exc
    return out


def _fill_types(known: Mapping[str, Column]) -> dict[str, pa.DataType]:
    return {name: col.arrow_type for name, col in known.items()}


_BATCH = 64
"""Shards whose rows are read and filtered together: bounds memory, amortises overhead."""


def _stack(tables: Sequence[pa.Table]) -> pa.Table:
    """One table of many shards' rows, with each row's shard (its index) in ``__shard__``."""
    tagged = [
        t.append_column(_SHARD, from_numpy(np.full(t.num_rows, i, dtype=np.int32)))
        for i, t in enumerate(tables)
    ]
    return pa.concat_tables(tagged, promote_options="permissive")


def _split(found: pa.Table, manifests: Sequence[ShardManifest]) -> list[_Part]:
    """Matches (in shard order) cut back into one part per shard."""
    shard_ids = to_numpy(found.column(_SHARD)).astype(np.int64)
    keys = found.column(KEY).combine_chunks()
    offsets = to_numpy(found.column(OFFSET)).astype(np.int64)
    sizes = to_numpy(found.column(SIZE)).astype(np.int64)
    cuts = (np.flatnonzero(np.diff(shard_ids)) + 1).tolist()
    return [
        _Part(manifests[int(shard_ids[a])].shard, keys[a:b], offsets[a:b], sizes[a:b])
        for a, b in zip([0, *cuts], [*cuts, len(shard_ids)], strict=True)
        if b > a
    ]


def _scan(
    manifests: Sequence[ShardManifest],
    columns: Sequence[str],
    fill: Mapping[str, pa.DataType],
    select: Callable[[pa.Table, Sequence[ShardManifest]], pa.Table],
) -> list[_Part]:
    """Read the shards' manifest rows a batch at a time and keep what ``select`` keeps.

    ``select`` gets a batch's rows (with ``__shard__``) and returns the matching
    rows, in shard then row order.
    """
    remote = any(not is_local(m.shard) for m in manifests)
    parts: list[_Part] = []
    for start in range(0, len(manifests), _BATCH):
        batch = manifests[start : start + _BATCH]
        tables = concurrent_map(lambda m: m.read_table(columns, fill=fill), batch, remote=remote)
        parts.extend(_split(select(_stack(tables), batch), batch))
    return parts


_Selector = Callable[[pa.Table, Sequence[ShardManifest]], pa.Table]
_Settle = Callable[[pa.Table, Sequence[ShardManifest]], np.ndarray]


def _selector(expr: Expr, settle: _Settle | None = None) -> _Selector:
    """Keeps the rows where ``expr`` is true (vectorised).

    Rows its ``Opaque`` parts leave undecided go to ``settle`` (the rows, the
    batch's manifests), which says which of them match.
    """

    def select(table: pa.Table, batch: Sequence[ShardManifest]) -> pa.Table:
        if isinstance(expr, Lit) and expr.value:
            return table
        result = evaluate(expr, table)
        mask = pc.fill_null(result, FALSE)
        if settle is not None and expr.has_opaque():
            undecided = to_numpy(pc.is_null(result))
            if undecided.any():
                rows = np.flatnonzero(undecided)
                full = to_numpy(mask).copy()
                full[rows] = settle(table.take(from_numpy(rows)), batch)
                mask = from_numpy(full)
        return table.filter(mask)

    return select


def _per_row_settle(predicate: Predicate, known: Mapping[str, Column], naive: set[str]) -> _Settle:
    def settle(rows: pa.Table, batch: Sequence[ShardManifest]) -> np.ndarray:
        return _per_row(predicate, rows, known, naive, [m.shard for m in batch])

    return settle


def _row_columns(fields: set[str]) -> list[str]:
    """The columns to read for a predicate over ``fields``: the location, then the fields."""
    return [KEY, OFFSET, SIZE, *sorted(fields - {KEY})]


def _unpruned(manifests: Sequence[ShardManifest], expr: Expr) -> list[ShardManifest]:
    """The shards whose aggregates do not rule ``expr`` out."""
    return [m for m in manifests if bounds(expr, m.stats)[0]]


def run_query(
    source: ShardSet,
    *,
    where: Callable[[Any], Any] | None = None,
    sql: str | None = None,
    wrap: Callable[[ShardSet], Any] | None = None,
) -> QueryResult:
    """Locations of the samples of ``source`` that match, from the manifests alone.

    Args:
        source: the shards.
        where: a predicate over manifest fields (``lambda m: m.confidence > 0.9``).
        sql: or a SQL ``WHERE`` clause (run by DuckDB when atdata's parser does not
            read it). With neither, every sample matches.
        wrap: turns the shards of :meth:`QueryResult.materialize` into what it returns.

    Raises:
        QueryError: both were given, a field is unknown (the message suggests the
            closest), or a value has the wrong type for its field.

    Example:
        >>> run_query(ds, where=lambda m: m.label in ("dog", "cat")).count
        20
        >>> run_query(ds, sql="label IN ('dog', 'cat') AND __key__ < 'sample_00000006'").keys
        ['sample_00000000', 'sample_00000001', 'sample_00000004', 'sample_00000005']
    """
    if where is not None and sql is not None:
        raise QueryError("give either where= or sql=, not both")
    started = time.perf_counter()
    shards = source.shards
    with obs.trace("query", shards=len(shards), language="sql" if sql is not None else "python"):
        loaded = load_all(shards)
        manifests = [m for m in loaded if m is not None]
        missing = len(loaded) - len(manifests)
        if shards and not manifests:
            raise missing_manifest(shards[0])
        if missing:
            obs.log_event(
                "shards without manifest skipped",
                level="warning",
                count=missing,
                hint="build them with `atdata manifest build URL`",
            )
        known = _known_columns(manifests)
        fill = _fill_types(known)
        if sql is not None:
            clause = _clause(sql)
            terms = SqlTerms(known, nan_fields=_nan_fields(manifests), other_names=_DUCKDB_ONLY)
            expr = parse_where(clause, terms) if _ARROW_SQL else None
            if expr is not None:
                expr = simplify(expr)
                keep = _unpruned(manifests, expr)
                parts = _scan(keep, _row_columns(expr.fields()), fill, _selector(expr))
                engine = "arrow"
            else:
                cursor = _duckdb_cursor()
                try:
                    keep = _unpruned(manifests, sql_predicate(clause, cursor, terms))
                    parts = _run_sql(keep, clause, known, cursor)
                finally:
                    cursor.close()
                engine = "duckdb"
            label, vectorized = clause, True
        else:
            predicate = (
                compile_where(where, known)
                if where is not None
                else Predicate(Lit(True), set(), lambda m: True)
            )
            keep = _unpruned(manifests, predicate.expr)
            settle = _per_row_settle(predicate, known, _naive_time_fields(manifests))
            select = _selector(predicate.expr, settle)
            parts = _scan(keep, _row_columns(predicate.fields), fill, select)
            label, vectorized, engine = str(predicate), predicate.vectorized, "arrow"
        pruned, scanned = len(manifests) - len(keep), len(keep)
        seconds = time.perf_counter() - started
        obs.metrics.shards_pruned.inc(pruned)
        obs.metrics.shards_scanned.inc(scanned)
        obs.metrics.query_time.observe(seconds)
        obs.log_event(
            "query plan",
            predicate=label,
            shards_pruned=pruned,
            shards_scanned=scanned,
            vectorized=vectorized,
            engine=engine,
            duration_s=round(seconds, 6),
        )
    return QueryResult(
        source,
        parts,
        shards_pruned=pruned,
        shards_scanned=scanned,
        shards_without_manifest=missing,
        predicate=label,
        vectorized=vectorized,
        engine=engine,
        seconds=seconds,
        wrap=wrap,
    )


# -- SQL ------------------------------------------------------------------------------------

_SHARD = "__shard__"
_DUCKDB_ONLY = (OFFSET, SIZE, _SHARD, "manifest")
"""Names a clause may use beyond the fields, which only DuckDB's ``manifest`` table has."""
_ARROW_SQL = True
"""Whether clauses atdata's parser reads run without DuckDB (tests turn it off to compare)."""
_MISSING_COLUMN = re.compile(r'Referenced column "([^"]+)" not found')


def _sql_columns(sql: str, known: Mapping[str, Column]) -> list[str]:
    """Manifest columns a WHERE clause may read (a superset: any name it mentions, in
    any case, as SQL names are case-insensitive)."""
    if "*" in sql or "columns(" in sql.lower():
        return list(known)
    words = {w.lower() for w in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", sql)}
    return [name for name in known if name.lower() in words]


_DUCKDB: dict[int, Any] = {}  # process id -> base connection (connecting costs ~20 ms)


def _duckdb_cursor() -> Any:
    """A fresh cursor on this process's in-memory DuckDB (cheap; safe per thread)."""
    import duckdb

    pid = os.getpid()
    base = _DUCKDB.get(pid)
    if base is None:
        _DUCKDB.clear()  # a connection inherited through fork() is not ours to use
        base = _DUCKDB[pid] = duckdb.connect()
    cursor = base.cursor()
    # naive timestamps in SQL mean UTC, as they do in the manifests
    with contextlib.suppress(duckdb.Error):
        cursor.execute("SET TimeZone = 'UTC'")
    return cursor


def _to_arrow(relation: Any) -> pa.Table:
    for name in ("to_arrow_table", "fetch_arrow_table", "arrow"):
        method = getattr(relation, name, None)
        if method is not None:
            return method()
    raise QueryError("this DuckDB version cannot return Arrow tables; pip install -U duckdb")


def _clause(sql: str) -> str:
    """The condition of a ``sql=`` query (a leading ``WHERE`` and trailing ``;`` dropped)."""
    clause = sql.strip().rstrip(";").strip()
    if clause[:6].lower() == "where ":
        clause = clause[6:].strip()
    if not clause:
        raise QueryError("sql= is empty; give a WHERE clause such as \"label = 'dog'\"")
    return clause


def _run_sql(
    manifests: Sequence[ShardManifest], clause: str, known: Mapping[str, Column], con: Any
) -> list[_Part]:
    import duckdb

    columns = [KEY, OFFSET, SIZE, *(c for c in _sql_columns(clause, known) if c != KEY)]
    fill = _fill_types(known)
    query = (
        f"SELECT {_SHARD}, {KEY}, {OFFSET}, {SIZE} FROM manifest WHERE ({clause}) "
        f"ORDER BY {_SHARD}, {OFFSET}"
    )

    def select(table: pa.Table, batch: Sequence[ShardManifest]) -> pa.Table:
        try:
            con.register("manifest", table)
            return _to_arrow(con.sql(query))
        except duckdb.Error as exc:
            match = _MISSING_COLUMN.search(str(exc))
            if match:
                raise QueryError.unknown_field(
                    match.group(1), [c for c in known if not c.startswith("__")]
                ) from None
            raise QueryError(
                f"SQL query failed: {str(exc).strip()}. The clause was: {clause}"
            ) from None
        finally:
            con.unregister("manifest")

    if not manifests:  # still run it once, so mistakes in the clause are reported
        types = {**fill, KEY: pa.string(), OFFSET: pa.int64(), SIZE: pa.int64()}
        empty = pa.table({c: pa.array([], types.get(c, pa.null())) for c in columns})
        select(_stack([empty]), [])
        return []
    return _scan(manifests, columns, fill, select)


# -- direct access ---------------------------------------------------------------------------


def locate_key(source: ShardSet, key: str) -> SampleLocation:
    """Where the sample with ``key`` is, found through the manifests (no shard data is read).

    Shards whose recorded key range excludes ``key`` are skipped; the rest are
    searched in order, a few at a time, stopping at the first that has it.

    Raises:
        SampleNotFoundError: no shard's manifest lists the key.

    Example:
        >>> locate_key(ds, "sample_00000005")
        SampleLocation(shard='data/shard-000001.tar', key='sample_00000005', offset=1024, size=1024)
    """
    shards = source.shards
    manifests = [m for m in load_all(shards) if m is not None]
    candidates = []
    for m in manifests:
        key_range = m.key_range()
        if key_range is None or key_range[0] <= key <= key_range[1]:
            candidates.append(m)
    remote = any(not is_local(m.shard) for m in candidates)
    window = 8 if remote else 1
    nearby: list[str] = []
    for start in range(0, len(candidates), window):
        batch = candidates[start : start + window]
        tables = concurrent_map(lambda m: m.read_table([KEY, OFFSET, SIZE]), batch, remote=remote)
        for m, table in zip(batch, tables, strict=True):
            hits = np.flatnonzero(to_numpy(pc.equal(table.column(KEY), scalar(key, pa.string()))))
            if len(hits):
                i = int(hits[0])
                return SampleLocation(
                    m.shard,
                    key,
                    int(table.column(OFFSET)[i].as_py()),
                    int(table.column(SIZE)[i].as_py()),
                )
            if len(nearby) < 100_000:
                nearby.extend(table.column(KEY).to_pylist())
    where = f"{len(shards)} shards ({shards[0]} ...)" if shards else "an empty dataset"
    raise SampleNotFoundError(key, where, nearby)


def describe_dataset(source: ShardSet) -> dict[str, Any]:
    """Dataset statistics from the manifests alone (no shard data is read).

    Returns:
        ``num_samples``, ``num_shards``, ``size_bytes``, ``shards_without_manifest``,
        ``schema`` (name and version), ``time_bounds``, and ``fields``: per manifest
        field its ``kind``, ``type``, ``count``, ``nulls`` and statistics
        (categorical: ``counts``; numeric: ``min``, ``max``, ``mean``,
        ``histogram``; set: ``values`` and ``counts``), merged over all shards.

    Example:
        >>> ds.describe()["fields"]["label"]["counts"]                    # doctest: +SKIP
        {'dog': 512, 'cat': 488}
    """
    loaded = load_all(source.shards)
    manifests = [m for m in loaded if m is not None]
    names: dict[str, None] = {}
    for m in manifests:
        names.update(dict.fromkeys(m.aggregates))
    fields = {
        name: merge([m.aggregates[name] for m in manifests if name in m.aggregates])
        for name in names
    }
    time_bounds = {
        name: {"min": f["min"], "max": f["max"]}
        for name, f in fields.items()
        if f.get("type") == "datetime" and f.get("kind") == "numeric"
    }
    schema = manifests[-1].parsed.schema if manifests else None
    return {
        "num_samples": sum(m.num_samples for m in manifests),
        "num_shards": len(manifests),
        "size_bytes": sum(m.size_bytes for m in manifests),
        "shards_without_manifest": len(loaded) - len(manifests),
        "schema": {
            "name": schema.name if schema else None,
            "version": schema.version if schema else None,
        },
        "time_bounds": time_bounds,
        "fields": fields,
    }
