"""The text exposition format as node_exporter's textfile collector reads it (expfmt's ``TextParser``).

Stricter than Prometheus's scrape parser (:mod:`sotp.codec.textparse`), and the textfile collector must
refuse exactly the files node_exporter refuses: every line ends with a newline, a family has one HELP and
one TYPE (a TYPE after the family's first sample is an error), escapes other than ``\\\\``, ``\\"`` and
``\\n`` are errors, blanks after a value announce a timestamp, ``__name__`` is not a label. Summaries and
histograms are grouped into one metric per label set (``quantile``/``le`` aside), with ``_sum``,
``_count`` and ``_bucket`` samples attached to their family. Families with no samples are dropped.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_TYPES = ("counter", "gauge", "untyped", "summary", "histogram", "gauge_histogram")
#: ``#``, blanks, the keyword (up to a blank), blanks, then what reads as a metric name.
_COMMENT = re.compile(r"#[ \t]*([^ \t]*)[ \t]*([a-zA-Z_:][a-zA-Z0-9_:]*|)")
_TOKEN = re.compile(r"[^ \t]*")


class ParseError(ValueError):
    """``text format parsing error in line N: reason``, as expfmt words it."""

    def __init__(self, line: int, msg: str) -> None:
        super().__init__(f"text format parsing error in line {line}: {msg}")


@dataclass(slots=True)
class Metric:
    """One metric of a family: its labels (without ``quantile``/``le``) and values by kind."""

    labels: list[tuple[str, str]]
    value: float = 0.0
    timestamp: int | None = None
    count: float = 0.0  # summary/histogram sample count (node_exporter keeps it as uint64)
    sum: float = 0.0
    quantiles: list[tuple[float, float]] = field(default_factory=list)
    buckets: list[tuple[float, float]] = field(default_factory=list)


@dataclass(slots=True)
class Family:
    name: str
    help: str | None = None
    type: str | None = None
    metrics: list[Metric] = field(default_factory=list)
    # summary/histogram metrics by their label set, to attach _sum/_count/_bucket lines
    by_labels: dict[tuple[tuple[str, str], ...], Metric] = field(default_factory=dict)


def parse_float(token: str) -> float:
    """Go's ``strconv.ParseFloat`` as expfmt calls it (no ``p``/``P``/``_``)."""
    if not token or any(c in token for c in "pP_"):
        raise ValueError(token)
    low = token.lower().lstrip("+-")
    if low in ("inf", "infinity"):
        return -math.inf if token.startswith("-") else math.inf
    if low == "nan":
        return math.nan
    if not re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|[+-]?0[xX][0-9a-fA-F.]+", token):
        raise ValueError(token)
    return float(token)


def _unescape(text: str, lineno: int, quotes: bool) -> str:
    out: list[str] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c == "\\":
            if i + 1 >= len(text):
                raise ParseError(lineno, "invalid escape sequence at end of line")
            nxt = text[i + 1]
            if nxt == "n":
                out.append("\n")
            elif nxt == "\\" or (quotes and nxt == '"'):
                out.append(nxt)
            else:
                raise ParseError(lineno, f"invalid escape sequence '\\{nxt}'")
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out)


