"""A Go ``text/template`` engine: the subset Prometheus rule files use, with Go's semantics and messages.

Rule labels and annotations are Go templates (``{{ $labels.instance }}``, ``{{ $value | humanize }}``,
``{{ range query "..." }}``). No maintained Python package implements Go templates (PyPI has one CGo
wrapper at version 0.0.2), so this module does: actions with trim markers and comments, pipelines,
variables (``:=`` and ``=``), fields on maps and structs, ``if``/``else if``/``range``/``with``
(with ``else``, ``break``, ``continue``), ``define``/``template``/``block``, parenthesised pipelines, and
the builtins (``and or not len index slice print printf println html js urlquery eq ne lt le gt ge``).

Errors read as Go's (``template: NAME:LINE:COL: executing "NAME" at <CTX>: ...``) because promtool prints
them inside expanded annotations and SOTP's test runner must print the same.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rules.gofmt import sprint, sprint_value, sprintf, sprintln, type_name


class TemplateError(Exception):
    """A parse or execution error, with Go's message."""


class _Break(Exception):
    pass


class _Continue(Exception):
    pass


class FuncError(Exception):
    """Raised by a template function; reported as ``error calling NAME: <message>``."""


# ---- functions -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Func:
    """A template function: ``params`` are Go parameter kinds (``any str float int``); ``variadic``
    repeats the last one. ``lazy`` functions (``and``/``or``) receive thunks."""

    fn: Callable[..., Any]
    params: tuple[str, ...] = ()
    variadic: bool = False
    lazy: bool = False


_MISSING = object()


def truth(v: Any) -> bool:
    """Go template truthiness: false, 0, "", nil and empty collections are false."""
    if v is None:
        return False
    if isinstance(v, bool):
        return v
    if isinstance(v, int | float):
        return v != 0
    if isinstance(v, str | Mapping | list | tuple):
        return len(v) > 0
    return True


