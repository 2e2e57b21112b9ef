"""What a dashboard page costs the API: SOTP (``sotp serve``, SQLite) beside Prometheus 2.42, same data.

Both are loaded by remote write with the dashboard tests' dataset (3 hosts, 2 SNMP devices, ping and
blackbox targets, backups, self-metrics; about 0.1 M samples), then each page's queries run the way the
app runs them (sequentially, one HTTP client): the Servers page (host table, two fleet charts, one host's six charts),
the Network devices page (device table, interfaces, markers, charts of one device and interface) and
every panel of the four Grafana dashboards. The figure is the median wall time of ``--repeat`` runs.

    .venv/bin/python bench/dashboards.py [--repeat 7]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dashboards import grafana_build, network, servers
from dashboards.panels import fetch
from dashboards.promapi import PromClient
from dashboards.timerange import TimeRange
from tests.dashboards import conftest as backends
from tests.dashboards import dataset as ds


class CountingClient(PromClient):
    """Counts the HTTP requests a page makes."""

    calls = 0

    def _call(self, method: str, path: str, params: Sequence[tuple[str, str]]) -> Any:
        self.calls += 1
        return super()._call(method, path, params)


def servers_page(client: PromClient) -> None:
    now = time.time()
    tr = TimeRange.last(3600, now)
    hosts = servers.list_hosts(client, tr.start, tr.end)
    servers.overview(client, hosts, now, 15.0, since=tr.start)
    for panel in [*servers.fleet_panels(), *servers.host_panels(hosts[0])]:
        fetch(client, panel, tr)


def network_page(client: PromClient) -> None:
    now = time.time()
    tr = TimeRange.last(3600, now)
    network.devices(client, tr, now)
    device = ds.DEVICES[0].name
    network.interfaces(client, device, tr.rate, now)
    network.markers(client, device, tr)
    for panel in [*network.device_panels(device, ["icmp"]), *network.interface_panels(device, "1")]:
        fetch(client, panel, tr)


def grafana(client: PromClient) -> None:
    end = float(int(time.time()) // 15 * 15)
    values = {"__interval": "15s", "__rate_interval": "1m", "__range": "1h", "datasource": "sotp",
              "job": ".+", "instance": "db-1", "device": "core-sw1", "interface": ".+", "host": ".+", "target": ".+"}
    for build in grafana_build.DASHBOARDS.values():
        dash = build()
        for panel in dash["panels"]:
            for t in panel["targets"]:
                expr = t["expr"]
                for k in sorted(values, key=len, reverse=True):
                    expr = expr.replace(f"${{{k}}}", values[k]).replace(f"${k}", values[k])
                if t.get("instant"):
                    client.query(expr, end)
                else:
                    client.query_range(expr, end - 3600, end, 15)


def measure(fn: Callable[[PromClient], None], url: str, repeat: int) -> tuple[float, int]:
    """(median seconds, HTTP requests) of one page load."""
    client = CountingClient(url)
    fn(client)  # warm-up (caches, connections)
    requests = client.calls
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn(client)
        times.append(time.perf_counter() - t)
    return statistics.median(times), requests


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    started = {name: backends._start(name, Path(tempfile.mkdtemp(prefix=f"bench-dash-{name}-")))
               for name in ("sotp", "prometheus")}
    try:
        samples = started["sotp"].data.sample_count()
        print(f"dataset: {len(started['sotp'].data.series)} series, {samples} samples in each backend")
        rows = []
        for label, fn in (("Servers page", servers_page), ("Network devices page", network_page),
                          ("Grafana: all 4 dashboards", grafana)):
            got = {name: measure(fn, b.url, args.repeat) for name, b in started.items()}
            (sotp_s, n), (prom_s, _) = got["sotp"], got["prometheus"]
            rows.append({"what": label, "requests": n, "sotp_ms": round(sotp_s * 1000, 1),
                         "prometheus_ms": round(prom_s * 1000, 1), "ratio": round(sotp_s / prom_s, 2)})
        print(f"{'what':<28} {'requests':>8} {'SOTP ms':>9} {'Prometheus ms':>14} {'SOTP/Prom':>10}")
        for r in rows:
            print(f"{r['what']:<28} {r['requests']:>8} {r['sotp_ms']:>9} {r['prometheus_ms']:>14} {r['ratio']:>10}")
        print(json.dumps(rows))
    finally:
        for b in started.values():
            b.proc.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
