"""Foundation read-back API (series, labels, label values, plain-selector instant query).

The PromQL engine replaces ``/api/v1/query`` with full PromQL; the discovery endpoints stay.
"""

from __future__ import annotations

import re
import time

from aiohttp import web

from sotp.model import Labels, Matcher, MatchOp
from sotp.web import CTX, ServerContext, authorize, json_response

_SELECTOR = re.compile(r'^\s*([a-zA-Z_:][a-zA-Z0-9_:]*)?\s*(?:\{(.*)\})?\s*$', re.S)
_MATCHER = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*,?')


def parse_selector(text: str) -> list[Matcher]:
    m = _SELECTOR.match(text)
    if not m or not (m.group(1) or m.group(2)):
        raise ValueError(f"cannot parse selector {text!r}")
    matchers = [Matcher("__name__", MatchOp.EQ, m.group(1))] if m.group(1) else []
    body = m.group(2) or ""
    pos = 0
    while pos < len(body.strip()):
        mm = _MATCHER.match(body, pos)
        if not mm:
            raise ValueError(f"cannot parse matchers in {text!r}")
        value = mm.group(3).encode().decode("unicode_escape")
        matchers.append(Matcher(mm.group(1), MatchOp(mm.group(2)), value))
        pos = mm.end()
    return matchers


def _error(status: int, kind: str, msg: str) -> web.Response:
    return json_response({"status": "error", "errorType": kind, "error": msg}, status)


def _time(value: str | None, default: float) -> float:
    return default if value is None else float(value)


def _tenant(principal: object) -> list[Matcher]:
    tenant = getattr(principal, "tenant", None)
    return [Matcher(tenant[0], MatchOp.EQ, tenant[1])] if tenant else []


async def _params(request: web.Request) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for k, v in request.query.items():
        out.setdefault(k, []).append(v)
    if request.method == "POST":
        for k, v in (await request.post()).items():
            out.setdefault(k, []).append(str(v))
    return out


def _window(p: dict[str, list[str]]) -> tuple[int, int]:
    now = time.time()
    start = _time((p.get("start") or [None])[0], 0.0)
    end = _time((p.get("end") or [None])[0], now + 86400 * 365)
    return int(start * 1000), int(end * 1000)


def _labels_json(labels: Labels) -> dict[str, str]:
    return dict(labels.items_tuple())


async def series(request: web.Request) -> web.Response:
    principal = await authorize(request, "read")
    p = await _params(request)
    if not p.get("match[]"):
        return _error(400, "bad_data", "no match[] parameter provided")
    mint, maxt = _window(p)
    q = request.app[CTX].storage.querier(mint, maxt)
    seen: dict[Labels, None] = {}
    for sel in p["match[]"]:
        for s in await q.select(parse_selector(sel) + _tenant(principal)):
            seen[s.labels] = None
    return json_response({"status": "success", "data": [_labels_json(lb) for lb in sorted(seen)]})


async def labels(request: web.Request) -> web.Response:
    principal = await authorize(request, "read")
    p = await _params(request)
    mint, maxt = _window(p)
    q = request.app[CTX].storage.querier(mint, maxt)
    names: set[str] = set()
    for sel in p.get("match[]") or [None]:  # type: ignore[list-item]
        ms = (parse_selector(sel) if sel else []) + _tenant(principal)
        names.update(await q.label_names(ms))
    return json_response({"status": "success", "data": sorted(names)})


async def label_values(request: web.Request) -> web.Response:
    principal = await authorize(request, "read")
    p = await _params(request)
    mint, maxt = _window(p)
    q = request.app[CTX].storage.querier(mint, maxt)
    values: set[str] = set()
    for sel in p.get("match[]") or [None]:  # type: ignore[list-item]
        ms = (parse_selector(sel) if sel else []) + _tenant(principal)
        values.update(await q.label_values(request.match_info["name"], ms))
    return json_response({"status": "success", "data": sorted(values)})


async def instant_query(request: web.Request) -> web.Response:
    principal = await authorize(request, "read")
    p = await _params(request)
    t = _time((p.get("time") or [None])[0], time.time())
    try:
        ms = parse_selector((p.get("query") or [""])[0]) + _tenant(principal)
    except ValueError as err:
        return _error(400, "bad_data", str(err))
    t_ms = int(t * 1000)
    q = request.app[CTX].storage.querier(t_ms - 300_000, t_ms)
    result = []
    for s in await q.select(ms):
        v = float(s.values[-1])
        if s.values[-1:].view("u8")[0] == 0x7FF0000000000002:
            continue
        result.append({"metric": _labels_json(s.labels), "value": [t, repr(v)]})
    return json_response({"status": "success", "data": {"resultType": "vector", "result": result}})


def setup(app: web.Application, ctx: ServerContext) -> None:
    app.router.add_route("*", "/api/v1/series", series)
    app.router.add_route("*", "/api/v1/labels", labels)
    app.router.add_get("/api/v1/label/{name}/values", label_values)
    app.router.add_route("*", "/api/v1/query", instant_query)
