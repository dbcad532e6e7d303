"""Query predicates: a lambda's source, translated into a small expression tree.

Python's ``and``, ``or``, ``not`` and ``in`` cannot be overloaded, so a
predicate such as ``lambda m: m.confidence > 0.9 and m.label in ['dog', 'cat']``
is read from its source (``ast``), free names resolved from the function's
closure and globals. The tree is used twice:

1. :func:`bounds` decides, from a shard's aggregates alone, whether any sample
   of the shard *may* match (three-valued: may be true / false / null); a shard
   that cannot is skipped without opening its parquet file;
2. :func:`evaluate` computes the predicate over a shard's manifest rows with
   ``pyarrow.compute`` (vectorised, Kleene logic).

Whatever cannot be translated becomes an :class:`Opaque` node: it prunes
nothing and evaluates to null, and the rows left undecided are settled by
calling the original function on each of them (so the answer stays right).

Null rule: a comparison or membership test on a missing value (a field the
shard's samples do not have, or ``None``) is null, as in SQL, so it never
matches, negated or not. Use ``m.field is None`` to select such samples.
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import datetime as dt
import enum
import functools
import linecache
import operator
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from atdata.errors import QueryError
from atdata.manifest._aggregates import FieldStats
from atdata.manifest._fields import TIMESTAMP, Column, value_class
from atdata.manifest._merge import to_utc

__all__ = [
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
    "Predicate",
    "Truth",
    "bounds",
    "compile_where",
    "evaluate",
]

_OPS: dict[type, str] = {
    ast.Eq: "==",
    ast.NotEq: "!=",
    ast.Lt: "<",
    ast.LtE: "<=",
    ast.Gt: ">",
    ast.GtE: ">=",
}
_FLIP = {"==": "==", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}
_PY_OPS: dict[str, Callable[[Any, Any], Any]] = {
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
_MAX_IN_VALUES = 1_000_000


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


# -- finding the function's source ---------------------------------------------------------


@functools.lru_cache(maxsize=64)
def _parse(filename: str, text: str) -> ast.Module | None:
    try:
        return ast.parse(text, filename)
    except (SyntaxError, ValueError):
        return None


def _body_of(node: ast.AST) -> ast.expr | None:
    if isinstance(node, ast.Lambda):
        return node.body
    if isinstance(node, ast.FunctionDef):
        body = list(node.body)
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
            body = body[1:]  # docstring
        if len(body) == 1 and isinstance(body[0], ast.Return) and body[0].value is not None:
            return body[0].value
    return None


def _contains(node: ast.Lambda | ast.FunctionDef, positions: list[tuple[int, ...]]) -> bool:
    start = (node.lineno, node.col_offset)
    end = (node.end_lineno or node.lineno, node.end_col_offset or 0)
    return all(start <= (l0, c0) and (l1, c1) <= end for l0, l1, c0, c1 in positions)


def find_source(fn: Callable[..., Any]) -> tuple[ast.expr, str] | None:
    """The expression a one-argument function returns, and its parameter name.

    Works for lambdas (also several on one line) and for ``def`` functions whose
    body is a single ``return``; None when the source is unavailable or the
    function is not of that shape.
    """
    code = getattr(fn, "__code__", None)
    if code is None or code.co_argcount != 1 or code.co_kwonlyargcount:
        return None
    lines = linecache.getlines(code.co_filename, getattr(fn, "__globals__", None))
    if not lines:
        return None
    tree = _parse(code.co_filename, "".join(lines))
    if tree is None:
        return None
    candidates: list[ast.Lambda | ast.FunctionDef] = []
    for node in ast.walk(tree):
        if code.co_name == "<lambda>" and isinstance(node, ast.Lambda):
            if node.lineno == code.co_firstlineno:
                candidates.append(node)
        elif isinstance(node, ast.FunctionDef) and node.name == code.co_name:
            first = min([d.lineno for d in node.decorator_list] + [node.lineno])
            if first == code.co_firstlineno:
                candidates.append(node)
    if len(candidates) > 1:
        positions: list[tuple[int, ...]] = []
        for l0, l1, c0, c1 in code.co_positions():
            # zero-width positions (RESUME, RETURN) say nothing about where the code is
            if (
                l0 is not None
                and l1 is not None
                and c0 is not None
                and c1 is not None
                and ((l1, c1) > (l0, c0))
            ):
                positions.append((l0, l1, c0, c1))
        candidates = [c for c in candidates if _contains(c, positions)]
        if len({ast.dump(c) for c in candidates}) > 1:
            # nested lambdas on one line: the innermost is the one compiled
            candidates.sort(key=lambda c: (c.end_lineno or 0, c.end_col_offset or 0))
            candidates = candidates[:1]
    if not candidates:
        return None
    node = candidates[0]
    args = node.args
    params = [*args.posonlyargs, *args.args]
    if len(params) != 1 or args.vararg or args.kwarg or params[0].arg != code.co_varnames[0]:
        return None
    body = _body_of(node)
    if body is None:
        return None
    param = params[0].arg
    used = {
        n.attr for n in ast.walk(body) if isinstance(n, ast.Attribute) and _is_param_attr(n, param)
    }
    if not used <= set(code.co_names):
        return None  # the file changed since the function was compiled
    return body, param


def _is_param_attr(node: ast.AST, param: str) -> bool:
    return (
        isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == param
    )


def referenced_fields(body: ast.expr, param: str) -> set[str]:
    """Names read from the parameter: ``m.name`` and ``m['name']``."""
    names: set[str] = set()
    for node in ast.walk(body):
        if _is_param_attr(node, param):
            names.add(node.attr)  # type: ignore[attr-defined]
        elif (
            isinstance(node, ast.Subscript)
            and isinstance(node.value, ast.Name)
            and node.value.id == param
            and isinstance(node.slice, ast.Constant)
            and isinstance(node.slice.value, str)
        ):
            names.add(node.slice.value)
    return names


def closure_env(fn: Callable[..., Any]) -> dict[str, Any]:
    """The names a function can see: its globals, overlaid with its closure's cells."""
    env = dict(getattr(fn, "__globals__", {}))
    code = fn.__code__
    for name, cell in zip(code.co_freevars, getattr(fn, "__closure__", None) or (), strict=False):
        with contextlib.suppress(ValueError):  # an empty cell: the name is not bound yet
            env[name] = cell.cell_contents
    return env


