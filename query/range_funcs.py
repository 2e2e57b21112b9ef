"""Functions over range vectors (``rate``, ``*_over_time``, ...), computed for every window at once.

Each function gets the raw samples (:class:`query.values.Range`), the window bounds ``lo``/``hi`` (global
sample indices, shape ``(k, n)``), the window end times and the range, and returns ``(values, present)``.
Semantics follow Prometheus 2.42 ``promql/functions.go``; windows are closed ``[t - range, t]``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from query.errors import ExecutionError
from query.values import F64, I64, B, Range, window_reduce


@dataclass
class Window:
    """The windows of one range-vector argument, plus the other (scalar) arguments per step."""

    rng: Range
    lo: I64
    hi: I64
    end_ms: I64  # (n,) window end per step (eval time - offset, or the @ time)
    range_ms: int
    enh_ts: I64  # (n,) the evaluation timestamp Prometheus passes to the function
    args: list[F64]  # scalar arguments, one value per step

    @property
    def count(self) -> I64:
        return self.hi - self.lo


Result = tuple[F64, B]


def _idx(w: Window, ok: B, idx: I64) -> I64:
    out: I64 = np.where(ok, idx, 0)
    return out


def _pair_sum(w: Window, per_sample: F64) -> F64:
    """Sum of a per-sample quantity defined on consecutive pairs (index i pairs i-1, i) inside windows."""
    lo1 = np.minimum(w.lo + 1, w.hi)
    return window_reduce(np.add, per_sample, lo1, w.hi, 0.0)


def _pairs(w: Window, fn: Callable[[F64, F64], F64]) -> F64:
    vs = w.rng.vs
    out = np.zeros(len(vs))
    if len(vs) > 1:
        out[1:] = fn(vs[1:], vs[:-1])
        out[w.rng.starts[:-1][w.rng.starts[:-1] < len(vs)]] = 0.0  # no pair across series
    return out


def extrapolated_rate(w: Window, counter: bool, is_rate: bool) -> Result:
    """``rate``/``increase``/``delta`` (``extrapolatedRate`` in Prometheus)."""
    n = w.count
    ok = n >= 2
    if not len(w.rng.vs):
        return np.zeros(n.shape), ok
    f, last = _idx(w, ok, w.lo), _idx(w, ok, w.hi - 1)
    vs, ts = w.rng.vs, w.rng.ts
    first_v = vs[f]
    result = vs[last] - first_v
    if counter:
        drops = _pairs(w, lambda cur, prev: np.where(cur < prev, prev, 0.0))
        if drops.any():  # most windows of most series see no reset
            result = result + _pair_sum(w, drops)
    range_start = w.end_ms - w.range_ms
    dur_start = (ts[f] - range_start[None, :]) / 1000.0
    dur_end = (w.end_ms[None, :] - ts[last]) / 1000.0
    sampled = (ts[last] - ts[f]) / 1000.0
    avg = sampled / np.maximum(n - 1, 1)
    if counter:
        to_zero = sampled * (first_v / result)
        dur_start = np.where((result > 0) & (first_v >= 0) & (to_zero < dur_start), to_zero, dur_start)
    threshold = avg * 1.1
    interval = sampled + np.where(dur_start < threshold, dur_start, avg / 2) + np.where(
        dur_end < threshold, dur_end, avg / 2
    )
    result = result * (interval / sampled)
    if is_rate:
        result = result / (w.range_ms / 1000.0)
    return result, ok


def instant_value(w: Window, is_rate: bool) -> Result:
    """``irate``/``idelta``: the last two samples of each window."""
    n = w.count
    ok = n >= 2
    if not len(w.rng.vs):
        return np.zeros(n.shape), ok
    last, prev = _idx(w, ok, w.hi - 1), _idx(w, ok, w.hi - 2)
    vs, ts = w.rng.vs, w.rng.ts
    lv, pv = vs[last], vs[prev]
    dt = ts[last] - ts[prev]
    ok = ok & (dt != 0)
    res = np.where(lv < pv, lv, lv - pv) / (dt / 1000.0) if is_rate else lv - pv
    return res, ok


def _regression(w: Window, intercept_at: I64 | None) -> tuple[F64, F64, B]:
    """Least-squares slope (per second) and intercept at ``intercept_at`` (ms) per window.

    x and y are centred per series before summing so the shifted sums keep their precision.
    """
    n = w.count
    ok = n >= 2
    rng = w.rng
    rows = rng.rows()
    first = np.minimum(rng.starts[:-1], max(len(rng.ts) - 1, 0))
    if not len(rng.ts):
        z = np.zeros(n.shape)
        return z, z, ok
    x_ref = rng.ts[first][rows]
    y_ref = rng.vs[first][rows]
    x = (rng.ts - x_ref) / 1000.0
    y = rng.vs - y_ref
    sx = window_reduce(np.add, x, w.lo, w.hi, 0.0)
    sy = window_reduce(np.add, y, w.lo, w.hi, 0.0)
    sxy = window_reduce(np.add, x * y, w.lo, w.hi, 0.0)
    sxx = window_reduce(np.add, x * x, w.lo, w.hi, 0.0)
    nf = n.astype(np.float64)
    cov = sxy - sx * sy / nf
    var = sxx - sx * sx / nf
    slope = cov / var
    # intercept at the series' reference time, then moved to the requested time
    row_x_ref = rng.ts[first][:, None]
    row_y_ref = rng.vs[first][:, None]
    intercept = sy / nf - slope * sx / nf + row_y_ref
    if intercept_at is not None:
        intercept = intercept + slope * ((intercept_at[None, :] - row_x_ref) / 1000.0)
    # Prometheus special-cases windows whose values are all equal: slope 0 (NaN for infinities)
    lo_c = _idx(w, ok, w.lo)
    vmin = window_reduce(np.fmin, rng.vs, w.lo, w.hi, np.nan)
    vmax = window_reduce(np.fmax, rng.vs, w.lo, w.hi, np.nan)
    init = rng.vs[lo_c]
    const = ok & (vmin == vmax)
    inf = np.isinf(init)
    slope = np.where(const, np.where(inf, np.nan, 0.0), slope)
    intercept = np.where(const, np.where(inf, np.nan, init), intercept)
    return slope, intercept, ok


def deriv(w: Window) -> Result:
    slope, _, ok = _regression(w, None)
    return slope, ok


def predict_linear(w: Window) -> Result:
    slope, intercept, ok = _regression(w, w.enh_ts)
    return slope * w.args[0][None, :] + intercept, ok


def resets(w: Window) -> Result:
    d = _pairs(w, lambda cur, prev: (cur < prev).astype(np.float64))
    return _pair_sum(w, d), w.count > 0


def changes(w: Window) -> Result:
    d = _pairs(w, lambda cur, prev: ((cur != prev) & ~(np.isnan(cur) & np.isnan(prev))).astype(np.float64))
    return _pair_sum(w, d), w.count > 0


def sum_over_time(w: Window) -> Result:
    return window_reduce(np.add, w.rng.vs, w.lo, w.hi, 0.0), w.count > 0


def count_over_time(w: Window) -> Result:
    return w.count.astype(np.float64), w.count > 0


def avg_over_time(w: Window) -> Result:
    s, ok = sum_over_time(w)
    return s / np.maximum(w.count, 1), ok


def min_over_time(w: Window) -> Result:
    return window_reduce(np.fmin, w.rng.vs, w.lo, w.hi, np.nan), w.count > 0


def max_over_time(w: Window) -> Result:
    return window_reduce(np.fmax, w.rng.vs, w.lo, w.hi, np.nan), w.count > 0


def last_over_time(w: Window) -> Result:
    ok = w.count > 0
    if not len(w.rng.vs):
        return np.zeros(ok.shape), ok
    return w.rng.vs[_idx(w, ok, w.hi - 1)], ok


def present_over_time(w: Window) -> Result:
    ok = w.count > 0
    return np.ones(ok.shape), ok


def stdvar_over_time(w: Window) -> Result:
    rng = w.rng
    ok = w.count > 0
    if not len(rng.vs):
        return np.zeros(ok.shape), ok
    first = np.minimum(rng.starts[:-1], len(rng.vs) - 1)
    y = rng.vs - rng.vs[first][rng.rows()]  # shift per series: same variance, fewer cancelled digits
    s1 = window_reduce(np.add, y, w.lo, w.hi, 0.0)
    s2 = window_reduce(np.add, y * y, w.lo, w.hi, 0.0)
    nf = np.maximum(w.count, 1).astype(np.float64)
    var = (s2 - s1 * s1 / nf) / nf
    return np.where(var < 0, 0.0, var), ok


def stddev_over_time(w: Window) -> Result:
    v, ok = stdvar_over_time(w)
    return np.sqrt(v), ok


def quantile_of(q: float, values: F64) -> float:
    """Prometheus's ``quantile``: linear interpolation over the sorted values (NaN sorts first)."""
    if len(values) == 0:
        return float("nan")
    if q < 0:
        return float("-inf")
    if q > 1:
        return float("inf")
    nan = np.isnan(values)
    s = np.concatenate([values[nan], np.sort(values[~nan])])
    n = len(s)
    rank = q * (n - 1)
    lower = max(0, int(np.floor(rank)))
    upper = min(n - 1, lower + 1)
    weight = rank - np.floor(rank)
    return float(s[lower] * (1 - weight) + s[upper] * weight)


