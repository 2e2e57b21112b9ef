"""End to end: ``sotp agent`` pushing into ``sotp serve`` (SQLite) through a receiver outage.

The stored data is read back through the kernel's Querier on the same SQLite file once everything has
stopped, so the check does not depend on the query API.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from sotp.model import Labels, Matcher, MatchOp
from sotp.storage import open_storage
from tests.conftest import REPO, Proc, free_port, sotp_cmd, wait_for_port

pytestmark = pytest.mark.integration

INTERVAL = 0.25


def read_back(db: Path, *matchers: Matcher) -> dict[Labels, tuple[list[int], list[float]]]:
    async def go() -> dict[Labels, tuple[list[int], list[float]]]:
        st = open_storage(f"sqlite:///{db}")
        await st.open()
        try:
            q = st.querier(0, int(time.time() * 1000) + 60_000)
            try:
                series = await q.select(list(matchers))
            finally:
                await q.close()
            return {s.labels: (s.timestamps.tolist(), s.values.tolist()) for s in series}
        finally:
            await st.close()

    return asyncio.run(go())


def serve(tmp: Path, port: int, name: str) -> Proc:
    p = Proc(sotp_cmd("serve", "--listen", f"127.0.0.1:{port}", "--storage", f"sqlite:///{tmp}/db"),
             tmp / f"{name}.log")
    wait_for_port(port)
    return p


def agent(tmp: Path, port: int, *extra: str, name: str = "agent") -> Proc:
    return Proc(
        sotp_cmd("--log-level", "debug", "agent", "--url", f"http://127.0.0.1:{port}/api/v1/write",
                 "--interval", f"{int(INTERVAL * 1000)}ms", "--buffer-dir", str(tmp / "buf"),
                 "--instance", "web-1", "--label", "env=test", "--max-backoff", "500ms", *extra),
        tmp / f"{name}.log",
    )


def wait_until(cond: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_outage_every_interval_arrives_in_order_once(tmp_path: Path) -> None:
    port = free_port()
    rx = serve(tmp_path, port, "serve-1")
    ag = agent(tmp_path, port)
    try:
        time.sleep(6 * INTERVAL)
        rx.stop()  # the receiver goes away for ~12 intervals
        wait_until(lambda: len(list((tmp_path / "buf").glob("*.rw"))) >= 8, 15, "batches buffered on disk")
        rx = serve(tmp_path, port, "serve-2")
        wait_until(lambda: "answers again" in ag.output(), 20, "the agent to reconnect")
        wait_until(lambda: not list((tmp_path / "buf").glob("*.rw")), 20, "the buffer to drain")
        time.sleep(3 * INTERVAL)
        # metric metadata (TYPE/HELP) went out in a request of its own, as Prometheus sends it
        url = f"http://127.0.0.1:{port}/api/v1/metadata?metric=node_cpu_seconds_total"
        with urllib.request.urlopen(url, timeout=10) as r:
            meta = json.load(r)["data"]
        assert meta["node_cpu_seconds_total"][0]["type"] == "counter", meta
        ag.stop(signal.SIGTERM)
        assert ag.popen.returncode == 0, ag.output()
    finally:
        ag.stop()
        rx.stop()
    log = ag.log.read_text()
    assert "cannot send to" in log and "buffering in" in log

    got = read_back(tmp_path / "db", Matcher("__name__", MatchOp.EQ, "sotp_agent_collections_total"))
    assert list(got) == [Labels({"__name__": "sotp_agent_collections_total", "env": "test",
                                 "instance": "web-1", "job": "node"})]
    ts, values = next(iter(got.values()))
    # every collection arrived exactly once and in order: 1, 2, ..., N at increasing times
    assert values == [float(i) for i in range(1, len(values) + 1)], values
    assert len(values) >= 14  # 6 before, >= 8 during the outage, more after
    assert np.all(np.diff(ts) > 0)
    # the samples of the outage are there: no gap much wider than an interval
    assert max(np.diff(ts)) < 4 * INTERVAL * 1000, np.diff(ts)
    # host series share exactly those collection timestamps
    load = read_back(tmp_path / "db", Matcher("__name__", MatchOp.EQ, "node_load1"))
    assert [v[0] for v in load.values()] == [ts]
    # every sample the receiver acknowledged is stored once, and nothing else
    m = re.search(r"agent stopped: (\d+) samples sent, 0 rejected, 0 dropped, 0 left", log)
    assert m, log[-2000:]
    stored = read_back(tmp_path / "db", Matcher("instance", MatchOp.EQ, "web-1"))
    assert sum(len(t) for t, _ in stored.values()) == int(m.group(1))


def test_buffer_limit_holds_oldest_dropped(tmp_path: Path) -> None:
    port = free_port()  # nothing listens yet
    limit = 12_000  # a few batches of ~3-4 KB
    ag = agent(tmp_path, port, "--buffer-max-bytes", str(limit))
    try:
        sizes = []
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline:
            sizes.append(sum(p.stat().st_size for p in (tmp_path / "buf").glob("*.rw")))
            time.sleep(0.05)
        assert max(sizes) <= limit
        wait_until(lambda: "full" in ag.output(), 10, "the buffer-full log line")
        rx = serve(tmp_path, port, "serve")
        try:
            wait_until(lambda: "answers again" in ag.output(), 20, "the agent to reconnect")
            wait_until(lambda: not list((tmp_path / "buf").glob("*.rw")), 20, "the buffer to drain")
            time.sleep(2 * INTERVAL)
            ag.stop(signal.SIGTERM)
        finally:
            rx.stop()
    finally:
        ag.stop()
    got = read_back(tmp_path / "db", Matcher("__name__", MatchOp.EQ, "sotp_agent_collections_total"))
    _, values = next(iter(got.values()))
    # the oldest collections were dropped; what survived is a contiguous, ordered tail
    assert values[0] > 1
    assert values == [float(i) for i in range(int(values[0]), int(values[0]) + len(values))]
    dropped = read_back(tmp_path / "db", Matcher("__name__", MatchOp.EQ, "sotp_agent_samples_dropped_total"))
    assert next(iter(dropped.values()))[1][-1] > 0


def test_token_auth_against_sotp_serve(tmp_path: Path) -> None:
    """With auth on, the agent's bearer token is accepted; without it the 401 is dropped, not retried."""
    tokens = tmp_path / "tokens.json"
    r = subprocess.run(sotp_cmd("token", "--tokens-file", str(tokens), "create", "--name", "web-1",
                                "--scope", "write"), capture_output=True, text=True, timeout=60, cwd=REPO)
    assert r.returncode == 0, r.stderr
    (tmp_path / "token").write_text(r.stdout.strip() + "\n")
    (tmp_path / "sotp.yml").write_text(f"auth:\n  enabled: true\n  tokens_file: {tokens}\n")
    port = free_port()
    rx = Proc(sotp_cmd("serve", "--config", str(tmp_path / "sotp.yml"), "--listen", f"127.0.0.1:{port}",
                       "--storage", f"sqlite:///{tmp_path}/db"), tmp_path / "serve.log")
    try:
        wait_for_port(port)
        good = agent(tmp_path, port, "--token-file", str(tmp_path / "token"))
        time.sleep(6 * INTERVAL)
        good.stop(signal.SIGTERM)
        log = good.log.read_text()
        assert re.search(r"agent stopped: [1-9]\d* samples sent, 0 rejected", log), log[-1500:]

        bad = Proc(sotp_cmd("agent", "--url", f"http://127.0.0.1:{port}/api/v1/write", "--interval", "250ms",
                            "--buffer-dir", str(tmp_path / "buf-bad"), "--instance", "intruder"),
                   tmp_path / "bad.log")
        time.sleep(4 * INTERVAL)
        bad.stop(signal.SIGTERM)
        log = bad.log.read_text()
        assert "HTTP 401" in log and "not retried" in log, log[-1500:]
        assert re.search(r"agent stopped: 0 samples sent, [1-9]\d* rejected, 0 dropped, 0 left", log), log[-1500:]
        assert "retrying" not in log
    finally:
        rx.stop()
    stored = read_back(tmp_path / "db", Matcher("__name__", MatchOp.EQ, "sotp_agent_collections_total"))
    assert {lb["instance"] for lb in stored} == {"web-1"}

