"""Functions over instant vectors and scalars: maths, clamping, dates, labels, ``histogram_quantile``.

Functions over range vectors live in :mod:`query.range_funcs`; ``absent``, ``timestamp``, ``scalar``,
``vector``, ``time`` and ``sort`` need the evaluator and live in :mod:`query.engine`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable

import numpy as np

from query.errors import ExecutionError
from query.values import F64, Vector, drop_name, normalize
from sotp.model import LABEL_NAME_RE, METRIC_NAME, Labels
from sotp.regex import PromRegex, compile_prom

#: Go's math.Exp on amd64 (Debian's build) returns +Inf from here on, below the true float64 limit
#: (709.78); measured against Prometheus 2.42: exp(709.4361393031039) is finite, the next double is not.
GO_EXP_OVERFLOW = 709.436139303104

MATH: dict[str, Callable[[F64], F64]] = {
    "abs": np.abs,
    "ceil": np.ceil,
    "floor": np.floor,
    "exp": lambda v: np.where(v >= GO_EXP_OVERFLOW, np.inf, np.exp(v)),
    "sqrt": np.sqrt,
    "ln": np.log,
    "log2": np.log2,
    "log10": np.log10,
    "sgn": np.sign,
    "acos": np.arccos,
    "acosh": np.arccosh,
    "asin": np.arcsin,
    "asinh": np.arcsinh,
    "atan": np.arctan,
    "atanh": np.arctanh,
    "cos": np.cos,
    "cosh": np.cosh,
    "sin": np.sin,
    "sinh": np.sinh,
    "tan": np.tan,
    "tanh": np.tanh,
    "deg": lambda v: v * 180 / math.pi,
    "rad": lambda v: v * math.pi / 180,
}


def apply_math(name: str, vec: Vector) -> Vector:
    return normalize(Vector(drop_name(vec.labels), np.asarray(MATH[name](vec.values)), vec.present.copy()))


def round_(vec: Vector, to_nearest: F64) -> Vector:
    inv = 1.0 / to_nearest[None, :]
    out = np.floor(vec.values * inv + 0.5) / inv
    return normalize(Vector(drop_name(vec.labels), out, vec.present.copy()))


def clamp(vec: Vector, lo: F64 | None, hi: F64 | None) -> Vector:
    v = vec.values
    present = vec.present.copy()
    if hi is not None:
        v = np.minimum(hi[None, :], v)
    if lo is not None:
        v = np.maximum(lo[None, :], v)
    if lo is not None and hi is not None:
        present &= ~(hi < lo)[None, :]  # clamp() with max < min returns an empty vector
    return normalize(Vector(drop_name(vec.labels), np.asarray(v), present))


def _dates(seconds: F64) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    finite = np.isfinite(seconds)
    sec = np.trunc(np.where(finite, seconds, 0.0)).astype(np.int64)  # Go: time.Unix(int64(v), 0)
    d = sec.astype("datetime64[s]")
    days = d.astype("datetime64[D]")
    months = d.astype("datetime64[M]")
    years = d.astype("datetime64[Y]")
    return sec, days, months, years, finite


def date_function(name: str, seconds: F64) -> F64:
    sec, days, months, years, finite = _dates(seconds)
    if name == "year":
        out = years.astype(np.int64) + 1970
    elif name == "month":
        out = months.astype(np.int64) % 12 + 1
    elif name == "day_of_month":
        out = (days - months.astype("datetime64[D]")).astype(np.int64) + 1
    elif name == "day_of_year":
        out = (days - years.astype("datetime64[D]")).astype(np.int64) + 1
    elif name == "day_of_week":
        out = (days.astype(np.int64) + 4) % 7
    elif name == "hour":
        out = (sec % 86400) // 3600
    elif name == "minute":
        out = (sec % 3600) // 60
    elif name == "days_in_month":
        nxt = (months + 1).astype("datetime64[D]")
        out = (nxt - months.astype("datetime64[D]")).astype(np.int64)
    else:  # pragma: no cover
        raise ExecutionError(f"unknown date function {name}")
    return np.where(finite, out.astype(np.float64), np.nan)


DATE_FUNCTIONS = frozenset(
    {"year", "month", "day_of_month", "day_of_year", "day_of_week", "hour", "minute", "days_in_month"}
)

_TEMPLATE = re.compile(r"\$(?:\$|\{([A-Za-z0-9_]+)\}|([A-Za-z0-9_]+))")


def expand_template(template: str, rx: PromRegex, value: str, spans: list[tuple[int, int]]) -> str:
    """Go's ``Regexp.ExpandString``: ``$1``, ``${1}``, ``$name``; unknown or unset groups expand to ''."""
    names = rx.groupindex

    def group(i: int) -> str:
        a, b = spans[i]
        return value[a:b] if a >= 0 else ""

    def sub(t: re.Match[str]) -> str:
        if t.group(0) == "$$":
            return "$"
        name = t.group(1) or t.group(2)
        if name.isdigit():
            i = int(name)
            return group(i) if i <= rx.groups else ""
        return group(names[name]) if name in names else ""

    return _TEMPLATE.sub(sub, template)


