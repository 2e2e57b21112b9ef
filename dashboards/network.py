"""The Network devices page's data: devices from SNMP, ICMP and backup metrics, and one device's detail.

Names follow the exporters SOTP mimics: snmp_exporter's ``if_mib`` module (``ifHCInOctets``,
``ifOperStatus``... with ``ifIndex``/``ifName``/``ifDescr``/``ifAlias`` labels, the device in
``instance``), blackbox_exporter's ``probe_*`` (device in ``instance``), SOTP's continuous ping
``sotp_icmp_*{host, ip}`` (device in ``host``) and the config backups' ``sotp_config_*{device}``.

A device is named by its ``device`` label when the series carry one (the worker sets it for every device
of sotp.yml's ``devices:``, so SNMP at ``192.0.2.1:161``, the ping of ``192.0.2.1`` and the backups of
``edge1`` are one row), else by the source's own label (``instance``, ``host``): series scraped without
the inventory are still shown, one row per name.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd

from dashboards.panels import Panel, Target, quote
from dashboards.promapi import APIError, PromClient, RangeSeries
from dashboards.timerange import TimeRange, format_duration
from sotp.config import parse_duration

__all__ = [
    "DeviceRow",
    "Interface",
    "Marker",
    "device_panels",
    "devices",
    "interface_panels",
    "interfaces",
    "markers",
]

#: (metric that proves the source, label that names the device)
SOURCES: dict[str, tuple[str, str]] = {
    "snmp": ("ifOperStatus", "instance"),
    "snmp_system": ("sysUpTime", "instance"),
    "icmp": ("sotp_icmp_requests_total", "host"),
    "blackbox": ("probe_success", "instance"),
    "backup": ("sotp_config_backup_success", "device"),
}
#: How far back the table looks for the last backup run (backups may run daily).
BACKUP_LOOKBACK = "7d"
#: ifOperStatus values (IF-MIB), for the interface table.
OPER_STATUS = {1: "up", 2: "down", 3: "testing", 4: "unknown", 5: "dormant", 6: "notPresent", 7: "lowerLayerDown"}


#: The label naming a device across sources when sotp.yml's devices: lists it.
DEVICE_LABEL = "device"


@dataclass
class DeviceRow:
    """One device: reachability, latency and loss, SNMP facts and the last config backup."""

    device: str
    sources: list[str] = field(default_factory=list)
    #: Named by the ``device`` label (selectors use it) rather than by each source's own label.
    keyed: bool = False
    reachable: bool | None = None
    rtt_s: float = math.nan
    loss_pct: float = math.nan
    uptime_s: float = math.nan
    if_up: float = math.nan
    if_total: float = math.nan
    in_bps: float = math.nan
    out_bps: float = math.nan
    backup_ok: float = math.nan
    backup_age_s: float = math.nan
    changes: float = math.nan


@dataclass
class Interface:
    """One row of a device's interface table."""

    if_index: str
    name: str
    descr: str = ""
    alias: str = ""
    oper: str = ""
    speed_mbps: float = math.nan
    in_bps: float = math.nan
    out_bps: float = math.nan
    errors_ps: float = math.nan


@dataclass(frozen=True)
class Marker:
    """A vertical rule on a chart: when (Unix s) and what (``config change``, ``backup``)."""

    t: float
    kind: str


def _by(label: str) -> str:
    """The grouping that keeps both the device label and the source's own one."""
    return DEVICE_LABEL if label == DEVICE_LABEL else f"{DEVICE_LABEL}, {label}"


def device_key(labels: dict[str, str], label: str) -> tuple[str, bool]:
    """The device a series belongs to, and whether a ``device`` label named it where the source has its own
    label (backups are always named by ``device``, so they say nothing about the other sources)."""
    if labels.get(DEVICE_LABEL):
        return labels[DEVICE_LABEL], label != DEVICE_LABEL
    return labels.get(label, ""), False


