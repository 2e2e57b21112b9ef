"""Builds the Grafana dashboard JSON in ``dashboards/grafana/dashboards/`` (``python -m dashboards.grafana_build``).

Dashboards are described here in Python so every panel follows the same conventions (data source
variable, legend, units, ``$__rate_interval``) and the JSON files stay reviewable; a test fails when the
committed JSON differs from what this module builds. Metric names are node_exporter's, snmp_exporter's
``if_mib``, blackbox_exporter's and SOTP's own, so the dashboards also work on a plain Prometheus.

The data source is a ``datasource`` variable defaulting to the provisioned ``SOTP`` source (uid
:data:`DS_UID`), never an ``${DS_...}`` import placeholder, so provisioning needs no edits.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent / "grafana" / "dashboards"
DS_UID = "sotp"
DS = {"type": "prometheus", "uid": "${datasource}"}
SCHEMA_VERSION = 39

Json = dict[str, Any]


@dataclass
class Q:
    """A panel target: PromQL, legend, and whether it is an instant query (stat and table panels)."""

    expr: str
    legend: str = ""
    instant: bool = False
    fmt: str = "time_series"


@dataclass
class P:
    """A panel: kind (timeseries, stat, table, heatmap), title, targets, unit and size in grid units."""

    kind: str
    title: str
    targets: list[Q]
    unit: str = "short"
    w: int = 12
    h: int = 8
    description: str = ""
    stacked: bool = False
    extra: Json = field(default_factory=dict)


def query_var(name: str, query: str, label: str = "", multi: bool = False, all_value: str | None = None) -> Json:
    """A ``label_values()`` template variable, refreshed when the time range changes."""
    var: Json = {
        "name": name,
        "label": label or name,
        "type": "query",
        "datasource": DS,
        "definition": query,
        "query": {"query": query, "refId": "StandardVariableQuery"},
        "refresh": 2,
        "sort": 1,
        "multi": multi,
        "includeAll": multi,
        "current": {},
        "options": [],
        "hide": 0,
        "regex": "",
    }
    if all_value is not None:
        var["allValue"] = all_value
    return var


DATASOURCE_VAR: Json = {
    "name": "datasource",
    "label": "Data source",
    "type": "datasource",
    "query": "prometheus",
    "current": {"selected": True, "text": "SOTP", "value": DS_UID},
    "hide": 0,
    "refresh": 1,
    "regex": "",
    "options": [],
}


def _target(q: Q, ref: str) -> Json:
    t: Json = {"refId": ref, "datasource": DS, "expr": q.expr, "legendFormat": q.legend or "__auto",
               "range": not q.instant, "instant": q.instant, "editorMode": "code"}
    if q.fmt != "time_series":
        t["format"] = q.fmt
    return t


def _panel(p: P, pid: int, x: int, y: int) -> Json:
    panel: Json = {
        "id": pid,
        "type": p.kind,
        "title": p.title,
        "datasource": DS,
        "gridPos": {"h": p.h, "w": p.w, "x": x, "y": y},
        "targets": [_target(q, chr(ord("A") + i)) for i, q in enumerate(p.targets)],
        "fieldConfig": {"defaults": {"unit": p.unit}, "overrides": []},
        "options": {},
    }
    if p.description:
        panel["description"] = p.description
    if p.kind == "timeseries":
        panel["fieldConfig"]["defaults"]["custom"] = {
            "drawStyle": "line",
            "lineWidth": 1,
            "fillOpacity": 30 if p.stacked else 8,
            "showPoints": "never",
            "spanNulls": False,
            "stacking": {"mode": "normal" if p.stacked else "none", "group": "A"},
        }
        panel["options"] = {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        }
    elif p.kind == "stat":
        panel["options"] = {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "value",
            "graphMode": "area",
            "textMode": "auto",
        }
    elif p.kind == "heatmap":
        panel["options"] = {
            "calculate": False,
            "yAxis": {"unit": p.unit},
            "color": {"mode": "scheme", "scheme": "Spectral", "steps": 64},
            "cellGap": 1,
            "tooltip": {"show": True, "yHistogram": True},
        }
    for key, value in p.extra.items():
        if isinstance(value, dict) and isinstance(panel.get(key), dict):
            panel[key] = {**panel[key], **value}
        else:
            panel[key] = value
    return panel


def dashboard(uid: str, title: str, tags: list[str], variables: list[Json], panels: list[P],
              annotations: list[Json] | None = None, description: str = "") -> Json:
    """A whole dashboard; panels flow left to right in rows of 24 grid units."""
    out: list[Json] = []
    x = y = row_h = 0
    for i, p in enumerate(panels, start=1):
        if x + p.w > 24:
            x, y, row_h = 0, y + row_h, 0
        out.append(_panel(p, i, x, y))
        x += p.w
        row_h = max(row_h, p.h)
    builtin: Json = {
        "builtIn": 1,
        "datasource": {"type": "grafana", "uid": "-- Grafana --"},
        "enable": True,
        "hide": True,
        "iconColor": "rgba(0, 211, 255, 1)",
        "name": "Annotations & Alerts",
        "type": "dashboard",
    }
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["sotp", *tags],
        "timezone": "browser",
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"},
        "timepicker": {},
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "links": [],
        "annotations": {"list": [builtin, *(annotations or [])]},
        "templating": {"list": [DATASOURCE_VAR, *variables]},
        "panels": out,
    }


def hq(q: float, bucket: str, by: str = "le") -> str:
    """``histogram_quantile`` of a histogram's ``_bucket`` selector, rated over ``$__rate_interval``."""
    return f"histogram_quantile({q}, sum by ({by}) (rate({bucket}[$__rate_interval])))"


