"""The HTTP API of ``sotp serve`` described as OpenAPI 3.1, served at ``/api/v1/openapi.json`` with a reference
page at ``/api/v1/docs`` (rendered here, no external assets).

The description is data in this module, one entry per route. ``tests/sotp/test_openapi.py`` compares it with
the routes ``sotp serve`` registers (a route missing here, or described but not served, fails) and runs
schemathesis against a live server: no 5xx and no response that contradicts the description.
"""

from __future__ import annotations

import html
import json
from typing import Any, Final

from aiohttp import web

from sotp.web import ServerContext

SPEC_PATH: Final = "/api/v1/openapi.json"
DOCS_PATH: Final = "/api/v1/docs"
VERSION: Final = "1"

Json = dict[str, Any]

# -- shared pieces ----------------------------------------------------------------------------------------

_PROM_ERROR: Json = {
    "type": "object",
    "required": ["status", "errorType", "error"],
    "properties": {"status": {"const": "error"}, "errorType": {"type": "string"}, "error": {"type": "string"},
                   "data": {}},
}
_PROM_SUCCESS: Json = {
    "type": "object",
    "required": ["status", "data"],
    "properties": {"status": {"const": "success"}, "data": {}, "warnings": {"type": "array",
                                                                            "items": {"type": "string"}}},
}
_TEXT: Json = {"text/plain": {"schema": {"type": "string"}}}
_JSON_ERROR: Json = {"application/json": {"schema": {"$ref": "#/components/schemas/PromError"}}}
_ANY_ERROR: Json = {**_JSON_ERROR, **_TEXT}


def _ok(description: str, content: Json | None = None) -> Json:
    return {"description": description, **({"content": content} if content else {})}


def _prom(description: str) -> Json:
    return _ok(description, {"application/json": {"schema": {"$ref": "#/components/schemas/PromSuccess"}}})


def _errors(*codes: int, content: Json | None = None) -> dict[str, Json]:
    """The error answers of an endpoint: the given codes plus auth (401, 403), Host checks (421) and 503."""
    why = {400: "bad parameters or body (the reason in the message)", 401: "missing, unknown or revoked token",
           403: "the token lacks the scope, or a browser write was refused", 404: "not found",
           405: "method not allowed", 406: "the requested format is not available", 409: "conflict",
           413: "body over a size limit", 415: "unsupported content type or encoding",
           421: "the Host header names another server (DNS rebinding guard)",
           422: "the query cannot be evaluated (e.g. too many samples, vector matching)",
           429: "too many requests", 503: "store unavailable, write queue full or query timeout (Retry-After)"}
    body = content if content is not None else _ANY_ERROR
    return {str(c): _ok(why[c], body) for c in sorted({*codes, 401, 403, 421, 503})}


def _param(name: str, where: str, description: str, schema: Json | None = None, required: bool = False,
           **extra: Any) -> Json:
    return {"name": name, "in": where, "description": description, "required": required,
            "schema": schema or {"type": "string"}, **extra}


_TIME = {"type": "string", "description": "RFC 3339 or Unix seconds"}
_START = _param("start", "query", "start of the range (RFC 3339 or Unix seconds)", _TIME)
_END = _param("end", "query", "end of the range (RFC 3339 or Unix seconds)", _TIME)
_MATCH = _param("match[]", "query", "series selector(s)", {"type": "array", "items": {"type": "string"}},
                style="form", explode=True)
_FORM = "application/x-www-form-urlencoded"


def _form(properties: Json, required: list[str] | None = None) -> Json:
    return {"required": False, "content": {_FORM: {"schema": {"type": "object", "properties": properties,
                                                               **({"required": required} if required else {})}}}}


def _query_op(summary: str, params: list[Json], form: Json, post: bool, codes: tuple[int, ...] = (400, 422)) -> Json:
    op: Json = {"summary": summary, "tags": ["query"], "responses": {"200": _prom("success"), **_errors(*codes)}}
    if post:
        op["requestBody"] = _form(form)
    else:
        op["parameters"] = params
    return op


def _get_post(summary: str, params: list[Json], codes: tuple[int, ...] = (400, 422)) -> Json:
    """A Prometheus API endpoint answering GET (query string) and form POST with the same parameters."""
    form = {p["name"]: p["schema"] for p in params}
    return {"get": _query_op(summary, params, form, False, codes),
            "post": _query_op(summary, params, form, True, codes)}


