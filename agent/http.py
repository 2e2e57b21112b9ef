"""A minimal HTTP/1.1 POST client on a plain socket; ``https://`` falls back to ``http.client``.

Why not ``http.client``/``urllib`` for plain HTTP: both import ``ssl`` at module load, which maps OpenSSL
and costs ~5 MB of RSS — a quarter of the agent's budget. TLS users pay it only when they use TLS.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from typing import BinaryIO
from urllib.parse import urlsplit


@dataclass(slots=True)
class Response:
    status: int
    reason: str
    headers: dict[str, str] = field(default_factory=dict)  # names lowercased
    body: bytes = b""


class HTTPError(OSError):
    """The exchange failed before a complete response arrived (connection, timeout, bad framing)."""


def post(
    url: str, body: bytes, headers: dict[str, str], timeout: float, ca_file: str | None = None
) -> Response:
    """POST ``body`` to ``url`` and return the whole response. Raises :class:`HTTPError` (an OSError).
    ``ca_file`` (PEM) replaces the system trust store for ``https://``."""
    parts = urlsplit(url)
    if parts.scheme == "https":
        return _post_tls(url, body, headers, timeout, ca_file)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"invalid remote-write URL {url!r}: use http://host:port/path or https://...")
    host, port = parts.hostname, parts.port or 80
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    host_header = parts.netloc.rpartition("@")[2]
    head = [f"POST {target} HTTP/1.1", f"Host: {host_header}", f"Content-Length: {len(body)}",
            "Connection: close"]
    head += [f"{k}: {v}" for k, v in headers.items()]
    raw = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(raw)
            with sock.makefile("rb") as fp:
                return _read_response(fp)
    except HTTPError:
        raise
    except OSError as err:
        raise HTTPError(f"cannot POST to {url}: {err}") from err


def _read_response(fp: BinaryIO) -> Response:
    readline, read = fp.readline, fp.read
    status_line = readline(65537).decode("latin-1").rstrip("\r\n")
    version, _, rest = status_line.partition(" ")
    code, _, reason = rest.partition(" ")
    if not version.startswith("HTTP/") or not code.isdigit():
        raise HTTPError(f"invalid HTTP status line {status_line[:80]!r}")
    headers: dict[str, str] = {}
    while True:
        line = readline(65537).decode("latin-1").rstrip("\r\n")
        if not line:
            break
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    status = int(code)
    if status in (204, 304) or 100 <= status < 200:
        body = b""
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        chunks = []
        while True:
            size = int(readline(1024).split(b";")[0].strip() or b"0", 16)
            if size == 0:
                break
            chunks.append(read(size))
            readline(1024)
        body = b"".join(chunks)
    elif "content-length" in headers:
        body = read(int(headers["content-length"]))
    else:
        body = read()
    return Response(status, reason, headers, body)


def _post_tls(url: str, body: bytes, headers: dict[str, str], timeout: float, ca_file: str | None) -> Response:
    import http.client  # imports ssl: only paid by https users
    import ssl

    parts = urlsplit(url)
    try:
        context = ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as err:
        raise HTTPError(f"cannot load --ca-file {ca_file}: {err}") from err
    conn = http.client.HTTPSConnection(parts.hostname or "", parts.port or 443, timeout=timeout, context=context)
    try:
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        conn.request("POST", target, body=body, headers=headers)
        r = conn.getresponse()
        data = r.read()
        return Response(r.status, r.reason, {k.lower(): v for k, v in r.getheaders()}, data)
    except (OSError, http.client.HTTPException) as err:
        raise HTTPError(f"cannot POST to {url}: {err}") from err
    finally:
        conn.close()
