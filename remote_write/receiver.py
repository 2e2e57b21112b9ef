"""``POST /api/v1/write``: Prometheus remote write 1.0 (snappy block + protobuf ``WriteRequest``).

2.0 bodies are answered 415 so a 2.0 sender falls back to 1.0, as the spec requires.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from remote_write.body import read_raw
from remote_write.pipeline import (
    WRITE_METRICS,
    SeriesBatch,
    error_response,
    setup_pipeline,
    write_batch,
    write_columns,
)
from sotp.codec.remote_write import PROTO_V1, PROTO_V2, decode_write_request
from sotp.errors import UnsupportedMediaType
from sotp.web import CTX, ServerContext, authorize

PROTOCOL = "remote_write"
METADATA_KEY = "metadata"


def check_content_headers(request: web.Request) -> None:
    """Accept ``application/x-protobuf`` (v1, with or without ``proto=``) and snappy encoding only."""
    ctype = request.headers.get("Content-Type", "application/x-protobuf")
    media, _, params = ctype.partition(";")
    if media.strip().lower() != "application/x-protobuf":
        raise UnsupportedMediaType(f"unsupported content type {ctype!r}: remote write needs application/x-protobuf")
    for param in params.split(";"):
        key, _, value = param.strip().partition("=")
        if key.lower() == "proto" and value.strip() != PROTO_V1:
            detail = " (remote write 2.0 is not supported yet: send 1.0)" if value.strip() == PROTO_V2 else ""
            raise UnsupportedMediaType(f"unsupported remote-write message {value.strip()!r}{detail}")
    encoding = request.headers.get("Content-Encoding", "snappy").strip().lower()
    if encoding != "snappy":
        raise UnsupportedMediaType(f"unsupported content encoding {encoding!r}: remote write needs snappy")


async def handle_write(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    limits = ctx.config.limits
    samples = 0
    try:
        principal: Any = await authorize(request, "write")
        check_content_headers(request)
        body = await read_raw(request, limits.max_body_bytes)
        decoded = decode_write_request(
            body,
            max_decompressed=limits.max_decompressed_bytes,
            max_series=limits.max_series_per_request,
            max_labels_per_series=limits.max_labels_per_series,
            max_label_name_length=limits.max_label_name_length,
            max_label_value_length=limits.max_label_value_length,
        )
        samples = decoded.sample_count
        if decoded.metadata:
            store: dict[str, list[dict[str, str]]] = ctx.extras.setdefault(METADATA_KEY, {})
            for m in decoded.metadata:
                store[m.metric] = [{"type": m.type, "help": m.help, "unit": m.unit}]
        if decoded.columns is not None:
            if len(decoded.columns.timestamps):
                await write_columns(request, PROTOCOL, decoded.columns, principal)
        else:
            batches = [SeriesBatch(s.labels, s.timestamps, s.values) for s in decoded.series]
            if batches:
                await write_batch(request, PROTOCOL, batches, principal)
    except UnsupportedMediaType as err:
        return _count(request, web.Response(status=415, text=f"{err}\n", content_type="text/plain"))
    except Exception as err:
        return error_response(request, PROTOCOL, err, samples)
    return _count(request, web.Response(status=204))


def _count(request: web.Request, response: web.Response) -> web.Response:

    request.app[WRITE_METRICS].requests.labels(PROTOCOL, str(response.status)).inc()
    return response


def setup(app: web.Application, ctx: ServerContext) -> None:
    """Register the remote-write route."""
    setup_pipeline(app, ctx)
    app.router.add_post("/api/v1/write", handle_write)
