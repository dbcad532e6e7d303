"""atdata's own reader of SQL ``WHERE`` clauses: the common subset, without DuckDB.

A tokenizer and a recursive-descent parser for the conditions most queries
are made of, building the nodes with :class:`~atdata.manifest._sqlterms.SqlTerms`
(the same nodes the reader of DuckDB's parse tree builds), so the clause can be
evaluated with ``pyarrow.compute`` instead of importing DuckDB (and the pandas
it imports to read Arrow tables)::

    condition  := disjunct (OR disjunct)*
    disjunct   := negation (AND negation)*
    negation   := NOT negation | predicate
    predicate  := '(' condition ')' | TRUE | FALSE
                | column                                  -- a boolean column
                | column compare literal | literal compare column
                | column [NOT] IN '(' literal (',' literal)* ')'
                | column [NOT] BETWEEN literal AND literal
                | column IS [NOT] NULL
                | literal IN column                       -- a set field holds the value
                | CONTAINS '(' column ',' literal ')'     -- list_contains, list_has, ...
    compare    := '=' | '==' | '!=' | '<>' | '<' | '<=' | '>' | '>='
    literal    := ['-'] number | 'string' | TRUE | FALSE | NULL
                | (TIMESTAMP | TIMESTAMPTZ | DATE) 'string'
    column     := name | "quoted name"

Keywords and names are case-insensitive, as in DuckDB. Anything else (other
functions, ``LIKE``, arithmetic, casts, comments, a syntax error) makes
:func:`parse_where` return None and the clause goes to DuckDB, which runs all
of SQL and reports mistakes in its own words.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from atdata.errors import QueryError
from atdata.manifest._expr import FLIPPED, And, Expr, Lit, Not, Or
from atdata.manifest._sqlterms import CONTAINS, SqlTerms, Typed, Unsupported, number

__all__ = ["parse_where"]

_TOKEN = re.compile(
    r"""\s*(?:
      (?P<number>(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)
    | (?P<string>'(?:[^']|'')*')
    | (?P<quoted>"(?:[^"]|"")+")
    | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
    | (?P<symbol><>|!=|==|<=|>=|[=<>(),-])
    )""",
    re.VERBOSE,
)
_COMPARE = {
    "=": "==",
    "==": "==",
    "!=": "!=",
    "<>": "!=",
    "<": "<",
    "<=": "<=",
    ">": ">",
    ">=": ">=",
}
_TYPED = frozenset({"timestamp", "timestamptz", "date"})

# Words DuckDB does not take as an unquoted column name (its "reserved" and
# "type_function" keywords: SELECT * FROM duckdb_keywords()).
_KEYWORDS = """
    all analyse analyze and anti any array as asc asof asymmetric at authorization binary both
    by case cast check collate collation column columns concurrently constraint create cross
    default deferrable desc describe distinct do else end except false fetch for foreign freeze
    from full generated glob group having ilike in initially inner intersect into is isnull join
    lambda lateral leading left like limit map natural not notnull null offset on only or order
    outer overlaps pivot pivot_longer pivot_wider placing positional primary qualify references
    returning right select semi show similar some struct summarize symmetric table tablesample
    then to trailing true try_cast tuple union unique unpack unpivot using variadic verbose when
    where window with
