"""``/api/v1/rules`` and ``/api/v1/alerts`` in Prometheus 2.42's shapes.

The ruler serves them from its manager (:func:`ruler_routes`); ``sotp serve`` answers them by asking the
rulers listed in ``ruler.urls`` (:func:`setup`), passing the caller's tenant so a tenant-bound token sees
only the groups (and their alerts) evaluated for its tenant. With no ruler configured the answer is an
empty list, as a Prometheus without rules gives.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from query.format import format_sample_value
from rules.evaluation import Alert, AlertingRule, Group, RecordingRule
from rules.gofmt import format_float
from rules.manager import Manager
from sotp.web import CTX, ServerContext, authorize

log = logging.getLogger("rules.api")

MANAGER = web.AppKey("rules_manager", Manager)
ZERO_TIME = "0001-01-01T00:00:00Z"


def go_time(seconds: float) -> str:
    """Go's ``time.Time`` JSON (RFC 3339 with up to nanoseconds, trailing zeros trimmed); 0 is Go's zero time."""
    if not seconds:
        return ZERO_TIME
    return go_time_ns(round(seconds * 1e9))


def go_time_ms(t_ms: int) -> str:
    """:func:`go_time` of an exact millisecond timestamp."""
    return go_time_ns(t_ms * 1_000_000) if t_ms else ZERO_TIME


def go_time_ns(ns: int) -> str:
    dt = datetime.fromtimestamp(ns // 1_000_000_000, tz=UTC)
    frac = ns % 1_000_000_000
    tail = f".{frac:09d}".rstrip("0") if frac else ""
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + tail + "Z"


def _num(v: float) -> float | int:
    text = format_sample_value(float(v))
    return json.loads(text)  # type: ignore[no-any-return]


def alert_json(a: Alert) -> dict[str, Any]:
    out: dict[str, Any] = {
        "labels": dict(a.labels.items_tuple()),
        "annotations": dict(a.annotations),
        "state": str(a.state),
        "activeAt": go_time_ms(a.active_at),
        "value": format_float(a.value, "e"),
    }
    if a.keep_firing_since:
        out["keepFiringSince"] = go_time_ms(a.keep_firing_since)
    return out


def rule_json(r: AlertingRule | RecordingRule) -> dict[str, Any]:
    s = r.status
    if isinstance(r, AlertingRule):
        out: dict[str, Any] = {
            "state": str(r.state()),
            "name": r.name,
            "query": r.expr,
            "duration": _num(r.hold_ms / 1000),
            "keepFiringFor": _num(r.keep_firing_for_ms / 1000),
            "labels": dict(sorted(r.labels.items())),
            "annotations": dict(sorted(r.annotations.items())),
            "alerts": [alert_json(a) for a in r.active_alerts()],
            "health": str(s.health),
        }
        if s.last_error:
            out["lastError"] = s.last_error
        out.update(evaluationTime=s.evaluation_s, lastEvaluation=go_time(s.last_evaluation), type="alerting")
        return out
    out = {"name": r.name, "query": r.expr}
    if r.labels:
        out["labels"] = dict(sorted(r.labels.items()))
    out["health"] = str(s.health)
    if s.last_error:
        out["lastError"] = s.last_error
    out.update(evaluationTime=s.evaluation_s, lastEvaluation=go_time(s.last_evaluation), type="recording")
    return out


def _visible(g: Group, tenant: tuple[str, str] | None) -> bool:
    return tenant is None or g.tenant == tenant


def rules_data(groups: list[Group], kind: str, tenant: tuple[str, str] | None) -> dict[str, Any]:
    want_alert = kind in ("", "alert")
    want_record = kind in ("", "record")
    out = []
    for g in groups:
        if not _visible(g, tenant):
            continue
        rules = [rule_json(r) for r in g.rules
                 if (want_alert and isinstance(r, AlertingRule)) or (want_record and isinstance(r, RecordingRule))]
        out.append({
            "name": g.name,
            "file": g.file,
            "rules": rules,
            "interval": _num(g.interval_ms / 1000),
            "limit": g.limit,
            "evaluationTime": g.evaluation_s,
            "lastEvaluation": go_time(g.last_evaluation),
        })
    return {"groups": out}


def alerts_data(groups: list[Group], tenant: tuple[str, str] | None) -> dict[str, Any]:
    alerts = [alert_json(a) for g in groups if _visible(g, tenant) for r in g.alerting_rules()
              for a in r.active_alerts()]
    return {"alerts": alerts}


def _envelope(data: dict[str, Any]) -> web.Response:
    return web.Response(text=json.dumps({"status": "success", "data": data}, separators=(",", ":")),
                        content_type="application/json")


def _error(kind: str, message: str, status: int) -> web.Response:
    body = json.dumps({"status": "error", "errorType": kind, "error": message}, separators=(",", ":"))
    return web.Response(text=body, status=status, content_type="application/json")


def _rule_type(request: web.Request) -> str | web.Response:
    kind = request.query.get("type", "").lower()
    if kind not in ("", "alert", "record"):
        return _error("bad_data", f'invalid parameter "type": not supported value "{kind}"', 400)
    return kind


def _tenant_param(request: web.Request) -> tuple[str, str] | None:
    t = request.query.get("tenant")
    if not t:
        return None
    name, _, value = t.partition("=")
    return name, value


# ---- the ruler's own endpoints -----------------------------------------------------------------------


async def _ruler_rules(request: web.Request) -> web.Response:
    kind = _rule_type(request)
    if isinstance(kind, web.Response):
        return kind
    return _envelope(rules_data(request.app[MANAGER].sorted_groups(), kind, _tenant_param(request)))


async def _ruler_alerts(request: web.Request) -> web.Response:
    return _envelope(alerts_data(request.app[MANAGER].sorted_groups(), _tenant_param(request)))


async def _reload(request: web.Request) -> web.Response:
    errors = await request.app[MANAGER].update()
    if errors:
        return web.Response(status=500, text="failed to reload rules:\n" + "\n".join(errors) + "\n")
    return web.Response(text="rules reloaded\n")


def ruler_routes(app: web.Application, manager: Manager) -> None:
    """Routes of the ruler's own HTTP server (``ruler.listen``)."""
    app[MANAGER] = manager
    app.router.add_get("/api/v1/rules", _ruler_rules)
    app.router.add_get("/api/v1/alerts", _ruler_alerts)
    app.router.add_post("/-/reload", _reload)


