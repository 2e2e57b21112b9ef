"""A stand-in for systemd on a private D-Bus daemon, for the systemd collector's parity test.

Why a stand-in: systemd is not PID 1 on the test machine (no /run/systemd/private, no system bus), so no
real systemd can be asked. The stand-in answers the calls go-systemd and SOTP make — ``ListUnits`` and
``org.freedesktop.DBus.Properties.Get`` on the manager and on unit objects — from a fixed unit table; a
real ``dbus-daemon`` carries the messages (and checks their format), and node_exporter itself is the
client the answers are compared with.
"""

from __future__ import annotations

import threading
from typing import Any

from exporters.host import dbus
from exporters.host.collectors.systemd import unit_path

# name, description, load state, active state, sub state, and typed properties by interface
UNITS: list[tuple[str, str, str, str, str, dict[str, tuple[str, Any]]]] = [
    ("ssh.service", "OpenBSD Secure Shell server", "loaded", "active", "running",
     {"Service.Type": ("s", "notify"), "Service.NRestarts": ("u", 0), "Service.TasksCurrent": ("t", 1),
      "Service.TasksMax": ("t", 4915), "Unit.ActiveEnterTimestamp": ("t", 1700000000500000)}),
    ("cron.service", "Regular background program processing daemon", "loaded", "active", "running",
     {"Service.Type": ("s", "simple"), "Service.NRestarts": ("u", 2), "Service.TasksCurrent": ("t", 2**64 - 1),
      "Service.TasksMax": ("t", 2**64 - 1), "Unit.ActiveEnterTimestamp": ("t", 1700000001000000)}),
    ("backup.service", "Nightly backup", "loaded", "failed", "failed",
     {"Service.Type": ("s", "oneshot"), "Service.NRestarts": ("u", 3), "Service.TasksCurrent": ("t", 0),
      "Service.TasksMax": ("t", 100)}),
    ("idle.service", "Not running", "loaded", "inactive", "dead", {"Service.Type": ("s", "simple")}),
    ("gone.service", "Deleted unit", "not-found", "inactive", "dead", {}),
    ("reload.service", "Reloading", "loaded", "reloading", "reload", {"Service.Type": ("s", "notify")}),
    ("dev-vda.device", "/dev/vda", "loaded", "active", "plugged", {}),
    ("home.mount", "/home", "loaded", "active", "mounted", {"Mount.Type": ("s", "ext4")}),
    ("srv-data.mount", "/srv/data", "loaded", "activating", "mounting", {"Mount.Type": ("s", "nfs")}),
    ("multi-user.target", "Multi-User System", "loaded", "active", "active", {}),
    ("systemd-journald.socket", "Journal Socket", "loaded", "active", "running",
     {"Socket.NAccepted": ("u", 5), "Socket.NConnections": ("u", 1), "Socket.NRefused": ("u", 7)}),
    ("ssh.socket", "SSH socket (no counters)", "loaded", "inactive", "dead", {}),
    ("apt-daily.timer", "Daily apt download activities", "loaded", "active", "waiting",
     {"Timer.LastTriggerUSec": ("t", 1700000000123456)}),
    ("2fa.service", "A name starting with a digit", "loaded", "deactivating", "stop", {"Service.Type": ("s", "exec")}),
]
MANAGER = {"Version": ("s", "252.39-1~deb12u2"), "SystemState": ("s", "running")}


class FakeSystemd:
    def __init__(self, address: str) -> None:
        self.conn = dbus.Connection(address)
        self.conn.call("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus", "RequestName", "su",
                       ("org.freedesktop.systemd1", 0))
        self.paths = {unit_path(u[0]): u for u in UNITS}
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                msg_type, serial, fields, body, _ = self.conn.receive()
            except OSError:
                return
            if msg_type != dbus.METHOD_CALL:
                continue
            reply = {dbus.REPLY_SERIAL: serial, dbus.DESTINATION: fields[dbus.SENDER]}
            try:
                sig, values = self._answer(fields, body)
                self.conn.send(dbus.encode(dbus.METHOD_RETURN, serial + 100000, reply, sig, values))
            except KeyError as err:
                error = {**reply, dbus.ERROR_NAME: "org.freedesktop.DBus.Error.UnknownProperty"}
                self.conn.send(dbus.encode(dbus.ERROR, serial + 100000, error, "s", (f"unknown {err}",)))

    def _answer(self, fields: dict[int, Any], body: list[Any]) -> tuple[str, tuple[Any, ...]]:
        member, path = fields[dbus.MEMBER], fields[dbus.PATH]
        if member == "ListUnits":
            rows = [(n, d, load, active, sub, "", unit_path(n), 0, "", "/") for n, d, load, active, sub, _ in UNITS]
            return "a(ssssssouso)", (rows,)
        if member == "Get":
            interface, name = body
            if path == "/org/freedesktop/systemd1":
                return "v", (MANAGER[name],)
            props = self.paths[path][5]
            return "v", (props[f"{interface.rsplit('.', 1)[1]}.{name}"],)
        raise KeyError(member)

    def close(self) -> None:
        self.conn.close()
