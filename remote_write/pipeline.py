"""The write path every receiver shares: limits, tenant label, one atomic commit, self-metrics, errors.

Status table (REFERENCE.md §1.2): 204/200 only after commit; 400 for input that can never succeed;
401/403 auth; 408 body not received within ``limits.body_timeout_seconds``; 413 size; 415 unsupported
encoding; 503 + Retry-After when the queue or the in-flight byte budget is full or the store is down, so
senders retry (Prometheus 2.x drops 429s by default); 500 only for bugs. Admission (slots and bytes):
:mod:`remote_write.admission`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from remote_write.admission import ADMISSION, Admission, QueueFull, admitted
from sotp.codec.remote_write import Columns
from sotp.errors import AuthError, IngestError, LimitExceeded, SampleRejected, StorageError, UnsupportedMediaType
from sotp.model import Labels, Matcher, MatchOp
from sotp.storage import Appender
from sotp.storage.state import StateChange, attach_state
from sotp.web import CTX, ServerContext, text_error

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = "5"
#: Bodies from this size on are decoded in a worker thread, so the event loop keeps answering health
#: checks and small requests (a 100k-series body takes ~1 s to decode).
OFF_LOOP_MIN_BYTES = 64 << 10

T = TypeVar("T")


async def off_loop(size: int, decode: Callable[[], T]) -> T:
    """``decode()`` in the default executor when ``size`` (the body's bytes) is large, else inline (a thread
    hop costs more than decoding a small body). The decoder must not touch the event loop's state."""
    if size >= OFF_LOOP_MIN_BYTES:
        return await asyncio.to_thread(decode)
    return decode()


@dataclass(slots=True)
class SeriesBatch:
    """One series' samples in a write: labels validated by the decoder, times in ms."""

    labels: Labels
    timestamps: Sequence[int]
    values: Sequence[float]


