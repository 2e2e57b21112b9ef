"""``systemd``: unit states, socket and timer counters, system state and version, asked of systemd over
D-Bus as node_exporter 1.5 does (go-systemd): as root on systemd's private socket
(/run/systemd/private), otherwise on the system bus (``$DBUS_SYSTEM_BUS_ADDRESS``, else
/var/run/dbus/system_bus_socket).

Units are filtered by ``--collector.systemd.unit-include``/``-exclude`` (whole names) and must be loaded;
``node_systemd_units`` counts every unit by active state.
"""

from __future__ import annotations

import os
import re
from typing import Any

from exporters.host.collectors import PartialFailure
from exporters.host.dbus import Connection, DBusError
from exporters.host.options import Options
from exporters.host.sources import Sources
from sotp.codec.exposition import MetricFamily

SYSTEMD = "org.freedesktop.systemd1"
MANAGER_PATH = "/org/freedesktop/systemd1"
MANAGER = "org.freedesktop.systemd1.Manager"
STATES = ("active", "activating", "deactivating", "inactive", "failed")
MIN_VERSION_SYSTEM_STATE = 212
_VERSION = re.compile(r"[0-9]{3,}(\.[0-9]+)?")
U64_MAX = 2**64 - 1


def connect() -> Connection:
    if os.geteuid() == 0:
        return Connection("unix:path=/run/systemd/private", bus=False)
    return Connection(os.environ.get("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/var/run/dbus/system_bus_socket"))


def unit_path(name: str) -> str:
    """systemd's object path for a unit: bytes other than [A-Za-z0-9] (and a leading digit) as ``_xx``."""
    out = []
    for i, b in enumerate(name.encode()):
        c = chr(b)
        out.append(c if (c.isascii() and c.isalnum() and not (i == 0 and c.isdigit())) else f"_{b:02x}")
    return f"{MANAGER_PATH}/unit/{''.join(out)}"


class _Units:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def prop(self, unit: str, interface: str, name: str) -> Any:
        try:
            return self.conn.get_property(SYSTEMD, unit_path(unit), f"{SYSTEMD}.{interface}", name)
        except DBusError:
            return None  # node_exporter logs it at debug level and skips the value


def _gauge(fams: dict[str, MetricFamily], name: str, typ: str, help_: str, labels: dict[str, str],
           value: float) -> None:
    fam = fams.get(name)
    if fam is None:
        fam = fams[name] = MetricFamily(f"node_systemd_{name}", typ, help_)
    fam.add(labels, value)


def collect(src: Sources, opts: Options) -> list[MetricFamily]:
    try:
        conn = (src.systemd_bus or connect)()
    except OSError as err:
        raise OSError(f"couldn't get dbus connection: {err}") from err
    fams: dict[str, MetricFamily] = {}
    with conn:
        try:
            raw = str(conn.get_property(SYSTEMD, MANAGER_PATH, MANAGER, "Version"))
            m = _VERSION.search(raw)
            version, label = (float(m.group(0)), raw) if m else (0.0, "")
        except DBusError:
            version, label = 0.0, ""
        _gauge(fams, "version", "gauge", "Detected systemd version", {"version": label}, version)
        units = conn.call(SYSTEMD, MANAGER_PATH, MANAGER, "ListUnits")[0]
        summary = dict.fromkeys(STATES, 0.0)
        for u in units:
            summary[u[3]] = summary.get(u[3], 0.0) + 1.0
        for state, count in summary.items():
            _gauge(fams, "units", "gauge", "Summary of systemd unit states", {"state": state}, count)
        include = re.compile(f"^(?:{opts.systemd_unit_include})$")
        exclude = re.compile(f"^(?:{opts.systemd_unit_exclude})$")
        chosen = [u for u in units if include.search(u[0]) and not exclude.search(u[0]) and u[2] == "loaded"]
        props = _Units(conn)
        for name, _desc, _load, active, *_ in chosen:
            kind = ""
            for suffix, interface in ((".service", "Service"), (".mount", "Mount")):
                if name.endswith(suffix):
                    value = props.prop(name, interface, "Type")
                    kind = str(value) if value is not None else ""
            for state in STATES:
                _gauge(fams, "unit_state", "gauge", "Systemd unit", {"name": name, "state": state, "type": kind},
                       1.0 if state == active else 0.0)
            if opts.systemd_enable_restarts_metrics and name.endswith(".service"):
                restarts = props.prop(name, "Service", "NRestarts")
                if restarts is not None:
                    _gauge(fams, "service_restart_total", "counter", "Service unit count of Restart triggers",
                           {"name": name}, float(restarts))
        if opts.systemd_enable_start_time_metrics:
            for name, _desc, _load, active, *_ in chosen:
                stamp = 0 if active != "active" else props.prop(name, "Unit", "ActiveEnterTimestamp")
                if stamp is not None:
                    _gauge(fams, "unit_start_time_seconds", "gauge",
                           "Start time of the unit since unix epoch in seconds.", {"name": name},
                           float(stamp) / 1e6)
        if opts.systemd_enable_task_metrics:
            for name, *_ in chosen:
                if not name.endswith(".service"):
                    continue
                for prop, metric, help_ in (("TasksCurrent", "unit_tasks_current",
                                             "Current number of tasks per Systemd unit"),
                                            ("TasksMax", "unit_tasks_max", "Maximum number of tasks per Systemd unit")):
                    value = props.prop(name, "Service", prop)
                    if value is not None and value != U64_MAX:
                        _gauge(fams, metric, "gauge", help_, {"name": name}, float(value))
        if version >= MIN_VERSION_SYSTEM_STATE:
            for name, *_ in chosen:
                if name.endswith(".timer"):
                    last = props.prop(name, "Timer", "LastTriggerUSec")
                    if last is not None:
                        _gauge(fams, "timer_last_trigger_seconds", "gauge", "Seconds since epoch of last trigger.",
                               {"name": name}, float(last) / 1e6)
        for name, *_ in chosen:
            if not name.endswith(".socket"):
                continue
            accepted = props.prop(name, "Socket", "NAccepted")
            if accepted is None:
                continue
            _gauge(fams, "socket_accepted_connections_total", "counter", "Total number of accepted socket connections",
                   {"name": name}, float(accepted))
            current = props.prop(name, "Socket", "NConnections")
            if current is None:
                continue
            _gauge(fams, "socket_current_connections", "gauge", "Current number of socket connections",
                   {"name": name}, float(current))
            refused = props.prop(name, "Socket", "NRefused")
            if refused is not None:  # a gauge although named _total, as node_exporter 1.5 declares it
                _gauge(fams, "socket_refused_connections_total", "gauge", "Total number of refused socket connections",
                       {"name": name}, float(refused))
        if version >= MIN_VERSION_SYSTEM_STATE:
            try:
                state = conn.get_property(SYSTEMD, MANAGER_PATH, MANAGER, "SystemState")
            except DBusError as err:
                raise PartialFailure(list(fams.values()), OSError(f"couldn't get system state: {err}")) from err
            _gauge(fams, "system_running", "gauge", "Whether the system is operational (see 'systemctl "
                   "is-system-running')", {}, 1.0 if state == "running" else 0.0)
    return list(fams.values())
