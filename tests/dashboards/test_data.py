"""The pages' data layer against real backends: expected values come from the dataset's specs."""

from __future__ import annotations

import math
import time

import pandas as pd
import pytest

from dashboards import network, servers
from dashboards.panels import fetch
from dashboards.promapi import APIError, PromClient
from dashboards.timerange import TimeRange
from tests.conftest import free_port
from tests.dashboards import dataset as ds
from tests.dashboards.conftest import Backend


def _grid(b: Backend, now: float) -> tuple[float, float]:
    """(first grid time in the 1-minute rate window ending at ``now``, last grid time <= now)."""
    t0 = b.data.start_ms / 1000
    last = t0 + ((now - t0) // ds.STEP_S) * ds.STEP_S
    first = last
    while first - ds.STEP_S >= now - 60:
        first -= ds.STEP_S
    return first, last


def test_hosts_and_overview(backend: Backend) -> None:
    client = PromClient(backend.url)
    now = time.time()
    tr = TimeRange.last(3600, now)
    hosts = servers.list_hosts(client, tr.start, tr.end)
    assert hosts == sorted(h.name for h in ds.HOSTS)
    ov = servers.overview(client, hosts, now, 15.0, since=tr.start)
    assert ov.error is None
    rows = {r.instance: r for r in ov.rows}
    first, last = _grid(backend, now)
    for h in ds.HOSTS:
        row = rows[h.name]
        if h.stops_before_now_s:
            assert not row.up
            assert math.isnan(row.cpu_pct)
            # last seen: the last sample before the host stopped, give or take one step
            assert row.last_seen_s == pytest.approx(h.stops_before_now_s + now - backend.data.now, abs=ds.STEP_S + 1)
            continue
        assert row.up, row
        assert 0 <= row.last_seen_s <= ds.STEP_S + 1  # a live host's age is exact, not a range query's step
        rates = ds.cpu_rates(h, first)
        others = sum(v for k, v in rates.items() if k not in ("user", "idle"))
        busy = others + ds.mean_rate(h.user, first, last)
        assert row.cpu_pct == pytest.approx(100 * busy, abs=0.5)
        avail = h.mem_avail_frac * ds.wave(last, 900, 0.05)
        assert row.mem_pct == pytest.approx(100 * (1 - avail), abs=1e-6)
        var_free = h.var_avail_frac - (last - backend.data.start_ms / 1000) * 1e-6
        worst_mount, worst = max((("/", 1 - h.root_avail_frac), ("/var", 1 - var_free)), key=lambda x: x[1])
        assert row.disk_mount == worst_mount  # the 99 % full tmpfs is filtered out
        assert row.disk_pct == pytest.approx(100 * worst, abs=1e-6)
        assert row.net_in_bps == pytest.approx(ds.mean_rate(h.rx_bps, first, last), rel=0.01)  # lo is filtered
        assert row.net_out_bps == pytest.approx(ds.mean_rate(h.tx_bps, first, last, 600), rel=0.01)
        assert row.cores == h.cpus
        busy_last = h.cpus * (1 - ds.cpu_rates(h, last)["idle"])
        assert row.load1 == pytest.approx(busy_last * ds.wave(last, 300, 0.3), rel=1e-6)


def test_devices(backend: Backend) -> None:
    client = PromClient(backend.url)
    now = time.time()
    tr = TimeRange.last(3600, now)
    rows, error = network.devices(client, tr, now)
    assert error is None
    by_name = {r.device: r for r in rows}
    specs = {d.name: d for d in [*ds.DEVICES, *ds.PING_ONLY]}
    assert set(by_name) == set(specs) | set(ds.BLACKBOX)
    _, last = _grid(backend, now)
    for name, d in specs.items():
        row = by_name[name]
        assert row.reachable is True
        assert row.loss_pct == pytest.approx(100 * d.loss, abs=0.5)
        assert row.rtt_s == pytest.approx(d.rtt_s, rel=1e-6)
        if not d.ifaces:
            assert row.sources == ["icmp"]
            continue
        assert row.sources == ["snmp", "icmp", "backup"]
        assert row.keyed == d.inventory  # joined by the device label, not by equal instance/host names
        assert row.uptime_s == pytest.approx(d.uptime_s + last - backend.data.start_ms / 1000 - ds.HISTORY_S)
        assert (row.if_up, row.if_total) == (sum(i.up for i in d.ifaces), len(d.ifaces))
        assert row.in_bps == pytest.approx(sum(i.in_bps for i in d.ifaces), rel=0.2)
        assert row.cpu_pct == max(p.cpu_pct for p in d.parts)
        if d.vendor == "cisco":  # pools: sum used / (sum used + sum free)
            used, free = sum(p.mem_used for p in d.parts), sum(p.mem_free for p in d.parts)
            assert row.mem_pct == pytest.approx(100 * used / (used + free))
        else:  # Juniper: the fullest component's buffer %
            assert row.mem_pct == max(p.mem_used for p in d.parts)
        assert row.temp_c == max(p.temp_c for p in d.parts)  # volt sensors and 0 (no sensor) left out
        assert row.backup_ok == (1.0 if d.backup_ok else 0.0)
        assert row.changes == (1.0 if d.change_ago_s else 0.0)
        if d.backup_ok:
            assert row.backup_age_s < ds.BACKUP_EVERY_S + 60
        else:
            assert row.backup_age_s > 1200  # failing for 20 minutes
    bb = by_name["dns-1"]
    assert bb.sources == ["blackbox"]
    assert bb.loss_pct == pytest.approx(100 * ds.BLACKBOX["dns-1"], abs=1)
    assert bb.rtt_s == pytest.approx(0.0031)


def test_interfaces_and_markers(backend: Backend) -> None:
    client = PromClient(backend.url)
    now = time.time()
    tr = TimeRange.last(3600, now)
    d = ds.DEVICES[0]
    ifs, error = network.interfaces(client, d.name, tr.rate, now)
    assert error is None
    assert [(i.if_index, i.name, i.alias, i.oper) for i in ifs] == [
        (str(x.index), x.name, x.alias, "up" if x.up else "down") for x in d.ifaces
    ]
    for got, spec in zip(ifs, d.ifaces, strict=True):
        assert got.speed_mbps == 1000
        assert got.in_bps == pytest.approx(spec.in_bps, rel=0.2, abs=1)
        assert got.errors_ps == pytest.approx(spec.in_errors_ps, abs=1e-9)
    keyed = ds.DEVICES[1]  # an inventory device: its SNMP instance is "<ip>:161", selected by device=
    assert keyed.inventory
    kifs, error = network.interfaces(client, keyed.name, tr.rate, now, keyed=True)
    assert error is None and [i.name for i in kifs] == [x.name for x in keyed.ifaces]
    marks, error = network.markers(client, d.name, tr)
    assert error is None
    t0 = backend.data.start_ms / 1000
    backups = [t0 + k * ds.BACKUP_EVERY_S for k in range(10) if tr.start <= t0 + k * ds.BACKUP_EVERY_S <= tr.end]
    assert [m.t for m in marks if m.kind == "backup"] == backups
    assert d.change_ago_s is not None
    first_changed = min(t for t in backups if t >= backend.data.now - d.change_ago_s)
    assert [m.t for m in marks if m.kind == "config change"] == [first_changed]


def test_every_panel_has_data(backend: Backend) -> None:
    client = PromClient(backend.url)
    tr = TimeRange.last(3600, time.time())
    d = ds.DEVICES[0]
    panels = [
        *servers.fleet_panels(),
        *servers.host_panels(ds.HOSTS[0].name),
        *network.device_panels(d.name, ["icmp"]),
        *network.device_panels("dns-1", ["blackbox"]),
        *network.interface_panels(d.name, "1"),
    ]
    for panel in panels:
        got = fetch(client, panel, tr)
        assert got.error is None, (panel.title, got.error)
        assert not got.frame.empty, panel.title
        assert got.frame["time"].min() >= pd.Timestamp(tr.start, unit="s", tz="UTC")
        assert got.frame["time"].max() <= pd.Timestamp(tr.end, unit="s", tz="UTC")
        assert len(set(got.frame["series"])) >= len(panel.targets), panel.title


def test_health_panels(backend: Backend) -> None:
    """CPU, memory and temperatures of a Cisco and a Juniper device: each answers its vendor's targets only."""
    client = PromClient(backend.url)
    tr = TimeRange.last(3600, time.time())
    for d in ds.DEVICES:
        cpu, mem, temps = (fetch(client, panel, tr) for panel in network.health_panels(d.name, d.inventory))
        for got in (cpu, mem, temps):
            assert got.error is None and not got.frame.empty
        assert set(cpu.frame["value"]) == {max(p.cpu_pct for p in d.parts)}
        # One series per temperature sensor, named by it (volt sensors and empty slots left out).
        assert sorted(temps.frame["series"].unique()) == sorted(
            (f"{p.name} temp" if d.vendor == "cisco" else p.name) for p in d.parts if p.temp_c > 0)


@pytest.mark.parametrize("instance", sorted(ds.SNMP_HOSTS))
def test_health_panels_of_host_modules(backend: Backend, instance: str) -> None:
    """The HOST-RESOURCES-MIB, ENTITY-SENSOR-MIB and net-snmp UCD branches of the same panels."""
    cpu_pct, mem_pct, temps = ds.SNMP_HOSTS[instance]
    client = PromClient(backend.url)
    tr = TimeRange.last(3600, time.time())
    cpu, mem, temp = (fetch(client, panel, tr) for panel in network.health_panels(instance))
    assert cpu.error is None and set(cpu.frame["value"]) == {cpu_pct}
    assert mem.error is None and list(mem.frame["value"].unique()) == [pytest.approx(mem_pct)]
    assert temp.error is None
    got = {} if temp.frame.empty else temp.frame.groupby("series")["value"].max().to_dict()
    assert got == temps  # celsius only (the 12 V rail left out), tenths scaled


def test_api_error_is_shown_as_given(backend: Backend) -> None:
    client = PromClient(backend.url)
    raw = backend.get("/api/v1/query", query="sum(")
    with pytest.raises(APIError) as info:
        client.query("sum(")
    assert info.value.error_type == raw["errorType"] == "bad_data"
    assert str(info.value) == f"{raw['errorType']}: {raw['error']}"
    assert info.value.status == 400


def test_transport_errors_say_what_to_do(backend: Backend) -> None:
    with pytest.raises(APIError) as info:
        PromClient(f"http://127.0.0.1:{free_port()}", timeout=2).query("up")
    assert info.value.error_type is None
    assert "cannot reach the API" in str(info.value) and "sotp up" in str(info.value)
    with pytest.raises(APIError) as info:
        PromClient(backend.url + "/nowhere").query("up")
    assert "without a Prometheus JSON envelope" in str(info.value)
    assert info.value.status == 404


def test_discovery_endpoints(backend: Backend) -> None:
    """The client's discovery calls agree with the dataset (and with each other)."""
    client = PromClient(backend.url)
    now = time.time()
    series = client.series(['node_load1{job="node"}'], now - 3600, now)
    assert sorted(s["instance"] for s in series) == sorted(h.name for h in ds.HOSTS)
    assert all(s["__name__"] == "node_load1" for s in series)
    names = client.labels(["ifOperStatus"], now - 3600, now)
    assert {"__name__", "ifAlias", "ifDescr", "ifIndex", "ifName", "instance", "job"} <= set(names)
    assert client.label_values("ifName", ['ifOperStatus{instance="core-sw1"}'], now - 3600, now) == sorted(
        i.name for i in ds.DEVICES[0].ifaces
    )
    assert "sotp_icmp_requests_total" in client.label_values("__name__")
