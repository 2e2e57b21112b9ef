"""PromQL text → :mod:`query.ast`. The only module that imports ``promql_parser``.

promql-parser implements the Prometheus 3.x grammar while SOTP's semantics are Prometheus 2.42's, so this
module also narrows the grammar: ``holt_winters`` (renamed in 3.x) is accepted, 3.x-only functions and
aggregations are rejected as unknown, native-histogram functions answer "not supported". The parser raises
Rust panics (``pyo3_runtime.PanicException``, a ``BaseException``) for a few inputs such as
``x offset 1e20``; every failure becomes :class:`query.errors.BadData`.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import promql_parser as pp

from query import ast
from query.errors import BadData, ParseError, Unsupported
from query.lex import QueryLimits, check_limits, error_position, line_col, tokens
from sotp.model import METRIC_NAME, Matcher, MatchOp

#: Functions of Prometheus 2.42 with their return type (everything else returns an instant vector).
FUNCTIONS_242: frozenset[str] = frozenset(
    {
        "abs", "absent", "absent_over_time", "acos", "acosh", "asin", "asinh", "atan", "atanh", "avg_over_time",
        "ceil", "changes", "clamp", "clamp_max", "clamp_min", "cos", "cosh", "count_over_time", "days_in_month",
        "day_of_month", "day_of_week", "day_of_year", "deg", "delta", "deriv", "exp", "floor",
        "histogram_quantile", "holt_winters", "hour", "idelta", "increase", "irate", "label_replace",
        "label_join", "last_over_time", "ln", "log10", "log2", "max_over_time", "min_over_time", "minute",
        "month", "pi", "predict_linear", "present_over_time", "quantile_over_time", "rad", "rate", "resets",
        "round", "scalar", "sgn", "sin", "sinh", "sort", "sort_desc", "sqrt", "stddev_over_time",
        "stdvar_over_time", "sum_over_time", "tan", "tanh", "time", "timestamp", "vector", "year",
    }
)
SCALAR_FUNCTIONS = frozenset({"scalar", "time", "pi"})
NATIVE_HISTOGRAM_FUNCTIONS = frozenset({"histogram_count", "histogram_sum", "histogram_fraction"})
AGGREGATIONS_242 = frozenset(
    {"sum", "avg", "count", "min", "max", "group", "stddev", "stdvar", "topk", "bottomk", "quantile", "count_values"}
)

# 2.42 spells it holt_winters; the 3.x grammar only knows double_exponential_smoothing. Rewrite the call
# outside string literals before parsing, and map the name back afterwards.
# (an unterminated quote is kept as one character, so the parser still sees it and reports it)
_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`|#[^\n]*|[^"\'`#]+|.', re.S)
_HW = re.compile(r"(?<![\w:])holt_winters(?=\s*\()")
_DES = re.compile(r"(?<![\w:])double_exponential_smoothing(?![\w:])")


def _rewrite(query: str) -> str:
    out = []
    for tok in _TOKENS.findall(query):
        if tok[0] in "\"'`#":
            out.append(tok)  # a string, a comment, or a lone unterminated quote
            continue
        if _DES.search(tok):
            raise ParseError('parse error: unknown function with name "double_exponential_smoothing"')
        out.append(_HW.sub("double_exponential_smoothing", tok))
    return "".join(out)


def _parser_error(text: str) -> str | None:
    """promql-parser's error for ``text`` (None when it parses)."""
    try:
        pp.parse(text)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as err:
        return str(err)
    return None


#: promql-parser wording → Prometheus 2.42's, where they mean the same thing
_WORDING: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"^unexpected end of input inside brackets$"), "unclosed left bracket"),
    (re.compile(r"^unknown function with name '([^']*)'$"), r'unknown function with name "\1"'),
    (re.compile(r"^expected type matrix in call to function '([^']*)', got vector$"),
     r'expected type range vector in call to function "\1", got instant vector'),
]
_REWRITE_GROWTH = len("double_exponential_smoothing") - len("holt_winters")


def _raw_parse(original: str, limits: QueryLimits) -> Any:
    check_limits(original, limits.max_length, limits.max_depth)  # before the Rust parser ever sees it
    query = _rewrite(original)
    try:
        return pp.parse(query)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as err:
        msg = str(err).replace("double_exponential_smoothing", "holt_winters")
        pos = error_position(query, str(err), _parser_error)
        if pos is not None:
            pos -= _REWRITE_GROWTH * query.count("double_exponential_smoothing", 0, pos)
        if msg == "invalid promql query" and pos is not None:
            tok = next((t.text for t in tokens(original[pos:])), "")
            msg = f'unexpected "{tok}"' if tok else "unexpected end of input"
        for rx, repl in _WORDING:
            msg = rx.sub(repl, msg)
        where = f"{line_col(original, pos)}: " if pos is not None else ""
        raise ParseError(f"{where}parse error: {msg}") from None


def parse(query: str, limits: QueryLimits | None = None) -> ast.Expr:
    """Parse a PromQL expression; raises :class:`BadData` for invalid, oversized or unsupported input."""
    if not query.strip():
        raise ParseError("parse error: no expression found in input")
    return _convert(_raw_parse(query, limits or QueryLimits()))


def prettify(query: str, limits: QueryLimits | None = None) -> str:
    """Canonical formatting of a query (``/api/v1/format_query``)."""
    expr = _raw_parse(query, limits or QueryLimits())
    _convert(expr)  # reject what 2.42 rejects
    try:
        text: str = expr.prettify()
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as err:
        raise BadData(f"cannot format query: {err}") from None
    return text.replace("double_exponential_smoothing", "holt_winters")