def label_replace(vec: Vector, dst: str, repl: str, src: str, regex: str) -> Vector:
    try:
        rx = compile_prom(regex)  # RE2, anchored: linear time whatever the pattern
    except ValueError:
        raise ExecutionError(f"invalid regular expression in label_replace(): {regex}") from None
    if not LABEL_NAME_RE.match(dst):
        raise ExecutionError(f"invalid destination label name in label_replace(): {dst}")
    out: list[Labels] = []
    for lb in vec.labels:
        value = lb.get(src) or ""
        spans = rx.spans(value)
        if spans is None:
            out.append(lb)
            continue
        items = dict(lb.items_tuple())
        res = expand_template(repl, rx, value, spans)
        items.pop(dst, None)
        if res:
            items[dst] = res
        out.append(Labels(items))
    return normalize(Vector(out, vec.values, vec.present))


def label_join(vec: Vector, dst: str, sep: str, srcs: list[str]) -> Vector:
    if not LABEL_NAME_RE.match(dst):
        raise ExecutionError(f"invalid destination label name in label_join(): {dst}")
    for s in srcs:
        if not LABEL_NAME_RE.match(s) and s != METRIC_NAME:
            raise ExecutionError(f"invalid source label name in label_join(): {s}")
    out: list[Labels] = []
    for lb in vec.labels:
        joined = sep.join(lb.get(s) or "" for s in srcs)
        items = dict(lb.items_tuple())
        items.pop(dst, None)
        if joined:
            items[dst] = joined
        out.append(Labels(items))
    return normalize(Vector(out, vec.values, vec.present))


def _parse_le(v: str | None) -> float | None:
    """Go's ``strconv.ParseFloat`` for bucket bounds; Python's float() also accepts '1_0' and spaces."""
    if v is None or not v or v != v.strip() or "_" in v:
        return None
    try:
        return float(v)
    except ValueError:
        return None


def _bucket_quantile(q: F64, ub: F64, counts: F64) -> F64:
    """Prometheus's ``bucketQuantile`` for one histogram over ``m`` steps: ``counts`` is ``(b, m)``.

    Replays 2.42's steps exactly (``promql/quantile.go``): NaN/out-of-range ``q`` first, then sort,
    coalesce equal bounds, ``ensureMonotonic`` (a running maximum seeded by the first bucket, so a NaN
    first count disables it), a binary search (``sort.Search``) for the rank, and interpolation.
    """
    m = counts.shape[1]
    out = np.full(m, np.nan)
    order = np.argsort(ub, kind="stable")
    ub, counts = ub[order], counts[order]
    if np.isposinf(ub[-1]):
        uniq, inv = np.unique(ub, return_inverse=True)
        if len(uniq) != len(ub):  # coalesce buckets with the same bound ("1" and "1.0"), in bound order
            merged = np.zeros((len(uniq), m))
            for i, g in enumerate(inv):
                merged[g] = counts[i] if i == 0 or inv[i - 1] != g else merged[g] + counts[i]
            ub, counts = uniq, merged
        else:
            counts = counts.copy()
        b = len(ub)
        if b >= 2:
            running = counts[0].copy()
            for i in range(1, b):
                c = counts[i]
                running = np.where(c > running, c, running)
                counts[i] = np.where(c < running, running, c)
            obs = counts[-1]
            rank = q * obs
            lo, hi = np.zeros(m, dtype=np.intp), np.full(m, b - 1, dtype=np.intp)
            cols = np.arange(m)
            while (lo < hi).any():  # Go's sort.Search over the first b-1 buckets: counts >= rank
                mid = (lo + hi) // 2
                ge = counts[np.minimum(mid, b - 1), cols] >= rank
                active = lo < hi
                lo = np.where(active & ~ge, mid + 1, lo)
                hi = np.where(active & ge, mid, hi)
            idx = lo
            prev = np.maximum(idx - 1, 0)
            start = np.where(idx > 0, ub[prev], 0.0)
            end = ub[np.minimum(idx, b - 1)]
            prev_count = np.where(idx > 0, counts[prev, cols], 0.0)
            count = counts[np.minimum(idx, b - 1), cols] - prev_count
            val = start + (end - start) * ((rank - prev_count) / count)
            val = np.where((idx == 0) & (ub[0] <= 0), ub[0], val)
            val = np.where(idx == b - 1, ub[b - 2], val)
            out = np.where(obs == 0, np.nan, val)
    out = np.where(q < 0, -np.inf, np.where(q > 1, np.inf, out))
    return np.asarray(np.where(np.isnan(q), np.nan, out))


def histogram_quantile(q: F64, vec: Vector) -> Vector:
    n = vec.values.shape[1]
    groups: dict[Labels, list[tuple[int, float]]] = {}
    for i, lb in enumerate(vec.labels):
        le = _parse_le(lb.get("le"))
        if le is None:
            continue
        groups.setdefault(lb.without("le"), []).append((i, le))
    labels: list[Labels] = []
    values, present = [], []
    for sig, members in groups.items():
        rows = np.array([i for i, _ in members], dtype=np.intp)
        ub = np.array([le for _, le in members])
        pres = vec.present[rows]
        cnt = vec.values[rows]
        res = np.full(n, np.nan)
        any_p = pres.any(axis=0)
        full = pres.all(axis=0)
        if full.any():
            res[full] = _bucket_quantile(q[full], ub, cnt[:, full])
        for j in np.flatnonzero(any_p & ~full):
            sel = pres[:, j]
            res[j] = _bucket_quantile(q[j : j + 1], ub[sel], cnt[sel, j : j + 1])[0]
        labels.append(sig.without(METRIC_NAME))
        values.append(res)
        present.append(any_p)
    if not labels:
        return Vector.empty(n)
    return normalize(Vector(labels, np.array(values), np.array(present, dtype=bool)))