def selector(device: str, keyed: bool, label: str) -> str:
    """The matcher selecting one device's series of a source whose own label is ``label``."""
    return f"{DEVICE_LABEL if keyed else label}={quote(device)}"


def list_devices(client: PromClient, start: float, end: float) -> tuple[dict[str, DeviceRow], APIError | None]:
    """Device name -> an empty row with the sources that mention it in ``[start, end]``."""
    found: dict[str, DeviceRow] = {}
    error: APIError | None = None
    for source, (metric, label) in SOURCES.items():
        since = min(start, end - parse_duration(BACKUP_LOOKBACK)) if source == "backup" else start
        expr = f"group by ({_by(label)}) (last_over_time({metric}[{format_duration(max(1.0, end - since))}]))"
        try:
            result = client.query(expr, end)
        except APIError as err:
            error = error or err
            continue
        for sample in result.samples:
            name, keyed = device_key(sample.labels, label)
            if not name:
                continue
            row = found.setdefault(name, DeviceRow(name))
            row.keyed = row.keyed or keyed
            kind = source.split("_")[0]
            if kind not in row.sources:
                row.sources.append(kind)
    return dict(sorted(found.items())), error


def device_queries(rate: str, span: str, avg: str = "5m") -> dict[str, tuple[str, str]]:
    """Instant queries for the device table: field -> (PromQL, label naming the device).

    ``rate`` is the window for traffic rates, ``avg`` the one for loss and RTT (5 minutes, so one lost
    echo is not an outage) and ``span`` the whole range, over which config changes are counted.
    """
    host, inst, dev = _by("host"), _by("instance"), _by(DEVICE_LABEL)
    return {
        "loss_pct": (
            f"100 * (1 - sum by ({host}) (rate(sotp_icmp_responses_total[{avg}]))"
            f" / sum by ({host}) (rate(sotp_icmp_requests_total[{avg}])))",
            "host",
        ),
        "rtt_s": (
            f"sum by ({host}) (rate(sotp_icmp_rtt_seconds_sum[{avg}]))"
            f" / sum by ({host}) (rate(sotp_icmp_rtt_seconds_count[{avg}]))",
            "host",
        ),
        "bb_loss": (f"100 * (1 - avg by ({inst}) (avg_over_time(probe_success[{avg}])))", "instance"),
        # A failed probe reports an RTT of 0 (or none): average over the successful probes only.
        "bb_rtt": (
            f'sum by ({inst}) (sum_over_time(probe_icmp_duration_seconds{{phase="rtt"}}[{avg}]))'
            f" / sum by ({inst}) (sum_over_time(probe_success[{avg}]))",
            "instance",
        ),
        "bb_up": (f"max by ({inst}) (probe_success)", "instance"),
        "uptime_s": (f"max by ({inst}) (sysUpTime) / 100", "instance"),
        "if_up": (f"count by ({inst}) (ifOperStatus == 1)", "instance"),
        "if_total": (f"count by ({inst}) (ifOperStatus)", "instance"),
        "in_bps": (f"8 * sum by ({inst}) (rate(ifHCInOctets[{rate}]))", "instance"),
        "out_bps": (f"8 * sum by ({inst}) (rate(ifHCOutOctets[{rate}]))", "instance"),
        # Backup metrics are written once per backup run, so look back far enough to see the last one.
        "backup_ok": (f"max by ({dev}) (last_over_time(sotp_config_backup_success[{BACKUP_LOOKBACK}]))",
                      DEVICE_LABEL),
        "backup_age_s": (
            f"time() - max by ({dev}) "
            f"(last_over_time(sotp_config_backup_last_success_timestamp_seconds[{BACKUP_LOOKBACK}]))",
            DEVICE_LABEL,
        ),
        # Versions only grow, so max - min over the range counts changes exactly (increase() would
        # extrapolate the sparse samples, written once per backup, into fractions).
        "changes": (
            f"max by ({dev}) (max_over_time(sotp_config_changes_total[{span}])"
            f" - min_over_time(sotp_config_changes_total[{span}]))",
            DEVICE_LABEL,
        ),
    }


