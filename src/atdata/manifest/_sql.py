"""Shard pruning for SQL queries: DuckDB's parse tree, read into the predicate tree.

DuckDB filters the rows itself (so the SQL semantics are DuckDB's own); this
module only reads the ``WHERE`` clause's parse tree (``json_serialize_sql``)
into the expression tree of :mod:`atdata.manifest._expr`, so that shards whose
aggregates rule the clause out are not read at all. Anything it does not
recognise (functions, casts to other types, arithmetic, another DuckDB
version's tree layout) becomes :class:`~atdata.manifest._expr.Opaque`, which
prunes nothing: the answer never depends on this module, only the speed.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from typing import Any

from atdata.errors import QueryError
from atdata.manifest._expr import (
    FLIPPED,
    And,
    Cmp,
    Expr,
    Has,
    In,
    IsNull,
    Not,
    Opaque,
    Or,
    Truth,
    coerce_constant,
)
from atdata.manifest._fields import Column

__all__ = ["sql_predicate"]

_COMPARE = {
    "COMPARE_EQUAL": "==",
    "COMPARE_NOTEQUAL": "!=",
    "COMPARE_LESSTHAN": "<",
    "COMPARE_GREATERTHAN": ">",
    "COMPARE_LESSTHANOREQUALTO": "<=",
    "COMPARE_GREATERTHANOREQUALTO": ">=",
}
_CONTAINS = frozenset({"list_contains", "list_has", "array_contains", "array_has"})
_TIMESTAMPS = frozenset(
    {"TIMESTAMP", "TIMESTAMPTZ", "TIMESTAMP WITH TIME ZONE", "DATETIME", "TIMESTAMP_US"}
)


class _Unknown(Exception):  # noqa: N818 - internal control flow, never escapes
    pass


def sql_predicate(clause: str, cursor: Any, columns: Mapping[str, Column]) -> Expr:
    """The clause as an expression tree for pruning (``Opaque`` where not understood).

    Args:
        clause: a SQL ``WHERE`` clause.
        cursor: a DuckDB cursor (only its parser is used).
        columns: the dataset's manifest columns.
    """
    try:
        rows = cursor.sql(
            "SELECT json_serialize_sql($q)", params={"q": f"SELECT 1 FROM manifest WHERE {clause}"}
        ).fetchall()
        tree = json.loads(rows[0][0])
    except Exception:  # noqa: BLE001 - no parse tree: DuckDB will report the error itself
        return Opaque(clause)
    if not isinstance(tree, dict) or tree.get("error") or len(tree.get("statements") or ()) != 1:
        return Opaque(clause)
    try:
        where = tree["statements"][0]["node"]["where_clause"]
    except (KeyError, IndexError, TypeError):
        return Opaque(clause)
    return _Reader(columns).boolean(where)


class _Reader:
    def __init__(self, columns: Mapping[str, Column]) -> None:
        self.columns = columns

    def boolean(self, node: Any) -> Expr:
        try:
            return self._boolean(node)
        except (_Unknown, QueryError, KeyError, TypeError, ValueError, IndexError):
            return Opaque("sql")

    def _boolean(self, node: dict[str, Any]) -> Expr:
        kind = node.get("type")
        if kind in ("CONJUNCTION_AND", "CONJUNCTION_OR"):
            parts = tuple(self.boolean(c) for c in node["children"])
            return And(parts) if kind == "CONJUNCTION_AND" else Or(parts)
        if kind == "OPERATOR_NOT":
            return Not(self.boolean(node["children"][0]))
        if kind in _COMPARE:
            return self.compare(_COMPARE[kind], node["left"], node["right"])
        if kind in ("COMPARE_IN", "COMPARE_NOT_IN"):
            field = self.column(node["children"][0])
            values = tuple(self.constant(c, field) for c in node["children"][1:])
            if any(v is None for v in values):
                raise _Unknown  # NULL in an IN list: leave SQL's rules to DuckDB
            expr: Expr = In(field.name, values)
            return expr if kind == "COMPARE_IN" else Not(expr)
        if kind == "COMPARE_BETWEEN":
            field = self.column(node["input"])
            low = self.constant(node["lower"], field)
            high = self.constant(node["upper"], field)
            return And((Cmp(field.name, ">=", low), Cmp(field.name, "<=", high)))
        if kind in ("OPERATOR_IS_NULL", "OPERATOR_IS_NOT_NULL"):
            field = self.column(node["children"][0])
            test = IsNull(field.name)
            return test if kind == "OPERATOR_IS_NULL" else Not(test)
        if kind == "FUNCTION" and str(node.get("function_name", "")).lower() in _CONTAINS:
            raw = node.get("children") or node.get("arguments") or []
            args = [a.get("expression", a) for a in raw]
            field = self.column(args[0])
            if field.kind != "set":
                raise _Unknown
            return Has(field.name, self.constant(args[1], field))
        if kind == "COLUMN_REF":
            field = self.column(node)
            if field.value_type != "bool":
                raise _Unknown
            return Truth(field.name)
        raise _Unknown

    def column(self, node: dict[str, Any]) -> Column:
        if node.get("type") != "COLUMN_REF":
            raise _Unknown
        name = node["column_names"][-1]
        if name not in self.columns:
            raise _Unknown  # DuckDB names the unknown column when it runs
        return self.columns[name]

    def compare(self, op: str, left: dict[str, Any], right: dict[str, Any]) -> Expr:
        if left.get("type") != "COLUMN_REF":
            left, right, op = right, left, FLIPPED[op]
        field = self.column(left)
        if field.kind == "set":
            raise _Unknown
        value = self.constant(right, field)
        if value is None:
            raise _Unknown  # `= NULL` is never true in SQL; DuckDB will say so
        return Cmp(field.name, op, value)

    def constant(self, node: dict[str, Any], field: Column) -> Any:
        """A literal, in the field's terms (raises ``_Unknown`` or ``QueryError``)."""
        if node.get("type") == "OPERATOR_CAST":
            target = node.get("type_expr", {}).get("type_name") or node.get("cast_type", {}).get(
                "id"
            )
            if str(target).upper() not in _TIMESTAMPS:
                raise _Unknown
            text = _literal(node["child"])
            if not isinstance(text, str):
                raise _Unknown
            return coerce_constant(field, dt.datetime.fromisoformat(text))
        value = _literal(node)
        if value is None:
            return None
        if field.value_type == "bool" and isinstance(value, int | float):
            raise _Unknown  # SQL casts numbers to booleans its own way
        if field.value_type in ("int", "float") and isinstance(value, bool):
            raise _Unknown
        return coerce_constant(field, value)


