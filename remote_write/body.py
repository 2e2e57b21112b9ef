"""Reading a request body for the text and JSON receivers: size limits before and after gzip.

The compressed size is checked against ``limits.max_body_bytes`` (from ``Content-Length`` before any byte
is read, then while streaming), the decompressed size against ``limits.max_decompressed_bytes`` while
inflating, so a small gzip bomb never grows past the limit in memory.
"""

from __future__ import annotations

import zlib

from aiohttp import web

from sotp.config import Limits
from sotp.errors import DecodeError, LimitExceeded, UnsupportedMediaType

_CHUNK = 1 << 16
_GZIP_MAGIC = b"\x1f\x8b"  # never the start of UTF-8 text




async def read_raw(request: web.Request, max_bytes: int, setting: str = "limits.max_body_bytes") -> bytes:
    """The body as the server hands it over, refused with 413 beyond ``max_bytes``."""
    if request.content_length is not None and request.content_length > max_bytes:
        raise LimitExceeded(
            f"request body of {request.content_length} bytes exceeds the limit {max_bytes} ({setting})", status=413
        )
    body = bytearray()
    async for chunk in request.content.iter_chunked(_CHUNK):
        body.extend(chunk)
        if len(body) > max_bytes:
            raise LimitExceeded(f"request body exceeds the limit {max_bytes} bytes ({setting})", status=413)
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
        raw = await read_raw(request, min(limits.max_body_bytes, limits.max_decompressed_bytes))
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
    data = await read_raw(request, limits.max_decompressed_bytes, "limits.max_decompressed_bytes")
    if data[:2] == _GZIP_MAGIC:
        return gunzip(data, limits.max_decompressed_bytes)
    return data
