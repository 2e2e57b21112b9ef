"""The Streamlit app through ``streamlit.testing.v1.AppTest`` against each backend, plus its empty states.

AppTest runs the real scripts in-process (no browser); the Chromium test covers what users see.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from dashboards.ui import ENV_API, ENV_TOKEN_FILE
from tests.conftest import REPO, free_port
from tests.dashboards import dataset as ds
from tests.dashboards.conftest import Backend, _start_prometheus

APP = str(REPO / "dashboards" / "app.py")


def _app(monkeypatch: pytest.MonkeyPatch, api: str) -> AppTest:
    monkeypatch.setenv(ENV_API, api)
    monkeypatch.delenv(ENV_TOKEN_FILE, raising=False)
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    return at


def _charts(at: AppTest) -> list[dict[str, object]]:
    """The Vega-Lite specs of the charts on screen (AppTest has no typed accessor for them)."""
    return [json.loads(c.proto.spec) for c in at.get("vega_lite_chart")]


def _texts(at: AppTest) -> str:
    return "\n".join(str(x.value) for kind in ("error", "info", "warning", "caption") for x in getattr(at, kind))


def test_servers_page(backend: Backend, monkeypatch: pytest.MonkeyPatch) -> None:
    at = _app(monkeypatch, backend.url)
    assert not at.exception, at.exception
    assert [t.value for t in at.title] == ["Servers"]
    assert not at.error, [e.value for e in at.error]
    table = at.dataframe[0].value
    assert list(table["Host"]) == sorted(h.name for h in ds.HOSTS)
    status = dict(zip(table["Host"], table["Status"], strict=True))
    for h in ds.HOSTS:
        assert status[h.name] == ("● down" if h.stops_before_now_s else "● up")
    live = sum(1 for h in ds.HOSTS if not h.stops_before_now_s)
    assert at.metric[0].value == f"{live} / {len(ds.HOSTS)}"
    # two fleet charts, then the drill-down of the first host: six charts
    assert at.selectbox(key="servers_host").value == "db-1"
    charts = _charts(at)
    assert len(charts) == 8
    # pick another host: the charts follow
    at.selectbox(key="servers_host").set_value("web-1").run()
    assert not at.exception
    assert [s.value for s in at.subheader] == ["web-1"]
    assert len(_charts(at)) == 8
    # the sidebar's time range drives every chart's window and step
    assert any("last 1 hour · step 15s · rate window 1m" in c.value for c in at.caption)
    at.selectbox(key="range").set_value("6 hours").run()
    assert any("last 6 hours · step 120s · rate window 2m15s" in c.value for c in at.caption)
    start, end = _charts(at)[2]["layer"][0]["encoding"]["x"]["scale"]["domain"]  # type: ignore[index]
    assert (pd.Timestamp(end) - pd.Timestamp(start)).total_seconds() == 6 * 3600


def test_network_page(backend: Backend, monkeypatch: pytest.MonkeyPatch) -> None:
    at = _app(monkeypatch, backend.url)
    at.switch_page("views/network.py").run()
    assert not at.exception, at.exception
    assert [t.value for t in at.title] == ["Network devices"]
    assert not at.error, [e.value for e in at.error]
    devices = at.dataframe[0].value
    assert sorted(devices["Device"]) == sorted([d.name for d in [*ds.DEVICES, *ds.PING_ONLY]] + list(ds.BLACKBOX))
    row = devices[devices["Device"] == "edge-rtr1"].iloc[0]
    assert row["Last backup"].startswith("● failed")
    assert row["Interfaces up"] == "2 / 2"
    # first device: RTT + loss, interface table, traffic (with backup/change rules) + errors
    assert at.selectbox(key="network_device").value == "core-sw1"
    ifaces = at.dataframe[1].value
    assert list(ifaces["Name"]) == [i.name for i in ds.DEVICES[0].ifaces]
    charts = _charts(at)
    assert len(charts) == 4
    marked = [c for c in charts
              if any(layer.get("encoding", {}).get("stroke", {}).get("field") == "event" for layer in c["layer"])]
    assert len(marked) == 1, "the traffic chart carries the backup and config-change markers"
    at.selectbox(key="network_interface").set_value("2").run()
    assert not at.exception
    # a device of sotp.yml's devices: (SNMP instance 192.0.2.254:161, ping host 192.0.2.254 and backups all
    # labelled device="edge-rtr1") is one row above, and its detail finds every source through that label
    at.selectbox(key="network_device").set_value("edge-rtr1").run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert list(at.dataframe[1].value["Name"]) == [i.name for i in ds.DEVICES[1].ifaces]
    assert len(_charts(at)) == 4
    assert not any(str(d.ip) in list(devices["Device"]) for d in ds.DEVICES)
    # a ping-only device has no interface table
    at.selectbox(key="network_device").set_value("isp-gw").run()
    assert len(at.dataframe) == 1
    assert "no SNMP data for this device" in _texts(at)


def test_explorer_shows_api_errors_verbatim(backend: Backend, monkeypatch: pytest.MonkeyPatch) -> None:
    at = _app(monkeypatch, backend.url)
    at.switch_page("views/explorer.py").run()
    assert not at.exception
    assert len(_charts(at)) == 1
    at.text_area(key="explorer_query").set_value("sum by (job) (rate(sotp_ingest_samples_total[$__rate_interval]))")
    at.run()
    assert not at.error, [e.value for e in at.error]
    table = at.dataframe[0].value
    assert list(table["job"]) == ["sotp"]
    at.text_area(key="explorer_query").set_value("sum by (protocol) (rate(sotp_ingest_samples_total[5m]))")
    at.text_input(key="explorer_legend").set_value("{{protocol}} samples/s").run()
    [spec] = _charts(at)
    domain = spec["layer"][0]["encoding"]["color"]["scale"]["domain"]  # type: ignore[index]
    # legend from the template, biggest series first (it gets the first colour)
    assert domain == [f"{p} samples/s" for p in sorted(ds.INGEST, key=lambda p: -ds.INGEST[p])]
    # a range vector: table of newest samples, no chart, no error
    at.text_input(key="explorer_legend").set_value("")
    at.text_area(key="explorer_query").set_value('node_load1{instance="web-1"}[1m]').run()
    assert not at.error and not _charts(at)
    assert list(at.dataframe[0].value["instance"]) == ["web-1"]
    # a scalar charts as one series named "value"
    at.text_area(key="explorer_query").set_value("1 + 1").run()
    [spec] = _charts(at)
    assert spec["layer"][0]["encoding"]["color"]["scale"]["domain"] == ["value"]  # type: ignore[index]
    at.text_area(key="explorer_query").set_value("sum(").run()
    raw = backend.get("/api/v1/query", query="sum(")
    assert [e.value for e in at.error] == [f"{raw['errorType']}: {raw['error']}"]
    assert not at.exception


@pytest.fixture
def empty_prometheus(tmp_path: Path) -> Iterator[str]:
    proc, url = _start_prometheus(tmp_path)
    yield url
    proc.stop()


def test_empty_states_say_what_to_run(empty_prometheus: str, monkeypatch: pytest.MonkeyPatch) -> None:
    at = _app(monkeypatch, empty_prometheus)
    assert not at.exception
    assert "No agents have pushed yet" in at.info[0].value and "sotp agent --url" in at.info[0].value
    at.switch_page("views/network.py").run()
    assert "No network devices yet" in at.info[0].value


def test_unreachable_api_reads_as_a_message(monkeypatch: pytest.MonkeyPatch) -> None:
    at = _app(monkeypatch, f"http://127.0.0.1:{free_port()}")
    assert not at.exception
    assert len(at.error) == 1
    assert "cannot reach the API" in at.error[0].value and "sotp dashboard --api" in at.error[0].value


def test_unreadable_token_file_reads_as_a_message(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(ENV_API, "http://127.0.0.1:9")
    monkeypatch.setenv(ENV_TOKEN_FILE, str(tmp_path / "missing-token"))
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    assert not at.exception
    assert any("cannot read the API token file" in e.value for e in at.error)


def test_explorer_query_and_range_are_in_the_url(backend: Backend, monkeypatch: pytest.MonkeyPatch) -> None:
    """A shared link opens the same query over the same range, and editing the query updates the link."""
    monkeypatch.setenv(ENV_API, backend.url)
    monkeypatch.delenv(ENV_TOKEN_FILE, raising=False)
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params["query"] = 'sum by (job) (up{job="sotp"})'
    at.query_params["range"] = "6h"
    at.run()
    at.switch_page("views/explorer.py").run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert at.text_area(key="explorer_query").value == 'sum by (job) (up{job="sotp"})'
    assert at.selectbox(key="range").value == "6 hours"
    assert list(at.dataframe[0].value["job"]) == ["sotp"]
    at.text_area(key="explorer_query").set_value("count(up)").run()
    at.selectbox(key="range").set_value("24 hours").run()
    assert at.query_params["query"] == "count(up)" and at.query_params["range"] == "1d"
    # an unknown range in a link falls back to the default instead of failing
    again = AppTest.from_file(APP, default_timeout=60)
    again.query_params["range"] = "5 fortnights"
    again.run()
    assert not again.exception and again.selectbox(key="range").value == "1 hour"
