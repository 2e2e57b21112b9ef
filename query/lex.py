"""A light PromQL tokenizer: size limits checked before parsing, and positions for parse errors.

promql-parser is Rust: a query nested deep enough overflows its stack and kills the process (a 40 KB
form POST of ``(((...)))`` did, and so does ``1+1+...`` with ~6,000 terms), and 3,000 levels already
take seconds. :func:`check_limits` therefore bounds the length and an upper bound of the syntax tree's
depth (brackets plus the operators inside each bracket level along the path) from the tokens alone,
so no deep query ever reaches the parser or SOTP's recursive evaluator.

promql-parser reports no positions; :func:`error_position` derives Prometheus's ``line:col`` for the
errors where it can: the end of the input for unclosed brackets, the offending token for stray closing
brackets, unterminated strings and unknown functions, and for a generic syntax error the first token
after which no continuation can parse (found by bisecting prefixes, a parse each).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from query.errors import ParseError

#: Defaults of ``server.query_max_length`` (bytes) and ``server.query_max_depth`` (syntax-tree levels).
MAX_QUERY_LENGTH = 128 * 1024
MAX_QUERY_DEPTH = 128

_TOKEN = re.compile(
    r"""(?P<ws>\s+)
      | (?P<comment>\#[^\n]*)
      | (?P<string>"(?:[^"\\\n]|\\.)*"?|'(?:[^'\\\n]|\\.)*'?|`[^`]*`?)
      | (?P<ident>[A-Za-z_:][A-Za-z0-9_:.]*)
      | (?P<number>(?:0[xX][0-9a-fA-F]+|[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)(?:[a-zA-Z]+[0-9]*)*)
      | (?P<op>==|!=|>=|<=|=~|!~|[-+*/%^<>=,@!~])
      | (?P<open>[(\[{])
      | (?P<close>[)\]}])
      | (?P<other>.)""",
    re.S | re.X,
)
_WORD_OPS = frozenset({"and", "or", "unless", "atan2"})
_BINARY = frozenset({"==", "!=", ">=", "<=", "+", "-", "*", "/", "%", "^", "<", ">"})


@dataclass(frozen=True)
class QueryLimits:
    """What a query text may be before it is parsed (``server.query_max_length``, ``server.query_max_depth``)."""

    max_length: int = MAX_QUERY_LENGTH
    max_depth: int = MAX_QUERY_DEPTH


@dataclass(frozen=True)
class Token:
    start: int
    end: int
    kind: str
    text: str


def tokens(text: str) -> list[Token]:
    out = []
    for m in _TOKEN.finditer(text):
        kind = m.lastgroup or "other"
        if kind not in ("ws", "comment"):
            out.append(Token(m.start(), m.end(), kind, m.group()))
    return out


def check_limits(text: str, max_length: int = MAX_QUERY_LENGTH, max_depth: int = MAX_QUERY_DEPTH) -> None:
    """Refuse a query longer than ``max_length`` bytes or nested deeper than ``max_depth`` (400)."""
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > max_length:
        raise ParseError(f"query is {size} bytes long, above the limit of {max_length} bytes (server.query_max_length)")
    # one counter per open bracket level (plus the top level): operators met at that level; the tree's
    # depth at any point is at most the number of open levels plus every operator counted on the path
    ops = [0]
    kinds: list[str] = []
    depth = 0
    for tok in tokens(text):
        if tok.kind == "open":
            kinds.append(tok.text)
            ops.append(0)
        elif tok.kind == "close":
            if len(ops) > 1:
                ops.pop()
                kinds.pop()
        elif "{" in kinds[-1:]:
            continue  # label matchers: =, !=, =~ are not operators
        elif (tok.kind == "op" and tok.text in _BINARY) or (tok.kind == "ident" and tok.text in _WORD_OPS):
            ops[-1] += 1
        else:
            continue
        depth = max(depth, len(ops) - 1 + sum(ops))
        if depth > max_depth:
            raise ParseError(
                f"query is nested deeper than the limit of {max_depth} levels (brackets and operators; "
                "server.query_max_depth): split it or raise the limit"
            )


def line_col(text: str, pos: int) -> str:
    """Prometheus's ``line:col`` (1-based) of a byte offset."""
    line = text.count("\n", 0, pos) + 1
    col = pos - (text.rfind("\n", 0, pos) + 1) + 1
    return f"{line}:{col}"


_AT_END = ("unclosed left parenthesis", "unclosed left bracket", "unexpected end of input")
#: Text appended to a prefix to tell "wants more input" from "wrong here" (any of them parsing means the former).
_COMPLETIONS = ("", " 1", " x", " (x)", " (x) x", ")", ") x", " 1)", " x)", " x) x", "]", "}", ' a="x"}', '"x"}',
                '=""}', " [1m]", " x]")
_CLOSER = {"(": ")", "[": "]", "{": "}"}


def _incomplete(msg: str) -> bool:
    return msg.startswith(_AT_END) or msg.startswith("unterminated")


def error_position(text: str, msg: str, parse: Callable[[str], str | None]) -> int | None:
    """Offset Prometheus would report for promql-parser's error ``msg``; ``parse(text)`` → error or None."""
    toks = tokens(text)
    if msg.startswith("unterminated quoted string"):
        bad = [t for t in toks if t.kind == "string" and (len(t.text) < 2 or t.text[-1] != t.text[0])]
        return bad[0].start if bad else None
    if msg.startswith(("unexpected right parenthesis", "unexpected right bracket", "unexpected right brace")):
        depth = 0
        for t in toks:
            if t.kind == "open":
                depth += 1
            elif t.kind == "close":
                if depth == 0:
                    # 2.42's lexer has already consumed a ")" when it reports it, not a "]"
                    return t.end if t.text == ")" else t.start
                depth -= 1
        return None
    m = re.match(r"unknown function with name '([^']*)'", msg)
    if m:
        for i, t in enumerate(toks[:-1]):
            if t.kind == "ident" and t.text == m.group(1) and toks[i + 1].text == "(":
                return t.start
        return None
    if msg.startswith(_AT_END) or msg == "invalid promql query":
        # the first token after which no continuation parses; none (before the end) means "wants more input"
        pos = _first_wrong_token(text, toks, parse)
        return len(text) if pos is None else pos
    return None


def _closed(text: str) -> str:
    """``text`` with its open brackets closed (promql-parser checks the balance before the grammar, so an
    unclosed bracket would hide the real error)."""
    stack: list[str] = []
    for t in tokens(text):
        if t.kind == "open":
            stack.append(_CLOSER[t.text])
        elif t.kind == "close" and stack:
            stack.pop()
    return text + "".join(reversed(stack))


def _wrong_here(prefix: str, parse: Callable[[str], str | None]) -> bool:
    """No continuation of ``prefix`` parses or merely asks for more input."""
    for tail in _COMPLETIONS:
        err = parse(_closed(prefix + tail))
        if err is None or not _syntax_error(err) or _incomplete(err):
            return False  # parses, or fails only on meaning (types, arity): the syntax can go on
    return True


def _syntax_error(msg: str) -> bool:
    return msg == "invalid promql query" or msg.startswith(("unexpected", "unclosed", "unterminated"))


def _first_wrong_token(text: str, toks: list[Token], parse: Callable[[str], str | None]) -> int | None:
    """Start of the first token after which ``text`` cannot go on (None: it only wants more input)."""
    if not toks or not _wrong_here(text, parse):
        return None
    lo, hi = 0, len(toks) - 1
    while lo < hi:
        mid = (lo + hi) // 2
        if _wrong_here(text[: toks[mid].end], parse):
            hi = mid
        else:
            lo = mid + 1
    return toks[lo].start


def _fails(err: str | None) -> bool:
    return err is not None and not _incomplete(err)
