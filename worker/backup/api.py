"""``/api/v1/configs``: stored device configurations, their versions and diffs (``configs`` scope).

Device configurations describe the network (addresses, peers, ACLs), so ``read`` does not grant them:
a token needs the ``configs`` scope (or ``admin``). A tenant-bound token sees only devices whose
``backup.devices[].labels`` carry its tenant label; other devices answer 404 as if absent. Content is
shown through :func:`worker.backup.masking.readable`, so versions stored before secret masking existed
never show a secret either, in a version or in a diff.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from sotp.errors import AuthError
from sotp.storage.configs import ConfigStore, ConfigVersion, DeviceInfo, config_store_for
from sotp.web import CTX, ServerContext, authorize, json_response
from worker.backup.masking import readable
from worker.backup.scheduler import unified_diff

STORE = web.AppKey("sotp_config_store", ConfigStore)
SCOPE = "configs"


def _version_json(v: ConfigVersion) -> dict[str, Any]:
    return {"device": v.device, "version": v.version, "fetched": v.fetched_ms / 1000, "digest": v.digest,
            "size": v.size}


def _error(status: int, kind: str, message: str) -> web.Response:
    return json_response({"status": "error", "errorType": kind, "error": message}, status)


class _View:
    """What one request may see: the devices visible to its principal and their stored infos."""

    def __init__(self, principal: Any, infos: dict[str, DeviceInfo]) -> None:
        self.tenant: tuple[str, str] | None = getattr(principal, "tenant", None)
        self.infos = infos

    def visible(self, device: str) -> bool:
        if self.tenant is None:
            return True
        info = self.infos.get(device)
        return info is not None and info.labels.get(self.tenant[0]) == self.tenant[1]

    def content(self, device: str, content: str) -> str:
        info = self.infos.get(device)
        return readable(content, info.masked_as if info else None, info is not None)


async def _view(request: web.Request) -> _View | web.Response:
    try:
        principal = await authorize(request, SCOPE)
    except AuthError as err:
        kind = "unauthorized" if err.status == 401 else "forbidden"
        headers = {"WWW-Authenticate": 'Bearer realm="sotp"'} if err.status == 401 else None
        return json_response({"status": "error", "errorType": kind, "error": str(err)}, err.status, headers)
    return _View(principal, await request.app[STORE].infos())


def _not_found(device: str) -> web.Response:
    return _error(404, "not_found", f"no configuration stored for device {device!r}")


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
    view = await _view(request)
    if isinstance(view, web.Response):
        return view
    latest = await request.app[STORE].latest()
    data = [{**_version_json(v), "versions": n} for v, n in latest if view.visible(v.device)]
    return json_response({"status": "success", "data": data})


async def list_versions(request: web.Request) -> web.Response:
    view = await _view(request)
    if isinstance(view, web.Response):
        return view
    device = request.match_info["device"]
    versions = await request.app[STORE].versions(device) if view.visible(device) else []
    if not versions:
        return _not_found(device)
    return json_response({"status": "success", "data": [_version_json(v) for v in versions]})


async def get_version(request: web.Request) -> web.Response:
    view = await _view(request)
    if isinstance(view, web.Response):
        return view
    device = request.match_info["device"]
    version = _int_param(request, request.match_info["version"], "version")
    assert version is not None
    found = await request.app[STORE].get(device, version) if view.visible(device) else None
    if found is None:
        return _error(404, "not_found", f"device {device!r} has no version {version}")
    content = view.content(device, found[1])
    if request.query.get("format") == "text":
        return web.Response(text=content, content_type="text/plain")
    return json_response({"status": "success", "data": {**_version_json(found[0]), "content": content}})


async def diff(request: web.Request) -> web.Response:
    view = await _view(request)
    if isinstance(view, web.Response):
        return view
    device = request.match_info["device"]
    store = request.app[STORE]
    versions = [v.version for v in await store.versions(device)] if view.visible(device) else []
    if not versions:
        return _not_found(device)
    to = _int_param(request, request.query.get("to"), "to") or versions[-1]
    frm = _int_param(request, request.query.get("from"), "from") or max(versions[0], to - 1)
    old, new = await store.get(device, frm), await store.get(device, to)
    if old is None or new is None:
        return _error(404, "not_found", f"device {device!r} has versions {versions[0]}..{versions[-1]}")
    text = unified_diff(device, (old[0], view.content(device, old[1])), (new[0], view.content(device, new[1])))
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


__all__ = ["CTX", "SCOPE", "setup"]
