"""SQL queries without DuckDB: atdata's parser, the arrow engine, and DuckDB as the referee.

``ds.query(sql=...)`` runs the clauses atdata's own parser reads on the manifest
rows with ``pyarrow.compute``, and hands the rest to DuckDB. Here: the parser's
trees (the same as those read from DuckDB's parse tree), what it leaves to
DuckDB, the errors, that a simple clause imports neither DuckDB nor pandas, and
hypothesis drawing random clauses from the grammar over a dataset with every
kind of field, missing values and shards lacking a field: the arrow engine, the
DuckDB engine and DuckDB over all rows (no pruning) must agree.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st

import atdata
from atdata import Dataset, ShardWriter
from atdata.errors import QueryError
from atdata.manifest import QueryResult, query
from atdata.manifest._expr import And, Cmp, Expr, Has, In, IsNull, Lit, Not, Or, simplify
from atdata.manifest._fields import Column
from atdata.manifest._sql import sql_predicate
from atdata.manifest._sqlparse import NOT_NAMES, parse_where
from atdata.manifest._sqlterms import SqlTerms
from atdata.observability import configure_logging
from fuzz_helpers import fuzz_settings, time_bound

UTC = dt.UTC
T0 = dt.datetime(2024, 1, 1, tzinfo=UTC)
SEED = 20250301


@atdata.packable(version="1.0.0")
class Old:
    label: str | None
    n: int | None
    score: float
    ratio: float
    ok: bool | None
    taken: dt.datetime
    tags: list[str] | None


@atdata.packable(version="1.1.0")
class New:
    label: str | None
    n: int | None
    score: float
    ratio: float
    ok: bool | None
    taken: dt.datetime
    tags: list[str] | None
    extra: str  # only the newer shards have it


PER_SHARD = 8


def _samples(rng: random.Random, start: int, count: int, cls: type) -> list[Any]:
    out = []
    for i in range(start, start + count):
        values: dict[str, Any] = {
            "label": rng.choice(["dog", "cat", "bird", "it's", "", None]),
            "n": rng.choice([None, *range(0, 21)]),
            "score": rng.choice([0.0, 0.25, 0.5, 0.75, 1.0, rng.random()]),
            # NaN in one shard: comparisons of `ratio` are DuckDB's (NaN orders last there)
            "ratio": math.nan if i == 3 else rng.choice([0.5, 1.5, 2.0]),
            "ok": rng.choice([True, False, None]),
            "taken": T0 + dt.timedelta(hours=7 * i, minutes=rng.choice([0, 30])),
            "tags": rng.choice([None, [], ["a"], ["b"], ["a", "b"], ["c", "a"]]),
        }
        if cls is New:
            values["extra"] = rng.choice(["x", "y"])
        out.append(cls(**values))
    return out


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Dataset[Any], pa.Table]:
    """Six shards (three of ``Old``, three of ``New``), and all their manifest rows in
    one table, with the shard's position in ``__shard__``, for DuckDB to judge."""
    folder = tmp_path_factory.mktemp("sql")
    rng = random.Random(SEED)
    shards: list[str] = []
    for number, cls in enumerate([Old, Old, Old, New, New, New]):
        samples = _samples(rng, number * PER_SHARD, PER_SHARD, cls)
        pattern, prefix = str(folder / f"s-{number:02d}-%02d.tar"), f"k{number}_"
        with ShardWriter(pattern, maxcount=PER_SHARD, key_prefix=prefix) as sink:
            for sample in samples:
                sink.write(sample)
        shards.extend(sink.shards)
    tables = []
    for i, shard in enumerate(shards):
        table = pq.read_table(shard.removesuffix(".tar") + ".manifest.parquet")
        tables.append(table.append_column("__shard__", pa.array([i] * table.num_rows)))
    return Dataset(shards), pa.concat_tables(tables, promote_options="permissive")


