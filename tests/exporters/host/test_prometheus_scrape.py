"""Debian's Prometheus scrapes ``sotp exporter host`` (keep-alive, gzip, text format) without errors."""

from __future__ import annotations

import json
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
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            result: list[dict[str, Any]] = json.load(r)["data"]["result"]
            return result
    except OSError:
        return []  # not ready yet


def test_prometheus_scrapes_the_exporter(tmp_path: Path) -> None:
    binary = require_binary("prometheus", "/usr/bin/prometheus")
    exp_port, prom_port = free_port(), free_port()
    (tmp_path / "prometheus.yml").write_text(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
        f"scrape_configs:\n  - job_name: host\n    static_configs:\n      - targets: ['127.0.0.1:{exp_port}']\n"
    )
    exporter = Proc(sotp_cmd("exporter", "host", "--listen", f"127.0.0.1:{exp_port}"), tmp_path / "exporter.log")
    prom = Proc([binary, f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                 f"--web.listen-address=127.0.0.1:{prom_port}"], tmp_path / "prometheus.log", cwd=tmp_path)
    try:
        wait_for_port(exp_port)
        wait_for_port(prom_port)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(query(prom_port, 'up{job="host"} == 1')) == 0:
            time.sleep(0.2)
        # A few more scrapes over the kept-alive connection, until counters give a rate.
        moving = 'rate(node_context_switches_total{job="host"}[10s]) > 0'
        while time.monotonic() < deadline + 30 and not query(prom_port, moving):
            time.sleep(0.2)
        assert query(prom_port, 'up{job="host"}')[0]["value"][1] == "1"
        assert float(query(prom_port, 'scrape_samples_scraped{job="host"}')[0]["value"][1]) > 200
        assert query(prom_port, 'node_memory_MemTotal_bytes{job="host"}')
        # counters that moved between scrapes give a rate, so types and timestamps are consistent
        assert query(prom_port, 'rate(node_context_switches_total{job="host"}[10s]) > 0')
    finally:
        prom.stop()
        exporter.stop()