def _kind(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float"
    if isinstance(v, str):
        return "string"
    return "other"


def _eq(a: Any, *bs: Any) -> bool:
    if not bs:
        raise FuncError("missing argument for comparison")
    ka = _kind(a)
    for b in bs:
        kb = _kind(b)
        if ka == "other" or kb == "other":
            if a is None or b is None:
                if a is b:
                    return True
                continue
            raise FuncError("incompatible types for comparison" if ka != kb else "invalid type for comparison")
        if ka != kb:
            raise FuncError("incompatible types for comparison")
        if a == b:
            return True
    return False


def _lt(a: Any, b: Any) -> bool:
    ka, kb = _kind(a), _kind(b)
    if ka in ("other", "bool") or kb in ("other", "bool"):
        raise FuncError("invalid type for comparison")
    if ka != kb:
        raise FuncError("incompatible types for comparison")
    return bool(a < b)


def _len(v: Any) -> int:
    if isinstance(v, str):
        return len(v.encode())  # Go strings are bytes
    if isinstance(v, Mapping | list | tuple):
        return len(v)
    raise FuncError(f"len of type {type_name(v)}")


def _index(item: Any, *idx: Any) -> Any:
    if item is None:
        raise FuncError("index of untyped nil")
    for i in idx:
        if isinstance(item, Mapping):
            if not isinstance(i, str):
                raise FuncError(f"value has type {type_name(i)}; should be string")
            item = item.get(i, "" if all(isinstance(v, str) for v in item.values()) else None)
        elif isinstance(item, list | tuple | str):
            if not isinstance(i, int) or isinstance(i, bool):
                raise FuncError(f"cannot index slice/array with type {type_name(i)}")
            if i < 0 or i >= len(item):
                raise FuncError(f"index out of range: {i}")
            item = item[i] if not isinstance(item, str) else ord(item[i])
        else:
            raise FuncError(f"can't index item of type {type_name(item)}")
    return item


def _slice(item: Any, *idx: Any) -> Any:
    if not isinstance(item, str | list | tuple):
        raise FuncError(f"can't slice item of type {type_name(item)}")
    if len(idx) > 3:
        raise FuncError(f"too many slice indexes: {len(idx)}")
    bounds = [int(i) for i in idx]
    if len(bounds) == 1:
        return item[bounds[0] :]
    if len(bounds) >= 2:
        return item[bounds[0] : bounds[1]]
    return item


def _js(*args: Any) -> str:
    s = sprint(args) if not (len(args) == 1 and isinstance(args[0], str)) else args[0]
    out = []
    for ch in s:
        if ch in "\\'\"":
            out.append("\\" + ch)
        elif ch == "<":
            out.append("\\u003C")
        elif ch == ">":
            out.append("\\u003E")
        elif ch == "&":
            out.append("\\u0026")
        elif ch == "=":
            out.append("\\u003D")
        elif ord(ch) < 0x20:
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    return "".join(out)


def _html(*args: Any) -> str:
    s = sprint(args) if not (len(args) == 1 and isinstance(args[0], str)) else args[0]
    return (s.replace("&", "&amp;").replace("'", "&#39;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&#34;").replace("\x00", "\ufffd"))  # Go's template.HTMLEscapeString


def _urlquery(*args: Any) -> str:
    s = sprint(args) if not (len(args) == 1 and isinstance(args[0], str)) else args[0]
    return urllib.parse.quote_plus(s, safe="")


def _and(*thunks: Callable[[], Any]) -> Any:
    v: Any = None
    for t in thunks:
        v = t()
        if not truth(v):
            return v
    return v


def _or(*thunks: Callable[[], Any]) -> Any:
    v: Any = None
    for t in thunks:
        v = t()
        if truth(v):
            return v
    return v


BUILTINS: dict[str, Func] = {
    "and": Func(_and, ("any", "any"), variadic=True, lazy=True),
    "or": Func(_or, ("any", "any"), variadic=True, lazy=True),
    "not": Func(lambda v: not truth(v), ("any",)),
    "len": Func(_len, ("any",)),
    "index": Func(_index, ("any", "any"), variadic=True),
    "slice": Func(_slice, ("any", "any"), variadic=True),
    "print": Func(lambda *a: sprint(a), ("any",), variadic=True),
    "printf": Func(lambda f, *a: sprintf(f, a), ("str", "any"), variadic=True),
    "println": Func(lambda *a: sprintln(a), ("any",), variadic=True),
    "html": Func(_html, ("any",), variadic=True),
    "js": Func(_js, ("any",), variadic=True),
    "urlquery": Func(_urlquery, ("any",), variadic=True),
    "eq": Func(_eq, ("any", "any"), variadic=True),
    "ne": Func(lambda a, b: not _eq(a, b), ("any", "any")),
    "lt": Func(_lt, ("any", "any")),
    "le": Func(lambda a, b: _lt(a, b) or _eq(a, b), ("any", "any")),
    "gt": Func(lambda a, b: not _lt(a, b) and not _eq(a, b), ("any", "any")),
    "ge": Func(lambda a, b: not _lt(a, b), ("any", "any")),
}


# ---- lexer ---------------------------------------------------------------------------------------

_SPACE = " \t\r\n"


@dataclass
class _Tok:
    kind: str  # text, action-start, action-end, ident, field, var, string, rawstring, char, number, bool, nil,
    # dot, lparen, rparen, pipe, declare, assign, comma, keyword, space, eof, error
    val: str
    pos: int
    line: int


_KEYWORDS = {"if", "else", "end", "range", "with", "define", "template", "block", "break", "continue", "nil"}


class _Lexer:
    def __init__(self, name: str, text: str) -> None:
        self.name = name
        self.text = text
        self.toks: list[_Tok] = []
        self._lex()

    def _err(self, line: int, msg: str) -> TemplateError:
        return TemplateError(f"template: {self.name}:{line}: {msg}")

    def _line(self, pos: int) -> int:
        return 1 + self.text.count("\n", 0, pos)

    def _lex(self) -> None:
        t = self.text
        i = 0
        n = len(t)
        trim_next = False
        while i < n:
            j = t.find("{{", i)
            if j < 0:
                j = n
            text = t[i:j]
            trim_left = j < n and t.startswith("{{-", j) and j + 3 < n and t[j + 3] in _SPACE
            if trim_next:
                text = text.lstrip(_SPACE)
            if trim_left:
                text = text.rstrip(_SPACE)
            if text:
                self.toks.append(_Tok("text", text, i, self._line(i)))
            if j >= n:
                break
            start = j
            k = j + 2 + (2 if trim_left else 0)
            # comment
            if t.startswith("/*", k):
                end = t.find("*/", k + 2)
                if end < 0:
                    raise self._err(self._line(start), "unclosed comment")
                e = end + 2
                trim_right = t.startswith(" -}}", e) or (e < n and t[e] in _SPACE and t.startswith("-}}", e + 1))
                if trim_right:
                    e2 = t.find("-}}", e) + 3
                elif t.startswith("}}", e):
                    e2 = e + 2
                else:
                    raise self._err(self._line(start), "comment ends before closing delimiter")
                trim_next = trim_right
                i = e2
                continue
            self.toks.append(_Tok("action-start", "{{", start, self._line(start)))
            i, trim_next = self._lex_action(k)
        self.toks.append(_Tok("eof", "", n, self._line(n)))

    def _lex_action(self, i: int) -> tuple[int, bool]:
        t = self.text
        n = len(t)
        paren = 0
        while True:
            if i >= n:
                raise self._err(self._line(i), "unclosed action")
            if t.startswith("}}", i) or (t[i] in _SPACE and t.startswith("-}}", i + 1)):
                trim = not t.startswith("}}", i)
                if paren:
                    raise self._err(self._line(i), "unclosed left paren")
                end = i + (4 if trim else 2)
                self.toks.append(_Tok("action-end", "}}", i, self._line(i)))
                return end, trim
            c = t[i]
            if c in _SPACE:
                j = i
                while j < n and t[j] in _SPACE and not t.startswith(" -}}", j) and not (
                    t[j] in _SPACE and t.startswith("-}}", j + 1)
                ):
                    j += 1
                if j == i:  # a space right before " -}}" is the trim marker's
                    j = i + 1
                    self.toks.append(_Tok("space", t[i:j], i, self._line(i)))
                    i = j
                    continue
                self.toks.append(_Tok("space", t[i:j], i, self._line(i)))
                i = j
                continue
            if c == "=":
                self.toks.append(_Tok("assign", "=", i, self._line(i)))
                i += 1
                continue
            if c == ":":
                if t.startswith(":=", i):
                    self.toks.append(_Tok("declare", ":=", i, self._line(i)))
                    i += 2
                    continue
                raise self._err(self._line(i), "expected :=")
            if c == "|":
                self.toks.append(_Tok("pipe", "|", i, self._line(i)))
                i += 1
                continue
            if c == ",":
                self.toks.append(_Tok("comma", ",", i, self._line(i)))
                i += 1
                continue
            if c == "(":
                paren += 1
                self.toks.append(_Tok("lparen", "(", i, self._line(i)))
                i += 1
                continue
            if c == ")":
                paren -= 1
                if paren < 0:
                    raise self._err(self._line(i), f"unexpected right paren {c!r}".replace("'", "U+0029 ')'", 0))
                self.toks.append(_Tok("rparen", ")", i, self._line(i)))
                i += 1
                continue
            if c == '"':
                j = i + 1
                while j < n and t[j] != '"':
                    if t[j] == "\\":
                        j += 1
                    if j < n and t[j] == "\n":
                        raise self._err(self._line(i), "unterminated quoted string")
                    j += 1
                if j >= n:
                    raise self._err(self._line(i), "unterminated quoted string")
                self.toks.append(_Tok("string", t[i : j + 1], i, self._line(i)))
                i = j + 1
                continue
            if c == "`":
                j = t.find("`", i + 1)
                if j < 0:
                    raise self._err(self._line(i), "unterminated raw quoted string")
                self.toks.append(_Tok("rawstring", t[i : j + 1], i, self._line(i)))
                i = j + 1
                continue
            if c == "'":
                j = i + 1
                while j < n and t[j] != "'":
                    if t[j] == "\\":
                        j += 1
                    j += 1
                if j >= n:
                    raise self._err(self._line(i), "unterminated character constant")
                self.toks.append(_Tok("char", t[i : j + 1], i, self._line(i)))
                i = j + 1
                continue
            if c == "$":
                j = i + 1
                while j < n and (t[j].isalnum() or t[j] == "_"):
                    j += 1
                self.toks.append(_Tok("var", t[i:j], i, self._line(i)))
                i = j
                continue
            if c == ".":
                if i + 1 < n and t[i + 1].isdigit():
                    i = self._number(i)
                    continue
                j = i + 1
                while j < n and (t[j].isalnum() or t[j] == "_"):
                    j += 1
                if j == i + 1:
                    self.toks.append(_Tok("dot", ".", i, self._line(i)))
                else:
                    self.toks.append(_Tok("field", t[i:j], i, self._line(i)))
                i = j
                continue
            if c.isdigit() or (c in "+-" and i + 1 < n and (t[i + 1].isdigit() or t[i + 1] == ".")):
                i = self._number(i)
                continue
            if c.isalpha() or c == "_":
                j = i
                while j < n and (t[j].isalnum() or t[j] == "_"):
                    j += 1
                word = t[i:j]
                if word in ("true", "false"):
                    kind = "bool"
                elif word == "nil":
                    kind = "nil"
                elif word in _KEYWORDS:
                    kind = "keyword"
                else:
                    kind = "ident"
                self.toks.append(_Tok(kind, word, i, self._line(i)))
                i = j
                continue
            raise self._err(self._line(i), f"unrecognized character in action: {_go_char(c)}")

    def _number(self, i: int) -> int:
        t = self.text
        n = len(t)
        j = i
        if t[j] in "+-":
            j += 1
        while j < n and (t[j].isalnum() or t[j] in "._" or (t[j] in "+-" and t[j - 1] in "eEpP")):
            j += 1
        self.toks.append(_Tok("number", t[i:j], i, self._line(i)))
        return j


def _go_char(c: str) -> str:
    return f"U+{ord(c):04X} '{c}'"


# ---- parse tree ----------------------------------------------------------------------------------


@dataclass
class Node:
    pos: int


@dataclass
class TextNode(Node):
    text: str


@dataclass
class FieldNode(Node):
    ident: list[str]

    def __str__(self) -> str:
        return "".join("." + x for x in self.ident)


@dataclass
class VariableNode(Node):
    ident: list[str]

    def __str__(self) -> str:
        return ".".join(self.ident)


@dataclass
class DotNode(Node):
    def __str__(self) -> str:
        return "."


@dataclass
class NilNode(Node):
    def __str__(self) -> str:
        return "nil"


@dataclass
class BoolNode(Node):
    value: bool

    def __str__(self) -> str:
        return "true" if self.value else "false"


@dataclass
class NumberNode(Node):
    text: str
    value: int | float
    is_int: bool

    def __str__(self) -> str:
        return self.text


@dataclass
class StringNode(Node):
    quoted: str
    value: str

    def __str__(self) -> str:
        return self.quoted


@dataclass
class IdentifierNode(Node):
    name: str

    def __str__(self) -> str:
        return self.name


@dataclass
class CommandNode(Node):
    args: list[Node] = field(default_factory=list)

    def __str__(self) -> str:
        parts = []
        for a in self.args:
            if isinstance(a, PipeNode):
                parts.append(f"({a})")
            else:
                parts.append(str(a))
        return " ".join(parts)


@dataclass
class PipeNode(Node):
    decl: list[VariableNode] = field(default_factory=list)
    is_assign: bool = False
    cmds: list[CommandNode] = field(default_factory=list)

    def __str__(self) -> str:
        head = ""
        if self.decl:
            head = ", ".join(str(v) for v in self.decl) + (" = " if self.is_assign else " := ")
        return head + " | ".join(str(c) for c in self.cmds)


@dataclass
class ChainNode(Node):
    node: Node
    fields: list[str]

    def __str__(self) -> str:
        inner = f"({self.node})" if isinstance(self.node, PipeNode) else str(self.node)
        return inner + "".join("." + f for f in self.fields)


@dataclass
class ListNode(Node):
    nodes: list[Node] = field(default_factory=list)


@dataclass
class ActionNode(Node):
    pipe: PipeNode


@dataclass
class BranchNode(Node):
    kind: str  # if, range, with
    pipe: PipeNode
    body: ListNode
    else_: ListNode | None


@dataclass
class TemplateNode(Node):
    name: str
    pipe: PipeNode | None


@dataclass
class BreakNode(Node):
    pass


@dataclass
class ContinueNode(Node):
    pass


def _unquote(tok: _Tok) -> str:
    s = tok.val
    if tok.kind == "rawstring":
        return s[1:-1].replace("\r", "")
    body = s[1:-1]
    out = []
    i = 0
    esc = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'", "a": "\a", "b": "\b", "f": "\f",
           "v": "\v", "0": "\0"}
    while i < len(body):
        c = body[i]
        if c == "\\" and i + 1 < len(body):
            d = body[i + 1]
            if d in "xuU":
                width = {"x": 2, "u": 4, "U": 8}[d]
                out.append(chr(int(body[i + 2 : i + 2 + width], 16)))
                i += 2 + width
                continue
            if d in "01234567" and i + 3 < len(body) + 1 and body[i + 1 : i + 4].isdigit():
                out.append(chr(int(body[i + 1 : i + 4], 8)))
                i += 4
                continue
            out.append(esc.get(d, d))
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out)


