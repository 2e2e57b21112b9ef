"""The agent stays light: no server-side packages on its import path, RSS within node_exporter's."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import REPO, Proc, free_port, require_binary, sotp_cmd, wait_for_port

# server-side packages, and the heavy ones the agent path avoids for RSS (protobuf, cramjam, yaml, ssl)
FORBIDDEN = (
    "aiohttp", "psycopg", "streamlit", "prometheus_client", "numpy", "google", "ssl", "psutil", "cramjam", "yaml",
)

PROBE = """
import json, sys
from sotp.cli import main
try:
    main(["agent", "--help"])
except SystemExit:
    pass
sys.stderr.write(json.dumps(sorted(sys.modules)))
"""


def test_agent_help_imports_nothing_heavy() -> None:
    r = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert "--url" in r.stdout, r.stderr
    modules = set(json.loads(r.stderr))
    assert "agent.cli" in modules and "exporters.host.registry" in modules
    loaded = sorted(m for m in modules if m.split(".")[0] in FORBIDDEN or m in FORBIDDEN)
    assert loaded == []


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.mark.integration
def test_running_agent_rss_within_node_exporter(tmp_path: Path) -> None:
    binary = require_binary("prometheus-node-exporter", "/usr/bin/prometheus-node-exporter")
    ne_port = free_port()
    ne = Proc([binary, f"--web.listen-address=127.0.0.1:{ne_port}"], tmp_path / "ne.log")
    # nothing listens on the agent's URL: it collects, encodes and buffers, the path with most work
    agent = Proc(sotp_cmd("agent", "--url", f"http://127.0.0.1:{free_port()}/api/v1/write", "--interval",
                          "200ms", "--buffer-dir", str(tmp_path / "buf")), tmp_path / "agent.log")
    try:
        wait_for_port(ne_port)
        for _ in range(3):
            urllib.request.urlopen(f"http://127.0.0.1:{ne_port}/metrics", timeout=10).read()
        time.sleep(2.5)  # ~12 collections
        maps = Path(f"/proc/{agent.popen.pid}/maps").read_text()
        agent_kib, ne_kib = rss_kib(agent.popen.pid), rss_kib(ne.popen.pid)
    finally:
        agent.stop()
        ne.stop()
    for lib in ("libssl", "numpy", "_upb", "psutil", "cramjam", "_yaml"):
        assert lib not in maps, f"{lib} is mapped into the agent"
    assert len(list((tmp_path / "buf").glob("*.rw"))) >= 5
    print(f"agent {agent_kib} KiB, node_exporter {ne_kib} KiB")
    assert agent_kib <= ne_kib, f"agent RSS {agent_kib} KiB > node_exporter {ne_kib} KiB"
