"""``where=`` functions: a lambda's source, translated into the query expression tree.

Python's ``and``, ``or``, ``not`` and ``in`` cannot be overloaded, so a
predicate such as ``lambda m: m.confidence > 0.9 and m.label in ['dog', 'cat']``
is read from its source (``ast``; the code object's positions pick the right
lambda when several share a line), free names resolved from the function's
closure and globals, and translated into the nodes of
:mod:`atdata.manifest._expr`.

Whatever cannot be translated becomes an :class:`~atdata.manifest._expr.Opaque`
node, and the rows it leaves undecided are settled by calling the original
function on each of them (so the answer stays right).
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import functools
import linecache
from collections.abc import Callable, Mapping
from typing import Any

from atdata.errors import QueryError
from atdata.manifest._expr import (
    FLIPPED,
    PY_OPS,
    And,
    Cmp,
    CmpFields,
    Expr,
    Has,
    In,
    IsNull,
    Lit,
    Not,
    Opaque,
    Or,
    Truth,
    coerce_constant,
    simplify,
)
from atdata.manifest._fields import Column, value_class

__all__ = ["Predicate", "compile_where"]

_OPS: dict[type, str] = {
    ast.Eq: "==",
    ast.NotEq: "!=",
    ast.Lt: "<",
    ast.LtE: "<=",
    ast.Gt: ">",
    ast.GtE: ">=",
}
_MAX_IN_VALUES = 1_000_000


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
            lv, rv, symbol = rv, lv, FLIPPED[symbol]
        column = self.column(lv)
        if column.kind == "set":
            raise _Untranslatable  # list equality or ordering: leave it to Python
        if rv is None:
            if symbol == "==":
                return IsNull(lv)
            if symbol == "!=":
                return Not(IsNull(lv))
            raise _Untranslatable
        return Cmp(lv, symbol, coerce_constant(column, rv))

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
            coerced = tuple(
                dict.fromkeys(coerce_constant(column, v) for v in values if v is not None)
            )
            expr: Expr = In(lv, coerced)
            return Or((expr, IsNull(lv))) if has_none else expr
        if lk == "const" and rk == "field":
            column = self.column(rv)
            if column.kind != "set" or lv is None:
                raise _Untranslatable  # e.g. a substring test on a text field
            return Has(rv, coerce_constant(column, lv))
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
        return PY_OPS[_OPS[type(op)]](left, right)
    except Exception:  # noqa: BLE001 - let Python raise it, per row
        raise _Untranslatable from None


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
    return Predicate(simplify(expr), fields, fn)


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
