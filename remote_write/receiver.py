"""``POST /api/v1/write``: Prometheus remote write 1.0 (snappy block + protobuf ``WriteRequest``).

2.0 bodies are answered 415 so a 2.0 sender falls back to 1.0, as the spec requires.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

from aiohttp import web

from remote_write.admission import admitted
from remote_write.body import read_raw
from remote_write.pipeline import (
    WRITE_METRICS,
    SeriesBatch,
    error_response,
    off_loop,
    setup_pipeline,
    write_batch,
    write_columns,
)
from sotp.codec.remote_write import PROTO_V1, PROTO_V2, Metadata, announced_length, decode_write_request
from sotp.errors import UnsupportedMediaType
from sotp.metadata import metadata_store
from sotp.web import CTX, ServerContext, authorize

PROTOCOL = "remote_write"


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


def remember_metadata(ctx: ServerContext, principal: Any, metadata: Sequence[Metadata]) -> None:
    """Keep the request's metadata under the writer's tenant (bounded: :mod:`sotp.metadata`)."""
    store = metadata_store(ctx.extras, ctx.config.limits)
    store.put_many(getattr(principal, "tenant", None), ((m.metric, m.type, m.help, m.unit) for m in metadata))


async def handle_write(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    limits = ctx.config.limits
    samples = 0
    try:
        principal: Any = await authorize(request, "write")
        check_content_headers(request)
        with admitted(request) as ticket:  # the slot before the body: slow senders cannot queue up reads
            body = await read_raw(request, limits)
            decompressed = min(announced_length(body), limits.max_decompressed_bytes)
            ticket.grow_to(len(body) + decompressed)
            decoded = await off_loop(
                decompressed,
                partial(
                    decode_write_request,
                    body,
                    max_decompressed=limits.max_decompressed_bytes,
                    max_series=limits.max_series_per_request,
                    max_labels_per_series=limits.max_labels_per_series,
                    max_label_name_length=limits.max_label_name_length,
                    max_label_value_length=limits.max_label_value_length,
                ),
            )
            samples = decoded.sample_count
            if decoded.metadata:
                remember_metadata(ctx, principal, decoded.metadata)
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
