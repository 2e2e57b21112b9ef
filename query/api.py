"""The Prometheus HTTP API v1 (query, query_range, discovery, metadata, buildinfo) on ``sotp serve``.

Every handler authorizes ``read`` first; a principal with a ``tenant`` ``(label, value)`` gets that
equality matcher added to every selector and discovery request. Errors go through :func:`api_error`,
the single error → ``errorType`` → HTTP status table (Prometheus's ``getDefaultErrorCode``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from query.engine import Engine
from query.errors import BadData, ExecutionError, ParseError, QueryCanceled, QueryTimeout, Unsupported
from query.lex import QueryLimits
from query.params import MAX_TIME_MS, MIN_TIME_MS, Params, parse_duration_ms, time_param
from query.parse import parse_selector, prettify
from query.render import render_data
from sotp.config import parse_duration
from sotp.errors import AuthError, StorageError
from sotp.metadata import metadata_store
from sotp.model import LABEL_NAME_RE, Labels, Matcher, MatchOp
from sotp.web import CTX, ServerContext, authorize

log = logging.getLogger("query.api")

ENGINE = web.AppKey("query_engine", Engine)
MAX_POINTS = 11_000

#: What Debian's Prometheus 2.42 reports, minus ``features`` (which would make Grafana assume Mimir).
BUILDINFO = {
    "version": "2.42.0",
    "revision": "sotp",
    "branch": "sotp",
    "buildUser": "sotp",
    "buildDate": "20230101-00:00:00",
    "goVersion": "go1.19.8",
}

#: exception class → (errorType, HTTP status); the first matching row wins.
ERROR_TABLE: list[tuple[type[BaseException], str, int]] = [
    (Unsupported, "bad_data", 400),
    (BadData, "bad_data", 400),
    (ExecutionError, "execution", 422),
    (QueryTimeout, "timeout", 503),
    (QueryCanceled, "canceled", 499),
    (StorageError, "internal", 500),
]


def _body(payload: str, status: int = 200) -> web.Response:
    return web.Response(text=payload, status=status, content_type="application/json")


def success(data_json: str) -> web.Response:
    return _body(f'{{"status":"success","data":{data_json}}}')


def error_response(kind: str, message: str, status: int) -> web.Response:
    return _body(json.dumps({"status": "error", "errorType": kind, "error": message}, separators=(",", ":")), status)


def api_error(err: BaseException) -> web.Response:
    """The one place an exception becomes an API error body and status."""
    if isinstance(err, AuthError):
        return error_response("unauthorized" if err.status == 401 else "forbidden", str(err), err.status)
    for cls, kind, status in ERROR_TABLE:
        if isinstance(err, cls):
            if kind == "internal":  # a store failure's text names files, hosts and users: log it only
                log.warning("query API: storage failed: %s", err)
                return error_response(kind, "internal error: the store failed (see the server log)", status)
            return error_response(kind, str(err), status)
    log.exception("internal error in query API", exc_info=err)
    return error_response("internal", "internal error (see the server log)", 500)


Handler = Callable[[web.Request], Awaitable[web.Response]]


def _guard(fn: Callable[[web.Request, Any], Awaitable[web.Response]]) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        try:
            principal = await authorize(request, "read")
            return await fn(request, principal)
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as err:
            return api_error(err)

    return handler


def tenant_matchers(principal: Any) -> list[Matcher]:
    tenant = getattr(principal, "tenant", None)
    if not tenant:
        return []
    name, value = tenant
    return [Matcher(name, MatchOp.EQ, value)]


def _query_text(p: Params) -> str:
    q = p.get("query")
    if q is None:
        raise BadData('invalid parameter "query": no query provided')
    return q


def _engine(request: web.Request, p: Params) -> Engine:
    engine = request.app[ENGINE]
    t = p.get("timeout")
    if t:
        secs = parse_duration_ms(t, "timeout") / 1000.0
        if secs < engine.timeout_s:
            return dataclasses.replace(engine, timeout_s=secs)
    return engine


def _with_query_context(err: BadData) -> BadData:
    msg = str(err)
    if isinstance(err, ParseError) or msg.startswith("invalid expression"):
        return type(err)(f'invalid parameter "query": {msg}')
    return err


async def query(request: web.Request, principal: Any) -> web.Response:
    p = await Params.read(request)
    q = _query_text(p)
    t = time_param(p, "time", int(time.time() * 1000))
    engine = _engine(request, p)
    try:
        res = await engine.instant(q, t, tenant_matchers(principal))
    except BadData as err:
        raise _with_query_context(err) from None
    return success(render_data(res))


async def query_range(request: web.Request, principal: Any) -> web.Response:
    p = await Params.read(request)
    for name in ("start", "end", "step"):
        if not p.get(name):
            raise BadData(f'invalid parameter "{name}": cannot parse "" to a valid '
                          + ("duration" if name == "step" else "timestamp"))
    start = time_param(p, "start", 0)
    end = time_param(p, "end", 0)
    if end < start:
        raise BadData('invalid parameter "end": end timestamp must not be before start time')
    step = parse_duration_ms(p.get("step") or "", "step")
    if step <= 0:
        raise BadData(
            'invalid parameter "step": zero or negative query resolution step widths are not accepted. '
            "Try a positive integer"
        )
    if (end - start) // step > MAX_POINTS:  # integer division, as Go divides durations
        raise BadData(
            "exceeded maximum resolution of 11,000 points per timeseries. "
            "Try decreasing the query resolution (?step=XX)"
        )
    q = _query_text(p)
    engine = _engine(request, p)
    try:
        res = await engine.range(q, start, end, step, tenant_matchers(principal))
    except BadData as err:
        raise _with_query_context(err) from None
    return success(render_data(res))


async def _matchers(request: web.Request, p: Params, required: bool) -> list[list[Matcher]] | None:
    raw = p.all("match[]")
    if not raw:
        if required:
            raise BadData("no match[] parameter provided")
        return None
    engine = request.app[ENGINE]
    out = []
    for text in raw:
        try:
            out.append(await engine.off_loop(parse_selector, text, engine.limits))
        except BadData as err:
            raise BadData(f'invalid parameter "match[]": {err}') from None
    return out


def _limit(p: Params) -> int | None:
    v = p.get("limit")
    if not v:
        return None
    try:
        n = int(v)
    except ValueError:
        raise BadData(f'invalid parameter "limit": cannot parse "{v}" as an integer') from None
    if n < 0:
        raise BadData('invalid parameter "limit": must be a non-negative integer')
    return n or None


def _window(p: Params) -> tuple[int, int]:
    return time_param(p, "start", MIN_TIME_MS), time_param(p, "end", MAX_TIME_MS)


async def series(request: web.Request, principal: Any) -> web.Response:
    p = await Params.read(request)
    sets = await _matchers(request, p, required=True)
    assert sets is not None
    mint, maxt = _window(p)
    extra = tenant_matchers(principal)
    querier = request.app[CTX].storage.querier(mint, maxt)
    found: set[Labels] = set()
    try:
        for ms in sets:
            for s in await querier.select([*ms, *extra]):
                found.add(s.labels)
    finally:
        await querier.close()
    ordered = sorted(found, key=lambda lb: lb.items_tuple())
    limit = _limit(p)
    if limit is not None:
        ordered = ordered[:limit]
    body = ",".join(json.dumps(dict(lb.items_tuple()), separators=(",", ":")) for lb in ordered)
    return success(f"[{body}]")


async def _discover(request: web.Request, principal: Any, name: str | None) -> web.Response:
    p = await Params.read(request)
    sets = await _matchers(request, p, required=False)
    mint, maxt = _window(p)
    extra = tenant_matchers(principal)
    querier = request.app[CTX].storage.querier(mint, maxt)
    out: set[str] = set()
    try:
        for ms in sets if sets is not None else [[]]:
            matchers = [*ms, *extra]
            if name is None:
                out.update(await querier.label_names(matchers or None))
            else:
                out.update(await querier.label_values(name, matchers or None))
    finally:
        await querier.close()
    values = sorted(out)
    limit = _limit(p)
    if limit is not None:
        values = values[:limit]
    return success(json.dumps(values, separators=(",", ":"), ensure_ascii=False))


async def labels(request: web.Request, principal: Any) -> web.Response:
    return await _discover(request, principal, None)


async def label_values(request: web.Request, principal: Any) -> web.Response:
    name = request.match_info["name"]
    if not LABEL_NAME_RE.match(name):
        raise BadData(f'invalid label name: "{name}"')
    return await _discover(request, principal, name)


async def metadata(request: web.Request, principal: Any) -> web.Response:
    p = await Params.read(request)
    ctx = request.app[CTX]
    tenant = getattr(principal, "tenant", None)
    # Kept per tenant (sotp.metadata): a tenant sees what its own writes announced; others see every tenant's.
    out = metadata_store(ctx.extras, ctx.config.limits).view(tenant, tenant is None, p.get("metric"), _limit(p))
    return success(json.dumps(out, separators=(",", ":"), ensure_ascii=False))


async def buildinfo(request: web.Request, principal: Any) -> web.Response:
    return success(json.dumps(BUILDINFO, separators=(",", ":")))


async def query_exemplars(request: web.Request, principal: Any) -> web.Response:
    p = await Params.read(request)
    q = p.get("query")
    if q:
        from query.parse import parse

        engine = request.app[ENGINE]
        try:
            await engine.off_loop(parse, q, engine.limits)
        except BadData as err:
            raise _with_query_context(err) from None
    return success("[]")  # SOTP stores no exemplars


async def format_query(request: web.Request, principal: Any) -> web.Response:
    p = await Params.read(request)
    try:
        engine = request.app[ENGINE]
        text = await engine.off_loop(prettify, _query_text(p), engine.limits)
    except BadData as err:
        raise _with_query_context(err) from None
    return success(json.dumps(text))


def setup(app: web.Application, ctx: ServerContext) -> None:
    """Register the API routes and the engine on ``sotp serve``'s application."""
    server = ctx.config.server
    app[ENGINE] = Engine(
        ctx.storage,
        timeout_s=parse_duration(server.query_timeout, "server.query_timeout"),
        max_samples=server.query_max_samples,
        limits=QueryLimits(server.query_max_length, server.query_max_depth),
        concurrency=server.query_concurrency,
    )
    r = app.router
    for path, fn in (
        ("/api/v1/query", query),
        ("/api/v1/query_range", query_range),
        ("/api/v1/series", series),
        ("/api/v1/labels", labels),
        ("/api/v1/query_exemplars", query_exemplars),
        ("/api/v1/format_query", format_query),
    ):
        r.add_get(path, _guard(fn))
        r.add_post(path, _guard(fn))
    r.add_get("/api/v1/label/{name}/values", _guard(label_values))
    r.add_get("/api/v1/metadata", _guard(metadata))
    r.add_get("/api/v1/status/buildinfo", _guard(buildinfo))
