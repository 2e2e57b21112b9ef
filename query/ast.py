"""SOTP's own PromQL syntax tree, decoupled from promql-parser (see :mod:`query.parse`).

All times and durations are int64 milliseconds. Metric names are always normalised into a
``__name__`` equality matcher (``up`` and ``{__name__="up"}`` give the same tree).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from sotp.model import Matcher


class ValueType(Enum):
    """The static type of an expression, as the parser checks it."""

    SCALAR = "scalar"
    VECTOR = "vector"
    MATRIX = "matrix"
    STRING = "string"


class AtKind(Enum):
    """What an ``@`` modifier pins to."""

    TIME = "time"
    START = "start"
    END = "end"


@dataclass(frozen=True)
class At:
    """An ``@`` modifier: a fixed time in ms, or the query's ``start()``/``end()``."""

    kind: AtKind
    t_ms: int = 0


@dataclass(eq=False)
class Expr:
    """Base class of every node; nodes compare by identity (the planner keys on them)."""

    @property
    def type(self) -> ValueType:
        raise NotImplementedError


@dataclass(eq=False)
class NumberLiteral(Expr):
    val: float

    @property
    def type(self) -> ValueType:
        return ValueType.SCALAR


@dataclass(eq=False)
class StringLiteral(Expr):
    val: str

    @property
    def type(self) -> ValueType:
        return ValueType.STRING


@dataclass(eq=False)
class VectorSelector(Expr):
    """``name{matchers} offset o @ t``; ``matchers`` include the ``__name__`` matcher."""

    matchers: list[Matcher]
    offset_ms: int = 0
    at: At | None = None

    @property
    def type(self) -> ValueType:
        return ValueType.VECTOR


@dataclass(eq=False)
class MatrixSelector(Expr):
    selector: VectorSelector
    range_ms: int

    @property
    def type(self) -> ValueType:
        return ValueType.MATRIX


@dataclass(eq=False)
class Subquery(Expr):
    """``expr[range:step] offset o @ t``; ``step_ms`` is None for ``[range:]`` (default interval)."""

    expr: Expr
    range_ms: int
    step_ms: int | None
    offset_ms: int = 0
    at: At | None = None

    @property
    def type(self) -> ValueType:
        return ValueType.MATRIX


@dataclass(eq=False)
class Call(Expr):
    func: str
    args: list[Expr]
    returns: ValueType = ValueType.VECTOR

    @property
    def type(self) -> ValueType:
        return self.returns


@dataclass(eq=False)
class Aggregate(Expr):
    """``op by|without (grouping) (param, expr)``; ``without`` False with no grouping = all in one group."""

    op: str
    expr: Expr
    param: Expr | None = None
    grouping: list[str] = field(default_factory=list)
    without: bool = False

    @property
    def type(self) -> ValueType:
        return ValueType.VECTOR


class Card(Enum):
    """Vector matching cardinality."""

    ONE_TO_ONE = "one-to-one"
    MANY_TO_ONE = "many-to-one"  # group_left
    ONE_TO_MANY = "one-to-many"  # group_right
    MANY_TO_MANY = "many-to-many"  # and, or, unless


@dataclass(eq=False)
class Binary(Expr):
    """``lhs op [bool] [on|ignoring(labels)] [group_left|group_right(include)] rhs``."""

    op: str
    lhs: Expr
    rhs: Expr
    return_bool: bool = False
    card: Card = Card.ONE_TO_ONE
    on: bool = False
    matching: list[str] = field(default_factory=list)
    include: list[str] = field(default_factory=list)

    @property
    def type(self) -> ValueType:
        if self.lhs.type is ValueType.SCALAR and self.rhs.type is ValueType.SCALAR:
            return ValueType.SCALAR
        return ValueType.VECTOR


@dataclass(eq=False)
class Unary(Expr):
    """Unary minus (plus is dropped by the parser)."""

    expr: Expr

    @property
    def type(self) -> ValueType:
        return self.expr.type


@dataclass(eq=False)
class Paren(Expr):
    """Kept because ``absent((x))`` differs from ``absent(x)`` in Prometheus."""

    expr: Expr

    @property
    def type(self) -> ValueType:
        return self.expr.type


ARITHMETIC_OPS = frozenset({"+", "-", "*", "/", "%", "^", "atan2"})
COMPARISON_OPS = frozenset({"==", "!=", ">", "<", ">=", "<="})
SET_OPS = frozenset({"and", "or", "unless"})


def unwrap_parens(e: Expr) -> Expr:
    """The expression inside any number of parentheses."""
    while isinstance(e, Paren):
        e = e.expr
    return e
