"""Time ranges for charts: the presets the range picker offers, the step of a range, the rate window.

The step gives about :data:`TARGET_POINTS` points per series (Grafana aims for one per pixel; a few
hundred are plenty for a Streamlit chart and keep range queries cheap), rounded to a step people read
easily. The rate window follows Grafana's ``$__rate_interval``: ``max(step + scrape, 4 * scrape)``, so a
``rate()`` always spans at least four samples and never skips data between two steps.
"""

from __future__ import annotations

from dataclasses import dataclass

from sotp.config import parse_duration

__all__ = ["PRESETS", "TARGET_POINTS", "TimeRange", "format_duration", "nice_step", "rate_window"]

#: Range picker choices, label -> seconds; the first one is the default.
PRESETS: dict[str, float] = {
    "15 minutes": 15 * 60,
    "1 hour": 3600,
    "6 hours": 6 * 3600,
    "24 hours": 24 * 3600,
    "7 days": 7 * 24 * 3600,
}
DEFAULT_PRESET = "1 hour"
TARGET_POINTS = 240
_NICE_STEPS = (5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)


def nice_step(span_s: float, points: int = TARGET_POINTS, minimum: float = 5.0) -> float:
    """The smallest readable step that keeps ``span_s`` under about ``points`` points."""
    raw = max(minimum, span_s / points)
    for step in _NICE_STEPS:
        if step >= raw:
            return float(step)
    return float(_NICE_STEPS[-1] * (raw // _NICE_STEPS[-1] + 1))


def rate_window(step_s: float, scrape_s: float) -> str:
    """A PromQL duration for ``rate()`` windows: Grafana's ``$__rate_interval`` rule, whole seconds."""
    return format_duration(max(step_s + scrape_s, 4 * scrape_s))


def format_duration(seconds: float) -> str:
    """PromQL duration text for whole seconds, largest units first (``90`` -> ``1m30s``)."""
    s = max(1, round(seconds))
    out = ""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if s >= size:
            out += f"{s // size}{unit}"
            s %= size
    return out


@dataclass(frozen=True)
class TimeRange:
    """A window ``[start, end]`` in Unix seconds with the step and rate window to query it with."""

    start: float
    end: float
    step: float
    scrape_s: float = 15.0

    @classmethod
    def last(cls, span_s: float, now: float, scrape_s: float = 15.0) -> TimeRange:
        """The window ending at ``now`` (rounded down to the step, so refreshes reuse aligned points)."""
        step = nice_step(span_s)
        end = now - now % step if step <= 60 else now
        return cls(start=end - span_s, end=end, step=step, scrape_s=scrape_s)

    @property
    def span(self) -> float:
        return self.end - self.start

    @property
    def rate(self) -> str:
        """The ``rate()`` window for this range's step."""
        return rate_window(self.step, self.scrape_s)


def parse_scrape_interval(text: str) -> float:
    """``--scrape-interval`` (``15s``, ``1m``) in seconds, with the setting named in errors."""
    return parse_duration(text, "--scrape-interval")