"""
NOT_NAMES = frozenset(_KEYWORDS.split())
"""Keywords that are not column names unless double-quoted."""


def parse_where(clause: str, terms: SqlTerms) -> Expr | None:
    """The clause as an expression tree, or None when it is not in the subset read here.

    Raises:
        QueryError: a name no manifest field has (suggesting the closest), or a
            constant that cannot be compared with its field; only for a clause
            that parses, so a syntax error is left for DuckDB to report.
    """
    try:
        parser = _Parser(_tokenize(clause), terms)
        expr = parser.condition()
        if parser.peek() is not None:
            raise Unsupported
    except (Unsupported, RecursionError):
        return None
    if parser.error is not None:
        raise parser.error
    return expr


_Token = tuple[str, str]  # (kind, text): kind is number, string, quoted, name or symbol


def _tokenize(clause: str) -> list[_Token]:
    tokens: list[_Token] = []
    position, end = 0, len(clause.rstrip())
    while position < end:
        match = _TOKEN.match(clause, position)
        if match is None:
            raise Unsupported  # a character outside the subset: an operator, a comment...
        kind = match.lastgroup
        assert kind is not None
        tokens.append((kind, match.group(kind)))
        position = match.end()
    return tokens


class _Parser:
    def __init__(self, tokens: list[_Token], terms: SqlTerms) -> None:
        self.tokens = tokens
        self.at = 0
        self.terms = terms
        self.error: QueryError | None = None

    # -- tokens --------------------------------------------------------------------------

    def peek(self, ahead: int = 0) -> _Token | None:
        i = self.at + ahead
        return self.tokens[i] if i < len(self.tokens) else None

    def take(self) -> _Token:
        token = self.peek()
        if token is None:
            raise Unsupported
        self.at += 1
        return token

    def kind(self, ahead: int = 0) -> str | None:
        token = self.peek(ahead)
        return token[0] if token is not None else None

    def keyword(self, word: str, ahead: int = 0) -> bool:
        token = self.peek(ahead)
        return token is not None and token[0] == "name" and token[1].lower() == word

    def accept(self, word: str) -> bool:
        if self.keyword(word):
            self.at += 1
            return True
        return False

    def symbol(self, text: str) -> bool:
        return self.peek() == ("symbol", text)

    def expect(self, text: str) -> None:
        if self.take() != ("symbol", text):
            raise Unsupported

    # -- the grammar ---------------------------------------------------------------------

    def condition(self) -> Expr:
        parts = [self.disjunct()]
        while self.accept("or"):
            parts.append(self.disjunct())
        return parts[0] if len(parts) == 1 else Or(tuple(parts))

    def disjunct(self) -> Expr:
        parts = [self.negation()]
        while self.accept("and"):
            parts.append(self.negation())
        return parts[0] if len(parts) == 1 else And(tuple(parts))

    def negation(self) -> Expr:
        if self.accept("not"):
            return Not(self.negation())
        return self.predicate()

    def predicate(self) -> Expr:
        terms = self.terms
        if self.symbol("("):
            self.take()
            inner = self.condition()
            self.expect(")")
            return inner
        token = self.peek()
        if token is None:
            raise Unsupported
        kind, text = token
        if kind == "name" and self.peek(1) == ("symbol", "("):
            if text.lower() not in CONTAINS:
                raise Unsupported  # another function: DuckDB's
            self.at += 2
            name = self.column()
            self.expect(",")
            value = self.literal()
            self.expect(")")
            return self.build(terms.contains, name, value)
        if self.is_literal_start():
            value = self.literal()
            if isinstance(value, bool) and not self.is_operator():
                return Lit(value)
            if self.accept("in"):
                return self.build(terms.contains, self.column(), value)
            op = self.compare_op()
            return self.build(terms.compare, self.column(), FLIPPED[op], value)
        name = self.column()
        if self.accept("is"):
            negated = self.accept("not")
            if not self.accept("null"):
                raise Unsupported  # IS TRUE, IS DISTINCT FROM...
            test = self.build(terms.is_null, name)
            return Not(test) if negated else test
        negated = self.keyword("not") and (self.keyword("in", 1) or self.keyword("between", 1))
        if negated:
            self.at += 1
        if self.accept("in"):
            self.expect("(")
            values = [self.literal()]
            while self.symbol(","):
                self.take()
                values.append(self.literal())
            self.expect(")")
            test = self.build(terms.member, name, values)
        elif self.accept("between"):
            low = self.literal()
            if not self.accept("and"):
                raise Unsupported
            test = self.build(terms.between, name, low, self.literal())
        elif self.is_operator():
            op = self.compare_op()
            return self.build(terms.compare, name, op, self.literal())
        else:
            return self.build(terms.truth, name)
        return Not(test) if negated else test

    def column(self) -> str:
        kind, text = self.take()
        if kind == "quoted":
            return text[1:-1].replace('""', '"')
        if kind != "name" or text.lower() in NOT_NAMES:
            raise Unsupported
        return text

    def is_operator(self) -> bool:
        token = self.peek()
        return token is not None and token[0] == "symbol" and token[1] in _COMPARE

    def compare_op(self) -> str:
        kind, text = self.take()
        if kind != "symbol" or text not in _COMPARE:
            raise Unsupported
        return _COMPARE[text]

    def is_literal_start(self) -> bool:
        token = self.peek()
        if token is None:
            return False
        kind, text = token
        if kind in ("number", "string") or token == ("symbol", "-"):
            return True
        word = text.lower() if kind == "name" else ""
        return word in ("true", "false", "null") or (word in _TYPED and self.kind(1) == "string")

    def literal(self) -> Any:
        kind, text = self.take()
        if kind == "symbol" and text == "-":
            kind, text = self.take()
            if kind != "number":
                raise Unsupported
            return number("-" + text)
        if kind == "number":
            return number(text)
        if kind == "string":
            return text[1:-1].replace("''", "'")
        word = text.lower() if kind == "name" else ""
        if word in _TYPED and self.kind() == "string":
            return Typed(word.upper(), self.literal())
        if word in ("true", "false"):
            return word == "true"
        if word == "null":
            return None
        raise Unsupported

    def build(self, make: Callable[..., Expr], *args: Any) -> Expr:
        """``make(*args)``; a QueryError is kept until the whole clause has parsed."""
        try:
            return make(*args)
        except QueryError as exc:
            if self.error is None:
                self.error = exc
            return Lit(False)
