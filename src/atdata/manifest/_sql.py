"""Shard pruning for the SQL queries DuckDB runs: its parse tree, read into the predicate tree.

A clause atdata's own parser (:mod:`atdata.manifest._sqlparse`) does not take
is filtered by DuckDB (so its SQL semantics are DuckDB's own); this module only
reads the ``WHERE`` clause's parse tree (``json_serialize_sql``) into the
expression tree of :mod:`atdata.manifest._expr`, building the nodes with the
same :class:`~atdata.manifest._sqlterms.SqlTerms` as the parser, so that shards
whose aggregates rule the clause out are not read at all. Anything it does not
recognise (functions, casts to other types, arithmetic, another DuckDB
version's tree layout) becomes :class:`~atdata.manifest._expr.Opaque`, which
prunes nothing: the answer never depends on this module, only the speed.
"""

from __future__ import annotations

import json
from typing import Any

from atdata.errors import QueryError
from atdata.manifest._expr import FLIPPED, And, Expr, Lit, Not, Opaque, Or
from atdata.manifest._sqlterms import CONTAINS, SqlTerms, Typed, Unsupported, number

__all__ = ["sql_predicate"]

_COMPARE = {
    "COMPARE_EQUAL": "==",
    "COMPARE_NOTEQUAL": "!=",
    "COMPARE_LESSTHAN": "<",
    "COMPARE_GREATERTHAN": ">",
    "COMPARE_LESSTHANOREQUALTO": "<=",
    "COMPARE_GREATERTHANOREQUALTO": ">=",
}


def sql_predicate(clause: str, cursor: Any, terms: SqlTerms) -> Expr:
    """The clause as an expression tree for pruning (``Opaque`` where not understood).

    Args:
        clause: a SQL ``WHERE`` clause.
        cursor: a DuckDB cursor (only its parser is used).
        terms: the dataset's columns, as SQL sees them.
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
    return _Reader(terms).boolean(where)


class _Reader:
    def __init__(self, terms: SqlTerms) -> None:
        self.terms = terms

    def boolean(self, node: Any) -> Expr:
        try:
            return self._boolean(node)
        except (Unsupported, QueryError, KeyError, TypeError, ValueError, IndexError):
            return Opaque("sql")  # DuckDB reports what is wrong with it when it runs

    def _boolean(self, node: dict[str, Any]) -> Expr:
        kind = node.get("type")
        terms = self.terms
        if kind in ("CONJUNCTION_AND", "CONJUNCTION_OR"):
            parts = tuple(self.boolean(c) for c in node["children"])
            return And(parts) if kind == "CONJUNCTION_AND" else Or(parts)
        if kind == "OPERATOR_NOT":
            return Not(self.boolean(node["children"][0]))
        if kind in _COMPARE:
            left, right, op = node["left"], node["right"], _COMPARE[kind]
            if left.get("type") != "COLUMN_REF":
                left, right, op = right, left, FLIPPED[op]
            return terms.compare(self.name(left), op, self.literal(right))
        if kind in ("COMPARE_IN", "COMPARE_NOT_IN"):
            first, *rest = node["children"]
            expr = terms.member(self.name(first), [self.literal(c) for c in rest])
            return expr if kind == "COMPARE_IN" else Not(expr)
        if kind == "COMPARE_BETWEEN":
            low, high = self.literal(node["lower"]), self.literal(node["upper"])
            return terms.between(self.name(node["input"]), low, high)
        if kind in ("OPERATOR_IS_NULL", "OPERATOR_IS_NOT_NULL"):
            test = terms.is_null(self.name(node["children"][0]))
            return test if kind == "OPERATOR_IS_NULL" else Not(test)
        if kind == "FUNCTION" and str(node.get("function_name", "")).lower() in CONTAINS:
            raw = node.get("children") or node.get("arguments") or []
            field, value = [a.get("expression", a) for a in raw]
            return terms.contains(self.name(field), self.literal(value))
        if kind == "COLUMN_REF":
            return terms.truth(self.name(node))
        if kind == "VALUE_CONSTANT":
            value = _literal(node)
            if isinstance(value, bool):
                return Lit(value)
        raise Unsupported

    def name(self, node: dict[str, Any]) -> str:
        """The column a ``COLUMN_REF`` names (raises ``Unsupported`` for anything else)."""
        if node.get("type") != "COLUMN_REF" or len(node["column_names"]) != 1:
            raise Unsupported
        return str(node["column_names"][0])

    def literal(self, node: dict[str, Any]) -> Any:
        """A constant's value; a ``Typed`` for a cast of a string (``TIMESTAMP '...'``)."""
        if node.get("type") == "OPERATOR_CAST":
            target = node.get("type_expr", {}).get("type_name") or node.get("cast_type", {}).get(
                "id"
            )
            text = _literal(node["child"])
            if not isinstance(text, str):
                raise Unsupported
            return Typed(str(target), text)
        return _literal(node)


def _literal(node: dict[str, Any]) -> Any:
    """A constant's Python value, from DuckDB 1.x or 2.x parse trees."""
    if node.get("type") != "VALUE_CONSTANT":
        raise Unsupported
    literal = node.get("literal")
    if isinstance(literal, dict):  # DuckDB 2.x: {"kind": ..., "text": ...}
        kind, text = literal.get("kind"), str(literal.get("text", ""))
        if kind == "STRING":
            return text
        if kind in ("INTEGER", "NUMERIC"):
            return number(text)
        if kind == "BOOLEAN":
            return str(text).lower() == "true"
        if kind == "NULL_LITERAL":
            return None
        raise Unsupported
    value = node.get("value")
    if isinstance(value, dict):  # DuckDB 1.x: {"type": {"id": ...}, "is_null": ..., "value": ...}
        if value.get("is_null"):
            return None
        type_id = value.get("type", {}).get("id")
        raw = value.get("value")
        if type_id in ("INTEGER", "BIGINT", "SMALLINT", "TINYINT", "HUGEINT") and isinstance(
            raw, int
        ):
            return number(str(raw))
        if type_id in ("DOUBLE", "FLOAT") and isinstance(raw, int | float):
            return float(raw)
        if type_id == "VARCHAR" and isinstance(raw, str):
            return raw
        if type_id == "BOOLEAN" and isinstance(raw, bool):
            return raw
    raise Unsupported
