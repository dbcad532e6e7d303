"""Query predicates as a small expression tree: its nodes, pruning and evaluation.

A ``where=`` function (read by :mod:`atdata.manifest._lambda`) or a SQL
``WHERE`` clause (read by :mod:`atdata.manifest._sqlparse`, or from DuckDB's
parse tree by :mod:`atdata.manifest._sql`) becomes a tree of the nodes below.
The tree is used twice:

1. :func:`bounds` decides, from a shard's aggregates alone, whether any sample
   of the shard *may* match (three-valued: may be true / false / null); a shard
   that cannot is skipped without opening its parquet file;
2. :func:`evaluate` computes the predicate over a shard's manifest rows with
   ``pyarrow.compute`` (vectorised, Kleene logic).

What a reader cannot translate becomes an :class:`Opaque` node: it prunes
nothing and evaluates to null, leaving those rows for the caller to settle.

Null rule: a comparison or membership test on a missing value (a field the
shard's samples do not have, or ``None``) is null, as in SQL, so it never
matches, negated or not. Use ``m.field is None`` to select such samples.
Two rules are Python's, so the SQL readers do not use these nodes for them: a
:class:`Truth` test is false (not null) on a missing value (SQL's ``WHERE
flag`` is ``flag = TRUE``), and NaN compares false with every number (SQL
orders it above them).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import operator
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from atdata.errors import QueryError
from atdata.manifest._aggregates import FieldStats
from atdata.manifest._arrow import FALSE, NULL, from_numpy, from_values, scalar, to_numpy
from atdata.manifest._fields import TIMESTAMP, Column, value_class
from atdata.manifest._merge import to_utc

__all__ = [
    "FLIPPED",
    "PY_OPS",
    "And",
    "Cmp",
    "CmpFields",
    "Expr",
    "Has",
    "In",
    "IsNull",
    "Lit",
    "Not",
    "Opaque",
    "Or",
    "Truth",
    "bounds",
    "coerce_constant",
    "evaluate",
    "simplify",
]

# comparison symbol -> the Python operator
FLIPPED = {"==": "==", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}
"""Each comparison with its operands swapped: ``3 < x`` is ``x > 3``."""

PY_OPS: dict[str, Callable[[Any, Any], Any]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
_PC_OPS: dict[str, Callable[..., Any]] = {
    "==": pc.equal,
    "!=": pc.not_equal,
    "<": pc.less,
    "<=": pc.less_equal,
    ">": pc.greater,
    ">=": pc.greater_equal,
}


# -- the tree ------------------------------------------------------------------------


class Expr:
    """A boolean expression over manifest fields."""

    def fields(self) -> set[str]:
        """Field names the expression reads."""
        return set()

    def has_opaque(self) -> bool:
        """True when part of the expression could not be translated."""
        return False


@dataclasses.dataclass(frozen=True)
class Lit(Expr):
    """A constant truth value."""

    value: bool

    def __str__(self) -> str:
        return "TRUE" if self.value else "FALSE"


@dataclasses.dataclass(frozen=True)
class FieldExpr(Expr):
    """An expression over one field."""

    field: str

    def fields(self) -> set[str]:
        return {self.field}


@dataclasses.dataclass(frozen=True)
class Cmp(FieldExpr):
    """``field <op> value``."""

    op: str
    value: Any

    def __str__(self) -> str:
        return f"{self.field} {'=' if self.op == '==' else self.op} {_sql(self.value)}"


@dataclasses.dataclass(frozen=True)
class CmpFields(Expr):
    """``field <op> other_field``."""

    left: str
    op: str
    right: str

    def fields(self) -> set[str]:
        return {self.left, self.right}

    def __str__(self) -> str:
        return f"{self.left} {'=' if self.op == '==' else self.op} {self.right}"


@dataclasses.dataclass(frozen=True)
class In(FieldExpr):
    """``field in (values...)``."""

    values: tuple[Any, ...]

    def __str__(self) -> str:
        return f"{self.field} IN ({', '.join(_sql(v) for v in self.values)})"


@dataclasses.dataclass(frozen=True)
class Has(FieldExpr):
    """``value in field`` for a set field."""

    value: Any

    def __str__(self) -> str:
        return f"list_contains({self.field}, {_sql(self.value)})"


@dataclasses.dataclass(frozen=True)
class IsNull(FieldExpr):
    """``field is None`` (or missing from the shard)."""

    def __str__(self) -> str:
        return f"{self.field} IS NULL"


@dataclasses.dataclass(frozen=True)
class Truth(FieldExpr):
    """A field used as a truth value (``lambda m: m.is_valid``); None is false."""

    def __str__(self) -> str:
        return f"truth({self.field})"


@dataclasses.dataclass(frozen=True)
class And(Expr):
    """All parts are true."""

    parts: tuple[Expr, ...]

    def fields(self) -> set[str]:
        return set().union(*(p.fields() for p in self.parts))

    def has_opaque(self) -> bool:
        return any(p.has_opaque() for p in self.parts)

    def __str__(self) -> str:
        return "(" + " AND ".join(str(p) for p in self.parts) + ")"


@dataclasses.dataclass(frozen=True)
class Or(Expr):
    """Some part is true."""

    parts: tuple[Expr, ...]

    def fields(self) -> set[str]:
        return set().union(*(p.fields() for p in self.parts))

    def has_opaque(self) -> bool:
        return any(p.has_opaque() for p in self.parts)

    def __str__(self) -> str:
        return "(" + " OR ".join(str(p) for p in self.parts) + ")"


@dataclasses.dataclass(frozen=True)
class Not(Expr):
    """The part is false."""

    part: Expr

    def fields(self) -> set[str]:
        return self.part.fields()

    def has_opaque(self) -> bool:
        return self.part.has_opaque()

    def __str__(self) -> str:
        return f"NOT {self.part}"


@dataclasses.dataclass(frozen=True)
class Opaque(Expr):
    """A part that could not be translated; settled per row by the Python predicate."""

    text: str

    def has_opaque(self) -> bool:
        return True

    def __str__(self) -> str:
        return f"python({self.text})"


def _sql(value: Any) -> str:
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    if isinstance(value, dt.datetime):
        return f"TIMESTAMP '{value.isoformat()}'"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    return repr(value)


def simplify(expr: Expr) -> Expr:
    """The expression with constants folded and nested ``AND``/``OR`` flattened."""
    if isinstance(expr, And | Or):
        parts = [simplify(p) for p in expr.parts]
        is_and = isinstance(expr, And)
        kept: list[Expr] = []
        for p in parts:
            if isinstance(p, Lit):
                if p.value != is_and:
                    return Lit(not is_and)  # a FALSE in an AND, a TRUE in an OR
                continue
            kept.extend(p.parts if isinstance(p, And | Or) and type(p) is type(expr) else [p])
        if not kept:
            return Lit(is_and)
        return kept[0] if len(kept) == 1 else type(expr)(tuple(kept))
    if isinstance(expr, Not):
        inner = simplify(expr.part)
        if isinstance(inner, Lit):
            return Lit(not inner.value)
        return Not(inner)
    return expr


# -- query constants ---------------------------------------------------------------------

_DESCRIBE = {"text": "text", "number": "numeric", "time": "datetime"}


def coerce_constant(column: Column, value: Any) -> Any:
    """A query constant in the column's terms (enums to values, naive times to UTC).

    Raises:
        QueryError: the value cannot be compared with the field's values.
    """
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, np.generic):
        value = value.item()
    klass = value_class(column.value_type)
    ok = False
    if klass == "text":
        ok = isinstance(value, str)
    elif klass == "number":
        ok = isinstance(value, int | float) and not (
            isinstance(value, float) and column.value_type == "bool"
        )
    elif klass == "time":
        ok = isinstance(value, dt.datetime)
        if ok:
            value = to_utc(value)
    if not ok:
        wanted = {"text": "a str", "number": "a number", "time": "a datetime"}[klass]
        raise QueryError(
            f"Field {column.name!r} holds {_DESCRIBE[klass]} values ({column.kind}, "
            f"{column.value_type}); it cannot be compared with {value!r} "
            f"({type(value).__name__}). Compare it with {wanted} instead.",
            field=column.name,
        )
    if isinstance(value, bool) and column.value_type in ("int", "float"):
        value = int(value)
    return value


# -- pruning with aggregates -------------------------------------------------------------

Bounds = tuple[bool, bool, bool]  # (may be true, may be false, may be null) over a shard's rows
_UNKNOWN: Bounds = (True, True, True)
_ALL_NULL: Bounds = (False, False, True)


def bounds(expr: Expr, stats: Callable[[str], FieldStats | None]) -> Bounds:
    """What the expression may evaluate to on a shard's rows, judged from its aggregates.

    Sound, not exact: ``may be true`` is False only when no row can match.
    """
    if isinstance(expr, And):
        parts = [bounds(p, stats) for p in expr.parts]
        return (
            all(p[0] for p in parts),
            any(p[1] for p in parts),
            any(p[2] for p in parts),
        )
    if isinstance(expr, Or):
        parts = [bounds(p, stats) for p in expr.parts]
        return (
            any(p[0] for p in parts),
            all(p[1] for p in parts),
            any(p[2] for p in parts),
        )
    if isinstance(expr, Not):
        t, f, n = bounds(expr.part, stats)
        return f, t, n
    if isinstance(expr, Lit):
        return expr.value, not expr.value, False
    if isinstance(expr, Opaque | CmpFields):
        return _UNKNOWN
    field = next(iter(expr.fields()))
    s = stats(field)
    if isinstance(expr, IsNull):
        if s is None:
            return True, False, False
        return s.nulls > 0, s.non_null > 0, False
    if s is None or s.non_null <= 0:
        # the field is missing from the shard, or None everywhere in it
        if isinstance(expr, Truth):
            return False, True, False
        return _ALL_NULL
    null = s.nulls > 0
    if isinstance(expr, Truth):
        t, f = _truth(s)
        return t, f or null, False
    if isinstance(expr, Cmp):
        t, f = _cmp_bounds(s, expr.op, expr.value)
    elif isinstance(expr, In):
        t, f = _in_bounds(s, expr.values)
    elif isinstance(expr, Has):
        t = s.may_hold(expr.value)
        f = True if s.values is None else s.values.get(expr.value, 0) < s.non_null
    else:  # pragma: no cover - every node type is handled above
        return _UNKNOWN
    return t, f, null


def _truth(s: FieldStats) -> tuple[bool, bool]:
    if s.kind == "set":
        return s.values is None or bool(s.values), s.empty > 0 or s.values is None
    if s.values is not None:
        return any(bool(v) for v in s.values), any(not v for v in s.values)
    if s.kind == "numeric" and s.min is not None and not isinstance(s.min, dt.datetime | str):
        zero_only = s.min == 0 and s.max == 0 and not s.nans
        return not zero_only, s.min <= 0 <= s.max
    return True, True


def _cmp_bounds(s: FieldStats, op: str, c: Any) -> tuple[bool, bool]:
    if s.values is not None:  # exact distinct values
        try:
            results = [PY_OPS[op](v, c) for v in s.values]
        except TypeError:
            return True, True
        return any(results), not all(results)
    if s.bloom is not None:
        if op == "==":
            return c in s.bloom, True
        if op == "!=":
            return True, c in s.bloom
        return True, True
    lo, hi = s.min, s.max
    if lo is None or hi is None:
        return True, True
    try:
        t, f = {
            "==": (lo <= c <= hi, not (lo == hi == c)),
            "!=": (not (lo == hi == c), lo <= c <= hi),
            "<": (lo < c, hi >= c),
            "<=": (lo <= c, hi > c),
            ">": (hi > c, lo <= c),
            ">=": (hi >= c, lo < c),
        }[op]
    except TypeError:
        return True, True
    if s.nans:  # NaN compares false with everything (true with !=)
        t, f = (True, f) if op == "!=" else (t, True)
    return t, f


def _in_bounds(s: FieldStats, values: tuple[Any, ...]) -> tuple[bool, bool]:
    if s.values is not None:
        wanted = set(values)
        return any(v in wanted for v in s.values), any(v not in wanted for v in s.values)
    if s.bloom is not None:
        return any(v in s.bloom for v in values), True
    lo, hi = s.min, s.max
    if lo is None or hi is None:
        return True, True
    try:
        t = any(lo <= v <= hi for v in values)
        f = not (lo == hi and lo in values) or bool(s.nans)
    except TypeError:
        return True, True
    return t, f


# -- vectorised evaluation -------------------------------------------------------------------


def _column(table: pa.Table, name: str) -> pa.Array:
    column = table.column(name)
    return column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column


def _nulls(n: int) -> pa.Array:
    return pa.nulls(n, pa.bool_())


def _scalar(value: Any, array: pa.Array) -> pa.Scalar:
    """A constant as a scalar to compare with the array's values."""
    kind = array.type
    if pa.types.is_timestamp(kind):
        return scalar(value, TIMESTAMP)
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return scalar(value, pa.string())
    if isinstance(value, bool):
        return scalar(value, pa.bool_())
    if isinstance(value, int) and -(2**63) <= value < 2**63:
        return scalar(value, pa.int64())
    return scalar(float(value), pa.float64())  # beyond int64, a float orders it the same


