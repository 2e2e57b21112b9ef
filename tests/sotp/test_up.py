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


def _post_ingest(port: int, value: float) -> None:
    body = json.dumps({"host": "lab1", "timestamp": time.time(), "metrics": {"demo_link_down": value}}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/api/v1/ingest", data=body,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 200


def test_sotp_up_evaluates_rules_and_alertmanager_fires_and_resolves(tmp_path: Path, spawn) -> None:  # type: ignore[no-untyped-def]
    """A live ``sotp up`` loads the shipped rules plus the user's, and its alerts fire and resolve in Alertmanager
    (the webhook side is covered in tests/rules/test_alertmanager.py)."""
    from tests.rules.conftest_helpers import alertmanager, am_alerts, wait_until

    with alertmanager(tmp_path, "http://127.0.0.1:9/unused") as am:
        (tmp_path / "demo.yml").write_text(
            "groups:\n  - name: demo\n    interval: 1s\n    rules:\n"
            "      - alert: DemoLinkDown\n        expr: demo_link_down == 1\n"
            "        annotations:\n          summary: 'link on {{ $labels.host }} is down'\n"
        )
        (tmp_path / "sotp.yml").write_text(
            "rule_files: [demo.yml]\n"
            f"alerting:\n  alertmanagers:\n    - static_configs: [{{targets: ['{am.removeprefix('http://')}']}}]\n"
        )
        serve, base, _ = sotp_up_ports()
        up = spawn(sotp_cmd("up", "--config", str(tmp_path / "sotp.yml"), "--data-dir", str(tmp_path / "data"),
                            "--port", str(serve), "--port-base", str(base), "--no-dashboard", "--interval", "2s"),
                   name="up")
        wait_for_port(serve, timeout=60)
        wait_for_port(serve + 3, timeout=60)
        with urllib.request.urlopen(f"http://127.0.0.1:{serve}/api/v1/rules", timeout=10) as r:
            groups = {g["name"] for g in json.loads(r.read())["data"]["groups"]}
        assert {"demo", "hosts", "network", "configurations", "sotp"} <= groups, up.output()
        _post_ingest(serve, 1)
        alerts = wait_until(lambda: am_alerts(am), 60, "DemoLinkDown in Alertmanager")
        assert alerts[0]["labels"] == {"alertname": "DemoLinkDown", "host": "lab1"}
        assert alerts[0]["annotations"] == {"summary": "link on lab1 is down"}
        with urllib.request.urlopen(f"http://127.0.0.1:{serve}/api/v1/alerts", timeout=10) as r:
            live = json.loads(r.read())["data"]["alerts"]
        assert [a["labels"]["alertname"] for a in live if a["state"] == "firing"] == ["DemoLinkDown"]
        _post_ingest(serve, 0)
        assert wait_until(lambda: am_alerts(am) == [], 60, "the alert resolved in Alertmanager") is True
        up.stop(signal.SIGTERM)