# -- Servers (node_exporter names) ----------------------------------------------------------------------

_H = 'job=~"$job",instance="$instance"'
_FS = 'fstype!~"tmpfs|ramfs|devtmpfs|squashfs|nsfs|iso9660"'
_NIC = 'device!~"lo|veth.*|docker.*|br-.*|cni.*|flannel.*"'


def servers() -> Json:
    pct = {"fieldConfig": {"defaults": {"unit": "percent", "min": 0, "max": 100, "thresholds": {
        "mode": "absolute", "steps": [{"color": "green", "value": None}, {"color": "orange", "value": 75},
                                      {"color": "red", "value": 90}]}}}}
    panels = [
        P("table", "All hosts", [
            Q('100 * (1 - avg by (instance) '
              '(rate(node_cpu_seconds_total{job=~"$job",mode="idle"}[$__rate_interval])))', instant=True, fmt="table"),
            Q('100 * (1 - max by (instance) (node_memory_MemAvailable_bytes{job=~"$job"})'
              ' / max by (instance) (node_memory_MemTotal_bytes{job=~"$job"}))', instant=True, fmt="table"),
            Q(f'max by (instance) (100 * (1 - node_filesystem_avail_bytes{{job=~"$job",{_FS}}}'
              f' / (node_filesystem_size_bytes{{job=~"$job",{_FS}}} > 0)))', instant=True, fmt="table"),
            Q('max by (instance) (node_load1{job=~"$job"})', instant=True, fmt="table"),
        ], w=24, h=7, description="Latest CPU busy %, memory used %, fullest filesystem % and load of every host.",
          extra={"transformations": [
              {"id": "merge", "options": {}},
              {"id": "organize", "options": {"excludeByName": {"Time": True}, "renameByName": {
                  "Value #A": "CPU %", "Value #B": "Memory %", "Value #C": "Fullest disk %", "Value #D": "Load 1m",
                  "instance": "Host"}}},
          ], "fieldConfig": {"defaults": {"decimals": 1}}}),
        P("stat", "CPU busy", [Q(f'100 * (1 - avg(rate(node_cpu_seconds_total{{{_H},mode="idle"}}[$__rate_interval])))',
                                 instant=True)], unit="percent", w=4, h=4, extra=pct),
        P("stat", "Memory used", [Q(f"100 * (1 - node_memory_MemAvailable_bytes{{{_H}}}"
                                    f" / node_memory_MemTotal_bytes{{{_H}}})", instant=True)],
          unit="percent", w=4, h=4, extra=pct),
        P("stat", "Fullest filesystem", [Q(f"max(100 * (1 - node_filesystem_avail_bytes{{{_H},{_FS}}}"
                                           f" / (node_filesystem_size_bytes{{{_H},{_FS}}} > 0)))", instant=True)],
          unit="percent", w=4, h=4, extra=pct),
        P("stat", "Load (1m)", [Q(f"node_load1{{{_H}}}", instant=True)], w=4, h=4),
        P("stat", "CPU cores", [Q(f'count(node_cpu_seconds_total{{{_H},mode="idle"}})', instant=True)], w=4, h=4),
        P("stat", "Uptime", [Q(f"time() - node_boot_time_seconds{{{_H}}}", instant=True)], unit="s", w=4, h=4),
        P("timeseries", "CPU busy by mode", [
            Q(f'100 * avg by (mode) (rate(node_cpu_seconds_total{{{_H},mode!="idle"}}[$__rate_interval]))', "{{mode}}"),
        ], unit="percent", stacked=True),
        P("timeseries", "Memory", [
            Q(f"node_memory_MemTotal_bytes{{{_H}}} - node_memory_MemAvailable_bytes{{{_H}}}", "used"),
            Q(f"node_memory_MemAvailable_bytes{{{_H}}}", "available"),
        ], unit="bytes", stacked=True),
        P("timeseries", "Network traffic", [
            Q(f"8 * rate(node_network_receive_bytes_total{{{_H},{_NIC}}}[$__rate_interval])", "{{device}} in"),
            Q(f"8 * rate(node_network_transmit_bytes_total{{{_H},{_NIC}}}[$__rate_interval])", "{{device}} out"),
        ], unit="bps"),
        P("timeseries", "Disk I/O", [
            Q(f"rate(node_disk_read_bytes_total{{{_H}}}[$__rate_interval])", "{{device}} read"),
            Q(f"rate(node_disk_written_bytes_total{{{_H}}}[$__rate_interval])", "{{device}} written"),
        ], unit="Bps"),
        P("timeseries", "Filesystem used", [
            Q(f"100 * (1 - node_filesystem_avail_bytes{{{_H},{_FS}}} / (node_filesystem_size_bytes{{{_H},{_FS}}} > 0))",
              "{{mountpoint}}"),
        ], unit="percent"),
        P("timeseries", "Load average", [
            Q(f"node_load1{{{_H}}}", "1m"), Q(f"node_load5{{{_H}}}", "5m"), Q(f"node_load15{{{_H}}}", "15m"),
        ]),
    ]
    variables = [
        query_var("job", "label_values(node_load1, job)", "Job", multi=True, all_value=".+"),
        query_var("instance", 'label_values(node_load1{job=~"$job"}, instance)', "Host"),
    ]
    return dashboard("sotp-servers", "SOTP / Servers", ["servers", "node_exporter"], variables, panels,
                     description="Host metrics with node_exporter names: SOTP's agent, sotp exporter host, "
                                 "or any node_exporter.")