# ---- sotp serve: answers from the rulers -------------------------------------------------------------

RULER_URLS = web.AppKey("ruler_urls", list)


async def _from_rulers(request: web.Request, path: str) -> web.Response:
    try:
        principal = await authorize(request, "read")
    except Exception as err:  # the query API's one error table words auth errors
        from query.api import api_error

        return api_error(err)
    kind = _rule_type(request)
    if isinstance(kind, web.Response):
        return kind
    urls: list[str] = request.app[RULER_URLS]
    if not urls:
        return _envelope({"groups": []} if path.endswith("rules") else {"alerts": []})
    params = {}
    if kind:
        params["type"] = kind
    tenant = getattr(principal, "tenant", None)
    if tenant:
        params["tenant"] = f"{tenant[0]}={tenant[1]}"
    import aiohttp

    errors = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        for base in urls:  # HA rulers evaluate the same groups: the first that answers is enough
            try:
                async with session.get(base.rstrip("/") + path, params=params) as resp:
                    if resp.status == 200:
                        return web.Response(text=await resp.text(), content_type="application/json")
                    errors.append(f"{base}: status {resp.status}")
            except (aiohttp.ClientError, TimeoutError) as err:
                errors.append(f"{base}: {err or type(err).__name__}")
    return _error("unavailable", "no ruler answered (ruler.urls): " + "; ".join(errors), 503)


async def _serve_rules(request: web.Request) -> web.Response:
    return await _from_rulers(request, "/api/v1/rules")


async def _serve_alerts(request: web.Request) -> web.Response:
    return await _from_rulers(request, "/api/v1/alerts")


def setup(app: web.Application, ctx: ServerContext) -> None:
    """``sotp serve`` component: ``/api/v1/rules`` and ``/api/v1/alerts`` answered by the rulers."""
    urls = ctx.config.ruler.get("urls") if isinstance(ctx.config.ruler, dict) else None
    app[RULER_URLS] = [str(u) for u in urls or []]
    app.router.add_get("/api/v1/rules", _serve_rules)
    app.router.add_get("/api/v1/alerts", _serve_alerts)


__all__ = ["CTX", "alerts_data", "ruler_routes", "rules_data", "setup"]
