"""Prometheus's ``X-Prometheus-Scrape-Timeout-Seconds`` header, read the same way by every exporter."""

from __future__ import annotations

import math
from typing import Final

HEADER: Final = "X-Prometheus-Scrape-Timeout-Seconds"


def scrape_timeout_header(value: str | None) -> float | None:
    """The header's seconds, or ``None`` when it is absent, zero (blackbox's "absent") or not finite:
    ``nan`` and ``inf`` would make a request wait forever, so the exporter's default applies. Negative
    values pass through (each exporter bounds them as its reference does).

    Raises ``ValueError`` for text that is not a number (each exporter decides how to answer that)."""
    if not value:
        return None
    seconds = float(value)
    return seconds if math.isfinite(seconds) and seconds != 0 else None


__all__ = ["HEADER", "scrape_timeout_header"]
