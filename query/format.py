"""Number and timestamp formatting exactly as Prometheus's JSON API and ``count_values`` print them."""

from __future__ import annotations

import math

import numpy as np


def format_value_f(v: float) -> str:
    """Go's ``strconv.FormatFloat(v, 'f', -1, 64)``: shortest digits, never an exponent."""
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return str(np.format_float_positional(v, unique=True, trim="-"))


def format_sample_value(v: float) -> str:
    """A sample value as the API prints it: ``'f'`` format, ``'e'`` below 1e-6 and from 1e21 on."""
    r = repr(v)
    if "e" not in r and "n" not in r:
        # Python's repr is the shortest round-trip form, like Go's; from 1e-4 to 1e16 it is positional,
        # which is Go's 'f' format once a whole number loses its ".0". (A hot path: every point of a
        # matrix; numpy's positional formatter costs ~10x more.)
        return r[:-2] if r.endswith(".0") else r
    return _format_sample_value_slow(v)


def _format_sample_value_slow(v: float) -> str:
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    a = abs(v)
    if a != 0 and (a < 1e-6 or a >= 1e21):
        return repr(v)  # Python's repr uses Go's 'e' shape here: 1e+21, 2.5e-07
    return format_value_f(v)


def format_timestamp(t_ms: int) -> str:
    """Seconds as a JSON number: ``30`` when whole, else three decimals (``1.500``)."""
    sign = "-" if t_ms < 0 else ""
    a = abs(t_ms)
    whole, frac = divmod(a, 1000)
    return f"{sign}{whole}" if frac == 0 else f"{sign}{whole}.{frac:03d}"
