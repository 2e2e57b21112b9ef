"""Alerts: firing and pending alerts with their labels, since when, annotations and a link to the host or
device page; then the health of every rule group. Reads ``/api/v1/alerts`` and ``/api/v1/rules``."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import pandas as pd
import streamlit as st

from dashboards import ui
from dashboards.timerange import format_duration

#: Labels that name what an alert is about, in the order they are looked for.
TARGET_LABELS = ("instance", "device", "host", "target")
SHOWN = {"alertname", "severity", *TARGET_LABELS}
#: Alerts about these go to the Network devices page, the others to Servers.
NETWORK_HINTS = ("ifName", "ifIndex", "device", "ip")


def _since(active_at: str, now: float) -> str:
    try:
        t = datetime.fromisoformat(active_at.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return active_at
    return format_duration(max(0.0, now - t)) + " ago"


def _page_link(labels: dict[str, str]) -> str:
    network = any(k in labels for k in NETWORK_HINTS) or labels.get("job", "").startswith(("snmp", "icmp"))
    return "/network" if network else "/servers"


def alert_rows(alerts: list[dict[str, Any]], now: float) -> pd.DataFrame:
    rank = {"firing": 0, "pending": 1}
    alerts = sorted(alerts, key=lambda a: (rank.get(a.get("state", ""), 2), a.get("activeAt", ""),
                                           a.get("labels", {}).get("alertname", "")))
    rows = []
    for a in alerts:
        labels: dict[str, str] = a.get("labels", {})
        ann: dict[str, str] = a.get("annotations", {})
        target = next((labels[k] for k in TARGET_LABELS if k in labels), "")
        rows.append({
            "State": ui.status(a.get("state", "")),
            "Alert": labels.get("alertname", ""),
            "Severity": labels.get("severity", ""),
            "Target": target,
            "Since": _since(a.get("activeAt", ""), now),
            "Summary": ann.get("summary") or ann.get("description") or "",
            "Labels": ", ".join(f"{k}={v}" for k, v in sorted(labels.items()) if k not in SHOWN),
            "Page": _page_link(labels),
        })
    return pd.DataFrame(rows, columns=["State", "Alert", "Severity", "Target", "Since", "Summary", "Labels", "Page"])


def group_rows(groups: list[dict[str, Any]]) -> pd.DataFrame:
    rows = []
    for g in groups:
        rules = g.get("rules", [])
        bad = [r for r in rules if r.get("health") == "err"]
        rows.append({
            "Group": g.get("name", ""),
            "File": g.get("file", ""),
            "Rules": len(rules),
            "Health": ui.status("err" if bad else ("ok" if rules and all(r.get("health") == "ok" for r in rules)
                                                    else "unknown")),
            "Last error": bad[0].get("lastError", "") if bad else "",
            "Interval": format_duration(float(g.get("interval", 0))),
            "Evaluation": f"{float(g.get('evaluationTime', 0)) * 1000:.0f} ms",
        })
    return pd.DataFrame(rows, columns=["Group", "File", "Rules", "Health", "Last error", "Interval", "Evaluation"])


def body(settings: ui.Settings) -> None:
    client = ui.client(settings)
    st.title("Alerts")
    alerts = client.alerts()
    groups = client.rule_groups()
    firing = sum(1 for a in alerts if a.get("state") == "firing")
    pending = sum(1 for a in alerts if a.get("state") == "pending")
    cols = st.columns(3)
    cols[0].metric("Firing", firing)
    cols[1].metric("Pending", pending)
    cols[2].metric("Rule groups", len(groups))
    if not groups:
        ui.empty_state("No rules are loaded",
                       "Rules are evaluated by `sotp ruler` (started by `sotp up` with SOTP's own alerts); add "
                       "yours with `rule_files:` in sotp.yml and give `sotp serve` the ruler with `--ruler-url`. "
                       "See docs/rules.md.")
        return
    if alerts:
        frame = alert_rows(alerts, time.time())
        st.dataframe(ui.styled(frame, ["State"]), hide_index=True, key="alerts_table",
                     column_config={"Page": st.column_config.LinkColumn("Page", display_text="open")})
    else:
        st.success("No alert is firing or pending.", icon=":material/check_circle:")
    st.subheader("Rule groups")
    st.dataframe(ui.styled(group_rows(groups), ["Health"]), hide_index=True, key="alerts_groups")


ui.page(body)
