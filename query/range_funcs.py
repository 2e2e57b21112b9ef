"""Functions over range vectors (``rate``, ``*_over_time``, ...), computed for every window at once.

Each function gets the raw samples (:class:`query.values.Range`), the window bounds ``lo``/``hi`` (global
sample indices, shape ``(k, n)``), the window end times and the range, and returns ``(values, present)``.
Semantics follow Prometheus 2.42 ``promql/functions.go``; windows are closed ``[t - range, t]``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from query.errors import ExecutionError
from query.gomath import go_seconds
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

#: Windows per slice of work: a slice's temporaries stay in the CPU cache.
CHUNK = 16_384


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
    vs = w.rng.vs
    result: F64 | None = None  # last - first (+ counter resets), computed per slice below when no reset
    if counter:
        drops = _pairs(w, lambda cur, prev: np.where(cur < prev, prev, 0.0))
        if drops.any():  # most windows of most series see no reset
            f, last = _idx(w, ok, w.lo), _idx(w, ok, w.hi - 1)
            first_v = vs[f]
            result = (vs[last] - first_v) + _pair_sum(w, drops)
            # Prometheus adds each reset to (last - first) in turn; with two or more resets in a
            # window the order of the additions shows in the last bits, so replay those windows
            n_resets = _pair_sum(w, (drops != 0).astype(np.float64))
            multi = ok & (n_resets >= 2)
            if multi.any():
                result[multi] = _sequential_resets(vs, w.lo[multi], w.hi[multi], vs[last[multi]] - first_v[multi])
    out = np.empty(n.shape)
    # Rows in slices of about CHUNK windows: the ~30 temporaries of a slice stay in the CPU cache, where
    # whole (series x steps) arrays would not (about 2x faster for a thousand series over an hour).
    per = max(1, CHUNK // max(1, n.shape[1]))
    for a in range(0, n.shape[0], per):
        rows = slice(a, a + per)
        out[rows] = _extrapolate(w, rows, ok[rows], None if result is None else result[rows], counter, is_rate)
    return out, ok


def _extrapolate(w: Window, rows: slice, ok: B, result: F64 | None, counter: bool, is_rate: bool) -> F64:
    """``extrapolatedRate`` after the sum of the window's increases, for the windows of ``rows``."""
    lo, hi = w.lo[rows], w.hi[rows]
    n = hi - lo
    f = np.where(ok, lo, 0)
    last = np.where(ok, hi - 1, 0)
    vs, ts = w.rng.vs, w.rng.ts
    first_v = vs[f]
    if result is None:
        result = vs[last] - first_v
    t_first, t_last = ts[f], ts[last]
    range_start = w.end_ms - w.range_ms
    dur_start = (t_first - range_start[None, :]) / 1000.0
    dur_end = (w.end_ms[None, :] - t_last) / 1000.0
    sampled = (t_last - t_first) / 1000.0
    avg = sampled / np.maximum(n - 1, 1)
    if counter:
        to_zero = sampled * (first_v / result)
        dur_start = np.where((result > 0) & (first_v >= 0) & (to_zero < dur_start), to_zero, dur_start)
    threshold = avg * 1.1
    interval = sampled + np.where(dur_start < threshold, dur_start, avg / 2) + np.where(
        dur_end < threshold, dur_end, avg / 2
    )
    # Prometheus's operation order: factor = interval / sampled; factor /= range; result *= factor.
    # ``result * (interval / sampled) / range`` differs in the last bit, which flips histogram buckets.
    factor = interval / sampled
    if is_rate:
        factor = factor / go_seconds(w.range_ms)
    out: F64 = result * factor
    return out


def _sequential_resets(vs: F64, lo: I64, hi: I64, start: F64) -> F64:
    """``start`` plus every counter reset inside ``[lo, hi)``, added one at a time in sample order."""
    out = start.copy()
    cnt = hi - lo
    for i in range(1, int(cnt.max())):
        live = cnt > i
        cur = vs[np.where(live, lo + i, lo)]
        prev = vs[np.where(live, lo + i - 1, lo)]
        out = np.where(live & (cur < prev), out + prev, out)
    return out


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


def deriv(w: Window) -> Result:
    slope, _, ok = _seq_regression(w, at_eval_time=False)
    return slope, ok & (w.count >= 2)


def predict_linear(w: Window) -> Result:
    slope, intercept, ok = _seq_regression(w, at_eval_time=True)
    ok = ok & (w.count >= 2)
    return slope * w.args[0][None, :] + intercept, ok


def resets(w: Window) -> Result:
    d = _pairs(w, lambda cur, prev: (cur < prev).astype(np.float64))
    return _pair_sum(w, d), w.count > 0


def changes(w: Window) -> Result:
    d = _pairs(w, lambda cur, prev: ((cur != prev) & ~(np.isnan(cur) & np.isnan(prev))).astype(np.float64))
    return _pair_sum(w, d), w.count > 0


def sum_over_time(w: Window) -> Result:
    return _seq_sum(w)