def parse_selector(text: str, limits: QueryLimits | None = None) -> list[Matcher]:
    """Parse a series selector (``match[]`` of the discovery endpoints) into matchers."""
    e = parse(text, limits)
    if not isinstance(e, ast.VectorSelector):
        raise BadData(f"invalid series selector {text!r}: expected a vector selector such as up{{job=\"x\"}}")
    if e.offset_ms or e.at is not None:
        raise BadData(f"invalid series selector {text!r}: offset and @ are not allowed here")
    return e.matchers


def _ms(td: timedelta | None) -> int:
    if td is None:
        return 0
    return td // timedelta(milliseconds=1)


def _at(node: Any) -> ast.At | None:
    try:
        at = node.at
        if at is None:
            return None
        if at.type == pp.AtModifierType.Start:
            return ast.At(ast.AtKind.START)
        if at.type == pp.AtModifierType.End:
            return ast.At(ast.AtKind.END)
        when: datetime = at.at
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as err:
        raise ParseError(f"parse error: invalid @ modifier: {err}") from None
    return ast.At(ast.AtKind.TIME, (when - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1))


_MATCH_OPS = {"MatchOp.Equal": MatchOp.EQ, "MatchOp.NotEqual": MatchOp.NEQ, "MatchOp.Re": MatchOp.RE,
              "MatchOp.NotRe": MatchOp.NRE}


def _selector(node: Any) -> ast.VectorSelector:
    ms = node.matchers
    if ms.or_matchers:
        raise ParseError('parse error: "or" inside a selector is not supported by Prometheus 2.42')
    matchers: list[Matcher] = []
    if node.name is not None:
        matchers.append(Matcher(METRIC_NAME, MatchOp.EQ, node.name))
    for m in ms.matchers:
        op = _MATCH_OPS.get(str(m.op))
        if op is None:
            raise Unsupported(f"matcher operator {m.op} is not supported")
        try:
            matchers.append(Matcher(m.name, op, m.value))
        except ValueError as err:
            raise ParseError(f"parse error: {err}") from None
    return ast.VectorSelector(matchers, _ms(node.offset), _at(node))


def _labels(mod: Any) -> list[str]:
    return list(mod.labels) if mod is not None else []


def _convert(node: Any) -> ast.Expr:
    if isinstance(node, pp.NumberLiteral):
        return ast.NumberLiteral(float(node.val))
    if isinstance(node, pp.StringLiteral):
        return ast.StringLiteral(str(node.val))
    if isinstance(node, pp.VectorSelector):
        return _selector(node)
    if isinstance(node, pp.MatrixSelector):
        return ast.MatrixSelector(_selector(node.vector_selector), _ms(node.range))
    if isinstance(node, pp.SubqueryExpr):
        step = None if node.step is None else _ms(node.step)
        return ast.Subquery(_convert(node.expr), _ms(node.range), step, _ms(node.offset), _at(node))
    if isinstance(node, pp.ParenExpr):
        return ast.Paren(_convert(node.expr))
    if isinstance(node, pp.UnaryExpr):
        inner = _convert(node.expr)
        if isinstance(inner, ast.NumberLiteral):
            return ast.NumberLiteral(-inner.val)
        return ast.Unary(inner)
    if isinstance(node, pp.Call):
        name = str(node.func.name)
        if name == "double_exponential_smoothing":
            name = "holt_winters"
        if name in NATIVE_HISTOGRAM_FUNCTIONS:
            raise Unsupported(f"{name}(): native histograms are not supported by SOTP")
        if name not in FUNCTIONS_242:
            raise ParseError(f'parse error: unknown function with name "{name}"')
        returns = ast.ValueType.SCALAR if name in SCALAR_FUNCTIONS else ast.ValueType.VECTOR
        return ast.Call(name, [_convert(a) for a in node.args], returns)
    if isinstance(node, pp.AggregateExpr):
        op = str(node.op)
        if op not in AGGREGATIONS_242:
            raise ParseError(f'parse error: unknown aggregation "{op}" (not in Prometheus 2.42)')
        mod = node.modifier
        without = mod is not None and mod.type == pp.AggModifierType.Without
        param = None if node.param is None else _convert(node.param)
        return ast.Aggregate(op, _convert(node.expr), param, _labels(mod), without)
    if isinstance(node, pp.BinaryExpr):
        return _binary(node)
    raise Unsupported(f"expression type {type(node).__name__} is not supported")


_CARD = {
    "VectorMatchCardinality.OneToOne": ast.Card.ONE_TO_ONE,
    "VectorMatchCardinality.ManyToOne": ast.Card.MANY_TO_ONE,
    "VectorMatchCardinality.OneToMany": ast.Card.ONE_TO_MANY,
    "VectorMatchCardinality.ManyToMany": ast.Card.MANY_TO_MANY,
}


def _binary(node: Any) -> ast.Binary:
    op = str(node.op)
    lhs, rhs = _convert(node.lhs), _convert(node.rhs)
    mod = node.modifier
    b = ast.Binary(op, lhs, rhs)
    if op in ast.SET_OPS:
        b.card = ast.Card.MANY_TO_MANY
    if mod is None:
        return b
    if getattr(mod, "fill_values", None) is not None and _has_fill(mod.fill_values):
        raise ParseError("parse error: fill modifiers are not supported by Prometheus 2.42")
    b.return_bool = bool(mod.return_bool)
    card = _CARD.get(str(mod.card))
    if card is not None and op not in ast.SET_OPS:
        b.card = card
    matching = mod.matching
    if matching is not None:
        b.on = matching.type == pp.LabelModifierType.Include
        b.matching = list(matching.labels)
    b.include = list(mod.group_labels or [])
    return b


def _has_fill(fill: Any) -> bool:
    return any(getattr(fill, a, None) is not None for a in ("lhs", "rhs"))