class _Parser:
    def __init__(self) -> None:
        self.families: dict[str, Family] = {}
        self.is_count = self.is_sum = False

    def family_for(self, name: str) -> Family:
        """expfmt's setOrCreateCurrentMF: ``x_sum``/``x_count`` (and ``x_bucket``) belong to summary
        (histogram) ``x`` when ``x`` was declared so; anything else is its own family."""
        self.is_count = self.is_sum = False
        fam = self.families.get(name)
        if fam is not None:
            return fam
        for suffixes, typ in ((("_count", "_sum"), "summary"), (("_count", "_sum", "_bucket"), "histogram")):
            for suffix in suffixes:
                if name.endswith(suffix) and len(name) > len(suffix):
                    base = self.families.get(name[: -len(suffix)])
                    if base is not None and base.type == typ:
                        self.is_count, self.is_sum = suffix == "_count", suffix == "_sum"
                        return base
        fam = self.families[name] = Family(name)
        return fam

    def comment(self, line: str, lineno: int) -> None:
        m = _COMMENT.match(line)
        assert m is not None  # the pattern matches any line starting with "#"
        keyword, name, after = m.group(1), m.group(2), line[m.end() :]
        if keyword not in ("HELP", "TYPE") or not after:
            return  # a plain comment, "# HELP" alone, or "# HELP name" (no family is created)
        if after[0] not in " \t":
            raise ParseError(lineno, "invalid metric name in comment")
        fam = self.family_for(name)
        text = after.lstrip(" \t")
        if not text:
            return  # "# HELP name " : the family exists, its HELP stays unset
        if keyword == "HELP":
            if fam.help is not None:
                raise ParseError(lineno, f"second HELP line for metric name {fam.name!r}")
            fam.help = _unescape(text, lineno, quotes=False)
            return
        if fam.type is not None:
            raise ParseError(lineno, f"second TYPE line for metric name {fam.name!r}, or TYPE reported after samples")
        if text.lower() not in _TYPES:
            raise ParseError(lineno, f"unknown metric type {text!r}")
        fam.type = text.lower()

    def sample(self, line: str, lineno: int) -> None:
        m = _NAME.match(line)
        if m is None:
            raise ParseError(lineno, "invalid metric name")
        fam = self.family_for(m.group(0))
        if fam.type is None:
            fam.type = "untyped"
        if fam.type == "gauge_histogram":
            raise ParseError(lineno, f"unexpected type for metric name {fam.name!r}")
        pos = m.end()
        while pos < len(line) and line[pos] in " \t":
            pos += 1
        labels: list[tuple[str, str]] = []
        special: float | None = None  # the quantile or le of a summary or histogram line
        special_name = {"summary": "quantile", "histogram": "le"}.get(fam.type, "")
        if pos < len(line) and line[pos] == "{":
            pos, labels, special = self.labels(line, pos + 1, lineno, fam, special_name)
        token = _TOKEN.match(line, pos)
        assert token is not None
        try:
            value = parse_float(token.group(0))
        except ValueError:
            raise ParseError(lineno, f"expected float as value, got {token.group(0)!r}") from None
        timestamp = None
        if token.end() < len(line):  # a blank after the value: a timestamp must follow, then nothing
            ts_at = token.end()
            while ts_at < len(line) and line[ts_at] in " \t":
                ts_at += 1
            ts = _TOKEN.match(line, ts_at)
            assert ts is not None
            if not re.fullmatch(r"[+-]?[0-9]+", ts.group(0)):
                raise ParseError(lineno, f"expected integer as timestamp, got {ts.group(0)!r}")
            if line[ts.end():]:
                raise ParseError(lineno, f"spurious string after timestamp: {line[ts.end():]!r}")
            timestamp = int(ts.group(0))
        if fam.type in ("summary", "histogram"):
            key = tuple(sorted(labels))
            metric = fam.by_labels.get(key)
            if metric is None:
                metric = fam.by_labels[key] = Metric(labels)
                fam.metrics.append(metric)
            if self.is_count:
                metric.count = value
            elif self.is_sum:
                metric.sum = value
            elif special is not None:
                (metric.quantiles if fam.type == "summary" else metric.buckets).append((special, value))
            if timestamp is not None:
                metric.timestamp = timestamp
        else:
            fam.metrics.append(Metric(labels, value, timestamp))

    def labels(self, line: str, pos: int, lineno: int, fam: Family,
               special_name: str) -> tuple[int, list[tuple[str, str]], float | None]:
        labels: list[tuple[str, str]] = []
        names: set[str] = set()
        special: float | None = None
        while True:
            while pos < len(line) and line[pos] in " \t":
                pos += 1
            if pos < len(line) and line[pos] == "}":
                pos += 1
                break
            m = _LABEL.match(line, pos)
            if m is None:
                raise ParseError(lineno, f"invalid label name for metric {fam.name!r}")
            name = m.group(0)
            if name == "__name__":
                raise ParseError(lineno, 'label name "__name__" is reserved')
            if name in names:
                raise ParseError(lineno, f"duplicate label names for metric {fam.name!r}")
            names.add(name)
            pos = m.end()
            while pos < len(line) and line[pos] in " \t":
                pos += 1
            if pos >= len(line) or line[pos] != "=":
                raise ParseError(lineno, "expected '=' after label name")
            pos += 1
            while pos < len(line) and line[pos] in " \t":
                pos += 1
            if pos >= len(line) or line[pos] != '"':
                raise ParseError(lineno, "expected '\"' at start of label value")
            end = pos + 1
            while end < len(line) and line[end] != '"':
                end += 2 if line[end] == "\\" else 1
            if end >= len(line):
                raise ParseError(lineno, "label value contains unescaped new-line or is not terminated")
            value = _unescape(line[pos + 1 : end], lineno, quotes=True)
            pos = end + 1
            if name == special_name:
                try:
                    special = parse_float(value)
                except ValueError:
                    raise ParseError(lineno, f"expected float as value for {name!r} label, got {value!r}") from None
            else:
                labels.append((name, value))
            while pos < len(line) and line[pos] in " \t":
                pos += 1
            if pos < len(line) and line[pos] == ",":
                pos += 1
                continue
            if pos < len(line) and line[pos] == "}":
                pos += 1
                break
            raise ParseError(lineno, f"unexpected end of label value {value!r}")
        while pos < len(line) and line[pos] in " \t":
            pos += 1
        return pos, labels, special


def parse(text: str) -> dict[str, Family]:
    """Families by name, in order of first appearance. Raises :class:`ParseError`."""
    p = _Parser()
    lines = text.split("\n")
    for lineno, line in enumerate(lines, 1):
        last = lineno == len(lines)
        stripped = line.lstrip(" \t")
        if not stripped:
            continue  # blank (also the empty string after the final newline)
        if last:  # a line without its newline: expfmt reads to the end of input and gives up
            raise ParseError(lineno, "unexpected end of input stream")
        if stripped[0] == "#":
            p.comment(stripped, lineno)
        else:
            p.sample(stripped, lineno)
    return {name: fam for name, fam in p.families.items() if fam.metrics}
