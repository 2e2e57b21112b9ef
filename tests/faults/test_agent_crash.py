"""The agent SIGKILLed while the receiver is down and its disk buffer holds the outage, one buffered file torn:
after both restart, every sample of every intact buffered batch is stored once and in order (an out-of-order
replay would be a 400 the agent logs as a rejection), and the torn file is skipped with its reason logged.

The agent and receiver helpers are tests/agent/test_outage_sotp_serve.py's (the calm outage test)."""

from __future__ import annotations

import signal
from pathlib import Path

import numpy as np
import pytest

from sotp.codec.remote_write import decode_write_request
from sotp.model import Labels, Matcher, MatchOp
from tests.agent.test_outage_sotp_serve import agent, read_back, serve, wait_until
from tests.conftest import free_port
from tests.faults.loadgen import ROWS, Row, api_get, format_table

pytestmark = pytest.mark.integration
Sample = tuple[Labels, int, str]  # value as repr, so NaN compares equal to itself


def buffered_samples(path: Path) -> set[Sample]:
    """(series, t, value) of one buffered batch."""
    req = decode_write_request(path.read_bytes())
    return {(s.labels, t, repr(v)) for s in req.series for t, v in zip(s.timestamps, s.values, strict=True)}


def stored_collections(port: int) -> int:
    """How many of the agent's collections the receiver serves now."""
    query = {"query": "count_over_time(sotp_agent_collections_total[10m])"}
    data = api_get(f"http://127.0.0.1:{port}", "/api/v1/query", query)
    assert isinstance(data, dict)
    return int(float(data["result"][0]["value"][1])) if data["result"] else 0


def test_agent_sigkilled_during_outage_replays_its_buffer_and_skips_a_torn_file(tmp_path: Path) -> None:
    port = free_port()
    buf = tmp_path / "buf"
    rx = serve(tmp_path, port, "serve-1")
    ag = agent(tmp_path, port, name="agent-1")
    try:
        wait_until(lambda: stored_collections(port) >= 2, 30, "the first collections to arrive")
        rx.stop(signal.SIGKILL)
        wait_until(lambda: len(list(buf.glob("*.rw"))) >= 8, 30, "batches buffered on disk")
        ag.stop(signal.SIGKILL)  # no shutdown hook: what is on disk is all the agent keeps
    finally:
        ag.stop()
        rx.stop()
    files = sorted(buf.glob("*.rw"))
    victim = files[len(files) // 2]
    torn = buffered_samples(victim)
    expected = set().union(*(buffered_samples(f) for f in files if f != victim))
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])  # as a failing disk leaves it

    rx = serve(tmp_path, port, "serve-2")
    ag = agent(tmp_path, port, name="agent-2")
    try:
        wait_until(lambda: not list(buf.glob("*.rw")), 60, "the buffer to drain")
        ag.stop(signal.SIGTERM)
        assert ag.popen.returncode == 0, ag.output()[-2000:]
    finally:
        ag.stop()
        rx.stop()
    log = ag.log.read_text()
    stored = read_back(tmp_path / "db", Matcher("instance", MatchOp.EQ, "web-1"))
    got = [(lb, t, repr(v)) for lb, (ts, vs) in stored.items() for t, v in zip(ts, vs, strict=True)]
    row = Row("agent SIGKILL during outage, torn buffer file", len(files) - 1, len(expected),
              len(expected & set(got)), len(expected - set(got)), len(got) - len(set(got)), 0)
    ROWS.append(row)
    print("\n" + format_table([row]))
    assert f"skipping buffered batch {victim}" in log and "do not match the checksum" in log, log[-2000:]
    assert "rejected a batch" not in log, log[-2000:]
    assert row.lost == 0 and row.duplicated == 0, row
    assert not torn & set(got), "the torn batch was sent"
    collections = stored[Labels({"__name__": "sotp_agent_collections_total", "env": "test", "instance": "web-1",
                                 "job": "node"})]
    assert np.all(np.diff(collections[0]) > 0)
