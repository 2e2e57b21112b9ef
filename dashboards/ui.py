"""Streamlit pieces every page shares: settings, the API client, the sidebar, charts, empty states.

Settings come from the environment that ``sotp dashboard`` sets for the Streamlit process
(:data:`ENV_API`, :data:`ENV_TOKEN_FILE`, :data:`ENV_SCRAPE`, :data:`ENV_REFRESH`), so
``streamlit run dashboards/app.py`` works too. Pages draw inside :func:`page`, which re-runs them on
the refresh interval (a Streamlit fragment) and turns any unexpected exception into one readable
error box: the traceback goes to the server log, never to the screen.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import altair as alt
import pandas as pd
import streamlit as st

from dashboards.panels import PanelData
from dashboards.promapi import APIError, PromClient
from dashboards.timerange import DEFAULT_PRESET, PRESETS, TimeRange, parse_scrape_interval
from dashboards.units import axis_scale
from sotp.config import parse_duration
from sotp.errors import ConfigError

log = logging.getLogger("sotp.dashboard")

ENV_API = "SOTP_DASHBOARD_API"
ENV_TOKEN_FILE = "SOTP_DASHBOARD_TOKEN_FILE"
ENV_SCRAPE = "SOTP_DASHBOARD_SCRAPE_INTERVAL"
ENV_REFRESH = "SOTP_DASHBOARD_REFRESH"
DEFAULT_API = "http://127.0.0.1:9201"

#: Auto-refresh choices: label -> seconds (``None`` = off).
REFRESH: dict[str, float | None] = {"off": None, "10s": 10.0, "30s": 30.0, "1m": 60.0, "5m": 300.0}
DEFAULT_REFRESH = "30s"
#: Chart colours (colour-blind friendly Tableau 10), also used for markers.
PALETTE = ["#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#b279a2", "#ff9da6", "#9d755d", "#bab0ac"]
CHART_HEIGHT = 230


@dataclass(frozen=True)
class Settings:
    """Where the API is, how to authenticate, and the scrape interval behind ``rate()`` windows."""

    api: str
    token: str | None
    scrape_s: float

    @classmethod
    def from_env(cls) -> Settings:
        token_file = os.environ.get(ENV_TOKEN_FILE, "")
        token = None
        if token_file:
            try:
                token = Path(token_file).read_text().strip() or None
            except OSError as err:
                raise APIError(
                    f"cannot read the API token file {token_file} ({err.strerror}); fix --token-file"
                ) from err
        return cls(
            api=os.environ.get(ENV_API, DEFAULT_API),
            token=token,
            scrape_s=parse_scrape_interval(os.environ.get(ENV_SCRAPE, "15s")),
        )


@st.cache_resource(show_spinner=False)
def _client(api: str, token: str | None) -> PromClient:
    return PromClient(api, token)


def client(settings: Settings) -> PromClient:
    """One cached client per API and token (a pooled HTTP session shared by all sessions)."""
    return _client(settings.api, settings.token)


def sidebar(settings: Settings) -> None:
    """Time range and refresh pickers (their values live in ``st.session_state``) and the API in use."""
    with st.sidebar:
        st.selectbox("Time range", list(PRESETS), index=list(PRESETS).index(preset_from_url()), key="range")
        default_refresh = os.environ.get(ENV_REFRESH, DEFAULT_REFRESH)
        options = list(REFRESH)
        st.selectbox(
            "Auto-refresh",
            options,
            index=options.index(default_refresh) if default_refresh in options else options.index(DEFAULT_REFRESH),
            key="refresh",
        )
        st.caption(f"API: `{settings.api}`")


#: The URL parameter holding the time range (``?range=6h``), so a link opens the same view.
RANGE_PARAM = "range"


def preset_from_url() -> str:
    """The preset named by ``?range=`` (a duration such as ``6h`` or ``7d``), else the default."""
    text = st.query_params.get(RANGE_PARAM)
    if text:
        try:
            seconds = parse_duration(text, RANGE_PARAM)
        except ConfigError:
            return DEFAULT_PRESET
        for label, span in PRESETS.items():
            if span == seconds:
                return label
    return DEFAULT_PRESET


def share_in_url(params: dict[str, str]) -> None:
    """Put a page's state in its URL (only what changed: writing the same value again would be noise)."""
    for key, value in params.items():
        if st.query_params.get(key) != value:
            st.query_params[key] = value


def time_range(settings: Settings) -> TimeRange:
    """The picked range, ending now."""
    span = PRESETS.get(str(st.session_state.get("range", DEFAULT_PRESET)), PRESETS[DEFAULT_PRESET])
    return TimeRange.last(span, time.time(), settings.scrape_s)