_QUERY_PARAMS = [
    _param("query", "query", "PromQL expression", required=True),
    _param("time", "query", "evaluation time (default: now)", _TIME),
    _param("timeout", "query", "evaluation timeout (capped by server.query_timeout)"),
]
_RANGE_PARAMS = [
    _param("query", "query", "PromQL expression", required=True),
    {**_START, "required": True}, {**_END, "required": True},
    _param("step", "query", "resolution: a duration or seconds", required=True),
    _param("timeout", "query", "evaluation timeout (capped by server.query_timeout)"),
]
_DEVICE = _param("device", "path", "device name (as in backup.devices / devices:)", required=True)


def _configs_op(summary: str, params: list[Json], text: bool = False) -> Json:
    ok: Json = {"application/json": {"schema": {"$ref": "#/components/schemas/PromSuccess"}}}
    if text:
        ok = {**ok, **_TEXT}
    return {"get": {"summary": summary, "tags": ["configs"], "parameters": params,
                    "responses": {"200": _ok("success", ok), **_errors(400, 404)}}}


def _push_op(method: str, summary: str) -> Json:
    return {
        "summary": summary, "tags": ["push"],
        "parameters": [_param("job_path", "path", "job/<job>{/<label>/<value>}; a value ending in @base64 is "
                              "URL-safe base64", {"type": "string", "pattern": r"^job/[^/]+(/[^/]+/[^/]*)*$"},
                              required=True)],
        **({"requestBody": {"required": False, "content": {"text/plain": {"schema": {"type": "string"}},
                                                            "application/vnd.google.protobuf": {"schema": {
                                                                "type": "string", "format": "binary"}}}}}
           if method != "delete" else {}),
        "responses": {"200": _ok("stored (committed before the answer)"),
                      "202": _ok("accepted"), **_errors(400, 404, 405, 409, 413, 415)},
    }


def description() -> Json:
    """The OpenAPI document of ``sotp serve``."""
    paths: Json = {
        "/api/v1/query": _get_post("instant query (Prometheus 2.42 semantics)", _QUERY_PARAMS),
        "/api/v1/query_range": _get_post("range query", _RANGE_PARAMS),
        "/api/v1/series": _get_post("series matching selectors", [
            {**_MATCH, "required": True}, _START, _END, _param("limit", "query", "at most this many")]),
        "/api/v1/labels": _get_post("label names", [_MATCH, _START, _END, _param("limit", "query", "at most")]),
        "/api/v1/query_exemplars": _get_post("exemplars (always empty: not stored)", [
            _param("query", "query", "PromQL expression", required=True), _START, _END]),
        "/api/v1/format_query": _get_post("PromQL pretty-printed", [
            _param("query", "query", "PromQL expression", required=True)]),
        "/api/v1/label/{name}/values": {"get": {
            "summary": "values of one label", "tags": ["query"],
            "parameters": [_param("name", "path", "label name", required=True), _MATCH, _START, _END,
                           _param("limit", "query", "at most")],
            "responses": {"200": _prom("success"), **_errors(400, 422)}}},
        "/api/v1/metadata": {"get": {
            "summary": "metric metadata (HELP, TYPE) from remote write", "tags": ["query"],
            "parameters": [_param("metric", "query", "only this metric"), _param("limit", "query", "at most"),
                           _param("limit_per_metric", "query", "at most per metric")],
            "responses": {"200": _prom("success"), **_errors(400)}}},
        "/api/v1/status/buildinfo": {"get": {"summary": "version information", "tags": ["query"],
                                             "responses": {"200": _prom("success"), **_errors()}}},
        "/api/v1/rules": {"get": {
            "summary": "recording and alerting rules (Prometheus's shape)", "tags": ["rules"],
            "parameters": [_param("type", "query", "alert or record", {"type": "string"})],
            "responses": {"200": _prom("success"), **_errors(400)}}},
        "/api/v1/alerts": {"get": {"summary": "active alerts", "tags": ["rules"],
                                   "responses": {"200": _prom("success"), **_errors(400)}}},
        "/api/v1/write": {"post": {
            "summary": "Prometheus remote write 1.0 (snappy-compressed protobuf WriteRequest)", "tags": ["write"],
            "requestBody": {"required": True, "content": {"application/x-protobuf": {"schema": {
                "type": "string", "format": "binary"}}}},
            "responses": {"204": _ok("committed (durable)"), **_errors(400, 413, 415, 429)}}},
        "/api/v1/ingest": {"post": {
            "summary": 'JSON ingest: {"host": ..., "metrics": {...}} or a list of them', "tags": ["write"],
            "requestBody": {"required": True, "content": {"application/json": {"schema": {}}}},
            "responses": {"200": _ok("stored", {"application/json": {"schema": {"type": "object"}}}),
                          "204": _ok("stored"), **_errors(400, 413, 415, 429)}}},
        "/metrics/{job_path}": {
            "put": _push_op("put", "push gateway: replace the group"),
            "post": _push_op("post", "push gateway: replace same-named metrics of the group"),
            "delete": _push_op("delete", "push gateway: delete the group"),
        },
        "/api/v1/metrics": {"get": {
            "summary": "push gateway: every group with its metrics, push times and last push result (Pushgateway's "
                       "API; a tenant-bound token sees its tenant's groups)", "tags": ["push"],
            "responses": {"200": _prom("success"), **_errors()}}},
        "/api/v1/configs": {"get": {"summary": "devices with stored configurations", "tags": ["configs"],
                                    "responses": {"200": _prom("success"), **_errors(400)}}},
        "/api/v1/configs/{device}": _configs_op("a device's stored versions", [_DEVICE]),
        "/api/v1/configs/{device}/diff": _configs_op("unified diff between two versions", [
            _DEVICE, _param("from", "query", "older version number"), _param("to", "query", "newer version number"),
            _param("format", "query", "text for a plain-text diff")], text=True),
        "/api/v1/configs/{device}/{version}": _configs_op("one stored version", [
            _DEVICE, _param("version", "path", "version number", required=True),
            _param("format", "query", "text for the raw configuration")], text=True),
        "/metrics": {"get": {"summary": "sotp serve's own metrics (Prometheus text format)", "tags": ["operations"],
                             "responses": {"200": _ok("exposition", _TEXT), **_errors()}}},
        "/-/healthy": {"get": {"summary": "the process is up", "tags": ["operations"],
                               "responses": {"200": _ok("healthy", _TEXT), **_errors()}}},
        "/-/ready": {"get": {"summary": "the store answers", "tags": ["operations"],
                             "responses": {"200": _ok("ready", _TEXT), **_errors()}}},
        SPEC_PATH: {"get": {"summary": "this description", "tags": ["operations"],
                            "responses": {"200": _ok("OpenAPI 3.1", {"application/json": {"schema": {
                                "type": "object"}}}), **_errors()}}},
        DOCS_PATH: {"get": {"summary": "this description as a web page", "tags": ["operations"],
                            "responses": {"200": _ok("HTML", {"text/html": {"schema": {"type": "string"}}}),
                                          **_errors()}}},
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "SOTP serve", "version": VERSION,
                 "description": "Receivers (remote write, push gateway, JSON ingest), the Prometheus HTTP API, "
                                "stored device configurations and operations endpoints of `sotp serve`. With "
                                "authentication on, send `Authorization: Bearer <token>` (scopes read, write, "
                                "configs, admin; see docs/auth.md)."},
        "components": {
            "schemas": {"PromSuccess": _PROM_SUCCESS, "PromError": _PROM_ERROR},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"},
                                "basic": {"type": "http", "scheme": "basic",
                                          "description": "any user name, the token as password (Grafana)"}},
        },
        "security": [{}, {"bearer": []}, {"basic": []}],
        "paths": paths,
    }