def devices(client: PromClient, tr: TimeRange, now: float) -> tuple[list[DeviceRow], APIError | None]:
    """One :class:`DeviceRow` per device seen in ``tr``; values as of ``now``.

    Config changes are counted over the whole range (see :func:`device_queries` for the windows).
    """
    rows, error = list_devices(client, tr.start, tr.end)
    got: dict[str, dict[str, float]] = {}
    for key, (expr, label) in device_queries(tr.rate, format_duration(tr.span)).items():
        try:
            result = client.query(expr, now)
        except APIError as err:
            error = error or err
            continue
        got[key] = {device_key(s.labels, label)[0]: s.value for s in result.samples}
    for name, row in rows.items():
        for key in ("loss_pct", "rtt_s", "uptime_s", "if_up", "if_total", "in_bps", "out_bps", "backup_ok",
                    "backup_age_s", "changes"):
            if name in got.get(key, {}):
                setattr(row, key, got[key][name])
        if math.isnan(row.loss_pct) and name in got.get("bb_loss", {}):
            row.loss_pct = got["bb_loss"][name]
        if math.isnan(row.rtt_s) and name in got.get("bb_rtt", {}):
            row.rtt_s = got["bb_rtt"][name]
        if "icmp" in row.sources or "blackbox" in row.sources:
            probe_ok = got.get("bb_up", {}).get(name)
            row.reachable = (not math.isnan(row.loss_pct) and row.loss_pct < 100.0) or probe_ok == 1.0
        elif "snmp" in row.sources:
            # No ping data: an SNMP answer within the lookback proves the device is reachable.
            row.reachable = name in got.get("if_total", {})
        if "snmp" in row.sources and math.isnan(row.if_up) and name in got.get("if_total", {}):
            row.if_up = 0.0
    return list(rows.values()), error


def interfaces(client: PromClient, device: str, rate: str, now: float,
               keyed: bool = False) -> tuple[list[Interface], APIError | None]:
    """The device's interfaces (by ``ifIndex``) with status, speed, traffic and errors at ``now``."""
    d = selector(device, keyed, "instance")
    queries = {
        "oper": f"ifOperStatus{{{d}}}",
        "speed_mbps": f"ifHighSpeed{{{d}}}",
        "in_bps": f"8 * rate(ifHCInOctets{{{d}}}[{rate}])",
        "out_bps": f"8 * rate(ifHCOutOctets{{{d}}}[{rate}])",
        "errors_ps": f"sum by (ifIndex) (rate(ifInErrors{{{d}}}[{rate}]) or rate(ifOutErrors{{{d}}}[{rate}]))",
    }
    rows: dict[str, Interface] = {}
    error: APIError | None = None
    for key, expr in queries.items():
        try:
            result = client.query(expr, now)
        except APIError as err:
            error = error or err
            continue
        for s in result.samples:
            idx = s.labels.get("ifIndex", "")
            row = rows.get(idx)
            if row is None:
                if key == "errors_ps":
                    continue
                row = rows[idx] = Interface(idx, s.labels.get("ifName") or s.labels.get("ifDescr") or idx)
            for attr, label in (("descr", "ifDescr"), ("alias", "ifAlias")):
                if not getattr(row, attr) and s.labels.get(label):
                    setattr(row, attr, s.labels[label])
            if key == "oper":
                row.oper = OPER_STATUS.get(int(s.value), str(s.value)) if not math.isnan(s.value) else ""
            else:
                setattr(row, key, s.value)
    return sorted(rows.values(), key=_index_key), error


def _index_key(row: Interface) -> tuple[int, str]:
    return (int(row.if_index), "") if row.if_index.isdigit() else (1 << 62, row.if_index)


