"""Human units for table cells and chart axes (SI for rates, IEC for bytes, as Grafana does)."""

from __future__ import annotations

import math
from collections.abc import Iterable

__all__ = ["axis_scale", "fmt_age", "fmt_bits", "fmt_bytes", "fmt_ms", "fmt_pct"]

_SI = ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"))
_IEC = ((2.0**40, "TiB"), (2.0**30, "GiB"), (2.0**20, "MiB"), (2.0**10, "KiB"))


def _missing(v: float | None) -> bool:
    return v is None or math.isnan(v)


def fmt_bits(v: float | None) -> str:
    """Bits per second with an SI prefix: ``1.23 Mbit/s``."""
    if _missing(v):
        return "–"
    assert v is not None
    for size, prefix in _SI:
        if abs(v) >= size:
            return f"{v / size:.3g} {prefix}bit/s"
    return f"{v:.3g} bit/s"


def fmt_bytes(v: float | None) -> str:
    """Bytes with an IEC prefix: ``3.2 GiB``."""
    if _missing(v):
        return "–"
    assert v is not None
    for size, unit in _IEC:
        if abs(v) >= size:
            return f"{v / size:.3g} {unit}"
    return f"{v:.0f} B"


def fmt_pct(v: float | None) -> str:
    return "–" if _missing(v) else f"{v:.1f} %"


def fmt_ms(seconds: float | None) -> str:
    """A duration given in seconds, shown in milliseconds (RTTs)."""
    if _missing(seconds):
        return "–"
    assert seconds is not None
    ms = seconds * 1000
    return f"{ms:.3g} ms" if ms < 100 else f"{ms:.0f} ms"


def fmt_age(seconds: float | None) -> str:
    """``42 s``, ``5 min``, ``3 h``, ``2 d`` (how long ago, or an uptime)."""
    if _missing(seconds):
        return "–"
    assert seconds is not None
    s = max(0.0, seconds)
    if s < 90:
        return f"{s:.0f} s"
    if s < 90 * 60:
        return f"{s / 60:.0f} min"
    if s < 36 * 3600:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.1f} d"


def axis_scale(values: Iterable[float], kind: str) -> tuple[float, str]:
    """``(divisor, unit label)`` so a chart's largest value reads between 1 and 1000 of the unit.

    ``kind`` is ``bits`` (bit/s, SI), ``bytes`` (IEC) or anything else (returned unchanged).
    """
    finite = [abs(v) for v in values if not math.isnan(v) and not math.isinf(v)]
    top = max(finite, default=0.0)
    if kind == "bits":
        for size, prefix in _SI:
            if top >= size:
                return size, f"{prefix}bit/s"
        return 1.0, "bit/s"
    if kind == "bytes":
        for size, unit in _IEC:
            if top >= size:
                return size, unit
        return 1.0, "B"
    return 1.0, kind