def _numbers(array: pa.Array, values: Iterable[Any]) -> pa.Array:
    """A bool/int column cast so it compares like Python numbers."""
    if pa.types.is_boolean(array.type):
        array = array.cast(pa.int64())
    if pa.types.is_integer(array.type) and any(isinstance(v, float) for v in values):
        array = array.cast(pa.float64())
    return array


def evaluate(expr: Expr, table: pa.Table) -> pa.Array:
    """The expression over a table of manifest rows: a boolean array, null where undecided."""
    n = table.num_rows
    if isinstance(expr, And):
        result = evaluate(expr.parts[0], table)
        for part in expr.parts[1:]:
            result = pc.and_kleene(result, evaluate(part, table))
        return result
    if isinstance(expr, Or):
        result = evaluate(expr.parts[0], table)
        for part in expr.parts[1:]:
            result = pc.or_kleene(result, evaluate(part, table))
        return result
    if isinstance(expr, Not):
        return pc.invert(evaluate(expr.part, table))
    if isinstance(expr, Lit):
        return from_numpy(np.full(n, expr.value, dtype=bool))
    if isinstance(expr, Opaque):
        return _nulls(n)
    if isinstance(expr, CmpFields):
        a, b = _column(table, expr.left), _column(table, expr.right)
        if pa.types.is_null(a.type) or pa.types.is_null(b.type):
            return _nulls(n)
        if pa.types.is_boolean(a.type) != pa.types.is_boolean(b.type):
            a, b = _numbers(a, ()), _numbers(b, ())
        return _PC_OPS[expr.op](a, b)
    array = _column(table, next(iter(expr.fields())))
    if isinstance(expr, IsNull):
        return pc.is_null(array)
    if pa.types.is_null(array.type):
        return from_numpy(np.zeros(n, dtype=bool)) if isinstance(expr, Truth) else _nulls(n)
    if isinstance(expr, Truth):
        return pc.fill_null(_truth_array(array), FALSE)
    if isinstance(expr, Cmp):
        value = expr.value
        if not (
            pa.types.is_timestamp(array.type)
            or pa.types.is_string(array.type)
            or (pa.types.is_boolean(array.type) and isinstance(value, bool))
        ):
            array = _numbers(array, (value,))
            value = int(value) if isinstance(value, bool) else value
        return _PC_OPS[expr.op](array, _scalar(value, array))
    if isinstance(expr, In):
        values = expr.values
        if not values:
            return pc.if_else(pc.is_valid(array), FALSE, NULL)
        if pa.types.is_timestamp(array.type):
            value_set = from_values(values, TIMESTAMP)
        elif pa.types.is_string(array.type):
            value_set = from_values(values, pa.string())
        elif pa.types.is_boolean(array.type) and all(isinstance(v, bool) for v in values):
            value_set = from_values(values, pa.bool_())
        else:
            array = _numbers(array, values)
            if pa.types.is_integer(array.type):
                array = array.cast(pa.int64())
                value_set = from_values([int(v) for v in values], pa.int64())
            else:
                value_set = from_values([float(v) for v in values], pa.float64())
        found = pc.is_in(array, value_set=value_set)
        return pc.if_else(pc.is_valid(array), found, NULL)
    if isinstance(expr, Has):
        flat = pc.list_flatten(array)
        parents = to_numpy(pc.list_parent_indices(array))
        hits = to_numpy(pc.fill_null(pc.equal(flat, _scalar(expr.value, flat)), FALSE))
        mask = np.zeros(n, dtype=bool)
        mask[parents[hits]] = True
        return pc.if_else(pc.is_valid(array), from_numpy(mask), NULL)
    raise TypeError(f"cannot evaluate {expr!r}")  # pragma: no cover


def _truth_array(array: pa.Array) -> pa.Array:
    kind = array.type
    if pa.types.is_boolean(kind):
        return array
    if pa.types.is_string(kind):
        return pc.not_equal(array, scalar("", pa.string()))
    if pa.types.is_list(kind):
        return pc.greater(pc.list_value_length(array), scalar(0, pa.int64()))
    if pa.types.is_timestamp(kind):
        return pc.is_valid(array)
    return pc.not_equal(array, scalar(0, pa.int64()))
