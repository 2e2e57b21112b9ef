"""Network devices: reachability, RTT and loss, SNMP interfaces and config backups, then one device."""

from __future__ import annotations

import math
import time

import pandas as pd
import streamlit as st

from dashboards import ui
from dashboards.network import (
    DeviceRow,
    device_panels,
    devices,
    interface_panels,
    interfaces,
    markers,
    markers_frame,
)
from dashboards.panels import fetch
from dashboards.units import fmt_age, fmt_bits, fmt_ms

SOURCE_NAMES = {"snmp": "SNMP (if_mib)", "icmp": "continuous ping", "blackbox": "blackbox probes",
                "backup": "config backups"}
NO_DEVICES = (
    "No network devices yet",
    "List your devices under `devices:` in sotp.yml (each with `snmp:`, `icmp:` and `backup:` as it needs) and "
    "run `sotp up --config sotp.yml`; a device appears here after its first scrape or backup, one row per "
    "device. See the README's \"first hour\".",
)


def _reach(row: DeviceRow) -> str:
    if row.reachable is None:
        return ui.status("no probe")
    return ui.status("reachable" if row.reachable else "unreachable")


def _backup(row: DeviceRow) -> str:
    if math.isnan(row.backup_ok):
        return ""
    age = "" if math.isnan(row.backup_age_s) else f"{fmt_age(row.backup_age_s)} ago"
    return ui.status("ok", age) if row.backup_ok == 1 else ui.status("failed", f"(last good {age or 'never'})")


def _table(rows: list[DeviceRow]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "Device": [r.device for r in rows],
            "Reachability": [_reach(r) for r in rows],
            "RTT": [fmt_ms(r.rtt_s) for r in rows],
            "Loss": ["" if math.isnan(r.loss_pct) else f"{r.loss_pct:.1f} %" for r in rows],
            "Uptime": [fmt_age(r.uptime_s) for r in rows],
            "Interfaces up": ["" if math.isnan(r.if_total) else f"{r.if_up:.0f} / {r.if_total:.0f}" for r in rows],
            "In": [fmt_bits(r.in_bps) if not math.isnan(r.in_bps) else "" for r in rows],
            "Out": [fmt_bits(r.out_bps) if not math.isnan(r.out_bps) else "" for r in rows],
            "Last backup": [_backup(r) for r in rows],
            "Config changes": ["" if math.isnan(r.changes) else f"{r.changes:.0f}" for r in rows],
        }
    )


def body(settings: ui.Settings) -> None:
    client = ui.client(settings)
    tr = ui.time_range(settings)
    now = time.time()
    st.title("Network devices")
    rows, error = devices(client, tr, now)
    ui.api_error(error)
    if not rows:
        if error is None:
            ui.empty_state(*NO_DEVICES)
        return
    reachable = sum(1 for r in rows if r.reachable)
    probed = sum(1 for r in rows if r.reachable is not None)
    losses = [r.loss_pct for r in rows if not math.isnan(r.loss_pct)]
    c1, c2, c3 = st.columns(3)
    c1.metric("Reachable", f"{reachable} / {probed}", border=True)
    c2.metric("Worst loss (5 min)", f"{max(losses):.1f} %" if losses else "–", border=True)
    c3.metric("Devices", str(len(rows)), border=True)
    event = st.dataframe(
        ui.styled(_table(rows), ["Reachability", "Last backup"]),
        hide_index=True,
        on_select="rerun",
        selection_mode="single-row",
        column_config={
            "Loss": st.column_config.TextColumn("Loss", help="share of echoes or probes lost in the last 5 minutes"),
            "Config changes": st.column_config.TextColumn("Config changes", help="changes in the picked time range"),
        },
        key="network_table",
    )
    ui.follow_selection(event, [r.device for r in rows], "network_device")

    st.divider()
    names = [r.device for r in rows]
    device = st.selectbox("Device", names, key="network_device", help="or click a row of the table")
    if device is None:
        return
    row = rows[names.index(device)]
    st.subheader(device)
    st.caption("data from " + ", ".join(SOURCE_NAMES.get(s, s) for s in row.sources))
    marks, merr = markers(client, device, tr) if "backup" in row.sources else ([], None)
    ui.api_error(merr)
    marks_df = markers_frame(marks)
    reach_panels = device_panels(device, row.sources, row.keyed)
    if reach_panels:
        cols = st.columns(len(reach_panels))
        for col, panel in zip(cols, reach_panels, strict=True):
            with col:
                ui.chart(fetch(client, panel, tr), tr)
    if "snmp" not in row.sources:
        st.caption("no SNMP data for this device: interface details need an SNMP target with the if_mib module")
        return
    ifs, ierr = interfaces(client, device, tr.rate, now, row.keyed)
    ui.api_error(ierr)
    st.markdown("**Interfaces**")
    st.dataframe(
        ui.styled(pd.DataFrame(
            {
                "ifIndex": [i.if_index for i in ifs],
                "Name": [i.name for i in ifs],
                "Alias": [i.alias for i in ifs],
                "Status": [ui.status(i.oper) if i.oper else "" for i in ifs],
                "Speed": [f"{i.speed_mbps:g} Mbit/s" if not math.isnan(i.speed_mbps) else "" for i in ifs],
                "In": [fmt_bits(i.in_bps) for i in ifs],
                "Out": [fmt_bits(i.out_bps) for i in ifs],
                "Errors/s": [i.errors_ps for i in ifs],
            }
        ), ["Status"]),
        hide_index=True,
        column_config={"Errors/s": st.column_config.NumberColumn("Errors/s", format="%.3f")},
        key="network_interfaces",
    )
    if not ifs:
        return
    labels = {i.if_index: f"{i.name} ({i.alias})" if i.alias else i.name for i in ifs}
    if_index = st.selectbox("Interface", list(labels), format_func=lambda k: labels[k], key="network_interface")
    if if_index is None:
        return
    traffic, errors = interface_panels(device, str(if_index), row.keyed)
    col_l, col_r = st.columns([2, 1])
    with col_l:
        ui.chart(fetch(client, traffic, tr), tr, marks_df)
    with col_r:
        ui.chart(fetch(client, errors, tr), tr)
    if marks:
        st.caption(f"dashed lines: {sum(m.kind == 'config change' for m in marks)} config change(s) and "
                   f"{sum(m.kind == 'backup' for m in marks)} backup(s) in this range")


ui.page(body)
