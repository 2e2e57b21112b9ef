"""``/api/v1/configs``: stored device configurations, their versions and diffs (read scope)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from sotp.errors import AuthError
from sotp.storage.configs import ConfigStore, ConfigVersion, config_store_for
from sotp.web import CTX, ServerContext, authorize, json_response
from worker.backup.scheduler import unified_diff

STORE = web.AppKey("sotp_config_store", ConfigStore)


def _version_json(v: ConfigVersion) -> dict[str, Any]:
    return {"device": v.device, "version": v.version, "fetched": v.fetched_ms / 1000, "digest": v.digest,
            "size": v.size}


def _error(status: int, kind: str, message: str) -> web.Response:
    return json_response({"status": "error", "errorType": kind, "error": message}, status)


async def _guard(request: web.Request) -> web.Response | None:
    try:
        await authorize(request, "read")
    except AuthError as err:
        kind = "unauthorized" if err.status == 401 else "forbidden"
        headers = {"WWW-Authenticate": 'Bearer realm="sotp"'} if err.status == 401 else None
        return json_response({"status": "error", "errorType": kind, "error": str(err)}, err.status, headers)
    return None


def _int_param(request: web.Request, value: str | None, name: str) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise web.HTTPBadRequest(
            text=f'{{"status":"error","errorType":"bad_data","error":"{name} must be a version number"}}',
            content_type="application/json",
        ) from None


async def list_devices(request: web.Request) -> web.Response:
    if (denied := await _guard(request)) is not None:
        return denied
    latest = await request.app[STORE].latest()
    data = [{**_version_json(v), "versions": n} for v, n in latest]
    return json_response({"status": "success", "data": data})


async def list_versions(request: web.Request) -> web.Response:
    if (denied := await _guard(request)) is not None:
        return denied
    device = request.match_info["device"]
    versions = await request.app[STORE].versions(device)
    if not versions:
        return _error(404, "not_found", f"no configuration stored for device {device!r}")
    return json_response({"status": "success", "data": [_version_json(v) for v in versions]})


async def get_version(request: web.Request) -> web.Response:
    if (denied := await _guard(request)) is not None:
        return denied
    device = request.match_info["device"]
    version = _int_param(request, request.match_info["version"], "version")
    assert version is not None
    found = await request.app[STORE].get(device, version)
    if found is None:
        return _error(404, "not_found", f"device {device!r} has no version {version}")
    if request.query.get("format") == "text":
        return web.Response(text=found[1], content_type="text/plain")
    return json_response({"status": "success", "data": {**_version_json(found[0]), "content": found[1]}})


async def diff(request: web.Request) -> web.Response:
    if (denied := await _guard(request)) is not None:
        return denied
    device = request.match_info["device"]
    store = request.app[STORE]
    versions = [v.version for v in await store.versions(device)]
    if not versions:
        return _error(404, "not_found", f"no configuration stored for device {device!r}")
    to = _int_param(request, request.query.get("to"), "to") or versions[-1]
    frm = _int_param(request, request.query.get("from"), "from") or max(versions[0], to - 1)
    old, new = await store.get(device, frm), await store.get(device, to)
    if old is None or new is None:
        return _error(404, "not_found", f"device {device!r} has versions {versions[0]}..{versions[-1]}")
    text = unified_diff(device, old, new)
    if request.query.get("format") == "text":
        return web.Response(text=text, content_type="text/plain")
    return json_response({"status": "success", "data": {"device": device, "from": frm, "to": to, "diff": text}})


def setup(app: web.Application, ctx: ServerContext) -> None:
    """Register the routes; the store opens with the application, after the storage."""
    store = config_store_for(ctx.storage)
    app[STORE] = store
    app.router.add_get("/api/v1/configs", list_devices)
    app.router.add_get("/api/v1/configs/{device}", list_versions)
    app.router.add_get("/api/v1/configs/{device}/diff", diff)
    app.router.add_get("/api/v1/configs/{device}/{version}", get_version)

    async def store_ctx(app: web.Application) -> Any:
        await store.open()
        yield
        await store.close()

    app.cleanup_ctx.append(store_ctx)


__all__ = ["CTX", "setup"]
