"""Backends for the dashboard tests: a real Prometheus 2.42 and ``sotp serve``, both holding :mod:`dataset`.

``backend`` is parametrized over both (SOTP on SQLite and on TimescaleDB), so every test runs its
queries against the reference and against SOTP. Prometheus missing skips locally (fails under CI=true);
so does a ``sotp serve`` whose PromQL engine cannot yet answer the functions the dashboards use
(``rate``, ``topk``, ``histogram_quantile``...): the probe's error is the skip reason.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import Proc, free_port, missing, require_binary, sotp_cmd, storage_location, wait_for_port
from tests.dashboards import dataset

#: Expressions whose failure means "the engine is not there yet", not "the dashboards are wrong".
ENGINE_PROBES = [
    "sum by (instance) (rate(node_cpu_seconds_total[1m]))",
    "topk by (instance) (1, node_filesystem_avail_bytes)",
    "histogram_quantile(0.95, sum by (le) (rate(sotp_icmp_rtt_seconds_bucket[5m])))",
    "time() - max by (instance) (timestamp(node_load1))",
]


@dataclass
class Backend:
    """A running API holding the dataset: ``url`` is the base URL the dashboards get."""

    name: str
    url: str
    data: dataset.Dataset
    proc: Proc

    def get(self, path: str, **params: str) -> dict[str, object]:
        url = f"{self.url}{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=30) as resp:
                body: dict[str, object] = json.load(resp)
        except urllib.error.HTTPError as err:
            body = json.loads(err.read() or b"{}")
        return body


def _wait_ready(url: str, proc: Proc, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            raise RuntimeError(f"{proc.argv[0]} exited: {proc.output()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} not ready after {timeout}s: {proc.output()[-2000:]}")


def _start_prometheus(tmp: Path) -> tuple[Proc, str]:
    binary = require_binary("prometheus", "/usr/bin/prometheus")
    cfg = tmp / "prometheus.yml"
    cfg.write_text("global:\n  scrape_interval: 15s\n")
    port = free_port()
    proc = Proc(
        [
            binary,
            f"--config.file={cfg}",
            f"--storage.tsdb.path={tmp / 'prom-data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--web.enable-remote-write-receiver",
            "--log.level=warn",
        ],
        tmp / "prometheus.log",
    )
    url = f"http://127.0.0.1:{port}"
    _wait_ready(f"{url}/-/ready", proc)
    return proc, url


def _start_sotp(tmp: Path, storage: str) -> tuple[Proc, str]:
    port = free_port()
    proc = Proc(sotp_cmd("serve", "--listen", f"127.0.0.1:{port}", "--storage", storage), tmp / "sotp-serve.log")
    wait_for_port(port, timeout=30)
    url = f"http://127.0.0.1:{port}"
    _wait_ready(f"{url}/-/ready", proc)
    return proc, url


def _engine_gap(b: Backend) -> str | None:
    for expr in ENGINE_PROBES:
        body = b.get("/api/v1/query", query=expr, time=f"{b.data.now:.3f}")
        if body.get("status") != "success":
            return f"{expr!r} -> {body.get('errorType')}: {body.get('error')}"
    return None


def _start(name: str, tmp: Path, storage: str) -> Backend:
    proc, url = _start_prometheus(tmp) if name == "prometheus" else _start_sotp(tmp, storage)
    data = dataset.build(time.time())
    try:
        dataset.push(f"{url}/api/v1/write", data)
    except Exception:
        proc.stop()
        raise
    return Backend(name, url, data, proc)


@pytest.fixture(scope="module", params=["prometheus", "sotp", "sotp-timescaledb"])
def backend(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    """A backend holding the dataset, once per test module and backend."""
    tmp = tmp_path_factory.mktemp(f"dash-{request.param}")
    store = "timescaledb" if request.param == "sotp-timescaledb" else "sqlite"
    with storage_location(store, tmp) as storage:
        b = _start(request.param, tmp, storage)
        try:
            if b.name != "prometheus":
                gap = _engine_gap(b)
                if gap:
                    missing(f"sotp serve cannot run the dashboards' PromQL yet: {gap}")
            yield b
        finally:
            b.proc.stop()
