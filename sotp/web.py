"""Shared pieces of ``sotp serve``'s aiohttp application: the context every component receives.

Components register their routes with ``setup(app, ctx)`` and reach shared state only through
:data:`CTX` (``request.app[CTX]``). Self-metrics live in ``ctx.registry`` (a private
prometheus_client registry, exposed on ``/metrics``).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry

from sotp.config import Config
from sotp.storage import Storage

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class ServerContext:
    """What every component of ``sotp serve`` shares: config, storage, self-metrics, hooks."""

    config: Config
    storage: Storage
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    #: Set by the auth component: returns the authenticated principal or raises AuthError.
    #: ``None`` means auth is off (loopback-only ``sotp up``).
    authenticate: Callable[[web.Request, str], Awaitable[Any]] | None = None
    extras: dict[str, Any] = field(default_factory=dict)


CTX = web.AppKey("sotp_ctx", ServerContext)


def json_response(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """A compact JSON response (no spaces, like Go's encoder)."""
    return web.Response(
        text=json.dumps(payload, separators=(",", ":"), allow_nan=False),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def text_error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    """A one-line plain-text error, as remote-write and push clients log it."""
    return web.Response(text=message + "\n", status=status, content_type="text/plain", headers=headers)


async def authorize(request: web.Request, scope: str) -> Any:
    """Check the request's credentials for ``scope`` (``read``, ``write``, ``admin``).

    Returns the principal (or ``None`` when auth is off); raises :class:`sotp.errors.AuthError`.
    Every handler calls this first.
    """
    ctx = request.app[CTX]
    if ctx.authenticate is None:
        return None
    return await ctx.authenticate(request, scope)
