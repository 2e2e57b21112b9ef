"""Prometheus's series description notation (``parser.ParseSeriesDesc``), shared by the promqltest runner
in the tests and by ``sotp rules test`` (promtool's ``input_series``).

``metric{a="b"} 0+10x3 _ stale 5`` is a label set followed by values: ``a+bxN`` / ``a-bxN`` (N+1 values,
each the previous plus ``b``, accumulated as Go accumulates), ``axN`` (N+1 copies), ``_`` (no sample),
``_xN`` (N missing samples), ``stale`` (a staleness marker), numbers including ``Inf``, ``NaN`` and hex.
"""

from __future__ import annotations

import re

from query import ast
from query.errors import BadData
from query.parse import parse
from sotp.model import STALE_NAN, Labels, MatchOp

SERIES_LINE = re.compile(r"^\s*((?:[a-zA-Z_:][a-zA-Z0-9_:]*)?(?:\{.*\})?)\s*(.*)$")
NUMBER = r"[-+]?(?:Inf|NaN|inf|nan|\d*\.?\d+(?:[eE][-+]?\d+)?|0x[0-9a-fA-F]+)"
_ITEM = re.compile(rf"^(?:(_)|(stale)|({NUMBER}))(?:([-+]{NUMBER}))?(?:x(\d+))?$")


class SeriesDescError(ValueError):
    """A malformed series description."""


def parse_number(text: str) -> float:
    t = text.replace("Inf", "inf").replace("NaN", "nan")
    return float(int(t, 16)) if t.lower().lstrip("+-").startswith("0x") else float(t)


def expand_values(text: str) -> list[float | None]:
    """Expand ``0+10x3 _ stale 5`` into values (None = no sample)."""
    out: list[float | None] = []
    for tok in text.split():
        m = _ITEM.match(tok)
        if not m:
            raise SeriesDescError(f"invalid value {tok!r}")
        blank, stale, num, delta, times = m.groups()
        if blank:
            if delta:
                raise SeriesDescError(f"invalid value {tok!r}")
            out.extend([None] * (int(times) if times else 1))
            continue
        value = STALE_NAN if stale else parse_number(num)
        if times is None:
            if delta:
                raise SeriesDescError(f"invalid value {tok!r}: a delta needs xN")
            out.append(value)
            continue
        step = parse_number(delta) if delta else 0.0
        for _ in range(int(times) + 1):
            out.append(value)
            value += step  # accumulated, not base + i*step: the float rounding must match Prometheus's
    return out


def parse_series(text: str) -> Labels:
    """``metric{a="b"}`` → labels (equality matchers only); ``{}`` or nothing is the empty label set."""
    if text.strip() in ("{}", ""):
        return Labels()
    try:
        e = parse(text)
    except BadData as err:
        raise SeriesDescError(str(err)) from None
    if not isinstance(e, ast.VectorSelector) or any(m.op is not MatchOp.EQ for m in e.matchers):
        raise SeriesDescError(f"invalid series description {text!r}")
    return Labels({m.name: m.value for m in e.matchers})


def parse_series_desc(line: str) -> tuple[Labels, list[float | None]]:
    """One ``<series> <values>`` line."""
    m = SERIES_LINE.match(line)
    if not m:
        raise SeriesDescError(f"invalid series description {line.strip()!r}")
    return parse_series(m.group(1)), expand_values(m.group(2))