# -- Network interfaces (snmp_exporter if_mib names) ------------------------------------------------

_D = 'instance="$device"'
_I = 'instance="$device",ifName=~"$interface"'


def _device_health(template: str) -> str:
    """A health expression of :mod:`dashboards.network` (CPU, memory, temperature: the same MIB objects the
    Streamlit Network devices page reads) for the dashboard's ``$device``."""
    return template.replace("BY", "instance").replace("SEL", _D)


def _health_exprs() -> tuple[str, str, str]:
    # Imported here: dashboards.network needs pandas, which building the other dashboards does not.
    from dashboards.network import CPU_PCT, MEM_PCT, TEMPERATURES

    # One expression per panel, so a device answering only one vendor's MIB still fills it.
    temps = " or ".join(f"({expr})" for expr, _ in TEMPERATURES)
    return _device_health(CPU_PCT), _device_health(MEM_PCT), _device_health(temps)


def network() -> Json:
    cpu, mem, temps = _health_exprs()
    status_mappings = [{"type": "value", "options": {
        "1": {"text": "up", "color": "green"}, "2": {"text": "down", "color": "red"},
        "3": {"text": "testing", "color": "blue"}, "5": {"text": "dormant", "color": "yellow"},
        "7": {"text": "lowerLayerDown", "color": "orange"}}}]
    panels = [
        P("stat", "Uptime", [Q(f"sysUpTime{{{_D}}} / 100", instant=True)], unit="s", w=6, h=4),
        P("stat", "Interfaces up", [Q(f"count(ifOperStatus{{{_D}}} == 1) or vector(0)", instant=True)], w=6, h=4),
        P("stat", "Interfaces not up", [Q(f"count(ifOperStatus{{{_D}}} != 1) or vector(0)", instant=True)], w=6, h=4),
        P("stat", "Errors (all interfaces)", [
            Q(f"sum(rate(ifInErrors{{{_D}}}[$__rate_interval])) + sum(rate(ifOutErrors{{{_D}}}[$__rate_interval]))",
              instant=True)], unit="pps", w=6, h=4),
        # Device health from SOTP's default modules (cisco_device, juniper, host_resources, ucd_*,
        # entity_sensor): empty for a device that answers none of them.
        P("timeseries", "CPU busy", [Q(cpu, "CPU")], unit="percent", w=8, h=7,
          description="Cisco CISCO-PROCESS-MIB, Juniper jnxOperatingCPU (busiest component), "
                      "HOST-RESOURCES-MIB (mean of the processors) or net-snmp UCD-SNMP-MIB."),
        P("timeseries", "Memory used", [Q(mem, "memory")], unit="percent", w=8, h=7,
          description="Cisco memory pools, Juniper jnxOperatingBuffer (busiest component), "
                      "HOST-RESOURCES-MIB RAM or net-snmp UCD-SNMP-MIB (buffers and cache count as free)."),
        P("timeseries", "Temperatures", [Q(temps, "{{entPhysicalName}}{{jnxOperatingDescr}}")], unit="celsius",
          w=8, h=7, description="Celsius sensors of CISCO-ENTITY-SENSOR-MIB and ENTITY-SENSOR-MIB, and "
                                "Juniper jnxOperatingTemp (components with a sensor)."),
        P("timeseries", "Inbound traffic", [
            Q(f"8 * rate(ifHCInOctets{{{_I}}}[$__rate_interval])", "{{ifName}} {{ifAlias}}")], unit="bps"),
        P("timeseries", "Outbound traffic", [
            Q(f"8 * rate(ifHCOutOctets{{{_I}}}[$__rate_interval])", "{{ifName}} {{ifAlias}}")], unit="bps"),
        P("timeseries", "Utilization (busiest direction)", [
            Q(f"100 * 8 * (rate(ifHCInOctets{{{_I}}}[$__rate_interval]) > rate(ifHCOutOctets{{{_I}}}[$__rate_interval])"
              f" or rate(ifHCOutOctets{{{_I}}}[$__rate_interval]))"
              f" / (ifHighSpeed{{{_I}}} * 1000000 > 0)", "{{ifName}}"),
        ], unit="percent"),
        P("timeseries", "Errors", [
            Q(f"rate(ifInErrors{{{_I}}}[$__rate_interval])", "{{ifName}} in"),
            Q(f"rate(ifOutErrors{{{_I}}}[$__rate_interval])", "{{ifName}} out"),
        ], unit="pps"),
        P("table", "Interfaces", [
            Q(f"ifOperStatus{{{_D}}}", instant=True, fmt="table"),
            Q(f"ifHighSpeed{{{_D}}}", instant=True, fmt="table"),
        ], w=24, h=9, extra={
            "transformations": [
                {"id": "merge", "options": {}},
                {"id": "organize", "options": {
                    "excludeByName": {"Time": True, "__name__": True, "job": True, "instance": True},
                    "indexByName": {"ifIndex": 0, "ifName": 1, "ifAlias": 2, "ifDescr": 3},
                    "renameByName": {"Value #A": "Status", "Value #B": "Speed (Mbit/s)"}}},
            ],
            "fieldConfig": {"defaults": {}, "overrides": [
                {"matcher": {"id": "byName", "options": "Status"},
                 "properties": [{"id": "mappings", "value": status_mappings},
                                {"id": "custom.cellOptions", "value": {"type": "color-text"}}]}]},
        }),
    ]
    variables = [
        query_var("device", "label_values(ifOperStatus, instance)", "Device"),
        query_var("interface", 'label_values(ifOperStatus{instance="$device"}, ifName)', "Interface",
                  multi=True, all_value=".+"),
    ]
    changes = {
        "name": "Config changes",
        "datasource": DS,
        "enable": True,
        "iconColor": "red",
        # Backups write their metrics once per run: a change is a run whose version count is higher than
        # the previous run's (looked up to 7 days back), seen at the first step after that run. The backups
        # name the device: the one in the SNMP series' device label (sotp.yml's devices:), else the instance.
        "expr": '(last_over_time(sotp_config_changes_total[$__interval])'
                ' - last_over_time(sotp_config_changes_total[7d] offset $__interval) > 0)'
                ' and on (device) (group by (device) (ifOperStatus{instance="$device"})'
                ' or label_replace(vector(1), "device", "$device", "", ""))',
        "step": "$__interval",
        "titleFormat": "config change on {{device}}",
        "textFormat": "see `sotp backup diff {{device}}`",
        "useValueForTime": False,
    }
    return dashboard("sotp-network-interfaces", "SOTP / Network interfaces", ["network", "snmp"], variables, panels,
                     annotations=[changes],
                     description="Per-interface traffic, utilization, errors and status with snmp_exporter "
                                 "if_mib names; red markers are config changes found by SOTP's backups.")


