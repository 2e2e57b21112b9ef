"""``https://`` receivers: the agent verifies the certificate (system store or ``--ca-file``)."""

from __future__ import annotations

import signal
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from sotp.codec.remote_write import decode_write_request
from tests.conftest import Proc, free_port, require_binary, sotp_cmd


@pytest.fixture
def tls_receiver(tmp_path: Path) -> Iterator[tuple[int, Path, list[int]]]:
    """A real TLS remote-write endpoint with a fresh self-signed certificate for 127.0.0.1."""
    openssl = require_binary("openssl")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=sotp-test",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    series_counts: list[int] = []

    class H(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            req = decode_write_request(self.rfile.read(int(self.headers["Content-Length"])))
            series_counts.append(len(req.series))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    port = free_port()
    server = ThreadingHTTPServer(("127.0.0.1", port), H)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield port, cert, series_counts
    server.shutdown()
    server.server_close()


def run_agent(tmp_path: Path, port: int, done: Callable[[str], bool], *extra: str) -> str:
    """Run the agent until ``done(log so far)`` holds (deadline 60 s: a loaded machine starts it slowly)."""
    agent = Proc(sotp_cmd("agent", "--url", f"https://127.0.0.1:{port}/api/v1/write", "--interval", "200ms",
                          "--buffer-dir", str(tmp_path / "buf"), *extra), tmp_path / "agent.log")
    deadline = time.monotonic() + 60
    while not done(agent.output()) and time.monotonic() < deadline and agent.popen.poll() is None:
        time.sleep(0.1)
    agent.stop(signal.SIGTERM)
    return agent.log.read_text()


def test_https_with_ca_file(tmp_path: Path, tls_receiver: tuple[int, Path, list[int]]) -> None:
    port, cert, counts = tls_receiver
    log = run_agent(tmp_path, port, lambda _: sum(1 for n in counts if n > 100) >= 3, "--ca-file", str(cert))
    assert "0 rejected" in log and "cannot send" not in log, log
    assert sum(1 for n in counts if n > 100) >= 3  # several collections of host series arrived


def test_https_untrusted_certificate_is_retried_not_dropped(
    tmp_path: Path, tls_receiver: tuple[int, Path, list[int]]
) -> None:
    port, _, counts = tls_receiver
    # System trust store: the self-signed certificate fails verification; wait until the agent has buffered.
    log = run_agent(tmp_path, port, lambda out: "buffering in" in out and any((tmp_path / "buf").glob("*.rw")))
    assert "CERTIFICATE_VERIFY_FAILED" in log and "buffering in" in log, log
    assert counts == []
    assert list((tmp_path / "buf").glob("*.rw"))  # kept for when the certificate is fixed