class WriteMetrics:
    """Self-metrics of the write side, registered once per server in the context's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.samples = Counter(
            "sotp_ingest_samples", "Samples committed to storage.", ["protocol"], registry=registry
        )
        self.requests = Counter(
            "sotp_ingest_requests", "Write requests by protocol and HTTP status.", ["protocol", "code"],
            registry=registry,
        )
        self.rejected = Counter(
            "sotp_ingest_rejected_samples", "Samples refused, by reason.", ["protocol", "reason"],
            registry=registry,
        )
        self.latency = Histogram(
            "sotp_write_latency_seconds", "Time from request to durable commit.", ["protocol"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=registry,
        )
        self.queue_depth = Gauge(
            "sotp_write_queue_depth", "Write requests in flight (reading, decoding or committing).", registry=registry,
            multiprocess_mode="livesum",  # summed over `sotp serve --workers` processes
        )
        self.inflight_bytes = Gauge(
            "sotp_write_inflight_body_bytes", "Body bytes held by write requests in flight.", registry=registry,
            multiprocess_mode="livesum",
        )


WRITE_METRICS = web.AppKey("sotp_write_metrics", WriteMetrics)


def setup_pipeline(app: web.Application, ctx: ServerContext) -> None:
    """Create the shared write metrics and queue (idempotent: the first receiver's setup does it)."""
    if WRITE_METRICS not in app:
        metrics = WriteMetrics(ctx.registry)
        app[WRITE_METRICS] = metrics
        app[ADMISSION] = Admission(
            ctx.config.server.write_queue_depth, ctx.config.limits.max_inflight_body_bytes,
            metrics.queue_depth, metrics.inflight_bytes,
        )


def apply_tenant(principal: Any, batches: Iterable[SeriesBatch]) -> list[SeriesBatch]:
    """Force the principal's tenant label onto every series (a tenant cannot write as another)."""
    tenant: tuple[str, str] | None = getattr(principal, "tenant", None)
    if tenant is None:
        return list(batches)
    name, value = tenant
    return [SeriesBatch(b.labels.with_(**{name: value}), b.timestamps, b.values) for b in batches]


def check_times(batches: Sequence[SeriesBatch], max_future_s: float) -> None:
    """Reject samples too far in the future (clock skew would poison the series' ordering)."""
    limit = future_limit_ms(max_future_s)
    for b in batches:
        if b.timestamps and max(b.timestamps) > limit:
            raise SampleRejected(
                f"sample for series {b.labels} is more than {max_future_s:g}s in the future "
                "(limits.max_future_seconds)"
            )


async def check_store_series_limits(request: web.Request, labels: Sequence[Labels], principal: Any) -> None:
    """Refuse a write that would grow the store past ``limits.max_series``, or the writer's tenant past
    ``limits.max_series_per_tenant`` (400, nothing written). ``labels``: the series as they will be stored
    (tenant label applied). Concurrent requests are checked one by one, so the bound may be overshot by
    what the requests in flight create together."""
    limits = request.app[CTX].config.limits
    tenant: tuple[str, str] | None = getattr(principal, "tenant", None)
    per_tenant = limits.max_series_per_tenant if tenant is not None else 0
    if not (limits.max_series or per_tenant):
        return
    storage = request.app[CTX].storage
    new = await storage.count_new_series(labels)
    if not new:
        return
    if limits.max_series:
        held = await storage.series_count()
        if held + new > limits.max_series:
            raise LimitExceeded(
                f"series limit reached: the store holds {held} series and this request would add {new} "
                f"(limit {limits.max_series}, limits.max_series); series whose samples expired are collected "
                "by retention"
            )
    if per_tenant and tenant is not None:
        held = await storage.series_count([Matcher(tenant[0], MatchOp.EQ, tenant[1])])
        if held + new > per_tenant:
            raise LimitExceeded(
                f"series limit reached for tenant {tenant[0]}={tenant[1]}: it holds {held} series and this "
                f"request would add {new} (limit {per_tenant}, limits.max_series_per_tenant)"
            )


def check_series_limit(n: int, limit: int) -> None:
    if n > limit:
        raise LimitExceeded(f"request has {n} series, limit {limit} (limits.max_series_per_request)")


def future_limit_ms(max_future_s: float) -> int:
    """The newest timestamp accepted now: later samples would poison their series' ordering."""
    return int((time.time() + max_future_s) * 1000)


async def _commit(request: web.Request, protocol: str, stage: Callable[[Appender], None], samples: int) -> int:
    """Stage through ``stage`` and commit atomically inside the request's write slot (taken here when the
    handler did not take it before reading the body), with latency and sample metrics."""
    ctx = request.app[CTX]
    metrics = request.app[WRITE_METRICS]
    started = time.perf_counter()
    with admitted(request):
        app_ = ctx.storage.appender()
        try:
            stage(app_)
            written = await app_.commit()
        except BaseException:
            await app_.rollback()
            raise
    metrics.latency.labels(protocol).observe(time.perf_counter() - started)
    metrics.samples.labels(protocol).inc(samples)
    return written


async def write_batch(
    request: web.Request, protocol: str, batches: Sequence[SeriesBatch], principal: Any,
    state: StateChange | None = None,
) -> int:
    """Validate limits, apply the tenant, stage and commit atomically. Returns samples written.

    ``state``: a stored-state change committed in the same transaction (:mod:`sotp.storage.state`).
    Raises an :class:`IngestError` (400/413) or :class:`StorageError` (503); nothing is written then.
    """
    limits = request.app[CTX].config.limits
    check_series_limit(len(batches), limits.max_series_per_request)
    batches = apply_tenant(principal, batches)
    check_times(batches, limits.max_future_seconds)
    await check_store_series_limits(request, [b.labels for b in batches], principal)

    def stage(app_: Appender) -> None:
        for b in batches:
            app_.append_series(b.labels, b.timestamps, b.values)
        if state is not None:
            attach_state(app_, state)

    return await _commit(request, protocol, stage, sum(len(b.timestamps) for b in batches))


async def write_columns(request: web.Request, protocol: str, cols: Columns, principal: Any) -> int:
    """:func:`write_batch` for a decoded request's sample arrays, handed to the appender as arrays when it
    takes them (``append_columns``: no Python object per series or sample)."""
    if getattr(principal, "tenant", None) is not None:  # labels must be rewritten: take the general path
        batches = [SeriesBatch(s.labels, s.timestamps, s.values) for s in cols.to_series()]
        return await write_batch(request, protocol, batches, principal)
    limits = request.app[CTX].config.limits
    check_series_limit(len(cols.labels), limits.max_series_per_request)
    if len(cols.timestamps) and int(cols.timestamps.max()) > future_limit_ms(limits.max_future_seconds):
        newest = int(cols.timestamps.argmax())
        owner = cols.labels[int(np.searchsorted(np.cumsum(cols.counts), newest, side="right"))]
        raise SampleRejected(
            f"sample for series {owner} is more than {limits.max_future_seconds:g}s in the future "
            "(limits.max_future_seconds)"
        )
    await check_store_series_limits(request, cols.labels, principal)

    def stage(app_: Appender) -> None:
        append_columns = getattr(app_, "append_columns", None)
        if append_columns is not None:
            append_columns(cols.labels, cols.counts, cols.timestamps, cols.values)
        else:
            for s in cols.to_series():
                app_.append_series(s.labels, s.timestamps, s.values)

    return await _commit(request, protocol, stage, len(cols.timestamps))


def _reason(err: Exception) -> str:
    if isinstance(err, LimitExceeded):
        return "limit"
    if isinstance(err, SampleRejected):
        return "out_of_order" if "out-of-order" in str(err) else "conflict" if "conflict" in str(err) else "rejected"
    return "invalid"


def error_response(request: web.Request, protocol: str, err: Exception, samples: int = 0) -> web.Response:
    """The one place that maps a write-side error to its HTTP answer (and counts it)."""
    metrics = request.app.get(WRITE_METRICS)
    headers = None
    if isinstance(err, AuthError):
        status = err.status
        if status == 401:
            headers = {"WWW-Authenticate": 'Bearer realm="sotp"'}
    elif isinstance(err, LimitExceeded):
        status = err.status
    elif isinstance(err, UnsupportedMediaType):
        status = 415
    elif isinstance(err, IngestError):
        status = 400
    elif isinstance(err, QueueFull | StorageError | asyncio.TimeoutError):
        status = 503
        headers = {"Retry-After": RETRY_AFTER_SECONDS}
    else:
        log.exception("unexpected error in %s write", protocol, exc_info=err)
        status = 500
    if metrics is not None:
        metrics.requests.labels(protocol, str(status)).inc()
        if status in (400, 413) and samples:
            metrics.rejected.labels(protocol, _reason(err)).inc(samples)
    if status >= 500:
        log.warning("%s write answered %d: %s", protocol, status, err)
    response = text_error(status, _public_message(err, status), headers)
    if status in (408, 413):
        response.force_close()  # the rest of the body was not read: the connection cannot carry another request
    return response


def _public_message(err: Exception, status: int) -> str:
    """What a client may read: a 5xx never carries the exception's text, which can name files, hosts,
    users and schemas of the store (the log has it)."""
    if status < 500:
        return str(err)
    if isinstance(err, QueueFull):
        return str(err)  # names only the setting
    if isinstance(err, StorageError):
        return "storage unavailable: retry later (the server log has the cause)"
    if isinstance(err, asyncio.TimeoutError):
        return "timed out: retry later"
    return "internal error; see the server log"
