"""The agent works against any remote-write receiver: here Debian's Prometheus 2.42."""

from __future__ import annotations

import json
import re
import signal
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Proc, free_port, require_binary, sotp_cmd, wait_for_port

pytestmark = pytest.mark.integration


def query(port: int, q: str) -> list[dict[str, Any]]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": q})
    with urllib.request.urlopen(url, timeout=10) as r:
        body = json.load(r)
    assert body["status"] == "success", body
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def wait_ready(port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=2):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("prometheus did not become ready")


def test_push_to_prometheus(tmp_path: Path) -> None:
    binary = require_binary("prometheus", "/usr/bin/prometheus")
    (tmp_path / "prometheus.yml").write_text("global:\n  scrape_interval: 1m\n")
    port = free_port()
    prom = Proc([binary, f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                 f"--web.listen-address=127.0.0.1:{port}", "--web.enable-remote-write-receiver"],
                tmp_path / "prometheus.log", cwd=tmp_path)
    agent = Proc(sotp_cmd("agent", "--url", f"http://127.0.0.1:{port}/api/v1/write", "--interval", "250ms",
                          "--buffer-dir", str(tmp_path / "buf"), "--instance", "db-7", "--label", "dc=par1"),
                 tmp_path / "agent.log")
    try:
        wait_for_port(port)
        wait_ready(port)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and "samples sent" not in agent.output():
            if query(port, "sotp_agent_collections_total >= 8"):
                break
            time.sleep(0.2)
        agent.stop(signal.SIGTERM)
        log = agent.log.read_text()
        sent = int(re.search(r"(\d+) samples sent, 0 rejected", log).group(1))  # type: ignore[union-attr]
        # every collection arrived, in order, once (a range selector returns the raw samples)
        raw = query(port, "sotp_agent_collections_total[5m]")
        assert len(raw) == 1
        assert raw[0]["metric"] == {"__name__": "sotp_agent_collections_total", "dc": "par1",
                                    "instance": "db-7", "job": "node"}
        values = [float(v) for _, v in raw[0]["values"]]
        assert values == [float(i) for i in range(1, len(values) + 1)] and len(values) >= 8
        # the host families are there with node_exporter's labels plus the target labels
        cpu = query(port, 'node_cpu_seconds_total{mode="idle"}')
        assert cpu and set(cpu[0]["metric"]) == {"__name__", "cpu", "dc", "instance", "job", "mode"}
        # Prometheus holds exactly what the agent was told it accepted
        everything = query(port, '{instance="db-7"}[5m]')
        assert sum(len(s["values"]) for s in everything) == sent
    finally:
        agent.stop()
        prom.stop()
