"""``sotp serve --workers 2``: two processes on one socket behave as one server.

Writes spread over both workers (many short connections); every query, whichever worker answers it, sees
every acknowledged sample; ``/metrics`` answers totals over both; a worker killed with SIGKILL is replaced
and the server keeps answering; SIGTERM stops the supervisor and its workers.
"""

from __future__ import annotations

import json
import signal
import time
import urllib.parse
import urllib.request
from pathlib import Path

import psutil
import pytest

from sotp.codec.remote_write import encode_write_request
from sotp.model import Labels
from tests.conftest import free_port, sotp_cmd, wait_for_port

pytestmark = pytest.mark.integration
HEADERS = {"Content-Type": "application/x-protobuf", "Content-Encoding": "snappy"}


def post(base: str, body: bytes) -> int:
    req = urllib.request.Request(base + "/api/v1/write", data=body, headers=HEADERS, method="POST")
    with urllib.request.urlopen(req, timeout=30) as resp:  # a new connection each time: any worker
        return int(resp.status)


def get(base: str, path: str, **params: str) -> str:
    url = base + path + ("?" + urllib.parse.urlencode(params) if params else "")
    with urllib.request.urlopen(url, timeout=30) as resp:
        return resp.read().decode()


def metric(text: str, name: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + "{")
               or line.startswith(name + " "))


def workers_of(pid: int) -> list[psutil.Process]:
    """The live worker processes of the supervisor ``pid`` (a killed one is a zombie until reaped)."""
    out = []
    for c in psutil.Process(pid).children():
        try:
            if c.status() != psutil.STATUS_ZOMBIE and "serve" in " ".join(c.cmdline()):
                out.append(c)
        except psutil.NoSuchProcess:
            continue
    return out


def test_two_workers_serve_one_store(spawn, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = spawn(sotp_cmd("serve", "--listen", f"127.0.0.1:{port}", "--storage", f"sqlite:///{tmp_path}/w.db",
                            "--workers", "2"), name="serve-workers")
    wait_for_port(port, timeout=60)
    deadline = time.monotonic() + 60
    while len(workers_of(server.popen.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(workers_of(server.popen.pid)) == 2

    now = int(time.time() * 1000)
    for k in range(30):
        body = encode_write_request([(Labels({"__name__": "wk", "i": str(i)}), [(now - 30_000 + k * 1000, k)])
                                     for i in range(20)])
        assert post(base, body) == 204
        # Whichever worker answers, it has every round so far.
        got = json.loads(get(base, "/api/v1/query", query=f"count(count_over_time(wk[1m]) >= {k + 1})",
                             time=str(now / 1000)))
        assert [r["value"][1] for r in got["data"]["result"]] == ["20"], k

    # Totals over both workers (the samples were spread over them), at every scrape.
    for _ in range(4):
        text = get(base, "/metrics")
        assert metric(text, "sotp_ingest_samples_total") == 600

    victim = workers_of(server.popen.pid)[0]
    victim.send_signal(signal.SIGKILL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        alive = [p for p in workers_of(server.popen.pid) if p.pid != victim.pid]
        if len(alive) == 2:
            break
        time.sleep(0.2)
    assert len(alive) == 2, "the supervisor did not replace the killed worker"
    for _ in range(10):  # both the survivor and the replacement answer
        got = json.loads(get(base, "/api/v1/query", query="count(wk)", time=str(now / 1000)))
        assert got["data"]["result"][0]["value"][1] == "20"

    children = workers_of(server.popen.pid)
    server.stop(signal.SIGTERM)
    assert server.popen.returncode == 0
    assert all(not c.is_running() or c.status() == psutil.STATUS_ZOMBIE for c in children)
