"""Servers: one row per host (CPU, memory, worst filesystem, network, load, up/down), then one host's charts."""

from __future__ import annotations

import math
import time

import pandas as pd
import streamlit as st

from dashboards import ui
from dashboards.panels import fetch
from dashboards.servers import Overview, fleet_panels, host_panels, list_hosts, overview, time_range_hint
from dashboards.units import fmt_age, fmt_bits

NO_HOSTS = (
    "No agents have pushed yet",
    "Run `sotp agent --url http://127.0.0.1:9201/api/v1/write` on each server (or `sotp up`, which runs one "
    "for this machine); hosts appear here within a minute. A node_exporter scraped by `sotp worker` or by "
    "Prometheus shows up too.",
)


def _mean(values: list[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return sum(finite) / len(finite) if finite else math.nan


def _table(ov: Overview) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "Status": [ui.status("up" if r.up else "down") for r in ov.rows],
            "Host": [r.instance for r in ov.rows],
            "CPU": [r.cpu_pct for r in ov.rows],
            "Memory": [r.mem_pct for r in ov.rows],
            "Disk (fullest)": [r.disk_pct for r in ov.rows],
            "Mount": [r.disk_mount for r in ov.rows],
            "Net in": [fmt_bits(r.net_in_bps) for r in ov.rows],
            "Net out": [fmt_bits(r.net_out_bps) for r in ov.rows],
            "Load / cores": ["" if math.isnan(r.load1) else f"{r.load1:.2f}" + (
                "" if math.isnan(r.cores) else f" / {r.cores:.0f}") for r in ov.rows],
            "Last seen": [fmt_age(r.last_seen_s) + (" ago" if not math.isnan(r.last_seen_s) else "")
                          for r in ov.rows],
        }
    )


def body(settings: ui.Settings) -> None:
    client = ui.client(settings)
    tr = ui.time_range(settings)
    st.title("Servers")
    hosts = list_hosts(client, tr.start, tr.end)
    if not hosts:
        ui.empty_state(*NO_HOSTS)
        return
    ov = overview(client, hosts, time.time(), settings.scrape_s, since=tr.start)
    ui.api_error(ov.error)
    up = sum(r.up for r in ov.rows)
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("Hosts up", f"{up} / {len(ov.rows)}", border=True)
    cpu = _mean([r.cpu_pct for r in ov.rows])
    mem = _mean([r.mem_pct for r in ov.rows])
    disk = max((r.disk_pct for r in ov.rows if not math.isnan(r.disk_pct)), default=math.nan)
    c2.metric("Average CPU", "–" if math.isnan(cpu) else f"{cpu:.1f} %", border=True)
    c3.metric("Average memory", "–" if math.isnan(mem) else f"{mem:.1f} %", border=True)
    c4.metric("Fullest disk", "–" if math.isnan(disk) else f"{disk:.1f} %", border=True)

    pct = {"min_value": 0, "max_value": 100, "format": "%.1f %%", "width": 125}
    event = st.dataframe(  # type: ignore[call-overload]  # streamlit types the config keys as Literal
        ui.styled(_table(ov), ["Status"]),
        hide_index=True,
        on_select="rerun",
        selection_mode="single-row",
        column_config={
            "CPU": st.column_config.ProgressColumn("CPU", **pct),  # type: ignore[arg-type]
            "Memory": st.column_config.ProgressColumn("Memory", **pct),  # type: ignore[arg-type]
            "Disk (fullest)": st.column_config.ProgressColumn("Disk (fullest)", **pct),  # type: ignore[arg-type]
            **{name: st.column_config.TextColumn(name, width="small")
               for name in ("Status", "Mount", "Load / cores")},
        },
        key="servers_table",
    )
    ui.follow_selection(event, [r.instance for r in ov.rows], "servers_host")

    for col, panel in zip(st.columns(2), fleet_panels(), strict=True):
        with col:
            ui.chart(fetch(client, panel, tr), tr)

    st.divider()
    host = st.selectbox("Host", [r.instance for r in ov.rows], key="servers_host",
                        help="or click a row of the table")
    if host is None:
        return
    st.subheader(host)
    st.caption(f"last {st.session_state.get('range', '')} · {time_range_hint(tr)}")
    panels = host_panels(host)
    for i in range(0, len(panels), 2):
        for col, panel in zip(st.columns(2), panels[i : i + 2], strict=False):
            with col:
                ui.chart(fetch(client, panel, tr), tr)


ui.page(body)
