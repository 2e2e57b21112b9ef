"""Parsing the Prometheus text exposition format (0.0.4) and OpenMetrics 1.0 text.

Two levels, so a hot path (the scraper) can skip label parsing for series it has seen before:

* :func:`iter_samples` splits each sample line into ``(series, value, t_ms)`` where ``series`` is the
  raw text before the value (``name`` or ``name{labels}``, exactly as exposed). It checks the value and
  timestamp but not the labels. Metadata lines are ignored; OpenMetrics exemplars are dropped.
* :func:`parse_series` turns such a ``series`` string into ``(name, labels)`` with labels unescaped,
  validated and in exposition order. Cache its result by ``series``: the same text always gives the
  same answer (Prometheus's scrape cache works the same way).

:func:`parse` does both and also collects ``# TYPE``/``# HELP``/``# UNIT`` metadata; use it when every
sample is needed as labels anyway (the push gateway, tests). All functions raise
:class:`sotp.errors.DecodeError` with the 1-based line number and the reason.

Formats: ``openmetrics=True`` (choose it with :func:`is_openmetrics` on the response ``Content-Type``)
requires the final ``# EOF`` and reads timestamps as float seconds; the text format reads them as
integer milliseconds. Histograms, summaries and other families are plain samples with their suffixes
(``_bucket``, ``_sum``, ``_count``, ``{quantile=...}``); nothing is inferred from ``# TYPE``.

Measured against prometheus_client's ``text_string_to_metric_families`` in ``bench/scrape.py``
(``--part parser``): see docs/benchmarks.md.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Final, NamedTuple

from sotp.errors import DecodeError
from sotp.model import LABEL_NAME_RE, METRIC_NAME_RE

#: ``Accept`` header Prometheus 2.42 sends when scraping (OpenMetrics preferred, text format accepted).
SCRAPE_ACCEPT: Final = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)

#: The label section ``{...}`` of a series, quoted values may contain ``}``, ``,`` and escapes.
_LABELS_RE: Final = re.compile(r'\{(?:[^"}]|"(?:[^"\\]|\\.)*")*\}', re.DOTALL)
#: One ``name="value"`` pair inside the braces, followed by an optional comma.
_PAIR_RE: Final = re.compile(r'\s*([^\s="{},]+)\s*=\s*"((?:[^"\\]|\\.)*)"\s*(?:,|$)', re.DOTALL)
#: The common case: ``name="value"`` with a valid name, no escapes, no blanks, comma or end after it.
_SIMPLE_PAIR_RE: Final = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="([^"\\]*)"(,|$)')
#: A whole label body: pairs separated by commas, an optional trailing comma, blanks anywhere.
_BODY_RE: Final = re.compile(r'(?:\s*[^\s="{},]+\s*=\s*"(?:[^"\\]|\\.)*"\s*(?:,|$))*\s*', re.DOTALL)
_ESCAPES: Final = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}
_ESCAPE_RE: Final = re.compile(r"\\.")

Labels = tuple[tuple[str, str], ...]


def is_openmetrics(content_type: str | None) -> bool:
    """Whether a response ``Content-Type`` announces OpenMetrics text (else the 0.0.4 text format)."""
    return bool(content_type) and content_type.split(";", 1)[0].strip().lower() == "application/openmetrics-text"  # type: ignore[union-attr]


def _unescape(value: str) -> str:
    # Prometheus's text parser turns \\, \" and \n into their characters and keeps other
    # backslash sequences as written.
    return _ESCAPE_RE.sub(lambda m: _ESCAPES.get(m.group(0), m.group(0)), value)


def parse_float(token: str) -> float:
    """A sample value as Go's ``strconv.ParseFloat`` reads it (``NaN``, ``+Inf``, ``-Inf``, ``1e3``...).

    Raises ValueError. Python's ``float`` also accepts ``1_000`` and ``infinity``; Go does not.
    """
    v = float(token)
    if "_" in token or (v in _INFS and "inity" in token.lower()):
        raise ValueError(token)
    return v


_INFS: Final = (math.inf, -math.inf)


def parse_series(series: str) -> tuple[str, Labels]:
    """``name{a="1",b="2"}`` → ``("name", (("a", "1"), ("b", "2")))``: unescaped, in exposition order.

    Raises :class:`DecodeError` for an invalid metric or label name, bad quoting, or a repeated label.
    """
    brace = series.find("{")
    if brace < 0:
        name = series.strip()
        if not METRIC_NAME_RE.match(name):
            raise DecodeError(f"invalid metric name {name!r}")
        return name, ()
    name = series[:brace].strip()
    if not METRIC_NAME_RE.match(name):
        raise DecodeError(f"invalid metric name {name!r}")
    end = series.rfind("}")
    if end < brace:
        raise DecodeError(f"unterminated label set in {series!r}")
    body = series[brace + 1 : end]
    simple = _SIMPLE_PAIR_RE.findall(body)
    # Fast path: the plain pairs found cover the whole body (no blanks, no escapes, valid names).
    if sum(len(n) + len(v) + len(c) + 3 for n, v, c in simple) == len(body):
        pairs = [(n, v) for n, v, _ in simple]
    else:
        if _BODY_RE.fullmatch(body) is None:
            raise DecodeError(f"invalid label set in {series!r}")
        pairs = []
        for lname, raw in _PAIR_RE.findall(body):
            if not LABEL_NAME_RE.match(lname):
                raise DecodeError(f"invalid label name {lname!r} in {series!r}")
            pairs.append((lname, _unescape(raw) if "\\" in raw else raw))
    if len(pairs) > 1 and len({p[0] for p in pairs}) != len(pairs):
        raise DecodeError(f"label name repeated in {series!r}")
    if series[end + 1 :].strip():
        raise DecodeError(f"unexpected text after the label set in {series!r}")
    return name, tuple(pairs)


def iter_samples(text: str, *, openmetrics: bool = False) -> Iterator[tuple[str, float, int | None]]:
    """Yield ``(series, value, t_ms)`` per sample line; ``t_ms`` is None when the line has no timestamp.

    ``series`` is the raw text before the value (pass it to :func:`parse_series`). Comment and blank
    lines are skipped; in OpenMetrics mode ``# EOF`` must end the text and exemplars are ignored.
    """
    seen_eof = False
    lineno = 0
    lines = text.split("\n")
    for line in lines:
        lineno += 1
        if not line or line[0] == "#" or line.isspace():
            if openmetrics and line.rstrip() == "# EOF":
                seen_eof = True
                break
            continue
        brace = line.find("{")
        if brace < 0:
            parts = line.split()
            series = parts[0]
            rest = parts[1:]
        else:
            space = line.find(" ")
            # Labels follow the name, maybe after blanks; a "{" after the value is an exemplar's.
            if space < 0 or brace < space or not line[space:brace].strip():
                if openmetrics and "#" in line:
                    m = _LABELS_RE.match(line, brace)  # an exemplar may follow: scan the quoting
                    if m is None:
                        raise DecodeError(f"line {lineno}: unterminated label set: {line[:200]!r}")
                    end = m.end()
                else:
                    # Values and timestamps never contain "}", so the last one closes the label set.
                    end = line.rfind("}") + 1
                    if end == 0:
                        raise DecodeError(f"line {lineno}: unterminated label set: {line[:200]!r}")
                series = line[:end]
                rest = line[end:].split()
            else:
                parts = line.split()
                series = parts[0]
                rest = parts[1:]
        if openmetrics and "#" in rest:
            rest = rest[: rest.index("#")]  # exemplar: "# {trace_id=...} 1 1234"
        if not rest or len(rest) > 2:
            raise DecodeError(f"line {lineno}: expected 'series value [timestamp]': {line[:200]!r}")
        try:
            value = parse_float(rest[0])
        except ValueError:
            raise DecodeError(f"line {lineno}: invalid sample value {rest[0]!r}") from None
        t_ms: int | None = None
        if len(rest) == 2:
            t_ms = _parse_timestamp(rest[1], openmetrics, lineno)
        yield series, value, t_ms
    if openmetrics and not seen_eof:
        raise DecodeError("openmetrics text does not end with '# EOF' (truncated response?)")
    if seen_eof and any(rest.strip() for rest in lines[lineno:]):
        raise DecodeError(f"line {lineno + 1}: text after '# EOF'")


def _parse_timestamp(token: str, openmetrics: bool, lineno: int) -> int:
    try:
        if openmetrics:
            secs = parse_float(token)
            if math.isnan(secs) or math.isinf(secs):
                raise ValueError(token)
            return int(secs * 1000)  # Go's int64(ts*1000) truncates toward zero
        if "_" in token:
            raise ValueError(token)
        return int(token)
    except ValueError:
        raise DecodeError(f"line {lineno}: invalid timestamp {token!r}") from None


class ParsedSample(NamedTuple):
    """One sample: the metric name, its labels (exposition order, no ``__name__``), value and time."""

    name: str
    labels: Labels
    value: float
    t_ms: int | None


@dataclass(slots=True)
class Exposition:
    """A whole parsed exposition: samples in order, and metadata per family name."""

    samples: list[ParsedSample] = field(default_factory=list)
    types: dict[str, str] = field(default_factory=dict)
    helps: dict[str, str] = field(default_factory=dict)
    units: dict[str, str] = field(default_factory=dict)


_TYPES: Final = frozenset(
    {"counter", "gauge", "histogram", "summary", "untyped", "unknown", "gaugehistogram", "stateset", "info"}
)


def _unescape_help(text: str) -> str:
    return _ESCAPE_RE.sub(lambda m: {"\\\\": "\\", "\\n": "\n"}.get(m.group(0), m.group(0)), text)


def parse(text: str, *, openmetrics: bool = False) -> Exposition:
    """Parse a whole exposition, labels and metadata included (see the module docstring)."""
    out = Exposition()
    for lineno, line in enumerate(text.split("\n"), 1):
        if not line.startswith("#"):
            continue
        parts = line.split(None, 3)
        if len(parts) < 3 or parts[1] not in ("TYPE", "HELP", "UNIT"):
            continue  # a plain comment
        kind, fam = parts[1], parts[2]
        rest = parts[3] if len(parts) > 3 else ""
        if not METRIC_NAME_RE.match(fam):
            raise DecodeError(f"line {lineno}: invalid metric name {fam!r} in # {kind}")
        if kind == "TYPE":
            typ = rest.strip()
            if typ not in _TYPES:
                raise DecodeError(f"line {lineno}: unknown metric type {typ!r} for {fam}")
            if fam in out.types:
                raise DecodeError(f"line {lineno}: second # TYPE line for {fam}")
            out.types[fam] = typ
        elif kind == "HELP":
            out.helps[fam] = _unescape_help(rest)
        else:
            out.units[fam] = rest.strip()
    for series, value, t_ms in iter_samples(text, openmetrics=openmetrics):
        name, labels = parse_series(series)
        out.samples.append(ParsedSample(name, labels, value, t_ms))
    return out


__all__ = [
    "SCRAPE_ACCEPT",
    "Exposition",
    "Labels",
    "ParsedSample",
    "is_openmetrics",
    "iter_samples",
    "parse",
    "parse_float",
    "parse_series",
]
