"""Go's arithmetic where it differs from C's libm or from Python: ``math.Pow`` and ``Duration.Seconds``.

Prometheus computes ``^`` with Go's ``math.Pow``, which is not correctly rounded: for an integer
exponent it multiplies the mantissa by repeated squaring (``x ^ 3`` rounds twice), while C's ``pow``
rounds once. The results differ in the last bit, which ``floor()``, ``==`` and bucket boundaries turn
into visible differences, so :func:`go_pow` replays Go's algorithm (``src/math/pow.go``) vectorised.
The fractional part of the exponent still comes from ``exp(yf * log(x))`` of the C library (Go uses
its own assembly there), so a non-integer exponent can still differ in the last bit.
"""

from __future__ import annotations

import numpy as np

from query.values import F64

_BIG = float(1 << 63)


def go_seconds(ms: int) -> float:
    """Go's ``time.Duration.Seconds()`` of a millisecond duration: whole seconds plus the fraction."""
    whole, frac = divmod(abs(ms), 1000)
    secs = float(whole) + float(frac * 1_000_000) / 1e9
    return -secs if ms < 0 else secs


def _is_odd_int(y: F64) -> np.ndarray:
    yf, yi = np.modf(y)  # numpy returns (fraction, integer)
    return np.asarray((yf == 0) & (np.abs(yi) < 2.0**53) & (np.fmod(yi, 2) != 0))


def go_pow(x_in: F64 | float, y_in: F64 | float) -> F64:
    """``math.Pow`` of Go 1.19, element-wise with broadcasting."""
    x, y = np.broadcast_arrays(np.asarray(x_in, dtype=np.float64), np.asarray(y_in, dtype=np.float64))
    shape = x.shape
    x, y = x.ravel(), y.ravel()
    out = np.full(x.shape, np.nan)
    done = np.zeros(x.shape, dtype=bool)

    def put(mask: np.ndarray, value: F64 | float) -> None:
        sel = mask & ~done
        out[sel] = value[sel] if isinstance(value, np.ndarray) else value
        done[sel] = True

    ax = np.abs(x)
    odd = _is_odd_int(y)
    # the special cases, in Go's order
    put((y == 0) | (x == 1), 1.0)
    put(y == 1, x)
    put(np.isnan(x) | np.isnan(y), np.nan)
    zero = x == 0
    put(zero & (y < 0) & odd, np.copysign(np.inf, x))
    put(zero & (y < 0), np.inf)
    put(zero & (y > 0) & odd, x)
    put(zero & (y > 0), 0.0)
    yinf = np.isinf(y)
    put(yinf & (x == -1), 1.0)
    put(yinf & ((ax < 1) == (y > 0)), 0.0)
    put(yinf, np.inf)
    xinf = np.isinf(x)
    neg_inf = xinf & (x < 0)
    # Pow(-Inf, y) = Pow(-0, -y)
    put(neg_inf & (y > 0) & odd, -np.inf)
    put(neg_inf & (y > 0), np.inf)
    put(neg_inf & (y < 0) & odd, -0.0)
    put(neg_inf & (y < 0), 0.0)
    put(xinf & (y > 0), np.inf)
    put(xinf, 0.0)
    put((y == 0.5), np.sqrt(x))
    put((y == -0.5), 1 / np.sqrt(x))

    yf, yi = np.modf(np.abs(y))
    put((yf != 0) & (x < 0), np.nan)
    big = yi >= _BIG
    put(big & (x == -1), 1.0)
    put(big & ((ax < 1) == (y > 0)), 0.0)
    put(big, np.inf)

    rest = ~done
    if rest.any():
        xr, yr, yir, yfr = x[rest], y[rest], yi[rest], yf[rest]
        a1 = np.ones(len(xr))
        ae = np.zeros(len(xr), dtype=np.int64)
        frac = yfr != 0
        if frac.any():
            over = frac & (yfr > 0.5)
            yfr = np.where(over, yfr - 1, yfr)
            yir = np.where(over, yir + 1, yir)
            a1 = np.where(frac, np.exp(yfr * np.log(np.where(frac, xr, 1.0))), a1)
        x1, xe = np.frexp(xr)
        xe = xe.astype(np.int64)
        i = yir.astype(np.int64)
        live = i != 0
        while live.any():
            # catastrophic overflow: let ldexp handle it
            cat = live & ((xe < -(1 << 12)) | (xe > (1 << 12)))
            ae = np.where(cat, ae + xe, ae)
            live &= ~cat
            odd_bit = live & ((i & 1) == 1)
            a1 = np.where(odd_bit, a1 * x1, a1)
            ae = np.where(odd_bit, ae + xe, ae)
            x1 = np.where(live, x1 * x1, x1)
            xe = np.where(live, xe << 1, xe)
            small = live & (x1 < 0.5)
            x1 = np.where(small, x1 + x1, x1)
            xe = np.where(small, xe - 1, xe)
            i = np.where(live, i >> 1, i)
            live &= i != 0
        neg = yr < 0
        a1 = np.where(neg, 1 / a1, a1)
        ae = np.where(neg, -ae, ae)
        out[rest] = np.ldexp(a1, np.clip(ae, -(1 << 20), 1 << 20).astype(np.int32))
    return out.reshape(shape)
