"""Prometheus's ``model.Duration``: the duration syntax of rule files and rule tests, parsed and printed.

Unlike the query API's durations, these take no float seconds: ``0`` is the only unit-less value.
"""

from __future__ import annotations

import re

_RE = re.compile(r"^(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?$")
_UNITS_MS = (365 * 86_400_000, 7 * 86_400_000, 86_400_000, 3_600_000, 60_000, 1000, 1)
_MAX_MS = (2**63 - 1) // 1_000_000


def parse_go_duration(text: str) -> int:
    """``model.ParseDuration`` in milliseconds; raises ValueError with Prometheus's message."""
    if text == "0":
        return 0
    if text == "":
        raise ValueError("empty duration string")
    m = _RE.match(text)
    if not m:
        raise ValueError(f'not a valid duration string: "{text}"')
    total = 0
    for g, unit in zip(m.groups(), _UNITS_MS, strict=True):
        if g:
            total += int(g) * unit
            if total > _MAX_MS:
                raise ValueError("duration out of range")
    return total


def format_go_duration(ms: int) -> str:
    """``model.Duration.String``: ``0s``, ``5m``, ``1h30m``, ``1d``, ``2w``, ``1y``, ``1m30s500ms``."""
    if ms == 0:
        return "0s"
    out = []
    for unit, mult, exact in (
        ("y", 365 * 86_400_000, True),
        ("w", 7 * 86_400_000, True),
        ("d", 86_400_000, False),
        ("h", 3_600_000, False),
        ("m", 60_000, False),
        ("s", 1000, False),
        ("ms", 1, False),
    ):
        if exact and ms % mult:
            continue
        v = ms // mult
        if v > 0:
            out.append(f"{v}{unit}")
            ms -= v * mult
    return "".join(out)


def format_go_time_duration(ms: int) -> str:
    """Go's ``time.Duration.String`` for whole milliseconds: ``0s``, ``1m0s``, ``1h5m0s``, ``1.5s``, ``500ms``."""
    if ms == 0:
        return "0s"
    neg = ms < 0
    ms = abs(ms)
    if ms < 1000:
        return f"{'-' if neg else ''}{ms}ms"
    h, rem = divmod(ms, 3_600_000)
    m, rem = divmod(rem, 60_000)
    s, frac = divmod(rem, 1000)
    sec = f"{s}" + (f".{frac:03d}".rstrip("0") if frac else "") + "s"
    out = ""
    if h:
        out = f"{h}h{m}m{sec}"
    elif m:
        out = f"{m}m{sec}"
    else:
        out = sec
    return ("-" if neg else "") + out