def device_panels(device: str, sources: list[str], keyed: bool = False) -> list[Panel]:
    """Reachability charts of one device, from whichever ping source it has."""
    panels: list[Panel] = []
    if "icmp" in sources:
        h = selector(device, keyed, "host")
        panels.append(
            Panel(
                "Round-trip time",
                (
                    Target(
                        f"sum by (host) (rate(sotp_icmp_rtt_seconds_sum{{{h}}}[$__rate_interval]))"
                        f" / sum by (host) (rate(sotp_icmp_rtt_seconds_count{{{h}}}[$__rate_interval]))",
                        "average",
                    ),
                    Target(
                        "histogram_quantile(0.95, sum by (le) "
                        f"(rate(sotp_icmp_rtt_seconds_bucket{{{h}}}[$__rate_interval])))",
                        "p95",
                    ),
                ),
                unit="seconds",
            )
        )
        panels.append(
            Panel(
                "Packet loss",
                (
                    Target(
                        f"100 * (1 - sum by (host) (rate(sotp_icmp_responses_total{{{h}}}[$__rate_interval]))"
                        f" / sum by (host) (rate(sotp_icmp_requests_total{{{h}}}[$__rate_interval])))",
                        "loss",
                    ),
                ),
                unit="percent",
            )
        )
    elif "blackbox" in sources:
        i = selector(device, keyed, "instance")
        panels.append(
            Panel(
                "Round-trip time",
                (Target(f'probe_icmp_duration_seconds{{{i},phase="rtt"}}', "rtt"),),
                unit="seconds",
            )
        )
        panels.append(
            Panel(
                "Packet loss",
                (Target(f"100 * (1 - avg_over_time(probe_success{{{i}}}[$__rate_interval]))", "loss"),),
                unit="percent",
            )
        )
    return panels


def interface_panels(device: str, if_index: str, keyed: bool = False) -> list[Panel]:
    """Traffic and errors of one interface."""
    sel = f"{selector(device, keyed, 'instance')},ifIndex={quote(if_index)}"
    return [
        Panel(
            "Traffic",
            (
                Target(f"8 * rate(ifHCInOctets{{{sel}}}[$__rate_interval])", "in"),
                Target(f"8 * rate(ifHCOutOctets{{{sel}}}[$__rate_interval])", "out"),
            ),
            unit="bits",
        ),
        Panel(
            "Errors",
            (
                Target(f"rate(ifInErrors{{{sel}}}[$__rate_interval])", "in"),
                Target(f"rate(ifOutErrors{{{sel}}}[$__rate_interval])", "out"),
            ),
            unit="errors/s",
        ),
    ]


def markers(client: PromClient, device: str, tr: TimeRange) -> tuple[list[Marker], APIError | None]:
    """Config changes and successful backups of ``device`` within ``tr``, for rules on the charts.

    A change is a step where ``sotp_config_changes_total`` went up; a backup is a new value of
    ``sotp_config_backup_last_success_timestamp_seconds`` (the value *is* the backup's time).
    """
    d = f"device={quote(device)}"
    out: list[Marker] = []
    try:
        changes = client.query_range(f"sum(sotp_config_changes_total{{{d}}})", tr.start, tr.end, tr.step)
        backups = client.query_range(
            f"max(sotp_config_backup_last_success_timestamp_seconds{{{d}}})", tr.start, tr.end, tr.step
        )
    except APIError as err:
        return [], err
    out.extend(Marker(t, "config change") for t in _increases(changes))
    seen: set[float] = set()
    for s in backups:
        for v in s.values:
            if not math.isnan(v) and tr.start <= v <= tr.end and v not in seen:
                seen.add(v)
                out.append(Marker(v, "backup"))
    return sorted(out, key=lambda m: m.t), None


def _increases(series: list[RangeSeries]) -> list[float]:
    times: list[float] = []
    for s in series:
        for (_, prev), (t, v) in zip(zip(s.ts, s.values, strict=True), zip(s.ts[1:], s.values[1:], strict=True),
                                     strict=False):
            if v > prev:
                times.append(t)
    return times


def markers_frame(marks: list[Marker]) -> pd.DataFrame:
    return pd.DataFrame(
        {"time": pd.to_datetime([m.t for m in marks], unit="s", utc=True), "event": [m.kind for m in marks]}
    )