def quantile_over_time(w: Window) -> Result:
    ok = w.count > 0
    out = np.zeros(ok.shape)
    q = w.args[0]
    vs = w.rng.vs
    for i, j in zip(*np.nonzero(ok), strict=True):  # per window, not per sample
        out[i, j] = quantile_of(float(q[j]), vs[w.lo[i, j] : w.hi[i, j]])
    return out, ok


def holt_winters(w: Window) -> Result:
    """Double exponential smoothing, iterated over sample position for all windows together."""
    sf, tf = w.args[0], w.args[1]
    for name, f in (("smoothing", sf), ("trend", tf)):
        bad = (f <= 0) | (f >= 1)
        if bad.any():
            raise ExecutionError(f"invalid {name} factor. Expected: 0 < {name[0]}f < 1, got: {f[bad][0]:f}")
    n = w.count
    ok = n >= 2
    vs = w.rng.vs
    if not ok.any():
        return np.zeros(n.shape), ok
    sfb, tfb = np.broadcast_to(sf, n.shape), np.broadcast_to(tf, n.shape)
    lo = w.lo
    s1 = vs[_idx(w, ok, lo)]
    b = vs[_idx(w, ok, lo + 1)] - s1
    s0 = np.zeros(n.shape)
    for i in range(1, int(n.max())):
        live = ok & (n > i)
        x = sfb * vs[np.where(live, lo + i, 0)]
        if i > 1:
            b = np.where(live, tfb * (s1 - s0) + (1 - tfb) * b, b)
        y = (1 - sfb) * (s1 + b)
        s0 = np.where(live, s1, s0)
        s1 = np.where(live, x + y, s1)
    return s1, ok


RANGE_FUNCTIONS: dict[str, Callable[[Window], Result]] = {
    "rate": lambda w: extrapolated_rate(w, True, True),
    "increase": lambda w: extrapolated_rate(w, True, False),
    "delta": lambda w: extrapolated_rate(w, False, False),
    "irate": lambda w: instant_value(w, True),
    "idelta": lambda w: instant_value(w, False),
    "deriv": deriv,
    "predict_linear": predict_linear,
    "resets": resets,
    "changes": changes,
    "sum_over_time": sum_over_time,
    "count_over_time": count_over_time,
    "avg_over_time": avg_over_time,
    "min_over_time": min_over_time,
    "max_over_time": max_over_time,
    "last_over_time": last_over_time,
    "present_over_time": present_over_time,
    "stddev_over_time": stddev_over_time,
    "stdvar_over_time": stdvar_over_time,
    "quantile_over_time": quantile_over_time,
    "holt_winters": holt_winters,
}

#: Position of the range-vector argument per function (all others are scalars).
RANGE_ARG = {"quantile_over_time": 1}
