"""Request parameters as Prometheus 2.42 parses them: times, durations, merged query and form values."""

from __future__ import annotations

import math
import re
from datetime import datetime

from aiohttp import web

from query.errors import BadData

#: Prometheus's default start/end for discovery endpoints, kept inside every backend's timestamp range.
MIN_TIME_MS = -(10**15)
MAX_TIME_MS = 10**15

_DURATION = re.compile(r"^(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?$")
_UNITS_MS = (365 * 86_400_000, 7 * 86_400_000, 86_400_000, 3_600_000, 60_000, 1000, 1)


class Params:
    """URL query and form body merged (repeated keys keep every value), as Go's ``r.Form``."""

    def __init__(self, values: dict[str, list[str]]) -> None:
        self.values = values

    @staticmethod
    async def read(request: web.Request) -> Params:
        out: dict[str, list[str]] = {}
        if request.method == "POST" and request.content_type == "application/x-www-form-urlencoded":
            for k, v in (await request.post()).items():
                out.setdefault(k, []).append(str(v))
        for k, v in request.query.items():
            out.setdefault(k, []).append(v)
        return Params(out)

    def get(self, name: str) -> str | None:
        vals = self.values.get(name)
        return vals[0] if vals else None

    def all(self, name: str) -> list[str]:
        return self.values.get(name, [])


def parse_time_ms(value: str, name: str) -> int:
    """Unix seconds (with fraction, rounded to ms) or RFC 3339."""
    try:
        f = float(value)
    except ValueError:
        pass
    else:
        if not math.isfinite(f):
            raise BadData(f'invalid parameter "{name}": cannot parse "{value}" to a valid timestamp')
        whole = math.trunc(f)
        frac = round((f - whole) * 1000)
        return _in_range(int(whole) * 1000 + int(frac), value, name)
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
        if dt.tzinfo is None:
            raise ValueError("no time zone")
    except ValueError:
        raise BadData(f'invalid parameter "{name}": cannot parse "{value}" to a valid timestamp') from None
    return _in_range(round(dt.timestamp() * 1000), value, name)


def _in_range(t_ms: int, value: str, name: str) -> int:
    # Prometheus wraps such values around int64 silently; SOTP refuses them (every backend stores int64 ms)
    if not MIN_TIME_MS <= t_ms <= MAX_TIME_MS:
        raise BadData(f'invalid parameter "{name}": cannot parse "{value}" to a valid timestamp: '
                      f"out of range (|t| <= {MAX_TIME_MS // 1000} s)")
    return t_ms


def parse_duration_ms(value: str, name: str) -> int:
    """Float seconds or a Prometheus duration (``1m30s``; integer units only)."""
    try:
        f = float(value)
    except ValueError:
        pass
    else:
        if not math.isfinite(f) or abs(f * 1e9) > 2**63:
            raise BadData(f'invalid parameter "{name}": cannot parse "{value}" to a valid duration. It overflows int64')
        return round(f * 1000)
    m = _DURATION.match(value)
    if not value or not m or not any(m.groups()):
        raise BadData(f'invalid parameter "{name}": cannot parse "{value}" to a valid duration')
    ms = sum(int(g) * u for g, u in zip(m.groups(), _UNITS_MS, strict=True) if g)
    if ms * 1_000_000 >= 2**63:  # Go's time.Duration is int64 nanoseconds
        raise BadData(f'invalid parameter "{name}": cannot parse "{value}" to a valid duration. It overflows int64')
    return ms


def time_param(p: Params, name: str, default_ms: int) -> int:
    v = p.get(name)
    return default_ms if v is None or v == "" else parse_time_ms(v, name)