def _literal(node: dict[str, Any]) -> Any:
    """A constant's Python value, from DuckDB 1.x or 2.x parse trees."""
    if node.get("type") != "VALUE_CONSTANT":
        raise _Unknown
    literal = node.get("literal")
    if isinstance(literal, dict):  # DuckDB 2.x: {"kind": ..., "text": ...}
        kind, text = literal.get("kind"), str(literal.get("text", ""))
        if kind == "STRING":
            return text
        if kind == "INTEGER":
            return int(text)
        if kind == "NUMERIC":
            return float(text)
        if kind == "BOOLEAN":
            return str(text).lower() == "true"
        if kind == "NULL_LITERAL":
            return None
        raise _Unknown
    value = node.get("value")
    if isinstance(value, dict):  # DuckDB 1.x: {"type": {"id": ...}, "is_null": ..., "value": ...}
        if value.get("is_null"):
            return None
        type_id = value.get("type", {}).get("id")
        raw = value.get("value")
        if type_id in ("INTEGER", "BIGINT", "SMALLINT", "TINYINT", "HUGEINT") and isinstance(
            raw, int
        ):
            return raw
        if type_id in ("DOUBLE", "FLOAT") and isinstance(raw, int | float):
            return float(raw)
        if type_id == "VARCHAR" and isinstance(raw, str):
            return raw
        if type_id == "BOOLEAN" and isinstance(raw, bool):
            return raw
    raise _Unknown
