"""SQL ``WHERE`` constructs as nodes of the query expression tree.

Two readers turn a ``sql=`` clause into the tree of :mod:`atdata.manifest._expr`:
atdata's own parser (:mod:`atdata.manifest._sqlparse`, whose trees are
evaluated without DuckDB) and the reader of DuckDB's parse tree
(:mod:`atdata.manifest._sql`, whose trees only prune). Both build their nodes
here, so one clause means one tree, with SQL's meaning:

- a comparison, ``IN`` list, ``BETWEEN`` or ``list_contains`` with a missing
  value is null (never true, negated or not), as in :func:`~atdata.manifest._expr.evaluate`;
- a boolean column used as a condition is ``column = TRUE`` (null stays null);
- a constant is taken in its field's terms (:func:`~atdata.manifest._expr.coerce_constant`).

What SQL means in a way the tree cannot say raises :class:`Unsupported` (the
clause is then DuckDB's to run): a ``NULL`` constant, a string DuckDB would
cast to a number or time, numbers with more digits than a float holds, an
comparison with a float field that holds NaN (DuckDB orders NaN above every
number, where IEEE comparisons never match it), a ``TIMESTAMP`` with a UTC offset (DuckDB
drops the offset). A constant no SQL engine could compare with its field (a
number against a text field) is a :class:`~atdata.errors.QueryError`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import math
import re
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from atdata.errors import QueryError
from atdata.manifest._expr import And, Cmp, Expr, Has, In, IsNull, coerce_constant
from atdata.manifest._fields import Column, value_class

__all__ = ["CONTAINS", "SqlTerms", "Typed", "Unsupported", "number"]

CONTAINS = frozenset({"list_contains", "list_has", "array_contains", "array_has", "contains"})
"""The functions that test whether a list holds a value (``'x' IN tags`` is ``contains``)."""

# Names DuckDB resolves without a column of that name: the SQL value functions.
_VALUE_FUNCTIONS = frozenset(
    {
        "current_catalog",
        "current_date",
        "current_role",
        "current_schema",
        "current_time",
        "current_timestamp",
        "current_user",
        "localtime",
        "localtimestamp",
        "session_user",
        "user",
    }
)
_NAIVE_TIMESTAMPS = frozenset({"TIMESTAMP", "DATETIME", "TIMESTAMP_US"})
_AWARE_TIMESTAMPS = frozenset({"TIMESTAMPTZ", "TIMESTAMP WITH TIME ZONE"})
_DATE = r"\d{4}-\d{2}-\d{2}"
_TIME = r"[ T]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?"
_OFFSET = r"(?:Z|[+-]\d{2}(?::?\d{2})?)"
_TIME_TEXT = {
    "DATE": re.compile(_DATE),
    "naive": re.compile(f"{_DATE}(?:{_TIME})?"),
    "aware": re.compile(f"{_DATE}(?:{_TIME}{_OFFSET}?)?"),
}
_INTEGER = re.compile(r"-?\d+")
_INT64 = range(-(2**63), 2**63)


class Unsupported(Exception):  # noqa: N818 - internal control flow, never escapes the query
    """The construct is SQL the expression tree does not express (DuckDB runs it)."""


@dataclasses.dataclass(frozen=True)
class Typed:
    """A typed literal such as ``TIMESTAMP '2024-01-01 10:00'``: the type's name and the text."""

    type_name: str
    text: str


def number(text: str) -> int | float:
    """A numeric literal's value: an ``int`` (within int64) or a float that holds it exactly.

    A decimal such as ``3.0000000000000001`` is not the float it rounds to
    (DuckDB compares decimals exactly), so it is :class:`Unsupported`.
    """
    if _INTEGER.fullmatch(text):
        whole = int(text)
        if whole not in _INT64:
            raise Unsupported
        return whole
    try:
        value = float(text)
        exact = math.isfinite(value) and decimal.Decimal(repr(value)) == decimal.Decimal(text)
    except (ValueError, ArithmeticError):
        raise Unsupported from None
    if not exact:
        raise Unsupported
    return value


