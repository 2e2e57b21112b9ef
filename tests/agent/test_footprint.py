"""The agent stays light: no server-side or heavy packages on its import path or mapped into the running
process, whatever collectors run. The RSS comparison with node_exporter is a measurement, in
bench/agent.py (docs/benchmarks.md), not a test: it depends on the machine's load and allocator.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, Proc, free_port, sotp_cmd

# server-side packages, and the heavy ones the agent path avoids for RSS (protobuf, cramjam, yaml, ssl, psutil)
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

# one collection with every default collector, as the agent makes it (textfile included)
COLLECT = """
import json, sys
from exporters.host.registry import collect
from exporters.host.sources import Sources
from exporters.host.options import Options
fams = collect(Sources(), None, Options(textfile_directory=sys.argv[1]))
sys.stderr.write(json.dumps({"modules": sorted(sys.modules), "families": [f.name for f in fams if f.samples]}))
"""


def _loaded(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if m.split(".")[0] in FORBIDDEN or m in FORBIDDEN)


def test_agent_help_imports_nothing_heavy() -> None:
    r = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert "--url" in r.stdout, r.stderr
    modules = set(json.loads(r.stderr))
    assert "agent.cli" in modules and "exporters.host.registry" in modules
    assert _loaded(modules) == []


def test_a_full_collection_imports_nothing_heavy(tmp_path: Path) -> None:
    (tmp_path / "job.prom").write_text("# TYPE backup_ok gauge\nbackup_ok 1\n")
    r = subprocess.run([sys.executable, "-c", COLLECT, str(tmp_path)], cwd=REPO, capture_output=True, text=True,
                       timeout=120)
    out = json.loads(r.stderr.splitlines()[-1])
    assert "node_cpu_seconds_total" in out["families"] and "backup_ok" in out["families"]
    assert _loaded(set(out["modules"])) == []


@pytest.mark.integration
def test_running_agent_maps_no_heavy_library(tmp_path: Path) -> None:
    # nothing listens on the agent's URL: it collects, encodes and buffers, the path with most work
    agent = Proc(sotp_cmd("agent", "--url", f"http://127.0.0.1:{free_port()}/api/v1/write", "--interval",
                          "200ms", "--buffer-dir", str(tmp_path / "buf")), tmp_path / "agent.log")
    try:
        deadline = time.monotonic() + 60
        while len(list((tmp_path / "buf").glob("*.rw"))) < 5 and time.monotonic() < deadline:
            time.sleep(0.1)
        maps = Path(f"/proc/{agent.popen.pid}/maps").read_text()
    finally:
        agent.stop()
    assert len(list((tmp_path / "buf").glob("*.rw"))) >= 5, agent.log.read_text()[-2000:]
    for lib in ("libssl", "numpy", "_upb", "psutil", "cramjam", "_yaml"):
        assert lib not in maps, f"{lib} is mapped into the agent"