def refresh_seconds() -> float | None:
    return REFRESH.get(str(st.session_state.get("refresh", DEFAULT_REFRESH)))


def page(body: Callable[[Settings], None]) -> None:
    """Run a page body with settings, auto-refreshing it and catching what it did not expect."""
    try:
        settings = Settings.from_env()
    except Exception as err:  # a bad setting must read as a message, not a traceback
        st.error(str(err))
        return

    @st.fragment(run_every=refresh_seconds())
    def _live() -> None:
        try:
            body(settings)
        except APIError as err:
            st.error(str(err), icon=":material/error:")
        except Exception as err:  # the one place that keeps tracebacks off the screen
            log.exception("dashboard page failed")
            st.error(f"the dashboard hit an internal error ({type(err).__name__}: {err}); "
                     "the server log has the details — please report it", icon=":material/bug_report:")
        every = refresh_seconds()
        st.caption(
            f"updated {time.strftime('%H:%M:%S', time.gmtime())} UTC · "
            + (f"refreshes every {st.session_state.get('refresh')}" if every else "auto-refresh off")
            + f" · {settings.api}",
            help="the page re-reads the API on this interval; change it in the sidebar",
        )

    _live()


def follow_selection(event: Any, names: list[str], widget_key: str) -> None:
    """A click on a table row picks that row's name in the drill-down selectbox ``widget_key``.

    Call it after the table and before the selectbox. The row selection survives reruns, so it is
    applied only when it changes: picking another entry in the selectbox afterwards still works.
    """
    selection = getattr(event, "selection", None)
    rows = list(getattr(selection, "rows", None) or [])
    picked = names[rows[0]] if rows and 0 <= rows[0] < len(names) else None
    marker = f"_{widget_key}_row"
    if picked is not None and st.session_state.get(marker) != picked:
        st.session_state[widget_key] = picked
    st.session_state[marker] = picked


def api_error(err: APIError | None) -> None:
    """Show an API error as the API gave it (``bad_data: ...``), or nothing."""
    if err is not None:
        st.error(str(err), icon=":material/error:")


def empty_state(title: str, how: str) -> None:
    """What to do when there is nothing to show yet: a sentence and the command to run."""
    st.info(f"**{title}**\n\n{how}", icon=":material/lightbulb:")


#: Words that start a status cell, and their colour (the dot before them is plain text: no emoji font
#: needed in the browser).
STATUS_COLOURS = {"up": "#2e9e44", "reachable": "#2e9e44", "ok": "#2e9e44", "down": "#d62728",
                  "unreachable": "#d62728", "failed": "#d62728", "no": "#8c8c8c", "firing": "#d62728",
                  "pending": "#e08a00", "err": "#d62728", "unknown": "#8c8c8c"}


def status(word: str, detail: str = "") -> str:
    """A status cell: ``● up``; :func:`styled` colours it by its first word."""
    return f"● {word}" + (f" {detail}" if detail else "")


def styled(frame: pd.DataFrame, columns: list[str]) -> Any:
    """``frame`` as a Styler that colours the status ``columns`` (Streamlit renders Styler colours)."""

    def colour(cell: object) -> str:
        words = str(cell).removeprefix("● ").split(" ")
        hit = STATUS_COLOURS.get(words[0]) if words and words[0] else None
        return f"color: {hit}" if hit else ""

    return frame.style.map(colour, subset=columns)


def _unit(frame: pd.DataFrame, unit: str) -> tuple[pd.DataFrame, str]:
    values = frame["value"].astype(float).replace([math.inf, -math.inf], math.nan)
    if unit in ("bits", "bytes", "bytes/s"):
        divisor, label = axis_scale(values.tolist(), "bits" if unit == "bits" else "bytes")
        return frame.assign(value=values / divisor), label + ("/s" if unit == "bytes/s" else "")
    if unit == "seconds":
        top = values.abs().max()
        if not math.isnan(top) and top < 1:
            return frame.assign(value=values * 1000), "ms"
        return frame.assign(value=values), "s"
    if unit == "percent":
        return frame.assign(value=values), "%"
    return frame.assign(value=values), "" if unit == "short" else unit


#: Series listed in a chart's hover tooltip (the biggest ones).
TOOLTIP_SERIES = 12