# -- translating ---------------------------------------------------------------------------


class _Untranslatable(Exception):  # noqa: N818 - internal control flow, never escapes
    pass


class _Translator:
    def __init__(self, param: str, env: dict[str, Any], columns: Mapping[str, Column]) -> None:
        self.param = param
        self.env = env
        self.columns = columns

    # operands: ("field", name) or ("const", value)
    def operand(self, node: ast.expr) -> tuple[str, Any]:
        if _is_param_attr(node, self.param):
            return "field", node.attr  # type: ignore[attr-defined]
        if (
            isinstance(node, ast.Subscript)
            and isinstance(node.value, ast.Name)
            and node.value.id == self.param
            and isinstance(node.slice, ast.Constant)
            and isinstance(node.slice.value, str)
        ):
            return "field", node.slice.value
        if any(isinstance(n, ast.Name) and n.id == self.param for n in ast.walk(node)):
            raise _Untranslatable
        if isinstance(node, ast.Constant):
            return "const", node.value
        try:
            code = compile(ast.Expression(body=node), "<atdata query>", "eval")
            return "const", eval(code, self.env)  # the user's own expression, evaluated once
        except Exception:  # noqa: BLE001 - the per-row fallback will raise it for real
            raise _Untranslatable from None

    def boolean(self, node: ast.expr) -> Expr:
        try:
            return self._boolean(node)
        except _Untranslatable:
            return Opaque(ast.unparse(node))

    def _boolean(self, node: ast.expr) -> Expr:
        if isinstance(node, ast.BoolOp):
            parts = tuple(self.boolean(v) for v in node.values)
            return And(parts) if isinstance(node.op, ast.And) else Or(parts)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            return Not(self.boolean(node.operand))
        if isinstance(node, ast.IfExp):  # truthiness of `a if c else b`
            test = self.boolean(node.test)
            return Or(
                (And((test, self.boolean(node.body))), And((Not(test), self.boolean(node.orelse))))
            )
        if isinstance(node, ast.Compare):
            terms: list[Expr] = []
            left = node.left
            for op, right in zip(node.ops, node.comparators, strict=True):
                terms.append(self.compare(left, op, right))
                left = right
            return terms[0] if len(terms) == 1 else And(tuple(terms))
        what, value = self.operand(node)
        if what == "const":
            return Lit(bool(value))
        self.column(value)
        return Truth(value)

    def column(self, name: str) -> Column:
        return self.columns[name]  # unknown names were rejected before translating

    def compare(self, left: ast.expr, op: ast.cmpop, right: ast.expr) -> Expr:
        lk, lv = self.operand(left)
        rk, rv = self.operand(right)
        if lk == "const" and rk == "const":
            return Lit(bool(_eval_const(lv, op, rv)))
        if isinstance(op, ast.In | ast.NotIn):
            expr = self.membership(lk, lv, rk, rv)
            return Not(expr) if isinstance(op, ast.NotIn) else expr
        if isinstance(op, ast.Is | ast.IsNot):
            if (lk, rv) == ("field", None) or (rk, lv) == ("field", None):
                test = IsNull(lv if lk == "field" else rv)
                return test if isinstance(op, ast.Is) else Not(test)
            raise _Untranslatable
        symbol = _OPS[type(op)]
        if lk == "field" and rk == "field":
            a, b = self.column(lv), self.column(rv)
            if (
                a.kind == "set"
                or b.kind == "set"
                or value_class(a.value_type) != value_class(b.value_type)
            ):
                raise _Untranslatable
            return CmpFields(lv, symbol, rv)
        if lk == "const":
            lv, rv, symbol = rv, lv, _FLIP[symbol]
        column = self.column(lv)
        if column.kind == "set":
            raise _Untranslatable  # list equality or ordering: leave it to Python
        if rv is None:
            if symbol == "==":
                return IsNull(lv)
            if symbol == "!=":
                return Not(IsNull(lv))
            raise _Untranslatable
        return Cmp(lv, symbol, _coerce(column, rv))

    def membership(self, lk: str, lv: Any, rk: str, rv: Any) -> Expr:
        if lk == "field" and rk == "const":
            column = self.column(lv)
            if column.kind == "set" or isinstance(rv, str | bytes):
                raise _Untranslatable  # list-in-list, or a substring test
            if isinstance(rv, range) and len(rv) > _MAX_IN_VALUES:
                raise _Untranslatable
            if not isinstance(rv, list | tuple | set | frozenset | dict | range):
                raise _Untranslatable
            values = list(rv)
            has_none = any(v is None for v in values)
            coerced = tuple(dict.fromkeys(_coerce(column, v) for v in values if v is not None))
            expr: Expr = In(lv, coerced)
            return Or((expr, IsNull(lv))) if has_none else expr
        if lk == "const" and rk == "field":
            column = self.column(rv)
            if column.kind != "set" or lv is None:
                raise _Untranslatable  # e.g. a substring test on a text field
            return Has(rv, _coerce(column, lv))
        raise _Untranslatable