def count_over_time(w: Window) -> Result:
    return w.count.astype(np.float64), w.count > 0


def avg_over_time(w: Window) -> Result:
    return _seq_avg(w)


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
    return _seq_stdvar(w)


def stddev_over_time(w: Window) -> Result:
    v, ok = stdvar_over_time(w)
    return np.sqrt(v), ok


def quantile_of(q: float, values: F64) -> float:
    """Prometheus's ``quantile``: linear interpolation over the sorted values (NaN sorts first)."""
    if len(values) == 0 or np.isnan(q):
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


# ---- sequential kernels -------------------------------------------------------------------------------
# Prometheus 2.42 sums with Kahan-Neumaier compensation (``kahanSumInc``) and averages incrementally, so
# its results can differ from a plain sum in the last bits, which matters after floor()/ceil()/==. These
# kernels replay its loops exactly: one iteration per sample position, vectorised over every window,
# in chunks that stay in the CPU cache (:data:`CHUNK`).


def _kahan(inc: F64, s: F64, c: F64) -> tuple[F64, F64]:
    """Go's ``kahanSumInc`` (Neumaier): returns the new sum and compensation."""
    t = s + inc
    s_big = np.abs(s) >= np.abs(inc)
    big = np.where(s_big, s, inc)
    small = np.where(s_big, inc, s)
    big -= t
    big += small
    big += c
    return t, big


def _sequential(w: Window, kernel: Callable[[I64, I64, I64], F64]) -> Result:
    """Run ``kernel(lo, count, flat_window_index)`` over the non-empty windows in chunks."""
    ok = w.count > 0
    out = np.zeros(ok.shape)
    if not len(w.rng.vs):
        return out, ok
    flat = np.flatnonzero(ok.ravel())
    lo_all, cnt_all = w.lo.ravel()[flat], w.count.ravel()[flat]
    res = np.empty(len(flat))
    for a in range(0, len(flat), CHUNK):
        res[a : a + CHUNK] = kernel(lo_all[a : a + CHUNK], cnt_all[a : a + CHUNK], flat[a : a + CHUNK])
    out.ravel()[flat] = res
    return out, ok


def _positions(lo: I64, cnt: I64) -> Iterator[tuple[int, I64, B | None]]:
    """(i, sample index, live mask or None when every window has a sample at position i)."""
    uniform = bool((cnt == cnt[0]).all())
    for i in range(int(cnt.max())):
        if uniform:
            yield i, lo + i, None
        else:
            live = cnt > i
            yield i, np.where(live, lo + i, lo), live


def _seq_sum(w: Window) -> Result:
    vs = w.rng.vs

    def kernel(lo: I64, cnt: I64, _: I64) -> F64:
        s = np.zeros(len(lo))
        c = np.zeros(len(lo))
        for _i, idx, live in _positions(lo, cnt):
            ns, nc = _kahan(vs[idx], s, c)
            s, c = (ns, nc) if live is None else (np.where(live, ns, s), np.where(live, nc, c))
        return np.where(np.isinf(s), s, s + c)

    return _sequential(w, kernel)


def _by_count(w: Window) -> tuple[B, I64, I64, I64]:
    """The non-empty windows sorted by sample count, most first: ``(ok, flat index, lo, count)``. At
    position ``i`` the windows still running are then a prefix, so a kernel works on slices (no masks)."""
    ok = w.count > 0
    flat = np.flatnonzero(ok.ravel())
    cnt = w.count.ravel()[flat]
    order = np.argsort(-cnt, kind="stable")
    return ok, flat[order], w.lo.ravel()[flat[order]], cnt[order]


def _exact_sums_safe(vs: F64) -> bool:
    """Whether every value is finite and far from overflow: then Neumaier's compensation equals the exact
    rounding error of each addition, which TwoSum computes without branches (see :func:`_avg_finite`)."""
    return bool(len(vs) == 0 or (np.isfinite(vs).all() and float(np.abs(vs).max()) < 1e300))


def _avg_finite(w: Window) -> Result:
    """``avg_over_time`` for finite values: 2.42's loop (incremental mean with ``kahanSumInc``), one step per
    sample position over every window still running. Neumaier's ``c += (big - t) + small`` adds the exact
    error of ``t = mean + inc``; TwoSum's ``(mean - (t - bb)) + (inc - bb)`` with ``bb = t - mean`` is that
    same exact error (no overflow, no NaN here), so the results are bit-identical, in half the operations."""
    vs = w.rng.vs
    ok, flat, lo_all, cnt_all = _by_count(w)
    out = np.zeros(ok.shape)
    res = np.empty(len(flat))
    for a in range(0, len(flat), CHUNK):
        lo, cnt = lo_all[a : a + CHUNK], cnt_all[a : a + CHUNK]
        mean = np.zeros(len(lo))
        comp = np.zeros(len(lo))
        running = np.searchsorted(-cnt, -np.arange(int(cnt[0]) if len(cnt) else 0), side="left")
        for i, m in enumerate(running.tolist()):
            count = float(i + 1)
            mu, c = mean[:m], comp[:m]
            inc = vs[lo[:m] + i]
            inc /= count
            inc -= mu / count
            t = mu + inc
            bb = t - mu
            err = t - bb
            np.subtract(mu, err, out=err)
            inc -= bb
            err += inc
            c += err
            mu[...] = t
        res[a : a + CHUNK] = mean + comp
    out.ravel()[flat] = res
    return out, ok


