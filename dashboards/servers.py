"""The Servers page's data: one row per host from node_exporter-named metrics, and a host's panels.

Hosts come from SOTP's agent (``job="node"``, ``instance=<hostname>``) or from any node_exporter that
the worker or a Prometheus scrapes; both use node_exporter's names, so the same PromQL covers them.
A host is *up* when it sent data within :data:`STALE_AFTER_S` and, if it is scraped, its ``up`` is 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from dashboards.panels import Panel, Target, quote
from dashboards.promapi import APIError, PromClient
from dashboards.timerange import TimeRange, rate_window

__all__ = ["HOST_METRIC", "HostRow", "Overview", "fleet_panels", "host_panels", "list_hosts", "overview"]

#: Every node_exporter and SOTP agent sends this; it identifies a host.
HOST_METRIC = "node_load1"
#: Filesystems that never fill up in a way that matters (memory-backed or read-only images).
FS_FILTER = 'fstype!~"tmpfs|ramfs|devtmpfs|squashfs|nsfs|iso9660"'
#: Interfaces that carry no traffic of their own (loopback, container bridges and veths).
NIC_FILTER = 'device!~"lo|veth.*|docker.*|br-.*|cni.*|flannel.*"'
#: A host that has sent nothing for this long is shown as down.
STALE_AFTER_S = 120.0


@dataclass
class HostRow:
    """One host in the table (``nan`` where a metric is missing)."""

    instance: str
    up: bool
    last_seen_s: float
    cpu_pct: float = math.nan
    mem_pct: float = math.nan
    disk_pct: float = math.nan
    disk_mount: str = ""
    net_in_bps: float = math.nan
    net_out_bps: float = math.nan
    load1: float = math.nan
    cores: float = math.nan


@dataclass
class Overview:
    """The host rows and the first error met while filling them (rows still carry what worked)."""

    rows: list[HostRow]
    error: APIError | None = None


def overview_queries(rate: str) -> dict[str, str]:
    """The instant queries behind the table, keyed by :class:`HostRow` field, all ``by (instance)``."""
    return {
        "last_seen_s": f"time() - max by (instance) (timestamp({HOST_METRIC}))",
        "cpu_pct": f'100 * (1 - avg by (instance) (rate(node_cpu_seconds_total{{mode="idle"}}[{rate}])))',
        "mem_pct": "100 * (1 - max by (instance) (node_memory_MemAvailable_bytes)"
        " / max by (instance) (node_memory_MemTotal_bytes))",
        "disk_pct": f"topk by (instance) (1, 100 * (1 - node_filesystem_avail_bytes{{{FS_FILTER}}}"
        f" / (node_filesystem_size_bytes{{{FS_FILTER}}} > 0)))",
        "net_in_bps": f"8 * sum by (instance) (rate(node_network_receive_bytes_total{{{NIC_FILTER}}}[{rate}]))",
        "net_out_bps": f"8 * sum by (instance) (rate(node_network_transmit_bytes_total{{{NIC_FILTER}}}[{rate}]))",
        "load1": f"max by (instance) ({HOST_METRIC})",
        "cores": 'count by (instance) (node_cpu_seconds_total{mode="idle"})',
        "up": "min by (instance) (up)",
    }


def list_hosts(client: PromClient, start: float, end: float) -> list[str]:
    """Instances that sent host metrics in ``[start, end]``."""
    return client.label_values("instance", [HOST_METRIC], start, end)


def overview(
    client: PromClient, hosts: list[str], now: float, scrape_s: float, since: float | None = None
) -> Overview:
    """Fill one :class:`HostRow` per host with the latest values at ``now``.

    Hosts silent for longer than the lookback get their last-seen time from ``[since, now]``.
    """
    rows = {h: HostRow(instance=h, up=False, last_seen_s=math.nan) for h in hosts}
    scraped_up: dict[str, float] = {}
    error: APIError | None = None
    for key, expr in overview_queries(rate_window(scrape_s, scrape_s)).items():
        try:
            result = client.query(expr, now)
        except APIError as err:
            error = error or err
            continue
        for s in result.samples:
            inst = s.labels.get("instance", "")
            if key == "up":
                scraped_up[inst] = s.value
                continue
            row = rows.get(inst)
            if row is None:
                continue
            setattr(row, key, s.value)
            if key == "disk_pct":
                row.disk_mount = s.labels.get("mountpoint", "")
    unseen = {r.instance for r in rows.values() if math.isnan(r.last_seen_s)}
    if unseen and since is not None:
        # Gone longer than the lookback: find the last sample within the picked range.
        try:
            step = max(scrape_s, (now - since) / 240)
            last = client.query_range(f"max by (instance) (timestamp({HOST_METRIC}))", since, now, step)
        except APIError as err:
            error = error or err
            last = []
        for series in last:
            instance = series.labels.get("instance", "")
            if instance in unseen and series.values:
                rows[instance].last_seen_s = now - max(series.values)
    for row in rows.values():
        fresh = not math.isnan(row.last_seen_s) and row.last_seen_s <= STALE_AFTER_S
        row.up = fresh and scraped_up.get(row.instance, 1.0) == 1.0
    return Overview(list(rows.values()), error)


def fleet_panels() -> list[Panel]:
    """Every host on one chart: CPU and memory, to spot the odd one out before drilling in."""
    return [
        Panel(
            "CPU busy by host",
            (Target('100 * (1 - avg by (instance) (rate(node_cpu_seconds_total{mode="idle"}[$__rate_interval])))',
                    "{{instance}}"),),
            unit="percent",
        ),
        Panel(
            "Memory used by host",
            (Target("100 * (1 - max by (instance) (node_memory_MemAvailable_bytes)"
                    " / max by (instance) (node_memory_MemTotal_bytes))", "{{instance}}"),),
            unit="percent",
        ),
    ]


def host_panels(instance: str) -> list[Panel]:
    """The drill-down charts of one host (``{rate}`` is filled in per time range)."""
    i = f"instance={quote(instance)}"
    return [
        Panel(
            "CPU busy by mode",
            (
                Target(
                    f'100 * avg by (mode) (rate(node_cpu_seconds_total{{{i},mode!="idle"}}[$__rate_interval]))',
                    "{{mode}}",
                ),
            ),
            unit="percent",
            stacked=True,
            help="share of all cores, idle left out",
        ),
        Panel(
            "Memory",
            (
                Target(f"node_memory_MemTotal_bytes{{{i}}} - node_memory_MemAvailable_bytes{{{i}}}", "used"),
                Target(f"node_memory_MemAvailable_bytes{{{i}}}", "available"),
            ),
            unit="bytes",
            stacked=True,
        ),
        Panel(
            "Filesystem used",
            (
                Target(
                    f"100 * (1 - node_filesystem_avail_bytes{{{i},{FS_FILTER}}}"
                    f" / (node_filesystem_size_bytes{{{i},{FS_FILTER}}} > 0))",
                    "{{mountpoint}}",
                ),
            ),
            unit="percent",
        ),
        Panel(
            "Network traffic",
            (
                Target(
                    f"8 * rate(node_network_receive_bytes_total{{{i},{NIC_FILTER}}}[$__rate_interval])", "{{device}} in"
                ),
                Target(
                    f"8 * rate(node_network_transmit_bytes_total{{{i},{NIC_FILTER}}}[$__rate_interval])",
                    "{{device}} out",
                ),
            ),
            unit="bits",
        ),
        Panel(
            "Load average",
            (
                Target(f"node_load1{{{i}}}", "1 min"),
                Target(f"node_load5{{{i}}}", "5 min"),
                Target(f"node_load15{{{i}}}", "15 min"),
            ),
        ),
        Panel(
            "Disk I/O",
            (
                Target(f"rate(node_disk_read_bytes_total{{{i}}}[$__rate_interval])", "{{device}} read"),
                Target(f"rate(node_disk_written_bytes_total{{{i}}}[$__rate_interval])", "{{device}} written"),
            ),
            unit="bytes/s",
        ),
    ]


def time_range_hint(tr: TimeRange) -> str:
    """Caption under the charts: what the range, step and rate window are."""
    return f"step {tr.step:g}s · rate window {tr.rate}"