def run(ds: Dataset[Any], clause: str, *, arrow: bool = True) -> QueryResult | QueryError:
    """The query's result or its QueryError; ``arrow=False`` sends every clause to DuckDB."""
    before = query._ARROW_SQL
    query._ARROW_SQL = arrow
    try:
        return ds.query(sql=clause)
    except QueryError as exc:
        return exc
    finally:
        query._ARROW_SQL = before


def duckdb_over_all_rows(rows: pa.Table, clause: str) -> list[str] | None:
    """The matching keys by DuckDB over every row (nothing pruned); None when it fails."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.register("manifest", rows)
    try:
        found = con.sql(
            f"SELECT __key__ FROM manifest WHERE ({clause}) ORDER BY __shard__, __offset__"
        ).fetchall()
    except duckdb.Error:
        return None
    finally:
        con.close()
    return [key for (key,) in found]


# -- the parser ------------------------------------------------------------------------------

COLUMNS = {
    c.name: c
    for c in [
        Column("label", "categorical", "str"),
        Column("n", "numeric", "int"),
        Column("score", "numeric", "float"),
        Column("ok", "categorical", "bool"),
        Column("taken", "numeric", "datetime"),
        Column("tags", "set", "str"),
        Column("Mixed", "categorical", "str"),
        Column("__key__", "categorical", "str"),
    ]
}
TERMS = SqlTerms(COLUMNS, other_names=("__offset__",))
JAN_5 = dt.datetime(2024, 1, 5, tzinfo=UTC)

TREES: dict[str, Expr] = {
    "label = 'dog'": Cmp("label", "==", "dog"),
    "label == 'it''s'": Cmp("label", "==", "it's"),
    "n <> 3": Cmp("n", "!=", 3),
    "n != -3": Cmp("n", "!=", -3),
    "3 < n": Cmp("n", ">", 3),
    "0.5 >= score": Cmp("score", "<=", 0.5),
    "score > .5e1": Cmp("score", ">", 5.0),
    "n IN (1, 2.5)": In("n", (1, 2.5)),
    "label NOT IN ('a', 'b')": Not(In("label", ("a", "b"))),
    "n BETWEEN 1 AND 5": And((Cmp("n", ">=", 1), Cmp("n", "<=", 5))),
    "n NOT BETWEEN 1 AND 5": Not(And((Cmp("n", ">=", 1), Cmp("n", "<=", 5)))),
    "label IS NULL": IsNull("label"),
    "tags IS NOT NULL": Not(IsNull("tags")),
    "ok": Cmp("ok", "==", True),
    "NOT ok": Not(Cmp("ok", "==", True)),
    "ok = FALSE": Cmp("ok", "==", False),
    "TRUE": Lit(True),
    "list_contains(tags, 'a')": Has("tags", "a"),
    "ARRAY_HAS(tags, 'a')": Has("tags", "a"),
    "'a' IN tags": Has("tags", "a"),
    "taken >= TIMESTAMP '2024-01-05'": Cmp("taken", ">=", JAN_5),
    "taken < TIMESTAMP '2024-01-05T00:00:00'": Cmp("taken", "<", JAN_5),
    "taken = TIMESTAMPTZ '2024-01-05 02:00+02:00'": Cmp("taken", "==", JAN_5),
    "taken < DATE '2024-01-05'": Cmp("taken", "<", JAN_5),
    "\"label\" = 'x' AND LABEL = 'y'": And((Cmp("label", "==", "x"), Cmp("label", "==", "y"))),
    "mixed = 'a'": Cmp("Mixed", "==", "a"),
    "__key__ >= 'sample_00000004'": Cmp("__key__", ">=", "sample_00000004"),
    "n = 1 OR n = 2 AND NOT ok": Or(
        (Cmp("n", "==", 1), And((Cmp("n", "==", 2), Not(Cmp("ok", "==", True)))))
    ),
    "(n = 1 OR n = 2) and label = 'x'": And(
        (Or((Cmp("n", "==", 1), Cmp("n", "==", 2))), Cmp("label", "==", "x"))
    ),
    "NOT NOT (ok)": Not(Not(Cmp("ok", "==", True))),
}


@pytest.mark.parametrize("clause", list(TREES))
def test_the_parser_builds_the_tree(clause: str) -> None:
    assert parse_where(clause, TERMS) == TREES[clause]


@pytest.mark.parametrize("clause", list(TREES))
def test_its_trees_are_the_ones_read_from_duckdbs_parse_tree(clause: str) -> None:
    cursor = query._duckdb_cursor()
    try:
        from_duckdb = sql_predicate(clause, cursor, TERMS)
    finally:
        cursor.close()
    parsed = parse_where(clause, TERMS)
    assert parsed is not None
    assert simplify(parsed) == simplify(from_duckdb)


LEFT_TO_DUCKDB = [
    "label LIKE 'd%'",  # other operators and functions
    "lower(label) = 'dog'",
    "n + 1 > 3",
    "n::DOUBLE > 2",
    "CAST(n AS DOUBLE) > 2",
    "label = 'dog' -- a comment",
    "label = 'dog' /* a comment */",
    "label = E'dog'",
    "n = '3'",  # a string DuckDB casts to the field's type
    "ok = 1",  # DuckDB's own casts between numbers and booleans
    "n = TRUE",
    "label = NULL",  # NULL constants
    "n IN (1, NULL)",
    "n BETWEEN NULL AND 3",
    "list_contains(tags, NULL)",
    "n > 1_000",  # number forms
    "n = 3.0000000000000001",
    "n > 99999999999999999999",
    "score > 1e400",
    "taken > TIMESTAMP '2024-01-05 00:00+02:00'",  # DuckDB drops the offset here
    "taken > TIMESTAMP '2024-1-5'",
    "taken > DATE '2024-01-05 10:00'",
    "taken > TIMESTAMP '2024-01-01 24:00:00'",
    "taken > '2024-01-05'",
    "label = label",  # column against column
    "1 = 1",
    "n",  # a non-boolean column as a condition
    "tags = ['a']",
    "tags IN ('a')",
    "contains(label, 'o')",  # a substring test
    "'o' IN label",
    "ok IS TRUE",
    "n IN ()",
    "NULL",
    "__offset__ > 0",  # columns only DuckDB's table has
    "current_date IS NOT NULL",
    "manifest.label = 'dog'",
    "order = 1",  # a keyword as a name
    "label = 'dog' AND",  # syntax errors
    "label = = 'dog'",
    "(label = 'dog'",
    "label = 'dog')",
    "",
    "label = 'dog';",
    "n > 1 IS NULL",
    "label = 'dog' = TRUE",
    "labl = 'x' AND AND",  # an unknown name in a clause that does not parse
    "'" + "(" * 2000,
    "(" * 2000 + "ok" + ")" * 2000,
]


@pytest.mark.parametrize("clause", LEFT_TO_DUCKDB)
def test_the_rest_of_sql_is_left_to_duckdb(clause: str) -> None:
    assert parse_where(clause, TERMS) is None


def test_an_unknown_name_is_reported_with_the_closest_field() -> None:
    with pytest.raises(QueryError, match=r"Unknown field 'lable'.*Did you mean 'label'") as info:
        parse_where("lable = 'dog' OR n > 3", TERMS)
    assert info.value.field == "lable"
    assert "__key__" not in str(info.value)  # internal columns are not suggested


@pytest.mark.parametrize(
    ("clause", "field"),
    [
        ("label > 3", "label"),
        ("label IN ('a', 2)", "label"),
        ("3 = label", "label"),
        ("taken > 5", "taken"),
        ("taken = TRUE", "taken"),
        ("n = TIMESTAMP '2024-01-01'", "n"),
        ("list_contains(tags, 3)", "tags"),
        ("ok AND label < TRUE", "label"),
    ],
)
def test_a_constant_of_the_wrong_type_is_a_clear_error(clause: str, field: str) -> None:
    with pytest.raises(QueryError, match=f"Field '{field}' holds .* cannot be compared") as info:
        parse_where(clause, TERMS)
    assert info.value.field == field


def test_the_keywords_are_duckdbs() -> None:
    rows = duckdb.sql(
        "SELECT keyword_name FROM duckdb_keywords() "
        "WHERE keyword_category IN ('reserved', 'type_function')"
    ).fetchall()
    assert {name for (name,) in rows} == NOT_NAMES


# -- running clauses -----------------------------------------------------------------------


def test_a_simple_clause_runs_without_duckdb(data: tuple[Dataset[Any], pa.Table]) -> None:
    ds, rows = data
    found = ds.query(sql="label = 'dog' AND n > 3")
    assert found.engine == "arrow" and found.vectorized
    assert found.keys == duckdb_over_all_rows(rows, "label = 'dog' AND n > 3")
    assert found.count > 0 and found.predicate == "label = 'dog' AND n > 3"


def test_like_goes_to_duckdb_and_works(data: tuple[Dataset[Any], pa.Table]) -> None:
    ds, rows = data
    found = ds.query(sql="label LIKE 'd%' AND n > 3")
    assert found.engine == "duckdb"
    assert found.keys == duckdb_over_all_rows(rows, "label LIKE 'd%' AND n > 3")
    assert found.count > 0


def test_duckdb_still_reports_syntax_errors(data: tuple[Dataset[Any], pa.Table]) -> None:
    ds, _ = data
    with pytest.raises(QueryError, match="SQL query failed: Parser Error: syntax error"):
        ds.query(sql="label = = 'dog'")


@pytest.mark.parametrize("arrow", [True, False], ids=["arrow", "duckdb"])
def test_an_unknown_field_reads_the_same_from_both_engines(
    data: tuple[Dataset[Any], pa.Table], arrow: bool
) -> None:
    ds, _ = data
    error = run(ds, "lable = 'dog'", arrow=arrow)
    assert isinstance(error, QueryError) and error.field == "lable"
    assert str(error) == (
        "Unknown field 'lable' in query. Did you mean 'label'? "
        "Queryable fields: extra, label, n, ok, ratio, score, tags, taken."
    )


@pytest.mark.parametrize("arrow", [True, False], ids=["arrow", "duckdb"])
def test_a_wrong_type_is_a_query_error_from_both_engines(
    data: tuple[Dataset[Any], pa.Table], arrow: bool
) -> None:
    ds, _ = data
    error = run(ds, "label > 3", arrow=arrow)
    assert isinstance(error, QueryError)
    if arrow:
        assert "Field 'label' holds text values" in str(error) and error.field == "label"


def test_nan_orders_above_every_number_as_duckdb_says(data: tuple[Dataset[Any], pa.Table]) -> None:
    ds, rows = data
    above = ds.query(sql="ratio > 100")
    assert above.engine == "duckdb"  # DuckDB's NaN ordering is not IEEE's
    assert above.keys == duckdb_over_all_rows(rows, "ratio > 100") == ["k0_00000003"]
    listed = ds.query(sql="ratio IN (0.5, 2.0)")  # membership means the same in both
    assert listed.engine == "arrow"
    assert listed.keys == duckdb_over_all_rows(rows, "ratio IN (0.5, 2.0)")


def test_the_query_plan_says_which_engine_ran(
    data: tuple[Dataset[Any], pa.Table], caplog: pytest.LogCaptureFixture
) -> None:
    ds, _ = data
    logger = logging.getLogger("atdata.test.sql")
    caplog.set_level(logging.INFO, logger=logger.name)
    configure_logging(logger)
    try:
        ds.query(sql="n > 3")
        ds.query(sql="label LIKE 'd%'")
        ds.query(where=lambda m: m.n > 3)
    finally:
        atdata.observability.reset()
    plans = [r for r in caplog.records if r.getMessage().startswith("query plan ")]
    assert [r.atdata["engine"] for r in plans] == ["arrow", "duckdb", "arrow"]  # type: ignore[attr-defined]


def _imports_after(pattern: str, clause: str) -> list[str]:
    code = (
        "import sys, atdata\n"
        f"found = atdata.Dataset({pattern!r}).query(sql={clause!r})\n"
        "assert len(found) > 0\n"
        "print(' '.join(m for m in ('duckdb', 'pandas') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return done.stdout.split()


def test_a_simple_clause_imports_neither_duckdb_nor_pandas(
    data: tuple[Dataset[Any], pa.Table],
) -> None:
    ds, _ = data
    pattern = str(Path(ds.shards[0]).parent / "s-*.tar")
    clause = "label = 'dog' AND n BETWEEN 2 AND 15 OR list_contains(tags, 'a')"
    assert _imports_after(pattern, clause) == []
    assert "duckdb" in _imports_after(pattern, "label LIKE 'd%'")  # the check can see it


# -- hypothesis: the arrow engine against DuckDB -------------------------------------------------


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _name(field: str) -> st.SearchStrategy[str]:
    """A field as SQL may spell it: as is, upper case, double-quoted."""
    return st.sampled_from([field, field.upper(), f'"{field}"'])


def _keyword(word: str) -> st.SearchStrategy[str]:
    return st.sampled_from([word.upper(), word.lower(), word.capitalize()])


_TIMES = st.builds(
    lambda kind, day, hour: (
        f"DATE '2024-01-{day:02d}'" if kind == "DATE" else f"{kind} '2024-01-{day:02d} {hour}'"
    ),
    st.sampled_from(["TIMESTAMP", "TIMESTAMPTZ", "DATE"]),
    st.integers(1, 16),
    st.sampled_from(["00:00", "07:30", "14:00:00", "21:30:00.5"]),
) | st.sampled_from(["TIMESTAMPTZ '2024-01-03 09:00:00+02:00'", "TIMESTAMPTZ '2024-01-04T00:00Z'"])

# Literals of each field's type, as SQL text.
LITERALS: dict[str, st.SearchStrategy[str]] = {
    "label": st.sampled_from(["dog", "cat", "bird", "it's", "", "zebra"]).map(_sql_string),
    "extra": st.sampled_from(["x", "y", "z"]).map(_sql_string),
    "n": st.integers(-2, 22).map(str) | st.sampled_from(["2.5", "3.0", "-1", "1e1", "7."]),
    "score": st.sampled_from(["0", "0.25", "0.5", "1", ".75", "1e-1", "0.3333"]),
    "ratio": st.sampled_from(["0.5", "1.5", "2", "100"]),
    "ok": st.sampled_from(["TRUE", "FALSE", "true", "False"]),
    "taken": _TIMES,
    "__key__": st.integers(0, 50).map(lambda i: _sql_string(f"k{i // 8}_{i % 8:08d}")),
}
TAGS = st.sampled_from(["a", "b", "c", "zz"]).map(_sql_string)
OPS = st.sampled_from(["=", "==", "!=", "<>", "<", "<=", ">", ">="])
SCALARS = sorted(LITERALS)

Atom = tuple[str, bool]  # (clause, whether the arrow engine runs it)


@st.composite
def comparison(draw: st.DrawFn) -> Atom:
    field = draw(st.sampled_from(SCALARS))
    name, op, value = draw(_name(field)), draw(OPS), draw(LITERALS[field])
    text = f"{value} {op} {name}" if draw(st.booleans()) else f"{name} {op} {value}"
    return text, field != "ratio"  # ratio holds NaN: its comparisons are DuckDB's


@st.composite
def membership(draw: st.DrawFn) -> Atom:
    field = draw(st.sampled_from(SCALARS))
    values = draw(st.lists(LITERALS[field], min_size=1, max_size=3))
    negated = draw(st.booleans())
    keyword = draw(_keyword("not in")) if negated else draw(_keyword("in"))
    return f"{draw(_name(field))} {keyword} ({', '.join(values)})", True


@st.composite
def between(draw: st.DrawFn) -> Atom:
    field = draw(st.sampled_from(["n", "score", "taken", "label", "__key__"]))
    low, high = draw(LITERALS[field]), draw(LITERALS[field])
    negated = draw(_keyword("not")) + " " if draw(st.booleans()) else ""
    return f"{draw(_name(field))} {negated}BETWEEN {low} AND {high}", True


@st.composite
def null_test(draw: st.DrawFn) -> Atom:
    field = draw(st.sampled_from([*SCALARS, "tags"]))
    test = draw(st.sampled_from(["IS NULL", "IS NOT NULL", "is not null"]))
    return f"{draw(_name(field))} {test}", True


@st.composite
def contains(draw: st.DrawFn) -> Atom:
    value = draw(TAGS)
    function = draw(
        st.sampled_from(["list_contains", "list_has", "array_contains", "array_has", "IN"])
    )
    name = draw(_name("tags"))
    return (f"{value} IN {name}" if function == "IN" else f"{function}({name}, {value})"), True


@st.composite
def truth(draw: st.DrawFn) -> Atom:
    return draw(st.sampled_from(["ok", "OK", '"ok"', "TRUE", "FALSE"])), True


# Valid SQL the arrow engine leaves to DuckDB, and mistakes both must report.
DUCKDB_ATOMS = st.sampled_from(
    [
        "label LIKE 'd%'",
        "lower(label) = 'dog'",
        "n + 1 > 5",
        "n::DOUBLE >= 2.5",
        "n = '4'",
        "ok = 1",
        "label = NULL",
        "n IN (3, NULL)",
        "taken > TIMESTAMP '2024-01-05 00:00+02:00'",
        "taken < '2024-01-05'",
        "score = score",
        "labl = 'dog'",
        "extra ILIKE 'X'",
    ]
).map(lambda text: (text, False))

ATOMS = st.one_of(comparison(), membership(), between(), null_test(), contains(), truth())


def _combine(parts: st.SearchStrategy[Atom]) -> st.SearchStrategy[Atom]:
    def join(word: str) -> st.SearchStrategy[Atom]:
        return st.builds(
            lambda a, b, kw, parens: (
                (f"({a[0]} {kw} {b[0]})" if parens else f"{a[0]} {kw} {b[0]}"),
                a[1] and b[1],
            ),
            parts,
            parts,
            _keyword(word),
            st.booleans(),
        )

    negated = st.builds(lambda a, kw: (f"{kw} {a[0]}", a[1]), parts, _keyword("not"))
    return join("and") | join("or") | negated


CLAUSES = st.recursive(ATOMS | DUCKDB_ATOMS, _combine, max_leaves=6)
ARROW_CLAUSES = st.recursive(ATOMS, _combine, max_leaves=6)


def _agree(data: tuple[Dataset[Any], pa.Table], clause: str, arrow_expected: bool) -> None:
    ds, rows = data
    fast, slow = run(ds, clause, arrow=True), run(ds, clause, arrow=False)
    if isinstance(slow, QueryError) or isinstance(fast, QueryError):
        assert isinstance(fast, QueryError) and isinstance(slow, QueryError), (fast, slow)
        return
    assert fast.keys == slow.keys == duckdb_over_all_rows(rows, clause)
    if arrow_expected:
        assert fast.engine == "arrow"
    assert slow.engine == "duckdb"


@fuzz_settings(max_examples=150)
@given(case=ARROW_CLAUSES)
def test_random_clauses_of_the_subset_run_on_arrow_as_duckdb_runs_them(
    data: tuple[Dataset[Any], pa.Table], case: Atom
) -> None:
    clause, arrow_expected = case
    with time_bound():
        _agree(data, clause, arrow_expected)


@fuzz_settings(max_examples=60)
@given(case=CLAUSES)
def test_random_clauses_mixing_in_the_rest_of_sql_agree_too(
    data: tuple[Dataset[Any], pa.Table], case: Atom
) -> None:
    clause, arrow_expected = case
    with time_bound():
        _agree(data, clause, arrow_expected)