def _eval_const(left: Any, op: ast.cmpop, right: Any) -> Any:
    try:
        if isinstance(op, ast.In):
            return left in right
        if isinstance(op, ast.NotIn):
            return left not in right
        if isinstance(op, ast.Is):
            return left is right
        if isinstance(op, ast.IsNot):
            return left is not right
        return _PY_OPS[_OPS[type(op)]](left, right)
    except Exception:  # noqa: BLE001 - let Python raise it, per row
        raise _Untranslatable from None


_DESCRIBE = {"text": "text", "number": "numeric", "time": "datetime"}


def _coerce(column: Column, value: Any) -> Any:
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


@dataclasses.dataclass
class Predicate:
    """A compiled ``where=`` function: its expression tree, and what it reads.

    Attributes:
        expr: the translated expression (``Opaque`` where translation failed).
        fields: manifest fields the function reads (for the per-row path too).
        fn: the original function, called per row where ``expr`` is undecided.
    """

    expr: Expr
    fields: set[str]
    fn: Callable[[Any], Any]

    @property
    def vectorized(self) -> bool:
        """True when no row needs the Python function."""
        return not self.expr.has_opaque()

    def __str__(self) -> str:
        return str(self.expr)


def compile_where(fn: Callable[[Any], Any], columns: Mapping[str, Column]) -> Predicate:
    """Translate a ``where=`` function over the given manifest columns.

    Raises:
        QueryError: the function names a field no manifest has (suggesting the
            closest), or compares a field with a value of the wrong type.
    """
    if not callable(fn):
        raise QueryError(f"where= must be a function of one argument, got {type(fn).__name__}")
    found = find_source(fn)
    if found is None:
        return Predicate(Opaque("<source unavailable>"), set(columns), fn)
    body, param = found
    names = referenced_fields(body, param)
    for name in sorted(names):
        if name not in columns:
            raise QueryError.unknown_field(name, [c for c in columns if not c.startswith("__")])
    expr = _Translator(param, closure_env(fn), columns).boolean(body)
    fields = names if not expr.has_opaque() else names | _dynamic_access(body, param, columns)
    return Predicate(_simplify(expr), fields, fn)