def _parse_number(text: str) -> tuple[int | float, bool]:
    t = text.replace("_", "")
    try:
        return int(t, 0), True
    except ValueError:
        pass
    try:
        v = float(t) if not t.lower().lstrip("+-").startswith("0x") else float.fromhex(t)
    except ValueError:
        raise ValueError(f"illegal number syntax: {text!r}") from None
    if v.is_integer() and "e" not in t.lower() and "." not in t:
        return int(v), True
    return v, False


class _Parser:
    def __init__(self, name: str, text: str, funcs: Mapping[str, Func]) -> None:
        self.name = name
        self.text = text
        self.funcs = funcs
        self.toks = _Lexer(name, text).toks
        self.i = 0
        self.vars: list[str] = ["$"]
        self.defines: dict[str, ListNode] = {}
        self.range_depth = 0

    # token helpers
    def _peek(self) -> _Tok:
        return self.toks[self.i]

    def _next(self) -> _Tok:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def _peek_ns(self) -> _Tok:
        while self.toks[self.i].kind == "space":
            self.i += 1
        return self.toks[self.i]

    def _next_ns(self) -> _Tok:
        self._peek_ns()
        return self._next()

    def _err(self, tok: _Tok, msg: str) -> TemplateError:
        return TemplateError(f"template: {self.name}:{tok.line}: {msg}")

    def _unexpected(self, tok: _Tok, context: str) -> TemplateError:
        if tok.kind == "action-end":
            shown = '"}}"'
        elif tok.kind == "eof":
            return self._err(tok, f"unexpected EOF in {context}" if context != "input" else "unexpected EOF")
        else:
            shown = f'"{tok.val}"' if tok.kind not in ("string", "rawstring") else tok.val
            if tok.kind in ("field", "var", "ident", "keyword", "bool", "nil", "number", "dot"):
                shown = f"<{tok.val}>"
        return self._err(tok, f"unexpected {shown} in {context}")

    # grammar
    def parse(self) -> ListNode:
        root, _end = self._item_list(top=True)
        return root

    def _item_list(self, top: bool = False) -> tuple[ListNode, str]:
        """Items until ``{{end}}`` / ``{{else}}`` (returned as the terminator) or EOF at top level."""
        lst = ListNode(self._peek().pos)
        while True:
            tok = self._peek()
            if tok.kind == "eof":
                if top:
                    return lst, "eof"
                raise self._err(tok, "unexpected EOF")
            if tok.kind == "text":
                self._next()
                lst.nodes.append(TextNode(tok.pos, tok.val))
                continue
            # action
            start = self._next()
            kw = self._peek_ns()
            if kw.kind == "keyword" and kw.val in ("end", "else"):
                if top:
                    raise self._err(kw, f"unexpected {{{{{kw.val}}}}}")
                self._next()
                if kw.val == "end":
                    self._expect_end("end")
                return lst, kw.val
            node = self._action(start)
            if node is not None:
                lst.nodes.append(node)

    def _expect_end(self, context: str) -> None:
        tok = self._next_ns()
        if tok.kind != "action-end":
            raise self._unexpected(tok, context)

    def _action(self, start: _Tok) -> Node | None:
        tok = self._peek_ns()
        if tok.kind == "keyword":
            kw = tok.val
            if kw in ("if", "range", "with"):
                self._next()
                return self._branch(kw, tok)
            if kw in ("template", "block"):
                self._next()
                return self._template(kw, tok)
            if kw == "define":
                self._next()
                self._define(tok)
                return None
            if kw in ("break", "continue"):
                self._next()
                if self.range_depth == 0:
                    raise self._err(tok, f"{{{{{kw}}}}} outside {{{{range}}}}")
                self._expect_end(kw)
                return BreakNode(tok.pos) if kw == "break" else ContinueNode(tok.pos)
        pipe = self._pipeline("command", allow_decl=True)
        return ActionNode(start.pos, pipe)

    def _branch(self, kind: str, tok: _Tok) -> Node:
        mark = len(self.vars)
        pipe = self._pipeline(kind, allow_decl=True)
        if kind == "range":
            self.range_depth += 1
        body, term = self._item_list()
        if kind == "range":
            self.range_depth -= 1
        else_: ListNode | None = None
        if term == "else":
            nxt = self._peek_ns()
            if kind == "if" and nxt.kind == "keyword" and nxt.val == "if":
                # {{else if ...}}: an if nested in the else branch, closed by the same {{end}}
                self._next()
                inner = self._branch("if", nxt)
                else_ = ListNode(nxt.pos, [inner])
            else:
                self._expect_end("else")
                else_, term2 = self._item_list()
                if term2 != "end":
                    raise self._err(self._peek(), "expected end; found {{else}}")
        del self.vars[mark:]
        return BranchNode(tok.pos, kind, pipe, body, else_)

    def _template(self, kw: str, tok: _Tok) -> Node:
        name_tok = self._next_ns()
        if name_tok.kind not in ("string", "rawstring"):
            raise self._unexpected(name_tok, f"{kw} clause")
        name = _unquote(name_tok)
        pipe: PipeNode | None = None
        if self._peek_ns().kind != "action-end":
            pipe = self._pipeline(f"{kw} clause", allow_decl=False)
        else:
            self._next()
        if kw == "block":
            saved = self.vars
            self.vars = ["$"]
            body, term = self._item_list()
            self.vars = saved
            if term != "end":
                raise self._err(tok, "unexpected {{else}} in block")
            self.defines[name] = body
        return TemplateNode(tok.pos, name, pipe)

    def _define(self, tok: _Tok) -> None:
        name_tok = self._next_ns()
        if name_tok.kind not in ("string", "rawstring"):
            raise self._unexpected(name_tok, "define clause")
        self._expect_end("define clause")
        saved = self.vars
        self.vars = ["$"]
        body, term = self._item_list()
        self.vars = saved
        if term != "end":
            raise self._err(tok, "unexpected {{else}} in define clause")
        self.defines[_unquote(name_tok)] = body

    def _pipeline(self, context: str, allow_decl: bool) -> PipeNode:
        tok = self._peek_ns()
        pipe = PipeNode(tok.pos)
        # declarations: $x := / $x = / $i, $v :=
        if allow_decl and tok.kind == "var":
            save = self.i
            v = self._next()
            nxt = self._peek_ns()
            if nxt.kind in ("declare", "assign") or (nxt.kind == "comma" and context == "range"):
                names = [v]
                if nxt.kind == "comma":
                    self._next()
                    v2 = self._next_ns()
                    if v2.kind != "var":
                        raise self._err(v2, f"missing variable in {context}")
                    names.append(v2)
                    nxt = self._next_ns()
                    if nxt.kind not in ("declare", "assign"):
                        raise self._unexpected(nxt, context)
                else:
                    self._next()
                pipe.is_assign = nxt.kind == "assign"
                for nv in names:
                    if pipe.is_assign and nv.val not in self.vars:
                        raise self._err(nv, f'undefined variable "{nv.val}"')
                    pipe.decl.append(VariableNode(nv.pos, [nv.val]))
                if not pipe.is_assign:
                    for nv in names:
                        self.vars.append(nv.val)
            else:
                self.i = save
        while True:
            tok = self._peek_ns()
            if tok.kind == "action-end" or tok.kind == "rparen":
                if tok.kind == "action-end":
                    self._next()
                if not pipe.cmds:
                    raise self._err(tok, f"missing value for {context}")
                for c in pipe.cmds[1:]:
                    first = c.args[0]
                    if isinstance(first, BoolNode | DotNode | NilNode | NumberNode | StringNode):
                        raise self._err(tok, f"non executable command in pipeline stage {pipe.cmds.index(c) + 1}")
                return pipe
            cmd = self._command(context)
            pipe.cmds.append(cmd)

    def _command(self, context: str) -> CommandNode:
        cmd = CommandNode(self._peek_ns().pos)
        while True:
            tok = self._peek()
            if tok.kind == "space":
                self._next()
                continue
            if tok.kind in ("action-end", "rparen"):
                break
            if tok.kind == "pipe":
                self._next()
                if not cmd.args:
                    raise self._err(tok, "missing command")
                return cmd
            operand = self._operand(context)
            if operand is None:
                raise self._unexpected(tok, "operand")
            cmd.args.append(operand)
            nxt = self._peek()
            if nxt.kind not in ("space", "action-end", "rparen", "pipe"):
                raise self._unexpected(nxt, "operand")
        if not cmd.args:
            raise self._err(tok, "empty command")
        return cmd

    def _operand(self, context: str) -> Node | None:
        node = self._term()
        if node is None:
            return None
        if self._peek().kind == "field":
            fields = []
            while self._peek().kind == "field":
                fields.append(self._next().val[1:])
            if isinstance(node, FieldNode):
                node = FieldNode(node.pos, node.ident + fields)
            elif isinstance(node, VariableNode):
                node = VariableNode(node.pos, node.ident + fields)
            elif isinstance(node, BoolNode | StringNode | NumberNode | NilNode | DotNode):
                raise self._err(self._peek(), f"unexpected . after term {str(node)!r}".replace("'", '"'))
            else:
                node = ChainNode(node.pos, node, fields)
        return node

    def _term(self) -> Node | None:
        tok = self._peek_ns()
        k = tok.kind
        if k == "ident":
            self._next()
            if tok.val not in self.funcs:
                raise self._err(tok, f'function "{tok.val}" not defined')
            return IdentifierNode(tok.pos, tok.val)
        if k == "dot":
            self._next()
            return DotNode(tok.pos)
        if k == "nil":
            self._next()
            return NilNode(tok.pos)
        if k == "var":
            self._next()
            if tok.val not in self.vars:
                raise self._err(tok, f'undefined variable "{tok.val}"')
            return VariableNode(tok.pos, [tok.val])
        if k == "field":
            self._next()
            return FieldNode(tok.pos, [tok.val[1:]])
        if k == "bool":
            self._next()
            return BoolNode(tok.pos, tok.val == "true")
        if k == "number" or k == "char":
            self._next()
            if k == "char":
                s = _unquote(_Tok("string", '"' + tok.val[1:-1] + '"', tok.pos, tok.line))
                return NumberNode(tok.pos, tok.val, ord(s[0]) if s else 0, True)
            try:
                v, is_int = _parse_number(tok.val)
            except ValueError:
                raise self._err(tok, f"illegal number syntax: {tok.val!r}".replace("'", '"')) from None
            return NumberNode(tok.pos, tok.val, v, is_int)
        if k in ("string", "rawstring"):
            self._next()
            return StringNode(tok.pos, tok.val, _unquote(tok))
        if k == "lparen":
            self._next()
            pipe = self._pipeline("parenthesized pipeline", allow_decl=False)
            close = self._next_ns()
            if close.kind != "rparen":
                raise self._unexpected(close, "parenthesized pipeline")
            return pipe
        return None


