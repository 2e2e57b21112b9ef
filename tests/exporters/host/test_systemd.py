"""The systemd collector against node_exporter, both asking the same stand-in systemd over a real
``dbus-daemon`` (tests/exporters/host/fake_systemd.py says why a stand-in): same families, HELP, types,
series and values, with node_exporter's default unit filter and with every optional metric on.

node_exporter runs as ``nobody`` (as root it would insist on systemd's private socket) and finds the bus
through ``$DBUS_SYSTEM_BUS_ADDRESS``; SOTP's collector runs in this process with the bus injected.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from exporters.host.collectors import systemd
from exporters.host.dbus import Connection
from exporters.host.options import Options
from exporters.host.registry import collect
from exporters.host.sources import Sources
from sotp.codec.exposition import format_families
from tests.conftest import Proc, free_port, require_binary, wait_for_port
from tests.exporters.host.fake_systemd import FakeSystemd

pytestmark = pytest.mark.integration

BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <listen>unix:path={path}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
"""


@pytest.fixture(scope="module")
def bus() -> Iterator[str]:
    daemon = require_binary("dbus-daemon", "/usr/bin/dbus-daemon")
    require_binary("setpriv", "/usr/bin/setpriv")
    directory = Path(tempfile.mkdtemp(prefix="sotp-bus-"))  # not under pytest's 0700 tmp: nobody must reach it
    directory.chmod(0o755)
    socket_path = directory / "bus"
    (directory / "bus.conf").write_text(BUS_CONFIG.format(path=socket_path))
    proc = subprocess.Popen([daemon, f"--config-file={directory / 'bus.conf'}", "--nofork"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not socket_path.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        socket_path.chmod(0o777)
        address = f"unix:path={socket_path}"
        fake = FakeSystemd(address)
        yield address
        fake.close()
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(directory, ignore_errors=True)


def node_exporter(address: str, flags: list[str], log: Path) -> str:
    binary = require_binary("prometheus-node-exporter", "/usr/bin/prometheus-node-exporter")
    port = free_port()
    ne = Proc(["/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", binary,
               f"--web.listen-address=127.0.0.1:{port}", "--collector.disable-defaults", "--collector.systemd", *flags],
              log, env={"DBUS_SYSTEM_BUS_ADDRESS": address})
    try:
        wait_for_port(port)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as r:
            text: str = r.read().decode()
    finally:
        ne.stop()
    return text


def systemd_lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if "node_systemd_" in ln or ('collector="systemd"' in ln
            and "duration" not in ln)]


@pytest.mark.parametrize(
    ("flags", "opts"),
    [([], Options()),
     (["--collector.systemd.enable-task-metrics", "--collector.systemd.enable-restarts-metrics",
       "--collector.systemd.enable-start-time-metrics", "--collector.systemd.unit-include=.+\\.(service|socket)"],
      Options(systemd_enable_task_metrics=True, systemd_enable_restarts_metrics=True,
              systemd_enable_start_time_metrics=True, systemd_unit_include=r".+\.(service|socket)"))],
    ids=["defaults", "every-option"],
)
def test_same_output_as_node_exporter(bus: str, tmp_path: Path, flags: list[str], opts: Options) -> None:
    theirs = systemd_lines(node_exporter(bus, flags, tmp_path / "ne.log"))
    mine = systemd_lines(format_families(collect(Sources(systemd_bus=lambda: Connection(bus)), ["systemd"], opts)))
    assert 'node_scrape_collector_success{collector="systemd"} 1' in theirs
    assert len(theirs) > 40
    assert mine == theirs


def test_hand_checked_values(bus: str) -> None:
    text = format_families(collect(Sources(systemd_bus=lambda: Connection(bus)), ["systemd"], Options()))
    assert 'node_systemd_unit_state{name="backup.service",state="failed",type="oneshot"} 1' in text
    assert 'node_systemd_units{state="reloading"} 1' in text  # every active state is counted
    assert 'node_systemd_units{state="inactive"} 3' in text  # idle, gone (not loaded, still counted), ssh.socket
    assert 'name="gone.service"' not in text  # not loaded: no unit_state
    assert "home.mount" not in text and "multi-user.target" not in text  # Debian's default exclude
    assert 'node_systemd_timer_last_trigger_seconds{name="apt-daily.timer"} 1.700000000123456e+09' in text
    assert 'node_systemd_socket_refused_connections_total{name="systemd-journald.socket"} 7' in text
    assert 'node_systemd_version{version="252.39-1~deb12u2"} 252.39' in text
    assert "node_systemd_system_running 1" in text


@pytest.mark.parametrize(("name", "path"), [("ssh.service", "ssh_2eservice"), ("2fa.service", "_32fa_2eservice"),
                                            ("dev-vda.device", "dev_2dvda_2edevice")])
def test_unit_object_paths(name: str, path: str) -> None:
    assert systemd.unit_path(name) == f"/org/freedesktop/systemd1/unit/{path}"


def test_without_systemd_the_collector_fails_and_says_why(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", f"unix:path={tmp_path / 'nothing'}")
    monkeypatch.setattr(os, "geteuid", lambda: 1000)  # the system bus path, as for any non-root user
    fams = {f.name: f for f in collect(Sources(), ["systemd"], Options())}
    assert fams["node_scrape_collector_success"].samples[0][2] == 0
    assert "node_systemd_units" not in fams