def _dynamic_access(body: ast.expr, param: str, columns: Mapping[str, Column]) -> set[str]:
    """All columns, when the function uses the parameter other than as ``m.name``/``m['name']``."""
    direct = {
        id(n.value)
        for n in ast.walk(body)
        if isinstance(n, ast.Attribute)
        or (isinstance(n, ast.Subscript) and isinstance(n.slice, ast.Constant))
    }
    for node in ast.walk(body):
        if isinstance(node, ast.Name) and node.id == param and id(node) not in direct:
            return set(columns)
    return set()


def _simplify(expr: Expr) -> Expr:
    if isinstance(expr, And | Or):
        parts = [_simplify(p) for p in expr.parts]
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
        inner = _simplify(expr.part)
        if isinstance(inner, Lit):
            return Lit(not inner.value)
        return Not(inner)
    return expr


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
            results = [_PY_OPS[op](v, c) for v in s.values]
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


def _scalar(value: Any, array: pa.Array) -> Any:
    if pa.types.is_timestamp(array.type):
        return pa.scalar(value, type=TIMESTAMP)
    return value


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
        return pa.array(np.full(n, expr.value, dtype=bool))
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
        return pa.array(np.zeros(n, dtype=bool)) if isinstance(expr, Truth) else _nulls(n)
    if isinstance(expr, Truth):
        return pc.fill_null(_truth_array(array), False)
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
            return pc.if_else(pc.is_valid(array), False, None)
        if pa.types.is_timestamp(array.type):
            value_set = pa.array(values, type=TIMESTAMP)
        elif pa.types.is_string(array.type):
            value_set = pa.array(values, type=pa.string())
        elif pa.types.is_boolean(array.type) and all(isinstance(v, bool) for v in values):
            value_set = pa.array(values, type=pa.bool_())
        else:
            array = _numbers(array, values)
            convert = int if pa.types.is_integer(array.type) else float
            value_set = pa.array([convert(v) for v in values], type=array.type)
        found = pc.is_in(array, value_set=value_set)
        return pc.if_else(pc.is_valid(array), found, None)
    if isinstance(expr, Has):
        flat = pc.list_flatten(array)
        parents = np.asarray(pc.list_parent_indices(array))
        scalar = _scalar(expr.value, flat)
        hits = np.asarray(pc.fill_null(pc.equal(flat, scalar), False), dtype=bool)
        mask = np.zeros(n, dtype=bool)
        mask[parents[hits]] = True
        result = pa.array(mask)
        return pc.if_else(pc.is_valid(array), result, None)
    raise TypeError(f"cannot evaluate {expr!r}")  # pragma: no cover


def _truth_array(array: pa.Array) -> pa.Array:
    kind = array.type
    if pa.types.is_boolean(kind):
        return array
    if pa.types.is_string(kind):
        return pc.not_equal(array, "")
    if pa.types.is_list(kind):
        return pc.greater(pc.list_value_length(array), 0)
    if pa.types.is_timestamp(kind):
        return pc.is_valid(array)
    return pc.not_equal(array, 0)