# ---- execution -----------------------------------------------------------------------------------


@dataclass
class Template:
    """A parsed template; :meth:`execute` renders it against ``data``."""

    name: str
    text: str
    root: ListNode
    defines: dict[str, ListNode]
    funcs: Mapping[str, Func]

    def execute(self, data: Any) -> str:
        st = _State(self, [("$", data)], [])
        st.walk(data, self.root)
        return "".join(st.out)


def parse(name: str, text: str, funcs: Mapping[str, Func] | None = None) -> Template:
    """Parse ``text`` (raises :class:`TemplateError` with Go's parse message)."""
    table: dict[str, Func] = dict(BUILTINS)
    if funcs:
        table.update(funcs)
    p = _Parser(name, text, table)
    root = p.parse()
    return Template(name, text, root, p.defines, table)


class _State:
    def __init__(self, tmpl: Template, vars_: list[tuple[str, Any]], out: list[str]) -> None:
        self.tmpl = tmpl
        self.vars = vars_
        self.out = out
        self.node: Node | None = None
        self.depth = 0

    def errorf(self, msg: str) -> TemplateError:
        name = self.tmpl.name
        if self.node is None:
            return TemplateError(f"template: {name}: {msg}")
        pos = self.node.pos
        text = self.tmpl.text[:pos]
        nl = text.rfind("\n")
        col = pos if nl < 0 else pos - (nl + 1)
        line = 1 + text.count("\n")
        ctx = str(self.node)
        return TemplateError(f'template: {name}:{line}:{col}: executing "{name}" at <{ctx}>: {msg}')

    def at(self, node: Node) -> None:
        self.node = node

    # variables
    def _var(self, name: str) -> Any:
        for k, v in reversed(self.vars):
            if k == name:
                return v
        raise self.errorf(f"undefined variable: {name}")

    def _set_var(self, name: str, value: Any) -> None:
        for i in range(len(self.vars) - 1, -1, -1):
            if self.vars[i][0] == name:
                self.vars[i] = (name, value)
                return
        raise self.errorf(f"undefined variable: {name}")

    # walking
    def walk(self, dot: Any, node: Node) -> None:
        self.at(node)
        if isinstance(node, ListNode):
            for n in node.nodes:
                self.walk(dot, n)
        elif isinstance(node, TextNode):
            self.out.append(node.text)
        elif isinstance(node, ActionNode):
            val = self.eval_pipeline(dot, node.pipe)
            if not node.pipe.decl:
                self.print_value(node, val)
        elif isinstance(node, BranchNode):
            if node.kind == "range":
                self.walk_range(dot, node)
            else:
                mark = len(self.vars)
                val = self.eval_pipeline(dot, node.pipe)
                if truth(val):
                    self.walk(val if node.kind == "with" else dot, node.body)
                elif node.else_ is not None:
                    self.walk(dot, node.else_)
                del self.vars[mark:]
        elif isinstance(node, TemplateNode):
            body = self.tmpl.defines.get(node.name)
            if body is None:
                raise self.errorf(f'no such template "{node.name}"')
            new_dot = self.eval_pipeline(dot, node.pipe) if node.pipe is not None else None
            self.depth += 1
            if self.depth > 10000:
                raise self.errorf("exceeded maximum template depth (100000)")
            sub = _State(self.tmpl, [("$", new_dot)], self.out)
            sub.depth = self.depth
            sub.walk(new_dot, body)
            self.depth -= 1
        elif isinstance(node, BreakNode):
            raise _Break()
        elif isinstance(node, ContinueNode):
            raise _Continue()
        else:  # pragma: no cover - the parser makes no other nodes
            raise self.errorf(f"unknown node: {node}")

    def walk_range(self, dot: Any, node: BranchNode) -> None:
        mark = len(self.vars)
        val = self.eval_pipeline(dot, node.pipe)
        del self.vars[mark:]
        items: list[tuple[Any, Any]]
        if isinstance(val, Mapping):
            items = [(k, val[k]) for k in sorted(val)]
        elif isinstance(val, list | tuple):
            items = list(enumerate(val))
        elif val is None:
            items = []
        elif isinstance(val, int) and not isinstance(val, bool):
            raise self.errorf(f"range can't iterate over {val}")
        else:
            raise self.errorf(f"range can't iterate over {sprint_value(val)}")
        if not items:
            if node.else_ is not None:
                self.walk(dot, node.else_)
            return
        for k, v in items:
            inner = len(self.vars)
            if len(node.pipe.decl) == 1:
                self.vars.append((node.pipe.decl[0].ident[0], v))
            elif len(node.pipe.decl) == 2:
                self.vars.append((node.pipe.decl[0].ident[0], k))
                self.vars.append((node.pipe.decl[1].ident[0], v))
            try:
                self.walk(v, node.body)
            except _Continue:
                pass
            except _Break:
                del self.vars[inner:]
                break
            del self.vars[inner:]

    def print_value(self, node: Node, val: Any) -> None:
        self.at(node)
        self.out.append(sprint_value(val))

    def eval_pipeline(self, dot: Any, pipe: PipeNode) -> Any:
        self.at(pipe)
        val: Any = _MISSING
        for cmd in pipe.cmds:
            val = self.eval_command(dot, cmd, val)
        for v in pipe.decl:
            if pipe.is_assign:
                self._set_var(v.ident[0], val)
            else:
                self.vars.append((v.ident[0], val))
        return None if val is _MISSING else val

    def eval_command(self, dot: Any, cmd: CommandNode, final: Any) -> Any:
        first = cmd.args[0]
        if isinstance(first, FieldNode):
            return self.eval_field_chain(dot, dot, first, first.ident, cmd.args, final)
        if isinstance(first, ChainNode):
            base = self.eval_arg(dot, first.node)
            return self.eval_field_chain(dot, base, first, first.fields, cmd.args, final)
        if isinstance(first, IdentifierNode):
            return self.eval_function(dot, first, cmd, cmd.args, final)
        if isinstance(first, PipeNode):
            self.not_a_function(cmd.args, final)
            return self.eval_pipeline(dot, first)
        if isinstance(first, VariableNode):
            return self.eval_variable(dot, first, cmd.args, final)
        self.at(first)
        self.not_a_function(cmd.args, final)
        if isinstance(first, BoolNode):
            return first.value
        if isinstance(first, DotNode):
            return dot
        if isinstance(first, NilNode):
            raise self.errorf("nil is not a command")
        if isinstance(first, NumberNode):
            return first.value
        if isinstance(first, StringNode):
            return first.value
        raise self.errorf(f"can't evaluate command {first}")

    def not_a_function(self, args: list[Node], final: Any) -> None:
        if len(args) > 1 or final is not _MISSING:
            raise self.errorf(f"can't give argument to non-function {args[0]}")

    def eval_variable(self, dot: Any, node: VariableNode, args: list[Node], final: Any) -> Any:
        self.at(node)
        value = self._var(node.ident[0])
        if len(node.ident) == 1:
            self.not_a_function(args, final)
            return value
        return self.eval_field_chain(dot, value, node, node.ident[1:], args, final)

    def eval_field_chain(self, dot: Any, receiver: Any, node: Node, ident: list[str], args: list[Node],
                         final: Any) -> Any:
        n = len(ident)
        for i in range(n - 1):
            receiver = self.eval_field(dot, ident[i], node, [], _MISSING, receiver)
        return self.eval_field(dot, ident[n - 1], node, args, final, receiver)

    def eval_field(self, dot: Any, name: str, node: Node, args: list[Node], final: Any, receiver: Any) -> Any:
        self.at(node)
        has_args = len(args) > 1 or final is not _MISSING
        if receiver is None:
            raise self.errorf(f"nil pointer evaluating interface {{}}.{name}")
        if isinstance(receiver, Mapping):
            if has_args:
                raise self.errorf(f"{name} is not a method but has arguments")
            if name in receiver:
                return receiver[name]
            # missingkey=zero: the element type's zero value ("" for map[string]string)
            if all(isinstance(v, str) for v in receiver.values()):
                return ""
            return None
        fields = getattr(receiver, "go_fields", None)
        if fields is not None and name in fields:
            if has_args:
                raise self.errorf(f"{name} has arguments but cannot be invoked as function")
            return getattr(receiver, fields[name])
        raise self.errorf(f"can't evaluate field {name} in type {type_name(receiver)}")

    def eval_function(self, dot: Any, node: IdentifierNode, cmd: CommandNode, args: list[Node], final: Any) -> Any:
        self.at(node)
        fn = self.tmpl.funcs[node.name]
        argv = args[1:]
        nparams = len(fn.params)
        given = len(argv) + (0 if final is _MISSING else 1)
        if fn.variadic:
            if given < nparams - 1:
                raise self.errorf(f"wrong number of args for {node.name}: want at least {nparams - 1} got {given}")
        elif given != nparams:
            raise self.errorf(f"wrong number of args for {node.name}: want {nparams} got {given}")
        if fn.lazy:
            thunks: list[Callable[[], Any]] = [lambda a=a: self.eval_arg(dot, a) for a in argv]  # type: ignore[misc]
            if final is not _MISSING:
                thunks.append(lambda: final)
            return self._call(cmd, node.name, fn, thunks)
        values = []
        for i, a in enumerate(argv):
            kind = fn.params[min(i, nparams - 1)] if nparams else "any"
            values.append(self.eval_typed_arg(dot, a, kind))
        if final is not _MISSING:
            kind = fn.params[min(len(argv), nparams - 1)] if nparams else "any"
            values.append(self.check_type(final, kind, cmd))
        return self._call(cmd, node.name, fn, values)

    def _call(self, cmd: CommandNode, name: str, fn: Func, values: Sequence[Any]) -> Any:
        try:
            return fn.fn(*values)
        except FuncError as err:
            self.at(cmd)
            raise self.errorf(f"error calling {name}: {err}") from None
        except TemplateError:
            raise
        except (_Break, _Continue):
            raise
        except Exception as err:  # a function's own failure, as Go reports a returned error
            self.at(cmd)
            raise self.errorf(f"error calling {name}: {err}") from None

    def check_type(self, value: Any, kind: str, node: Node) -> Any:
        if kind == "any":
            return value
        if kind == "str":
            if isinstance(value, str):
                return value
            raise self.errorf(f"wrong type for value; expected string; got {type_name(value)}")
        if kind == "float":
            if isinstance(value, float):
                return value
            raise self.errorf(f"wrong type for value; expected float64; got {type_name(value)}")
        if kind == "int":
            if isinstance(value, int) and not isinstance(value, bool):
                return value
            raise self.errorf(f"wrong type for value; expected int; got {type_name(value)}")
        if kind.startswith("obj:"):  # a typed pointer such as *template.sample
            want = kind[4:]
            if value is None or type_name(value) == want:
                return value
            raise self.errorf(f"wrong type for value; expected {want}; got {type_name(value)}")
        return value

    def eval_typed_arg(self, dot: Any, node: Node, kind: str) -> Any:
        self.at(node)
        if isinstance(node, NumberNode) and kind in ("any", "float", "int"):
            if kind == "float":
                return float(node.value)
            if kind == "int":
                if not node.is_int:
                    raise self.errorf(f"expected integer; found {node.text}")
                return int(node.value)
            return node.value
        if isinstance(node, StringNode | NumberNode | BoolNode) and kind == "str":
            if not isinstance(node, StringNode):
                raise self.errorf(f"expected string; found {node}")
            return node.value
        if isinstance(node, NilNode):
            if kind in ("any",) or kind.startswith("obj:"):
                return None
            raise self.errorf(f"cannot assign nil to {({'str': 'string', 'float': 'float64'}).get(kind, kind)}")
        value = self.eval_arg(dot, node)
        return self.check_type(value, kind, node)

    def eval_arg(self, dot: Any, node: Node) -> Any:
        self.at(node)
        if isinstance(node, DotNode):
            return dot
        if isinstance(node, NilNode):
            return None
        if isinstance(node, FieldNode):
            return self.eval_field_chain(dot, dot, node, node.ident, [node], _MISSING)
        if isinstance(node, VariableNode):
            return self.eval_variable(dot, node, [node], _MISSING)
        if isinstance(node, PipeNode):
            return self.eval_pipeline(dot, node)
        if isinstance(node, IdentifierNode):
            return self.eval_function(dot, node, CommandNode(node.pos, [node]), [node], _MISSING)
        if isinstance(node, ChainNode):
            base = self.eval_arg(dot, node.node)
            return self.eval_field_chain(dot, base, node, node.fields, [node], _MISSING)
        if isinstance(node, BoolNode):
            return node.value
        if isinstance(node, NumberNode):
            return node.value
        if isinstance(node, StringNode):
            return node.value
        raise self.errorf(f"can't handle {node} for arg")


__all__ = ["BUILTINS", "Func", "FuncError", "Template", "TemplateError", "parse", "truth"]