def render(spec: Json) -> str:
    """The reference page: every operation with its parameters and answers."""
    out = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(spec['info']['title'])} API"
           "</title><style>body{font-family:sans-serif;max-width:60em;margin:2em auto}code{background:#eee}"
           "h3{margin-bottom:.2em}td{padding:0 .6em;vertical-align:top}</style></head><body>",
           f"<h1>{html.escape(spec['info']['title'])} API</h1><p>{html.escape(spec['info']['description'])}</p>",
           f"<p>Machine-readable: <a href='{SPEC_PATH}'>{SPEC_PATH}</a> (OpenAPI {spec['openapi']})</p>"]
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            out.append(f"<h3><code>{method.upper()} {html.escape(path)}</code></h3><p>{html.escape(op['summary'])}"
                       "</p><table>")
            for p in op.get("parameters", []):
                req = " (required)" if p.get("required") else ""
                out.append(f"<tr><td><code>{html.escape(p['name'])}</code></td><td>{p['in']}{req}</td>"
                           f"<td>{html.escape(p.get('description', ''))}</td></tr>")
            for code, answer in op["responses"].items():
                out.append(f"<tr><td>{code}</td><td></td><td>{html.escape(answer['description'])}</td></tr>")
            out.append("</table>")
    out.append("</body></html>")
    return "".join(out)


async def _spec(request: web.Request) -> web.Response:
    return web.Response(text=json.dumps(description(), indent=1), content_type="application/json")


async def _docs(request: web.Request) -> web.Response:
    return web.Response(text=render(description()), content_type="text/html")


def setup(app: web.Application, ctx: ServerContext) -> None:
    """Serve the description and its page (behind the same auth as every other path)."""
    app.router.add_get(SPEC_PATH, _spec)
    app.router.add_get(DOCS_PATH, _docs)


__all__ = ["DOCS_PATH", "SPEC_PATH", "description", "render", "setup"]