def _seq_avg(w: Window) -> Result:
    vs = w.rng.vs
    if _exact_sums_safe(vs):
        return _avg_finite(w)
    any_inf = bool(np.isinf(vs).any())

    def kernel(lo: I64, cnt: I64, _: I64) -> F64:
        mean = np.zeros(len(lo))
        c = np.zeros(len(lo))
        for i, idx, live in _positions(lo, cnt):
            v = vs[idx]
            count = float(i + 1)
            if not any_inf:  # the common case: no infinity can reach the mean
                nm, nc = _kahan(v / count - mean / count, mean, c)
                mean, c = (nm, nc) if live is None else (np.where(live, nm, mean), np.where(live, nc, c))
                continue
            # an infinite mean stays as it is unless a NaN or an opposite infinity arrives
            inf = np.isinf(mean)
            skip = inf & ((np.isinf(v) & ((mean > 0) == (v > 0))) | (~np.isinf(v) & ~np.isnan(v)))
            nm, nc = _kahan(v / count - mean / count, mean, c)
            upd = ~skip if live is None else live & ~skip
            mean, c = np.where(upd, nm, mean), np.where(upd, nc, c)
        return np.where(np.isinf(mean), mean, mean + c)

    return _sequential(w, kernel)


def _seq_stdvar(w: Window) -> Result:
    vs = w.rng.vs

    def kernel(lo: I64, cnt: I64, _: I64) -> F64:
        z = np.zeros(len(lo))
        mean, c_mean, aux, c_aux = z, z.copy(), z.copy(), z.copy()
        for i, idx, live in _positions(lo, cnt):
            v = vs[idx]
            delta = v - (mean + c_mean)
            nm, ncm = _kahan(delta / float(i + 1), mean, c_mean)
            na, nca = _kahan(delta * (v - (nm + ncm)), aux, c_aux)
            if live is None:
                mean, c_mean, aux, c_aux = nm, ncm, na, nca
            else:
                mean, c_mean = np.where(live, nm, mean), np.where(live, ncm, c_mean)
                aux, c_aux = np.where(live, na, aux), np.where(live, nca, c_aux)
        return (aux + c_aux) / cnt

    return _sequential(w, kernel)


def _seq_regression(w: Window, at_eval_time: bool) -> tuple[F64, F64, B]:
    """``linearRegression``: slope and intercept, x relative to the first sample or the eval time."""
    vs, ts = w.rng.vs, w.rng.ts
    n_steps = w.lo.shape[1] if w.lo.ndim == 2 else 1
    slopes = np.zeros(w.lo.shape)
    intercepts = np.zeros(w.lo.shape)

    def kernel(lo: I64, cnt: I64, flat: I64) -> F64:
        ref = w.enh_ts[flat % n_steps] if at_eval_time else ts[lo]
        z = np.zeros(len(lo))
        sx, cx, sy, cy, sxy, cxy, sx2, cx2 = (z.copy() for _ in range(8))
        init = vs[lo]
        const = np.ones(len(lo), dtype=bool)
        for _i, idx, live in _positions(lo, cnt):
            v = vs[idx]
            x = (ts[idx] - ref) / 1e3
            upd = [_kahan(x, sx, cx), _kahan(v, sy, cy), _kahan(x * v, sxy, cxy), _kahan(x * x, sx2, cx2)]
            if live is None:
                (sx, cx), (sy, cy), (sxy, cxy), (sx2, cx2) = upd
                const &= v == init
            else:
                (sx, cx), (sy, cy), (sxy, cxy), (sx2, cx2) = (
                    (np.where(live, a, b), np.where(live, ca, cb))
                    for (a, ca), (b, cb) in zip(upd, [(sx, cx), (sy, cy), (sxy, cxy), (sx2, cx2)], strict=True)
                )
                const &= ~live | (v == init)
        nf = cnt.astype(np.float64)
        sx, sy, sxy, sx2 = sx + cx, sy + cy, sxy + cxy, sx2 + cx2
        slope = (sxy - sx * sy / nf) / (sx2 - sx * sx / nf)
        intercept = sy / nf - slope * sx / nf
        inf = np.isinf(init)
        slope = np.where(const, np.where(inf, np.nan, 0.0), slope)
        intercept = np.where(const, np.where(inf, np.nan, init), intercept)
        intercepts.ravel()[flat] = intercept
        return slope

    slope_vals, ok = _sequential(w, kernel)
    slopes[...] = slope_vals
    return slopes, intercepts, ok


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
