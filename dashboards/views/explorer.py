"""Explorer: a PromQL box with a chart over the picked range and a table at its end; API errors verbatim.

The query and the range are in the page's URL (``/explorer?query=...&range=6h``), so a view can be shared.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboards import ui
from dashboards.panels import Panel, Target, expand, fetch
from dashboards.promapi import InstantResult
from dashboards.timerange import format_duration

DEFAULT_QUERY = "up"
#: The URL parameter holding the query (``/explorer?query=up&range=6h``).
QUERY_PARAM = "query"


def _instant_table(result: InstantResult) -> pd.DataFrame:
    names = sorted({k for s in result.samples for k in s.labels})
    data: dict[str, list[object]] = {n: [s.labels.get(n, "") for s in result.samples] for n in names}
    data["value"] = [s.value for s in result.samples]
    return pd.DataFrame(data)


def body(settings: ui.Settings) -> None:
    client = ui.client(settings)
    tr = ui.time_range(settings)
    st.title("Explorer")
    expr = st.text_area(
        "PromQL",
        value=st.query_params.get(QUERY_PARAM) or DEFAULT_QUERY,
        key="explorer_query",
        height=80,
        help="any PromQL expression; Grafana's $__rate_interval, $__interval and $__range work too. Ctrl+Enter runs it",
    ).strip()
    template = st.text_input(
        "Legend",
        key="explorer_legend",
        placeholder="e.g. {{instance}} {{ifName}} — empty: the labels that differ between series",
    ).strip()
    # The query and the range live in the URL: the address bar is a link to this very view.
    ui.share_in_url({QUERY_PARAM: expr, ui.RANGE_PARAM: format_duration(tr.span)})
    if not expr:
        st.caption("type a PromQL expression, e.g. `rate(node_network_receive_bytes_total[5m])`")
        return
    instant = client.query(expand(expr, tr), tr.end)
    for warning in instant.warnings:
        st.warning(warning)
    chart_tab, table_tab = st.tabs(["Chart", "Table"])
    with table_tab:
        newest = " (newest sample of each range)" if instant.result_type == "matrix" else ""
        st.caption(f"{len(instant.samples)} result(s) of type {instant.result_type} at the end of the range{newest}")
        st.dataframe(_instant_table(instant), hide_index=True, key="explorer_table")
    with chart_tab:
        if instant.result_type == "string":
            st.caption("a string result has no chart")
            return
        if instant.result_type == "matrix":
            # A range query cannot evaluate a range vector (the API would answer bad_data).
            st.caption("a range vector (`x[5m]`) has no chart over time: the table shows each series' newest "
                       "sample; chart a function of it instead, e.g. `rate(x[5m])`")
            return
        ui.chart(fetch(client, Panel(expr if len(expr) < 80 else expr[:77] + "…", (Target(expr, template),)), tr), tr)
        st.caption(f"step {tr.step:g}s · `$__rate_interval` = {tr.rate}, `$__interval` = {format_duration(tr.step)}, "
                   f"`$__range` = {format_duration(tr.span)}")


ui.page(body)
