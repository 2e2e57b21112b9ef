"""The exporter's small HTTP server, driven by the stdlib HTTP client (a real peer on a real socket)."""

from __future__ import annotations

import http.client
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from exporters.host.server import make_server, parse_listen
from tests.conftest import free_port

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "host" / "old-kernel-no-meminfo"


@pytest.fixture
def port() -> Iterator[int]:
    from exporters.host.sources import Sources

    p = free_port()
    server = make_server(f"127.0.0.1:{p}", Sources(proc=FIXTURE / "proc", sys=FIXTURE / "sys"), ["loadavg"])
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield p
    server.shutdown()
    server.server_close()


def test_keep_alive_serves_several_requests_on_one_connection(port: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    for _ in range(3):
        conn.request("GET", "/metrics")
        r = conn.getresponse()
        body = r.read().decode()
        assert r.status == 200
        assert r.getheader("Content-Type") == "text/plain; version=0.0.4; charset=utf-8"
        assert "node_load1 1.5\n" in body and "node_load15 0.25\n" in body
    conn.close()


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("GET", "/", 200), ("GET", "/nope", 404), ("POST", "/metrics", 405), ("GET", "/metrics?x=1", 200)],
)
def test_statuses(port: int, method: str, path: str, status: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request(method, path, body=b"x" if method == "POST" else None)
    r = conn.getresponse()
    r.read()
    assert r.status == status
    conn.close()


def test_head_has_length_but_no_body(port: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("HEAD", "/metrics")
    r = conn.getresponse()
    assert r.status == 200 and int(r.getheader("Content-Length") or 0) > 0 and r.read() == b""
    conn.request("GET", "/metrics")  # the connection is still usable after a HEAD
    assert conn.getresponse().read().startswith(b"# HELP")
    conn.close()


@pytest.mark.parametrize(
    ("text", "want"),
    [("127.0.0.1:9100", ("127.0.0.1", 9100)), ("[::1]:9100", ("::1", 9100)), (":9100", ("0.0.0.0", 9100))],
)
def test_parse_listen(text: str, want: tuple[str, int]) -> None:
    assert parse_listen(text) == want


def test_parse_listen_rejects_missing_port() -> None:
    with pytest.raises(ValueError, match="--listen"):
        parse_listen("localhost")


def test_gzip_when_asked(port: int) -> None:
    import gzip

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", "/metrics", headers={"Accept-Encoding": "gzip"})
    r = conn.getresponse()
    assert r.getheader("Content-Encoding") == "gzip"
    assert b"node_load5 0.75\n" in gzip.decompress(r.read())
    conn.request("GET", "/metrics")  # plain again on the same connection
    r = conn.getresponse()
    assert r.getheader("Content-Encoding") is None and b"node_load5 0.75\n" in r.read()
    conn.close()


def test_issue17_concurrent_connections_are_capped(port: int) -> None:
    """Issue 17 (from reading): a thread per connection, unbounded. Like node_exporter (40 by default),
    connections beyond the cap get 503 at once; when one closes, a new one is served again."""
    import socket
    import time

    from exporters.host.server import MAX_CONNECTIONS

    idle = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(MAX_CONNECTIONS)]
    try:
        # Each idle connection holds its thread: prove it by a request on the last one.
        idle[-1].sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert idle[-1].recv(100).startswith(b"HTTP/1.1 200")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/metrics")
        r = conn.getresponse()
        assert r.status == 503 and b"Limit of concurrent requests reached (40)" in r.read()
        conn.close()
    finally:
        idle[0].close()
    deadline = time.monotonic() + 30
    while True:  # the closed connection's thread ends and frees its slot
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/metrics")
        r = conn.getresponse()
        r.read()
        conn.close()
        if r.status == 200:
            break
        assert time.monotonic() < deadline, "the slot of a closed connection was never released"
        time.sleep(0.05)
    for s in idle[1:]:
        s.close()