# -- ICMP latency and loss ------------------------------------------------------------------------

_P = 'host=~"$host"'
_B = 'instance=~"$target"'


def icmp() -> Json:
    panels = [
        P("timeseries", "Round-trip time (average)", [
            Q(f"sum by (host) (rate(sotp_icmp_rtt_seconds_sum{{{_P}}}[$__rate_interval]))"
              f" / sum by (host) (rate(sotp_icmp_rtt_seconds_count{{{_P}}}[$__rate_interval]))", "{{host}}"),
        ], unit="s"),
        P("timeseries", "Packet loss", [
            Q(f"100 * (1 - sum by (host) (rate(sotp_icmp_responses_total{{{_P}}}[$__rate_interval]))"
              f" / sum by (host) (rate(sotp_icmp_requests_total{{{_P}}}[$__rate_interval])))", "{{host}}"),
        ], unit="percent", extra={"fieldConfig": {"defaults": {"min": 0}}}),
        P("heatmap", "RTT distribution (all selected hosts)", [
            Q(f"sum by (le) (increase(sotp_icmp_rtt_seconds_bucket{{{_P}}}[$__rate_interval]))", "{{le}}",
              fmt="heatmap"),
        ], unit="s", w=12),
        P("timeseries", "RTT p50 / p95", [
            Q(hq(0.5, f"sotp_icmp_rtt_seconds_bucket{{{_P}}}", "host, le"), "{{host}} p50"),
            Q(hq(0.95, f"sotp_icmp_rtt_seconds_bucket{{{_P}}}", "host, le"), "{{host}} p95"),
        ], unit="s"),
        P("timeseries", "Blackbox probe success", [
            Q(f"avg by (instance) (avg_over_time(probe_success{{{_B}}}[$__rate_interval]))", "{{instance}}"),
        ], unit="percentunit", extra={"fieldConfig": {"defaults": {"min": 0, "max": 1}}}),
        P("timeseries", "Blackbox probe RTT", [
            Q(f'probe_icmp_duration_seconds{{{_B},phase="rtt"}} > 0', "{{instance}}"),
            Q(f"probe_duration_seconds{{{_B}}}", "{{instance}} whole probe"),
        ], unit="s"),
    ]
    variables = [
        query_var("host", "label_values(sotp_icmp_requests_total, host)", "Ping target", multi=True, all_value=".+"),
        query_var("target", "label_values(probe_success, instance)", "Probe target", multi=True, all_value=".+"),
    ]
    return dashboard("sotp-icmp", "SOTP / ICMP latency and loss", ["network", "icmp"], variables, panels,
                     description="Continuous ping (sotp_icmp_*, smokeping-style) and blackbox-style probes.")