def _hover_rule(frame: pd.DataFrame, order: list[str], value_fmt: str, unit_label: str) -> alt.Chart:
    """A vertical rule at the hovered step whose tooltip lists every series' value (Grafana's shared tooltip).

    The data is pivoted here, one row per step with columns ``s0, s1...`` (series names may hold dots
    or brackets, which Vega-Lite would read as field paths), so the nearest-point search runs over
    the steps rather than every sample: that keeps charts quick to draw in the browser.
    """
    shown = order[:TOOLTIP_SERIES]
    wide = frame[frame["series"].isin(shown)].pivot_table(index="time", columns="series", values="value")
    wide = wide.reindex(columns=shown).rename(columns={name: f"s{i}" for i, name in enumerate(shown)}).reset_index()
    hover = alt.selection_point(nearest=True, on="pointerover", fields=["time"], empty=False, clear="pointerout")
    suffix = f" ({unit_label})" if unit_label else ""
    tooltip = [alt.Tooltip("time:T", format="%Y-%m-%d %H:%M:%S", title="time")] + [
        alt.Tooltip(f"s{i}:Q", title=f"{name}{suffix}", format=value_fmt) for i, name in enumerate(shown)
    ]
    rule: alt.Chart = (
        alt.Chart(wide)
        .mark_rule(color="#888888", strokeWidth=1)
        .encode(x="time:T", opacity=alt.condition(hover, alt.value(0.6), alt.value(0.0)), tooltip=tooltip)
        .add_params(hover)
    )
    return rule


def chart(data: PanelData, tr: TimeRange, marks: pd.DataFrame | None = None) -> None:
    """Draw a panel: title, its error if any, then lines (or stacked areas) over the picked range."""
    panel = data.panel
    st.markdown(f"**{panel.title}**" + (f" <span style='color:gray'>· {panel.help}</span>" if panel.help else ""),
                unsafe_allow_html=True)
    api_error(data.error)
    if data.frame.empty:
        if data.error is None:
            st.caption("no data in this time range")
        return
    frame, unit_label = _unit(data.frame, panel.unit)
    # Biggest series first: it gets the first colour and, when stacked, the bottom of the stack.
    order = list(frame.groupby("series")["value"].mean().sort_values(ascending=False).index)
    frame = frame.assign(rank=frame["series"].map({name: i for i, name in enumerate(order)}))
    colours = [PALETTE[i % len(PALETTE)] for i in range(len(order))]
    domain = [pd.Timestamp(tr.start, unit="s", tz="UTC"), pd.Timestamp(tr.end, unit="s", tz="UTC")]
    fmt = "%H:%M" if tr.span <= 86400 else "%b %d"
    x = alt.X("time:T", title=None, scale=alt.Scale(domain=domain), axis=alt.Axis(format=fmt, labelOverlap=True))
    top = float(frame["value"].abs().max()) if frame["value"].notna().any() else 0.0
    # An all-zero series (no loss, no errors) would get a degenerate [0, 0] axis: show it against [0, 1].
    y_scale = alt.Scale(domain=[0, 1]) if top == 0 else alt.Scale(zero=True)
    y_axis = alt.Axis(format="~s") if top >= 1e4 else alt.Axis()
    y = alt.Y("value:Q", title=unit_label or None, stack="zero" if panel.stacked else None, scale=y_scale,
              axis=y_axis)
    color = alt.Color("series:N", title=None, sort=order, scale=alt.Scale(domain=order, range=colours),
                      legend=alt.Legend(orient="bottom", columns=4, labelLimit=180, symbolType="stroke"))
    value_fmt = ".3~s" if panel.unit not in ("percent",) else ".1f"
    base = alt.Chart(frame).encode(x=x, y=y, color=color, order=alt.Order("rank:Q"))
    lines = base.mark_area(opacity=0.5, line={"strokeWidth": 1.2}) if panel.stacked else base.mark_line(strokeWidth=1.6)
    layers: list[alt.Chart] = [lines, _hover_rule(frame, order, value_fmt, unit_label)]
    if marks is not None and not marks.empty:
        layers.append(
            alt.Chart(marks).mark_rule(strokeDash=[4, 3]).encode(
                x="time:T",
                stroke=alt.Stroke("event:N", title=None, legend=alt.Legend(orient="bottom"),
                                  scale=alt.Scale(domain=["config change", "backup"], range=["#d62728", "#9a9a9a"])),
                strokeWidth=alt.StrokeWidth("event:N", legend=None,
                                            scale=alt.Scale(domain=["config change", "backup"], range=[2.2, 1.0])),
                tooltip=[alt.Tooltip("time:T", format="%Y-%m-%d %H:%M:%S", title="time"), alt.Tooltip("event:N")],
            )
        )
    chart_ = alt.layer(*layers).properties(height=CHART_HEIGHT)
    st.altair_chart(chart_, width="stretch")
