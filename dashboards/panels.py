"""Chart panels as data: PromQL targets with legend templates, fetched into long-form frames.

A page describes its charts as :class:`Panel` values; :func:`fetch` runs every target as a range query
and returns one frame (``time``, ``series``, ``value``) that :mod:`dashboards.ui` draws. Keeping panels
as data lets the tests run each page's exact expressions against Prometheus and SOTP.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pandas as pd

from dashboards.promapi import APIError, PromClient
from dashboards.timerange import TimeRange, format_duration

__all__ = ["Panel", "PanelData", "Target", "expand", "fetch", "legend", "quote"]

_TEMPLATE = re.compile(r"\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}")


def quote(value: str) -> str:
    """A PromQL string literal for a label value (escapes backslashes and quotes)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def legend(template: str, labels: dict[str, str]) -> str:
    """Grafana-style legend: ``{{device}} in`` with the series' labels; the label set when empty."""
    if template:
        return _TEMPLATE.sub(lambda m: labels.get(m.group(1), ""), template).strip()
    inner = ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items()) if k != "__name__")
    return f"{labels.get('__name__', '')}{{{inner}}}"


def _varying_labels(label_sets: list[dict[str, str]]) -> list[str]:
    """Label names whose values differ between the series (what tells them apart in a legend)."""
    names = sorted({k for labels in label_sets for k in labels})
    return [n for n in names if len({labels.get(n) for labels in label_sets}) > 1]


def _short_name(labels: dict[str, str], varying: list[str]) -> str:
    """A legend without a template: the metric name (if any) and only the labels that vary."""
    inner = ", ".join(f'{k}="{labels.get(k, "")}"' for k in varying if k != "__name__")
    name = labels.get("__name__", "")
    if not inner:
        return name or (legend("", labels) if labels else "value")
    return f"{name}{{{inner}}}" if name else f"{{{inner}}}"


@dataclass(frozen=True)
class Target:
    """One PromQL expression of a panel, with Grafana's variables (see :func:`expand`)."""

    expr: str
    legend: str = ""

    def render(self, tr: TimeRange) -> str:
        return expand(self.expr, tr)


def expand(expr: str, tr: TimeRange) -> str:
    """Replace Grafana's ``$__rate_interval``, ``$__interval`` and ``$__range`` with the range's values."""
    return (
        expr.replace("$__rate_interval", tr.rate)
        .replace("$__interval", format_duration(tr.step))
        .replace("$__range", format_duration(tr.span))
    )


@dataclass(frozen=True)
class Panel:
    """A chart: title, targets, unit (``percent``, ``bits``, ``bytes``, ``seconds``, ``ms``, ``short``)."""

    title: str
    targets: tuple[Target, ...]
    unit: str = "short"
    stacked: bool = False
    help: str = ""


@dataclass
class PanelData:
    """What :func:`fetch` got for a panel: the frame (maybe empty) and the first API error, if any."""

    panel: Panel
    frame: pd.DataFrame
    error: APIError | None = None


def fetch(client: PromClient, panel: Panel, tr: TimeRange) -> PanelData:
    """Run the panel's targets over ``tr``; one failing target keeps the others' data."""
    rows: list[pd.DataFrame] = []
    error: APIError | None = None
    for target in panel.targets:
        try:
            result = client.query_range(target.render(tr), tr.start, tr.end, tr.step)
        except APIError as err:
            error = error or err
            continue
        varying = _varying_labels([s.labels for s in result])
        for s in result:
            if not s.ts:
                continue
            name = legend(target.legend, s.labels) if target.legend else _short_name(s.labels, varying)
            rows.append(pd.DataFrame({"time": pd.to_datetime(s.ts, unit="s", utc=True), "series": name,
                                      "value": s.values}))
    frame = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame({"time": [], "series": [], "value": []})
    return PanelData(panel, frame, error)
