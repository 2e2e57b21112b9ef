"""``sotp up`` starts the whole embedded stack, which fills itself with this machine's data, and stops cleanly."""

from __future__ import annotations

import json
import signal
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import sotp_cmd, sotp_up_ports, wait_for_port

pytestmark = pytest.mark.integration


def query(port: int, expr: str) -> list[dict]:  # type: ignore[type-arg]
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=10) as r:
        result: list[dict] = json.loads(r.read())["data"]["result"]  # type: ignore[type-arg]
        return result


def test_sotp_up_serves_this_machines_metrics(tmp_path: Path, spawn) -> None:  # type: ignore[no-untyped-def]
    serve, base, dash = sotp_up_ports()
    up = spawn(
        sotp_cmd("up", "--data-dir", str(tmp_path / "data"), "--port", str(serve), "--port-base", str(base),
                 "--dashboard-port", str(dash), "--interval", "2s"),
        name="up",
    )
    wait_for_port(serve, timeout=60)
    deadline = time.monotonic() + 90
    node: list[dict] = []  # type: ignore[type-arg]
    scraped: list[dict] = []  # type: ignore[type-arg]
    while time.monotonic() < deadline and not (node and scraped):
        time.sleep(1)
        node = query(serve, 'node_load1{job="node"}')
        scraped = query(serve, 'up{job="icmp"} == 1')
    assert node, "the local agent's host metrics never arrived\n" + up.output()
    assert scraped, "the worker never scraped the ICMP exporter\n" + up.output()
    wait_for_port(dash, timeout=60)
    with urllib.request.urlopen(f"http://127.0.0.1:{dash}/_stcore/health", timeout=10) as r:
        assert r.status == 200
    text = up.output()
    assert f"http://127.0.0.1:{serve}" in text and "authentication is off" in text
    import psutil

    children = psutil.Process(up.popen.pid).children(recursive=True)
    assert len(children) >= 6  # serve, worker, agent, host + icmp exporters, dashboard
    up.stop(signal.SIGTERM)
    assert up.popen.returncode == 0
    assert "sotp up: stopped" in up.output()
    _gone, alive = psutil.wait_procs(children, timeout=15)
    assert not alive, f"children outlived sotp up: {[p.cmdline() for p in alive]}"
