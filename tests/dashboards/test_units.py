"""Pure helpers: steps and windows, units, legends, PromQL quoting and Grafana variables."""

from __future__ import annotations

import math

import pytest

from dashboards.panels import _short_name, _varying_labels, expand, legend, quote
from dashboards.timerange import PRESETS, TimeRange, format_duration, nice_step, rate_window
from dashboards.units import axis_scale, fmt_age, fmt_bits, fmt_bytes, fmt_ms, fmt_pct


@pytest.mark.parametrize(
    ("span", "step"),
    [(900, 5), (3600, 15), (6 * 3600, 120), (24 * 3600, 600), (7 * 86400, 3600), (400 * 86400, 172800)],
    ids=["15m", "1h", "6h", "24h", "7d", "400d"],
)
def test_nice_step(span: float, step: float) -> None:
    assert nice_step(span) == step
    assert span / step <= 240 + 1e-9


def test_every_preset_stays_under_prometheus_point_limit() -> None:
    for span in PRESETS.values():
        assert span / nice_step(span) <= 11_000


@pytest.mark.parametrize(
    ("step", "scrape", "window"),
    [(15, 15, "1m"), (5, 15, "1m"), (120, 15, "2m15s"), (600, 60, "11m"), (3600, 15, "1h15s")],
)
def test_rate_window_is_grafanas_rate_interval(step: float, scrape: float, window: str) -> None:
    assert rate_window(step, scrape) == window


@pytest.mark.parametrize(("seconds", "text"), [(0.2, "1s"), (59, "59s"), (90, "1m30s"), (86400 + 61, "1d1m1s")])
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_time_range_ends_on_a_step_boundary() -> None:
    tr = TimeRange.last(3600, 1_700_000_007.5)
    assert (tr.end, tr.span, tr.step, tr.rate) == (1_699_999_995, 3600, 15, "1m")
    assert tr.end % 15 == 0


@pytest.mark.parametrize(
    ("fn", "value", "text"),
    [
        (fmt_bits, 999, "999 bit/s"),
        (fmt_bits, 1.234e6, "1.23 Mbit/s"),
        (fmt_bits, 10e9, "10 Gbit/s"),
        (fmt_bits, math.nan, "–"),
        (fmt_bytes, 512, "512 B"),
        (fmt_bytes, 3 * 2**30, "3 GiB"),
        (fmt_pct, 12.345, "12.3 %"),
        (fmt_ms, 0.0012, "1.2 ms"),
        (fmt_ms, 0.25, "250 ms"),
        (fmt_age, 42, "42 s"),
        (fmt_age, 600, "10 min"),
        (fmt_age, 7200, "2.0 h"),
        (fmt_age, 86400 * 41.5, "41.5 d"),
        (fmt_age, None, "–"),
    ],
)
def test_formats(fn: object, value: float, text: str) -> None:
    assert fn(value) == text  # type: ignore[operator]


@pytest.mark.parametrize(
    ("values", "kind", "scale"),
    [
        ([1e3, 3e8, math.nan], "bits", (1e6, "Mbit/s")),
        ([0.0, 0.0], "bits", (1.0, "bit/s")),
        ([5 * 2**30, math.inf], "bytes", (2.0**30, "GiB")),
        ([42.0], "%", (1.0, "%")),
    ],
)
def test_axis_scale(values: list[float], kind: str, scale: tuple[float, str]) -> None:
    assert axis_scale(values, kind) == scale


def test_legend_and_quote() -> None:
    labels = {"__name__": "ifHCInOctets", "ifName": "Gi0/1", "instance": "sw"}
    assert legend("{{ifName}} in", labels) == "Gi0/1 in"
    assert legend("{{ missing }}x", labels) == "x"
    assert legend("", labels) == 'ifHCInOctets{ifName="Gi0/1", instance="sw"}'
    assert quote('a"b\\c') == '"a\\"b\\\\c"'


def test_short_names_keep_only_labels_that_differ() -> None:
    sets = [{"__name__": "up", "job": "a", "instance": "x"}, {"__name__": "up", "job": "b", "instance": "x"}]
    varying = _varying_labels(sets)
    assert varying == ["job"]
    assert [_short_name(s, varying) for s in sets] == ['up{job="a"}', 'up{job="b"}']
    assert _short_name({"job": "a"}, []) == "{job=\"a\"}"


def test_expand_grafana_variables() -> None:
    tr = TimeRange(start=0, end=3600, step=15)
    assert expand("rate(x[$__rate_interval]) + y[$__interval] + z[$__range]", tr) == "rate(x[1m]) + y[15s] + z[1h]"
