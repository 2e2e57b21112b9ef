"""A minimal HTTP/1.1 server for ``/metrics`` on ``socketserver``.

Why not ``http.server``: it imports ``http.client`` and with it ``ssl`` (OpenSSL, ~5 MB of RSS), which
would make this exporter heavier than node_exporter. Serving three GET paths needs only the request
line and the end of the headers. Each connection serves requests until the client closes it or is idle
for ``IDLE_TIMEOUT`` (Prometheus keeps scrape connections alive).

Each connection holds a thread, so at most ``max_connections`` (default :data:`MAX_CONNECTIONS`, 40 as
node_exporter's ``--web.max-requests``) are served at once; one more is answered 503 at once and closed,
so a flood of connections cannot exhaust threads and memory.
"""

from __future__ import annotations

import logging
import socket
import socketserver
import threading
import zlib

from exporters.host.options import Options
from exporters.host.registry import collect
from exporters.host.sources import Sources
from sotp.codec.exposition import CONTENT_TYPE, format_families

log = logging.getLogger("exporters.host")

IDLE_TIMEOUT = 60.0
MAX_HEADER_BYTES = 64 * 1024
#: Connections served at once (node_exporter's ``--web.max-requests`` default).
MAX_CONNECTIONS = 40
LANDING = (
    b"<html><head><title>SOTP host exporter</title></head><body><h1>SOTP host exporter</h1>"
    b'<p><a href="/metrics">Metrics</a></p></body></html>\n'
)
_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
            503: "Service Unavailable"}


def parse_listen(text: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` -> (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"invalid --listen address {text!r} (use host:port, e.g. 127.0.0.1:9100)")
    return host.strip("[]") or "0.0.0.0", int(port)


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    sources: Sources
    collectors: list[str] | None
    options: Options
    slots: threading.BoundedSemaphore
    max_connections: int

    def process_request(self, request: socket.socket, client_address: object) -> None:  # type: ignore[override]
        """A thread per connection while a slot is free; otherwise 503 from the accepting thread and close."""
        if not self.slots.acquire(blocking=False):
            busy = (f"Limit of concurrent requests reached ({self.max_connections}), try again later.\n").encode()
            try:
                request.settimeout(1.0)
                request.sendall(
                    f"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
                    f"Content-Length: {len(busy)}\r\nConnection: close\r\n\r\n".encode() + busy
                )
            except OSError:
                pass
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)  # type: ignore[arg-type]

    def process_request_thread(self, request: socket.socket, client_address: object) -> None:  # type: ignore[override]
        try:
            super().process_request_thread(request, client_address)  # type: ignore[arg-type]
        finally:
            self.slots.release()


class _Handler(socketserver.StreamRequestHandler):
    server: _Server
    timeout = IDLE_TIMEOUT

    def handle(self) -> None:
        try:
            while self._one_request():
                pass
        except (TimeoutError, ConnectionError):
            pass

    def _one_request(self) -> bool:
        line = self.rfile.readline(MAX_HEADER_BYTES).decode("latin-1")
        if not line:
            return False
        parts = line.split()
        keep_alive = len(parts) == 3 and parts[2] == "HTTP/1.1"
        gzip_ok = False
        size = len(line)
        while True:  # skip the headers, noting only Connection
            h = self.rfile.readline(MAX_HEADER_BYTES).decode("latin-1")
            size += len(h)
            if not h or size > MAX_HEADER_BYTES:
                return False
            if h in ("\r\n", "\n"):
                break
            name, _, value = h.partition(":")
            name = name.strip().lower()
            if name == "accept-encoding":
                gzip_ok = "gzip" in value.lower()
            elif name == "connection":
                keep_alive = value.strip().lower() == "keep-alive" or (keep_alive and "close" not in value.lower())
        if len(parts) != 3:
            self._send(400, "text/plain; charset=utf-8", b"bad request line\n", False)
            return False
        method, path = parts[0], parts[1].split("?", 1)[0]
        if method not in ("GET", "HEAD"):
            self._send(405, "text/plain; charset=utf-8", b"method not allowed\n", keep_alive)
        elif path == "/metrics":
            body = format_families(collect(self.server.sources, self.server.collectors, self.server.options)).encode()
            encoding = None
            if gzip_ok:  # Prometheus asks for gzip, as node_exporter serves it: ~6x fewer bytes
                z = zlib.compressobj(1, zlib.DEFLATED, 31)  # wbits 31 = gzip container
                body, encoding = z.compress(body) + z.flush(), "gzip"
            self._send(200, CONTENT_TYPE, body, keep_alive, head=method == "HEAD", encoding=encoding)
        elif path == "/":
            self._send(200, "text/html; charset=utf-8", LANDING, keep_alive, head=method == "HEAD")
        else:
            self._send(404, "text/plain; charset=utf-8", b"404 page not found\n", keep_alive)
        log.debug("%s %s %s", self.client_address[0], method, path)
        return keep_alive

    def _send(
        self, status: int, ctype: str, body: bytes, keep_alive: bool, head: bool = False, encoding: str | None = None
    ) -> None:
        header = (
            f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: {ctype}\r\n"
            + (f"Content-Encoding: {encoding}\r\n" if encoding else "")
            + f"Content-Length: {len(body)}\r\nConnection: {'keep-alive' if keep_alive else 'close'}\r\n\r\n"
        ).encode("latin-1")
        self.wfile.write(header if head else header + body)


def make_server(
    listen: str, sources: Sources, collectors: list[str] | None = None, options: Options | None = None,
    max_connections: int = MAX_CONNECTIONS,
) -> _Server:
    host, port = parse_listen(listen)

    class Server(_Server):
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

    server = Server((host, port), _Handler)
    server.sources = sources
    server.collectors = collectors
    server.options = options or Options()
    server.max_connections = max_connections
    server.slots = threading.BoundedSemaphore(max_connections)
    return server


def serve_until_stopped(server: _Server, stop: threading.Event) -> None:
    """Serve in a thread until ``stop`` is set (by a signal handler), then close the socket."""
    t = threading.Thread(target=server.serve_forever, name="http", daemon=True)
    t.start()
    stop.wait()
    server.shutdown()
    server.server_close()
    t.join(5)
