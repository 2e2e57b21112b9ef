"""An in-process SOTP query API over a small memory store, for the API and hardening tests."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from query.api import setup
from rules.api import setup as rules_setup
from sotp.config import Config
from sotp.metadata import metadata_store
from sotp.model import STALE_NAN, Labels
from sotp.storage.memory import MemoryStorage
from sotp.web import CTX, ServerContext

Client = TestClient[web.Request, web.Application]


async def _load(storage: MemoryStorage) -> None:
    app = storage.appender()
    ts = [i * 15_000 for i in range(9)]
    app.append_series(Labels({"__name__": "up", "job": "api", "instance": "a:1", "team": "red"}), ts, [1.0] * 9)
    app.append_series(Labels({"__name__": "up", "job": "db", "instance": "b:1", "team": "blue"}), ts, [1.0] * 9)
    app.append_series(Labels({"__name__": "c_total", "job": "api", "team": "red"}), ts,
                      [0, 10, 20, 30, 40, 5, 15, 25, 35])
    app.append_series(Labels({"__name__": "c_total", "job": "db", "team": "blue"}), ts,
                      [0, 1, 2, 3, 4, 5, 6, 7, 8])
    app.append_series(Labels({"__name__": "weird", "job": "x"}), [0, 15_000, 30_000], [float("inf"), STALE_NAN, 1.5])
    await app.commit()


async def _client(config: Config | None = None,
                  authenticate: Callable[[web.Request, str], Awaitable[Any]] | None = None) -> Client:
    storage = MemoryStorage()
    await _load(storage)
    ctx = ServerContext(config=config or Config(), storage=storage, authenticate=authenticate)
    meta = metadata_store(ctx.extras, ctx.config.limits)
    for tenant in (None, ("team", "red")):  # what untenanted writers and team=red announced
        meta.put(tenant, "up", "gauge", "target is up")
        meta.put(tenant, "c_total", "counter", "requests")
    app = web.Application()
    app[CTX] = ctx
    setup(app, ctx)
    rules_setup(app, ctx)  # /api/v1/rules and /api/v1/alerts (Grafana probes rules) live in rules.api
    client: Client = TestClient(TestServer(app))
    await client.start_server()
    return client
