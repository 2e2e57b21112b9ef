"""Reading a write request's body: size limits before and after gzip, a deadline, and in-flight bytes.

The compressed size is checked against ``limits.max_body_bytes`` (from ``Content-Length`` before any byte
is read, then while streaming), the decompressed size against ``limits.max_decompressed_bytes`` while
inflating, so a small gzip bomb never grows past the limit in memory. The whole body must arrive within
``limits.body_timeout_seconds`` (408, connection closed), and the bytes it holds are reserved on the
request's admission ticket (:mod:`remote_write.admission`) before they are read.
"""

from __future__ import annotations

import asyncio
import zlib

from aiohttp import web

from remote_write.admission import admitted
from sotp.config import Limits
from sotp.errors import DecodeError, LimitExceeded, UnsupportedMediaType

_CHUNK = 1 << 16
_GZIP_MAGIC = b"\x1f\x8b"  # never the start of UTF-8 text




class BodyTimeout(LimitExceeded):
    """The body did not arrive within ``limits.body_timeout_seconds`` (408)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, status=408)


async def read_raw(
    request: web.Request, limits: Limits, max_bytes: int | None = None, setting: str = "limits.max_body_bytes"
) -> bytes:
    """The body as the server hands it over, refused with 413 beyond ``max_bytes`` (default
    ``limits.max_body_bytes``) and 408 after ``limits.body_timeout_seconds``. Call inside
    :func:`remote_write.admission.admitted`: the bytes are reserved on the request's ticket."""
    max_bytes = limits.max_body_bytes if max_bytes is None else max_bytes
    if request.content_length is not None and request.content_length > max_bytes:
        raise LimitExceeded(
            f"request body of {request.content_length} bytes exceeds the limit {max_bytes} ({setting})", status=413
        )
    with admitted(request) as ticket:
        ticket.grow_to(request.content_length or 0)
        body = bytearray()
        try:
            async with asyncio.timeout(limits.body_timeout_seconds):
                async for chunk in request.content.iter_chunked(_CHUNK):
                    body.extend(chunk)
                    if len(body) > max_bytes:
                        raise LimitExceeded(f"request body exceeds the limit {max_bytes} bytes ({setting})", status=413)
                    ticket.grow_to(len(body))
        except TimeoutError:
            raise BodyTimeout(
                f"request body not received within {limits.body_timeout_seconds:g}s ({len(body)} bytes arrived; "
                "limits.body_timeout_seconds)"
            ) from None
        return bytes(body)


def gunzip(data: bytes, max_bytes: int) -> bytes:
    """Inflate a gzip body (several members allowed), refused with 413 beyond ``max_bytes``."""
    out = bytearray()
    rest = data
    while rest:
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            out.extend(d.decompress(rest, max_bytes + 1 - len(out)))
        except zlib.error as err:
            raise DecodeError(f"cannot decompress gzip body: {err}") from None
        if len(out) > max_bytes or d.unconsumed_tail:
            raise LimitExceeded(
                f"decompressed body exceeds the limit {max_bytes} bytes (limits.max_decompressed_bytes)", status=413
            )
        if not d.eof:
            raise DecodeError("cannot decompress gzip body: truncated stream")
        rest = d.unused_data
    return bytes(out)


async def read_body(request: web.Request, limits: Limits) -> bytes:
    """The decoded body (identity or gzip ``Content-Encoding``) within ``limits``."""
    encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("", "identity", "gzip", "x-gzip"):
        raise UnsupportedMediaType(f"unsupported content encoding {encoding!r}: send identity or gzip")
    if encoding in ("", "identity"):
        raw = await read_raw(request, limits, min(limits.max_body_bytes, limits.max_decompressed_bytes))
        return raw
    if request.content_length is not None and request.content_length > limits.max_body_bytes:
        raise LimitExceeded(
            f"request body of {request.content_length} bytes exceeds the limit {limits.max_body_bytes} "
            "(limits.max_body_bytes)",
            status=413,
        )
    # aiohttp's server inflates gzip bodies itself (chunk by chunk, with flow control), so the stream
    # normally yields the decompressed bytes and the decompressed limit applies while reading. A server
    # built with auto_decompress=False hands over the gzip bytes instead: inflate them here.
    data = await read_raw(request, limits, limits.max_decompressed_bytes, "limits.max_decompressed_bytes")
    if data[:2] == _GZIP_MAGIC:
        with admitted(request) as ticket:
            ticket.grow_to(len(data) + limits.max_decompressed_bytes)  # the worst case: inflating is synchronous
            return gunzip(data, limits.max_decompressed_bytes)
    return data
