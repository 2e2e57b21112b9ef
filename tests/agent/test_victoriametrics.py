"""The agent against a third remote-write receiver: Debian's VictoriaMetrics (/api/v1/write)."""

from __future__ import annotations

import json
import signal
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Proc, free_port, require_binary, sotp_cmd, wait_for_port

pytestmark = pytest.mark.integration


def export(port: int, match: str) -> list[dict[str, Any]]:
    """Raw samples through VictoriaMetrics' /api/v1/export (JSON lines, one series per line)."""
    url = f"http://127.0.0.1:{port}/api/v1/export?" + urllib.parse.urlencode({"match[]": match})
    with urllib.request.urlopen(url, timeout=10) as r:
        return [json.loads(line) for line in r.read().decode().splitlines() if line.strip()]


def test_push_to_victoriametrics(tmp_path: Path) -> None:
    binary = require_binary("victoria-metrics", "/usr/bin/victoria-metrics")
    port = free_port()
    vm = Proc([binary, f"-storageDataPath={tmp_path / 'vm'}", f"-httpListenAddr=127.0.0.1:{port}"],
              tmp_path / "vm.log", cwd=tmp_path)
    agent = None
    try:
        wait_for_port(port)
        agent = Proc(sotp_cmd("agent", "--url", f"http://127.0.0.1:{port}/api/v1/write", "--interval", "250ms",
                              "--buffer-dir", str(tmp_path / "buf"), "--instance", "vm-host"), tmp_path / "agent.log")
        # Wait until VictoriaMetrics holds five collections (1.25 s on a quiet machine); it makes samples
        # searchable after a short delay, so flush it on every look.
        deadline = time.monotonic() + 60
        rows: list[dict[str, Any]] = []
        while time.monotonic() < deadline and not (rows and len(rows[0]["values"]) >= 5):
            time.sleep(0.25)
            urllib.request.urlopen(f"http://127.0.0.1:{port}/internal/force_flush", timeout=10).read()
            rows = export(port, 'sotp_agent_collections_total{instance="vm-host"}')
        agent.stop(signal.SIGTERM)
        assert "0 rejected" in agent.log.read_text()
        assert len(rows) == 1 and rows[0]["metric"]["job"] == "node"
        values = rows[0]["values"]
        assert values == [float(i) for i in range(1, len(values) + 1)] and len(values) >= 5
        assert rows[0]["timestamps"] == sorted(set(rows[0]["timestamps"]))
        cpu = export(port, 'node_cpu_seconds_total{instance="vm-host",mode="idle"}')
        assert cpu and {"cpu", "mode", "instance", "job", "__name__"} <= set(cpu[0]["metric"])
    finally:
        if agent is not None:
            agent.stop()
        vm.stop()
