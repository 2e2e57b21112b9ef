"""Pushgateway-compatible push endpoint: ``PUT|POST|DELETE /metrics/job/<job>{/<label>/<value>}``.

Unlike Pushgateway, the pushed samples are written to storage at push time (the request is answered only
after the commit), live groups are re-written every ``pushgateway.refresh_interval`` so they stay visible
between pushes, and a group that stays silent for ``pushgateway.ttl`` ends with staleness markers, so a
dead pusher's last value is not shown forever. Semantics of the groups: :mod:`remote_write.pushgroups`.

Body: text format 0.0.4 (``Content-Encoding: gzip`` accepted), parsed by :mod:`sotp.codec.textparse`.
Answers: 200 (PUT/POST), 202 (DELETE), 400 for a bad path or body, 401/403, 413, 415 for the protobuf
format, 503 when the store is down. ``GET /api/v1/metrics`` lists the groups as Pushgateway's API does.

The groups are stored state (:mod:`remote_write.pushstate`, :mod:`sotp.storage.state`): each change is
committed in the transaction of the samples it produces, so a 2xx means both are stored and a failed commit
changes neither; a restart loads them back with their push times and TTL clocks. Each process keeps a
mirror of the groups in memory. A change runs under :meth:`Gateway.changing`: this process's lock, then the
store's lock for the namespace (PostgreSQL: a session advisory lock, so replicas on one schema take turns),
then the mirror catches up with the rows other replicas committed since it last looked (one query), then
the plan is made and committed with a compare-and-set on the namespace's generation. The lock makes
replicas wait for each other instead of failing; the compare-and-set is what guarantees a plan made from a
stale mirror never commits (a lock lost with its connection, a second writer on a SQLite file): such a
commit fails with nothing written, and the change is planned again once from the reloaded state.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from functools import partial
from typing import Any, Final
from urllib.parse import unquote

from aiohttp import web
from prometheus_client import Counter, Gauge

from remote_write import pushstate
from remote_write.admission import admitted
from remote_write.body import read_body
from remote_write.pipeline import WRITE_METRICS, error_response, off_loop, setup_pipeline, write_batch
from remote_write.pushgroups import Group, Groups, Plan, PushRejected, SeriesCache, prepare
from sotp.codec.exposition import format_value
from sotp.config import Config, from_dict, parse_duration
from sotp.errors import ConfigError, DecodeError, SotpError, UnsupportedMediaType
from sotp.metadata import metadata_store
from sotp.model import InvalidLabels, Labels, validate_label_name
from sotp.storage.state import StateChange, StateConflict, StateSnapshot, attach_state, state_store_for
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
    """The groups of one server (a mirror of the stored ones) and the locks that serialise changes."""

    def __init__(self, ctx: ServerContext, config: PushgatewayConfig) -> None:
        self.ctx = ctx
        self.config = config
        self.groups = Groups(config.max_groups)
        #: Serialises every change to the groups in this process; the maintenance sweep takes it per chunk of
        #: groups. Taken before the store's lock, so a process holds at most one store lock at a time.
        self.lock = asyncio.Lock()
        self.state = state_store_for(ctx.storage)
        #: The stored generation :attr:`groups` reflects (-1: not loaded yet).
        self.generation = -1
        self._last_purge = time.monotonic()
        self.task: asyncio.Task[None] | None = None
        self.cache: SeriesCache = {}
        self.group_count = Gauge("sotp_pushgateway_groups", "Push groups alive.", registry=ctx.registry,
                                 multiprocess_mode="livesum")
        self.expired = Counter(
            "sotp_pushgateway_expired_groups", "Push groups ended by pushgateway.ttl.", registry=ctx.registry
        )

    async def sync(self) -> None:
        """Catch the mirror up with the stored groups (the rows committed since :attr:`generation`)."""
        self._catch_up(await self.state.load(pushstate.NAMESPACE, self.generation))

    def _catch_up(self, snap: StateSnapshot) -> None:
        if snap.full or snap.generation != self.generation:
            pushstate.load(self.groups, snap)
            self.generation = snap.generation
        self.group_count.set(len(self.groups.groups))

    @contextlib.asynccontextmanager
    async def changing(self) -> AsyncIterator[None]:
        """Held while a change is planned and committed: this process's lock, the store's lock for the
        groups (every replica's), and the mirror up to date."""
        async with self.lock, self.state.locked(pushstate.NAMESPACE, self.generation) as snap:
            self._catch_up(snap)
            yield

    async def change(self, plan_and_write: Callable[[], Awaitable[list[Plan]]]) -> list[Plan]:
        """Run ``plan_and_write`` (plan from the mirror, commit with :meth:`state_for`) under
        :meth:`changing`, and once more from reloaded state if the commit met a concurrent change."""
        for attempt in range(2):
            async with self.changing():
                try:
                    plans = await plan_and_write()
                except StateConflict:
                    if attempt:
                        raise
                    continue
                for plan in plans:
                    plan.apply()
                if plans:
                    self.generation += 1
                self.group_count.set(len(self.groups.groups))
                return plans
        raise AssertionError("unreachable")

    def state_for(self, plans: list[Plan]) -> StateChange:
        """The stored-state change to commit with ``plans``' samples."""
        return pushstate.change_for(plans, self.generation)

    async def commit(self, plans: list[Plan]) -> None:
        """Write maintenance plans straight to storage in one transaction with their state change (no
        request to account them to). The caller applies them."""
        app_ = self.ctx.storage.appender()
        try:
            for plan in plans:
                for b in plan.batches:
                    app_.append_series(b.labels, b.timestamps, b.values)
            attach_state(app_, self.state_for(plans))
            await app_.commit()
        except BaseException:
            await app_.rollback()
            raise

    async def sweep(self) -> None:
        """One pass: end expired groups, refresh live ones, :data:`SWEEP_CHUNK` groups per transaction with
        the lock released in between, so pushes are served while thousands of groups are rewritten."""
        ttl, refresh = self.config.ttl_s, self.config.refresh_s
        while True:

            async def plan_and_write() -> list[Plan]:
                plans = self.groups.plan_maintenance(time.time(), ttl, refresh, limit=SWEEP_CHUNK)
                if plans:
                    await self.commit(plans)
                return plans

            try:
                plans = await self.change(plan_and_write)
            except SotpError as err:
                log.warning("push gateway maintenance write failed (will retry): %s", err)
                return
            self.expired.inc(sum(1 for p in plans for g in p.changes.values() if g is None))
            if len(plans) < SWEEP_CHUNK:
                break
            await asyncio.sleep(0)  # let waiting pushes take the lock
        if time.monotonic() - self._last_purge >= PURGE_EVERY_S:
            self._last_purge = time.monotonic()
            # Tombstones (ended groups) are only needed by mirrors that have not caught up yet; one further
            # behind than PURGE_KEEP generations reloads every group instead.
            with contextlib.suppress(SotpError):
                await self.state.purge(pushstate.NAMESPACE, self.generation - PURGE_KEEP)

    async def maintain(self) -> None:
        """Forever: end expired groups, refresh live ones."""
        ttl, refresh = self.config.ttl_s, self.config.refresh_s
        tick = min(max(min(ttl, refresh or ttl) / 4, 0.05), 5.0)
        while True:
            await asyncio.sleep(tick)
            await self.sweep()


#: Groups planned and committed per maintenance transaction.
SWEEP_CHUNK: Final = 200
#: How often the sweep removes old tombstones, and how many generations of them it keeps.
PURGE_EVERY_S: Final = 300.0
PURGE_KEEP: Final = 10_000

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


async def _write(request: web.Request, principal: Any, plan: Plan) -> list[Plan]:
    """Commit ``plan``'s samples with its stored-state change (the caller applies it)."""
    await write_batch(request, PROTOCOL, plan.batches, principal, request.app[GATEWAY].state_for([plan]))
    return [plan]


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
            prepared = await off_loop(len(body), partial(prepare, key, text, ctx.config.limits, gw.cache))
            tenant = getattr(principal, "tenant", None)

            async def push() -> list[Plan]:
                plan = gw.groups.plan_push(key, prepared, replace_all=request.method == "PUT", now=time.time(),
                                           tenant=tenant)
                return await _write(request, principal, plan)

            await gw.change(push)
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

    async def fail() -> list[Plan]:
        plan = gw.groups.plan_failure(key, time.time(), getattr(principal, "tenant", None))
        return await _write(request, principal, plan)

    try:
        await gw.change(fail)
    except Exception as err:  # the client gets the original error; this one is only logged
        log.warning("cannot record push failure for group %s: %s", key, err)


async def handle_delete(request: web.Request) -> web.Response:
    """DELETE: end the group now (202 whether or not it existed, as Pushgateway answers)."""
    gw = request.app[GATEWAY]
    try:
        principal = await authorize(request, "write")
        key = grouping_key(request, principal)

        async def delete() -> list[Plan]:
            plan = gw.groups.plan_delete(key, time.time())
            return [] if plan is None else await _write(request, principal, plan)

        await gw.change(delete)
    except Exception as err:
        return error_response(request, PROTOCOL, err)
    request.app[WRITE_METRICS].requests.labels(PROTOCOL, "202").inc()
    return web.Response(status=202)


def _rfc3339(seconds: float) -> str:
    ns = round(seconds * 1e9)
    at = datetime.fromtimestamp(ns // 1_000_000_000, UTC)
    frac = f"{ns % 1_000_000_000:09d}".rstrip("0")
    return at.strftime("%Y-%m-%dT%H:%M:%S") + (f".{frac}" if frac else "") + "Z"


_META_HELP: Final = {
    "push_time_seconds": "Last Unix time when changing this group in the Pushgateway succeeded.",
    "push_failure_time_seconds": "Last Unix time when changing this group in the Pushgateway failed.",
}


def _family_json(group: Group, fam: str, typ: str, at: str) -> dict[str, Any]:
    """One metric family of a group in Pushgateway's API shape (histograms and summaries folded into
    buckets/quantiles with count and sum, as Pushgateway shows them)."""
    members = sorted((s for s, f in group.family.items() if f == fam), key=lambda s: s.items_tuple())
    metrics: list[dict[str, Any]] = []
    if typ in ("histogram", "summary"):
        inner = "le" if typ == "histogram" else "quantile"
        folded: dict[tuple[tuple[str, str], ...], dict[str, Any]] = {}
        for s in members:
            name = s.get("__name__") or ""
            base = tuple((n, v) for n, v in s.items_tuple() if n not in ("__name__", inner))
            entry = folded.setdefault(base, {"labels": dict(base)})
            value = format_value(group.series[s])
            if name == f"{fam}_count":
                entry["count"] = value
            elif name == f"{fam}_sum":
                entry["sum"] = value
            elif name == (f"{fam}_bucket" if typ == "histogram" else fam) and s.get(inner) is not None:
                entry.setdefault("buckets" if typ == "histogram" else "quantiles", {})[s.get(inner)] = value
        metrics = list(folded.values())
    else:
        metrics = [{"labels": {n: v for n, v in s.items_tuple() if n != "__name__"},
                    "value": format_value(group.series[s])} for s in members]
    out: dict[str, Any] = {"time_stamp": at, "type": typ.upper()}
    if fam in _META_HELP:
        out["help"] = _META_HELP[fam]
    out["metrics"] = metrics
    return out


def group_json(group: Group) -> dict[str, Any]:
    """One group as ``GET /api/v1/metrics`` lists it (Pushgateway 1.5.1's shape; HELP texts are not kept,
    so only the gateway's own families carry one)."""
    at = _rfc3339(max(group.push_time, group.failure_time))
    out: dict[str, Any] = {fam: _family_json(group, fam, typ, at) for fam, typ in sorted(group.families.items())}
    out["labels"] = dict(group.key.items_tuple())
    out["last_push_successful"] = group.failure_time <= group.push_time
    labels = dict(group.key.items_tuple())
    for fam, value in (("push_time_seconds", group.push_time), ("push_failure_time_seconds", group.failure_time)):
        out[fam] = {"time_stamp": at, "type": "GAUGE", "help": _META_HELP[fam],
                    "metrics": [{"labels": labels, "value": format_value(value)}]}
    return out


async def handle_list(request: web.Request) -> web.Response:
    """``GET /api/v1/metrics``: every group (a tenant-bound token sees its tenant's), read from the store."""
    gw = request.app[GATEWAY]
    try:
        principal = await authorize(request, "read")
        async with gw.lock:
            await gw.sync()  # what every replica committed, not only this one
            groups = list(gw.groups.groups.values())
    except Exception as err:
        return error_response(request, PROTOCOL, err)
    tenant: tuple[str, str] | None = getattr(principal, "tenant", None)
    if tenant is not None:
        groups = [g for g in groups if g.key.get(tenant[0]) == tenant[1]]
    groups.sort(key=lambda g: g.key.items_tuple())
    return web.json_response({"status": "success", "data": [group_json(g) for g in groups]})


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
    app.router.add_get("/api/v1/metrics", handle_list)

    # Started after the storage opened (cleanup_ctx runs first) and stopped before it closes.
    async def start(app: web.Application) -> None:
        try:
            async with gw.lock:
                await gw.sync()  # the groups a previous run (or another replica) stored
        except SotpError as err:  # the store is down: the first push or sweep loads them
            log.warning("push gateway: cannot load the stored groups yet (will retry): %s", err)
        log.info("push gateway: %d groups loaded from the store", len(gw.groups.groups))
        gw.task = asyncio.create_task(gw.maintain())

    async def stop(app: web.Application) -> None:
        if gw.task is not None:
            gw.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await gw.task
        close = getattr(gw.state, "close", None)
        if close is not None:
            await close()
        # Groups still alive at shutdown are stored: the next start (or another replica) carries them on.

    app.on_startup.append(start)
    app.on_shutdown.append(stop)


__all__ = ["GATEWAY", "PushgatewayConfig", "parse_grouping_path", "setup"]
