"""Pushgateway-compatible push endpoint: ``PUT|POST|DELETE /metrics/job/<job>{/<label>/<value>}``.

Unlike Pushgateway, the pushed samples are written to storage at push time (the request is answered only
after the commit), live groups are re-written every ``pushgateway.refresh_interval`` so they stay visible
between pushes, and a group that stays silent for ``pushgateway.ttl`` ends with staleness markers, so a
dead pusher's last value is not shown forever. Semantics of the groups: :mod:`remote_write.pushgroups`.

Body: text format 0.0.4 (``Content-Encoding: gzip`` accepted), parsed by :mod:`sotp.codec.textparse`.
Answers: 200 (PUT/POST), 202 (DELETE), 400 for a bad path or body, 401/403, 413, 415 for the protobuf
format, 503 when the store is down. Groups live in this process's memory: after a restart they are
forgotten, and their series end through the query lookback instead of staleness markers.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import dataclasses
import logging
import time
from functools import partial
from typing import Any, Final
from urllib.parse import unquote

from aiohttp import web
from prometheus_client import Counter, Gauge

from remote_write.admission import admitted
from remote_write.body import read_body
from remote_write.pipeline import WRITE_METRICS, error_response, off_loop, setup_pipeline, write_batch
from remote_write.pushgroups import Groups, Plan, PushRejected, SeriesCache, prepare
from sotp.config import Config, from_dict, parse_duration
from sotp.errors import ConfigError, DecodeError, SotpError, UnsupportedMediaType
from sotp.metadata import metadata_store
from sotp.model import InvalidLabels, Labels, validate_label_name
from sotp.web import CTX, ServerContext, authorize

log = logging.getLogger(__name__)

PROTOCOL: Final = "pushgateway"
PREFIX: Final = "/metrics/job"
#: Pushgateway's Prometheus query lookback: a refresh interval at or above it leaves gaps.
LOOKBACK_S: Final = 300.0
_URLSAFE: Final = str.maketrans("-_", "+/")


@dataclasses.dataclass
class PushgatewayConfig:
    """``pushgateway:`` section of ``sotp.yml``."""

    #: A group that has not pushed for this long ends: its series get staleness markers.
    ttl: str = "1h"
    #: Re-write each live group's last values this often ("0" disables: samples only at push time).
    refresh_interval: str = "60s"
    #: Groups each tenant (and the untenanted writers together) may hold; a push creating one more is a 400.
    max_groups: int = 10_000

    def validate(self, path: str) -> None:
        prefix = f"{path}." if path else ""
        ttl = parse_duration(self.ttl, f"{prefix}ttl")
        refresh = parse_duration(self.refresh_interval, f"{prefix}refresh_interval")
        if ttl <= 0:
            raise ConfigError(f"{prefix}ttl: must be positive (e.g. 1h)")
        if self.max_groups < 1:
            raise ConfigError(f"{prefix}max_groups: must be at least 1 (default 10000)")
        if refresh < 0 or refresh >= LOOKBACK_S:
            raise ConfigError(
                f"{prefix}refresh_interval: {self.refresh_interval!r} must be 0 (off) or below the 5m query lookback"
            )

    @property
    def ttl_s(self) -> float:
        return parse_duration(self.ttl)

    @property
    def refresh_s(self) -> float:
        return parse_duration(self.refresh_interval)


def pushgateway_config(config: Config) -> PushgatewayConfig:
    """The validated ``pushgateway:`` section."""
    return from_dict(PushgatewayConfig, config.pushgateway, "pushgateway")


class Gateway:
    """The groups of one server and the lock that serialises every change to them."""

    def __init__(self, ctx: ServerContext, config: PushgatewayConfig) -> None:
        self.ctx = ctx
        self.config = config
        self.groups = Groups(config.max_groups)
        #: Serialises every change to the groups; the maintenance sweep takes it per chunk of groups.
        self.lock = asyncio.Lock()
        self.task: asyncio.Task[None] | None = None
        self.cache: SeriesCache = {}
        self.group_count = Gauge("sotp_pushgateway_groups", "Push groups alive.", registry=ctx.registry,
                                 multiprocess_mode="livesum")
        self.expired = Counter(
            "sotp_pushgateway_expired_groups", "Push groups ended by pushgateway.ttl.", registry=ctx.registry
        )

    async def commit(self, plans: list[Plan]) -> None:
        """Write maintenance plans straight to storage in one transaction (no request to account them to),
        then apply them."""
        app_ = self.ctx.storage.appender()
        try:
            for plan in plans:
                for b in plan.batches:
                    app_.append_series(b.labels, b.timestamps, b.values)
            await app_.commit()
        except BaseException:
            await app_.rollback()
            raise
        for plan in plans:
            plan.apply()

    async def sweep(self) -> None:
        """One pass: end expired groups, refresh live ones, :data:`SWEEP_CHUNK` groups per transaction with
        the lock released in between, so pushes are served while thousands of groups are rewritten."""
        ttl, refresh = self.config.ttl_s, self.config.refresh_s
        while True:
            async with self.lock:
                before = len(self.groups.groups)
                plans = self.groups.plan_maintenance(time.time(), ttl, refresh, limit=SWEEP_CHUNK)
                if plans:
                    try:
                        await self.commit(plans)
                    except SotpError as err:
                        log.warning("push gateway maintenance write failed (will retry): %s", err)
                        plans = []
                if before > len(self.groups.groups):
                    self.expired.inc(before - len(self.groups.groups))
                self.group_count.set(len(self.groups.groups))
            if len(plans) < SWEEP_CHUNK:
                break
            await asyncio.sleep(0)  # let waiting pushes take the lock

    async def maintain(self) -> None:
        """Forever: end expired groups, refresh live ones."""
        ttl, refresh = self.config.ttl_s, self.config.refresh_s
        tick = min(max(min(ttl, refresh or ttl) / 4, 0.05), 5.0)
        while True:
            await asyncio.sleep(tick)
            await self.sweep()


#: Groups planned and committed per maintenance transaction.
SWEEP_CHUNK: Final = 200

GATEWAY = web.AppKey("sotp_pushgateway", Gateway)


def parse_grouping_path(raw_path: str) -> dict[str, str]:
    """``/metrics/job/a/instance@base64/aG9zdA`` → ``{"job": "a", "instance": "host"}``.

    Segments are percent-decoded one by one (so ``%2F`` stays inside a value); ``<name>@base64`` values
    are URL-safe base64 with optional padding (``=`` alone is the empty value). A repeated label keeps
    the last value, as Pushgateway does. Raises :class:`DecodeError`.
    """
    rest = raw_path[len("/metrics/") :]
    parts = rest.split("/")
    if parts and parts[-1] == "" and len(parts) % 2 == 1:
        parts = parts[:-1]  # one trailing slash
    if len(parts) % 2:
        raise DecodeError(f"odd number of components in label path {raw_path!r}: use /<label>/<value> pairs")
    out: dict[str, str] = {}
    for i in range(0, len(parts), 2):
        name, value = unquote(parts[i]), unquote(parts[i + 1])
        if name.endswith("@base64"):
            name = name[: -len("@base64")]
            try:
                padded = value + "=" * (-len(value) % 4)
                std = padded.translate(_URLSAFE)  # URL-safe alphabet (Pushgateway's); standard accepted too
                value = base64.b64decode(std.encode("ascii"), validate=True).decode("utf-8") if value != "=" else ""
            except (binascii.Error, UnicodeError, ValueError):
                raise DecodeError(f"invalid base64 value for label {name!r}: {value[:64]!r}") from None
        try:
            validate_label_name(name)
        except InvalidLabels as err:
            raise DecodeError(f"in push path: {err}") from None
        if name.startswith("__"):
            raise DecodeError(f"in push path: label name {name!r} is reserved (names starting with __)")
        out[name] = value
    if not out.get("job"):
        raise DecodeError("the job label in the push path is empty: push to /metrics/job/<job>")
    return out


def grouping_key(request: web.Request, principal: Any) -> Labels:
    """The group's labels: the path's, plus the tenant label of a tenant-bound token (which wins)."""
    labels = parse_grouping_path(request.rel_url.raw_path)
    tenant: tuple[str, str] | None = getattr(principal, "tenant", None)
    if tenant is not None:
        labels[tenant[0]] = tenant[1]
    return Labels(labels)


def _check_content_type(request: web.Request) -> None:
    ctype = request.headers.get("Content-Type", "").lower()
    if "application/vnd.google.protobuf" in ctype:
        raise UnsupportedMediaType(
            "protobuf push bodies are not supported: send text format 0.0.4 (prometheus_client does by default)"
        )


async def _write(request: web.Request, principal: Any, plan: Plan) -> None:
    await write_batch(request, PROTOCOL, plan.batches, principal)
    plan.apply()


async def handle_push(request: web.Request) -> web.Response:
    """PUT (replace the group) or POST (replace the pushed families)."""
    gw = request.app[GATEWAY]
    ctx = request.app[CTX]
    key: Labels | None = None
    principal: Any = None
    try:
        principal = await authorize(request, "write")
        key = grouping_key(request, principal)
        _check_content_type(request)
        with admitted(request):  # the slot before the body: slow senders cannot queue up reads
            body = await read_body(request, ctx.config.limits)
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError as err:
                raise DecodeError(f"push body is not UTF-8 at byte {err.start}") from None
            async with gw.lock:
                prepared = await off_loop(len(body), partial(prepare, key, text, ctx.config.limits, gw.cache))
                plan = gw.groups.plan_push(key, prepared, replace_all=request.method == "PUT", now=time.time(),
                                           tenant=getattr(principal, "tenant", None))
                await _write(request, principal, plan)
                gw.group_count.set(len(gw.groups.groups))
        _remember_types(ctx, principal, prepared.families)
    except Exception as err:
        if key is not None and isinstance(err, PushRejected):
            await _record_failure(request, principal, key)
        return error_response(request, PROTOCOL, err)
    request.app[WRITE_METRICS].requests.labels(PROTOCOL, "200").inc()
    return web.Response(status=200)


async def _record_failure(request: web.Request, principal: Any, key: Labels) -> None:
    """Set the group's ``push_failure_time_seconds`` (best effort: the push is refused either way)."""
    gw = request.app[GATEWAY]
    try:
        async with gw.lock:
            plan = gw.groups.plan_failure(key, time.time(), getattr(principal, "tenant", None))
            await _write(request, principal, plan)
            gw.group_count.set(len(gw.groups.groups))
    except Exception as err:  # the client gets the original error; this one is only logged
        log.warning("cannot record push failure for group %s: %s", key, err)


