"""A stdlib HTTP server for ``/metrics`` (no aiohttp: the exporter stays as light as the agent)."""

from __future__ import annotations

import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from exporters.host.registry import collect
from exporters.host.sources import Sources
from sotp.codec.exposition import CONTENT_TYPE, format_families

log = logging.getLogger("exporters.host")

LANDING = (
    b"<html><head><title>SOTP host exporter</title></head><body><h1>SOTP host exporter</h1>"
    b'<p><a href="/metrics">Metrics</a></p></body></html>\n'
)


def parse_listen(text: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` -> (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"invalid --listen address {text!r} (use host:port, e.g. 127.0.0.1:9100)")
    return host.strip("[]") or "0.0.0.0", int(port)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    sources: Sources
    collectors: list[str] | None


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "sotp-host-exporter"

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            body = format_families(collect(self.server.sources, self.server.collectors)).encode()
            self._send(200, CONTENT_TYPE, body)
        elif path == "/":
            self._send(200, "text/html; charset=utf-8", LANDING)
        else:
            self._send(404, "text/plain; charset=utf-8", b"404 page not found\n")

    def _send(self, status: int, ctype: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        log.debug("%s " + format, self.address_string(), *args)


def make_server(listen: str, sources: Sources, collectors: list[str] | None = None) -> _Server:
    host, port = parse_listen(listen)
    if ":" in host:
        _Server.address_family = socket.AF_INET6
    server = _Server((host, port), _Handler)
    server.sources = sources
    server.collectors = collectors
    return server


def serve_until_stopped(server: _Server, stop: threading.Event) -> None:
    """Serve in a thread until ``stop`` is set (by a signal handler), then close the socket."""
    t = threading.Thread(target=server.serve_forever, name="http", daemon=True)
    t.start()
    stop.wait()
    server.shutdown()
    server.server_close()
    t.join(5)