class SqlTerms:
    """Builds expression-tree nodes for SQL constructs over a dataset's manifest columns.

    Args:
        columns: the dataset's manifest columns (``__key__`` included).
        nan_fields: float fields some shard may hold NaN in.
        other_names: names a clause may use that are not manifest fields
            (columns only DuckDB's table has).
    """

    def __init__(
        self,
        columns: Mapping[str, Column],
        *,
        nan_fields: Collection[str] = (),
        other_names: Collection[str] = (),
    ) -> None:
        self.columns = columns
        self.nan_fields = frozenset(nan_fields)
        self.other_names = frozenset(n.lower() for n in other_names) | _VALUE_FUNCTIONS

    def column(self, name: str) -> Column:
        """The column a SQL name refers to (names are case-insensitive, as in DuckDB).

        Raises:
            QueryError: no column has that name (suggesting the closest).
        """
        found = self.columns.get(name)
        if found is not None:
            return found
        same = [c for n, c in self.columns.items() if n.lower() == name.lower()]
        if len(same) == 1:
            return same[0]
        if same or name.lower() in self.other_names:
            raise Unsupported
        raise QueryError.unknown_field(name, [c for c in self.columns if not c.startswith("__")])

    def compare(self, name: str, op: str, value: Any) -> Expr:
        """``name <op> value`` (``op`` one of ``== != < <= > >=``)."""
        column = self.column(name)
        if column.kind == "set" or value is None or column.name in self.nan_fields:
            raise Unsupported  # list ordering; `= NULL`, never true; NaN's SQL ordering
        return Cmp(column.name, op, self.constant(value, column))

    def between(self, name: str, low: Any, high: Any) -> Expr:
        """``name BETWEEN low AND high``."""
        return And((self.compare(name, ">=", low), self.compare(name, "<=", high)))

    def member(self, name: str, values: Sequence[Any]) -> Expr:
        """``name IN (values...)``."""
        column = self.column(name)
        if column.kind == "set" or not values or any(v is None for v in values):
            raise Unsupported  # a NULL in the list makes a miss null, not false
        return In(column.name, tuple(self.constant(v, column) for v in values))

    def is_null(self, name: str) -> Expr:
        """``name IS NULL``."""
        return IsNull(self.column(name).name)

    def contains(self, name: str, value: Any) -> Expr:
        """``list_contains(name, value)`` on a set field."""
        column = self.column(name)
        if column.kind != "set" or value is None:
            raise Unsupported  # on a string it is a substring test
        return Has(column.name, self.constant(value, column))

    def truth(self, name: str) -> Expr:
        """A boolean column used as a condition: ``name = TRUE``."""
        column = self.column(name)
        if column.kind == "set" or column.value_type != "bool":
            raise Unsupported  # DuckDB casts other types to booleans its own way
        return Cmp(column.name, "==", True)

    def constant(self, value: Any, column: Column) -> Any:
        """A literal in the column's terms.

        Raises:
            QueryError: the literal cannot be compared with the column's values.
        """
        if isinstance(value, Typed):
            return coerce_constant(column, _timestamp(value))
        wanted = value_class(column.value_type)
        if isinstance(value, str) and wanted != "text":
            raise Unsupported  # DuckDB casts the string to the column's type
        if isinstance(value, bool) and column.value_type in ("int", "float"):
            raise Unsupported  # ... and booleans to numbers
        number_into_bool = isinstance(value, int | float) and column.value_type == "bool"
        if number_into_bool and not isinstance(value, bool):
            raise Unsupported  # ... and numbers to booleans
        return coerce_constant(column, value)


def _timestamp(literal: Typed) -> dt.datetime:
    kind = literal.type_name.upper()
    if kind == "DATE":
        pattern = _TIME_TEXT["DATE"]
    elif kind in _NAIVE_TIMESTAMPS:
        pattern = _TIME_TEXT["naive"]  # DuckDB ignores a UTC offset here: not ours to guess
    elif kind in _AWARE_TIMESTAMPS:
        pattern = _TIME_TEXT["aware"]
    else:
        raise Unsupported
    if not pattern.fullmatch(literal.text):
        raise Unsupported
    try:
        return dt.datetime.fromisoformat(literal.text)
    except ValueError:
        raise Unsupported from None  # e.g. 24:00, which DuckDB rolls over