# -- SOTP health ----------------------------------------------------------------------------------

_S = 'job=~"$job"'


def health() -> Json:
    panels = [
        P("stat", "Samples ingested / s", [
            Q(f"sum(rate(sotp_ingest_samples_total{{{_S}}}[$__rate_interval]))", instant=True)], w=6, h=4),
        P("stat", "Samples rejected / s", [
            Q(f"sum(rate(sotp_ingest_rejected_samples_total{{{_S}}}[$__rate_interval])) or vector(0)", instant=True)],
          w=6, h=4),
        P("stat", "Write latency p99", [
            Q(hq(0.99, f"sotp_write_latency_seconds_bucket{{{_S}}}"), instant=True)], unit="s", w=6, h=4),
        P("stat", "Targets up", [Q("count(up == 1)", instant=True), Q("count(up)", instant=True)], w=6, h=4,
          extra={"options": {"textMode": "value_and_name"}}),
        P("timeseries", "Ingest rate by protocol", [
            Q(f"sum by (protocol) (rate(sotp_ingest_samples_total{{{_S}}}[$__rate_interval]))", "{{protocol}}"),
        ], unit="short", stacked=True, description="Samples committed to storage per second."),
        # The reject counters appear with the first reject; `or on() vector(0)` draws a zero line until then
        # (on() matches any series, so the zero is dropped as soon as one reason exists).
        P("timeseries", "Rejected samples by reason", [
            Q(f"sum by (protocol, reason) (rate(sotp_ingest_rejected_samples_total{{{_S}}}[$__rate_interval]))"
              " or on() vector(0)", "{{protocol}} {{reason}}"),
        ], unit="short"),
        P("timeseries", "Write latency (request to durable commit)", [
            Q(hq(0.5, f"sotp_write_latency_seconds_bucket{{{_S}}}"), "p50"),
            Q(hq(0.99, f"sotp_write_latency_seconds_bucket{{{_S}}}"), "p99"),
            Q(f"sum(rate(sotp_write_latency_seconds_sum{{{_S}}}[$__rate_interval]))"
              f" / sum(rate(sotp_write_latency_seconds_count{{{_S}}}[$__rate_interval]))", "mean"),
        ], unit="s"),
        P("timeseries", "Write requests by status", [
            Q(f"sum by (code) (rate(sotp_ingest_requests_total{{{_S}}}[$__rate_interval]))", "{{code}}"),
        ], unit="reqps"),
        P("timeseries", "Write queue depth", [Q(f"sum(sotp_write_queue_depth{{{_S}}})", "queued")]),
        P("timeseries", "Scrape targets up", [Q("sum by (job) (up)", "{{job}}")]),
    ]
    variables = [query_var("job", "label_values(sotp_ingest_samples_total, job)", "SOTP job", multi=True,
                           all_value=".+")]
    return dashboard("sotp-health", "SOTP / Health", ["sotp-self"], variables, panels,
                     description="SOTP's own metrics: ingest, rejects, write latency, queue, scrape targets.")


DASHBOARDS = {
    "servers.json": servers,
    "network-interfaces.json": network,
    "icmp.json": icmp,
    "sotp-health.json": health,
}


def render(build: Any) -> str:
    """The JSON text of one dashboard as committed (2-space indent, trailing newline)."""
    return json.dumps(build(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="exit 1 if a committed file differs")
    args = parser.parse_args(argv)
    stale = []
    for name, build in DASHBOARDS.items():
        path = OUT / name
        text = render(build)
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    if stale:
        sys.stderr.write(f"stale Grafana JSON: {', '.join(stale)}; run python -m dashboards.grafana_build\n")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