async def handle_delete(request: web.Request) -> web.Response:
    """DELETE: end the group now (202 whether or not it existed, as Pushgateway answers)."""
    gw = request.app[GATEWAY]
    try:
        principal = await authorize(request, "write")
        key = grouping_key(request, principal)
        async with gw.lock:
            plan = gw.groups.plan_delete(key, time.time())
            if plan is not None:
                await _write(request, principal, plan)
            gw.group_count.set(len(gw.groups.groups))
    except Exception as err:
        return error_response(request, PROTOCOL, err)
    request.app[WRITE_METRICS].requests.labels(PROTOCOL, "202").inc()
    return web.Response(status=202)


def _remember_types(ctx: ServerContext, principal: Any, families: dict[str, str]) -> None:
    """Feed ``/api/v1/metadata`` under the pusher's tenant (same store as remote write's metadata)."""
    store = metadata_store(ctx.extras, ctx.config.limits)
    tenant = getattr(principal, "tenant", None)
    for fam, typ in families.items():
        store.put(tenant, fam, "unknown" if typ == "untyped" else typ, keep_existing=True)


def setup(app: web.Application, ctx: ServerContext) -> None:
    """Register the push routes and the TTL/refresh task."""
    config = pushgateway_config(ctx.config)
    setup_pipeline(app, ctx)
    gw = Gateway(ctx, config)
    app[GATEWAY] = gw
    for method, handler in (("PUT", handle_push), ("POST", handle_push), ("DELETE", handle_delete)):
        app.router.add_route(method, "/metrics/{job_path:job(@base64)?/.*}", handler)

    # Started after the storage opened (cleanup_ctx runs first) and stopped before it closes.
    async def start(app: web.Application) -> None:
        gw.task = asyncio.create_task(gw.maintain())

    async def stop(app: web.Application) -> None:
        if gw.task is not None:
            gw.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await gw.task
        # Groups still alive at shutdown keep their last values until the query lookback ends them.

    app.on_startup.append(start)
    app.on_shutdown.append(stop)


__all__ = ["GATEWAY", "PushgatewayConfig", "parse_grouping_path", "setup"]
