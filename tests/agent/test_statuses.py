"""How the agent answers each receiver status, against a scripted HTTP receiver.

Why a scripted peer: no real receiver answers 429, 503 + Retry-After or a 400 on demand for a valid
batch. The peer is a real HTTP server on a real socket, and it decodes every body with SOTP's protobuf
decoder, so the agent's wire format is checked on every request too. The end-to-end behaviour against
real receivers is in test_outage_sotp_serve.py and test_prometheus.py.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from agent.buffer import Buffer
from agent.loop import Agent, Settings
from agent.sender import Sender, parse_retry_after
from sotp.codec.exposition import MetricFamily
from sotp.codec.remote_write import decode_write_request
from tests.conftest import free_port


class Receiver:
    """Answers each POST with the next scripted (status, headers) and records what arrived."""

    def __init__(self, script: list[tuple[int, dict[str, str]]]) -> None:
        self.script = list(script)
        self.calls: list[tuple[float, int, list[float]]] = []  # (time, status answered, counter values)
        self.auth: list[str | None] = []
        outer = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                req = decode_write_request(body)
                values = [s.values[0] for s in req.series if s.labels.name == "test_counter"]
                status, headers = outer.script.pop(0) if outer.script else (204, {})
                outer.calls.append((time.monotonic(), status, values))
                outer.auth.append(self.headers.get("Authorization"))
                reason = b"" if status == 204 else b"out of order sample"
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(reason)))
                self.end_headers()
                self.wfile.write(reason)

            def log_message(self, *args: object) -> None:
                pass

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), H)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def make_agent(tmp_path: Path) -> Iterator[object]:
    receivers: list[Receiver] = []

    def _make(script: list[tuple[int, dict[str, str]]], **settings: float) -> tuple[Agent, Receiver]:
        rx = Receiver(script)
        receivers.append(rx)
        n = {"i": 0}

        def collect() -> list[MetricFamily]:
            n["i"] += 1
            fam = MetricFamily("test_counter", "counter", "collections")
            fam.add({"k": "v"}, float(n["i"]))
            return [fam]

        s = Settings(interval=0.05, target={"instance": "i1", "job": "node"}, **settings)
        sender = Sender(f"http://127.0.0.1:{rx.port}/api/v1/write", "s3cret", timeout=2)
        return Agent(s, collect, sender, Buffer(tmp_path / "buf", 1 << 20)), rx

    yield _make
    for rx in receivers:
        rx.close()


def test_400_is_dropped_not_retried(make_agent, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    agent, rx = make_agent([(400, {})])
    agent.collect_once()
    agent.drain(time.monotonic() + 2)
    agent.collect_once()
    agent.drain(time.monotonic() + 2)
    assert [c[1] for c in rx.calls] == [400, 204]  # one attempt for batch 1, then batch 2
    assert [c[2] for c in rx.calls] == [[1.0], [2.0]]
    assert agent.counters.samples_failed > 0 and agent.counters.requests_retried == 0
    assert "HTTP 400" in caplog.text and "out of order sample" in caplog.text
    assert rx.auth[0] == "Bearer s3cret"


@pytest.mark.parametrize("status", [500, 503, 429, 502])
def test_retryable_statuses_keep_the_batch(make_agent, status: int) -> None:  # type: ignore[no-untyped-def]
    agent, rx = make_agent([(status, {}), (status, {})], min_backoff=0.05, max_backoff=0.2)
    agent.collect_once()
    deadline = time.monotonic() + 60
    while len(agent.buffer) and time.monotonic() < deadline:
        agent.drain(deadline)
        time.sleep(0.01)
    assert [c[1] for c in rx.calls] == [status, status, 204]
    assert [c[2] for c in rx.calls] == [[1.0]] * 3  # the same batch each time
    gaps = [b[0] - a[0] for a, b in zip(rx.calls, rx.calls[1:], strict=False)]
    # backoff with jitter: the first wait is at least half of 0.05, the second at least half of 0.1 (a busy
    # machine can only make them longer, so only the lower bounds are behaviour; timing is in bench/)
    assert gaps[0] >= 0.025 and gaps[1] >= 0.05
    assert agent.counters.samples_failed == 0 and agent.counters.requests_retried == 2


def test_backoff_doubles_up_to_the_cap_with_jitter(make_agent) -> None:  # type: ignore[no-untyped-def]
    """The scheduled retry delays (not wall-clock gaps): in [0.5, 1] x min(cap, min_backoff * 2^(n-1))."""
    from agent.sender import Outcome, Result

    agent, _ = make_agent([], min_backoff=0.05, max_backoff=0.2)
    for n in range(1, 8):
        before = time.monotonic()
        agent._on_retry(Outcome(Result.RETRY, 503, "unavailable"))
        delay = agent._retry_at - before
        backoff = min(0.2, 0.05 * 2 ** (n - 1))
        assert 0.5 * backoff - 0.01 <= delay <= backoff + 0.01, (n, delay)


def test_retry_after_is_honoured(make_agent) -> None:  # type: ignore[no-untyped-def]
    agent, rx = make_agent([(503, {"Retry-After": "1"})], min_backoff=0.01, max_backoff=0.02)
    agent.collect_once()
    deadline = time.monotonic() + 60
    while len(agent.buffer) and time.monotonic() < deadline:
        agent.drain(deadline)
        time.sleep(0.01)
    assert [c[1] for c in rx.calls] == [503, 204]
    assert rx.calls[1][0] - rx.calls[0][0] >= 0.99


def test_parse_retry_after() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


def test_outage_spills_to_disk_and_replays_in_order(make_agent, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    agent, rx = make_agent([], min_backoff=0.01, max_backoff=0.02)
    good_url = agent.sender.url
    agent.sender.url = f"http://127.0.0.1:{free_port()}/api/v1/write"  # nothing listens: connection refused
    stop = threading.Event()
    t = threading.Thread(target=agent.run, args=(stop,))
    t.start()
    deadline = time.monotonic() + 60
    while agent.buffer.on_disk < 5 and time.monotonic() < deadline:  # collections while nobody listens
        time.sleep(0.01)
    assert agent.buffer.on_disk >= 5
    agent.sender.url = good_url
    while sum(len(c[2]) for c in rx.calls) < 8 and time.monotonic() < deadline:  # backlog, then new ones
        time.sleep(0.01)
    stop.set()
    t.join(30)
    values = [v for c in rx.calls for v in c[2]]
    assert len(values) >= 8
    assert values == [float(i) for i in range(1, len(values) + 1)]  # all, in order, once
    assert len(values) == agent.counters.collections
    assert not list((tmp_path / "buf").iterdir())
