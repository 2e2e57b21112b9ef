"""``sotp serve``: one aiohttp application holding every receiver and the query API.

Components register themselves through ``setup(app, ctx)``; :data:`COMPONENTS` lists them in order
(auth first, because it sets ``ctx.authenticate`` that every handler uses).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import logging
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, disable_created_metrics, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from sotp.cli import malloc
from sotp.cli.check import check_file, load_or_exit
from sotp.cli.options import check_option, config_options
from sotp.cli.workers import WORKER_FD_OPTION, inherited_socket, supervise
from sotp.config import Config, parse_duration
from sotp.errors import SotpError, StorageError
from sotp.storage import open_storage
from sotp.web import CTX, ServerContext

log = logging.getLogger("sotp.serve")

#: Dotted ``module:function`` setup hooks, called in order with ``(app, ctx)``.
COMPONENTS: list[str] = [
    "sotp.auth:setup",
    "remote_write.receiver:setup",
    "query.api:setup",
    "rules.api:setup",
    "remote_write.ingest:setup",
    "remote_write.pushgateway:setup",
    "worker.backup.api:setup",
    "sotp.openapi:setup",
]

MAINTENANCE_INTERVAL_S = 300.0
TRIM_INTERVAL_S = 60.0


def _load(dotted: str) -> Callable[[web.Application, ServerContext], None]:
    module, _, func = dotted.partition(":")
    fn: Callable[[web.Application, ServerContext], None] = getattr(importlib.import_module(module), func)
    return fn


async def _healthy(request: web.Request) -> web.Response:
    return web.Response(text="SOTP is Healthy.\n")


async def _ready(request: web.Request) -> web.Response:
    """Public (no token): says ready or not, never why. The cause names paths and hosts: it goes to the log."""
    try:
        await request.app[CTX].storage.ping()
    except StorageError as err:
        log.warning("not ready: %s", err)
        return web.Response(status=503, text="SOTP is not ready: the store does not answer (see the server log).\n")
    return web.Response(text="SOTP is Ready.\n")


async def _metrics(request: web.Request) -> web.Response:
    request.app[SERIES_CACHE].sync()
    registry = request.app[CTX].registry
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # `--workers`: every worker's metric values are in files there; answer the totals.
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    body = generate_latest(registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _maintenance(ctx: ServerContext) -> None:
    """Retention, series collection and compaction, off the request path; freed memory goes back to the
    system every minute (head flushes and large requests leave peaks)."""
    elapsed = 0.0
    while True:
        await asyncio.sleep(TRIM_INTERVAL_S)
        malloc.trim()
        elapsed += TRIM_INTERVAL_S
        if elapsed >= MAINTENANCE_INTERVAL_S:
            elapsed = 0.0
            await maintain_once(ctx)


async def maintain_once(ctx: ServerContext, now_ms: int | None = None) -> None:
    """One round: samples older than ``server.retention`` go, then the series left without samples (so
    their index entries stop holding memory and counting against the series limits), then compaction."""
    retention_ms = int(parse_duration(ctx.config.server.retention, "server.retention") * 1000)
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    try:
        await ctx.storage.delete_before(now_ms - retention_ms)
        collected = await ctx.storage.gc_series()
        if collected:
            log.info("retention: collected %d series without samples", collected)
        compact = getattr(ctx.storage, "compact", None)
        if compact is not None:
            await compact(now_ms)
    except SotpError as err:
        log.warning("storage maintenance failed (will retry): %s", err)


class SeriesCacheCounters:
    """``sotp_series_cache_{hits,misses}_total``: the backend's series-id cache counters, carried into
    ordinary counters (so ``--workers`` processes add up) at every scrape and every few seconds."""

    def __init__(self, ctx: ServerContext) -> None:
        self._ctx = ctx
        self._seen = {"hits": 0, "misses": 0}
        self._counters = {
            what: Counter(f"sotp_series_cache_{what}", f"Series-id cache {what} on the write path.",
                          registry=ctx.registry)
            for what in ("hits", "misses")
        }

    def sync(self) -> None:
        index = getattr(self._ctx.storage, "index", None)
        for what, counter in self._counters.items():
            now = int(getattr(index, what, 0))
            if now > self._seen[what]:
                counter.inc(now - self._seen[what])
            self._seen[what] = now


SERIES_CACHE = web.AppKey("sotp_series_cache", SeriesCacheCounters)


async def _sync_counters(app: web.Application) -> None:
    """Carry the series-cache counters over every few seconds (a worker that serves no scrape counts too)."""
    while True:
        await asyncio.sleep(5)
        app[SERIES_CACHE].sync()


def build_app(config: Config, components: list[str] | None = None) -> web.Application:
    """The ``sotp serve`` application; storage is opened and closed with the app's lifecycle."""
    disable_created_metrics()  # type: ignore[no-untyped-call]  # *_created series only add noise to self-metrics
    ctx = ServerContext(config=config, storage=open_storage(config.server.storage))
    app = web.Application(client_max_size=config.limits.max_body_bytes)
    app[CTX] = ctx

    async def storage_ctx(app: web.Application) -> AsyncIterator[None]:
        await ctx.storage.open()
        tasks = [asyncio.create_task(_maintenance(ctx)), asyncio.create_task(_sync_counters(app))]
        yield
        for task in tasks:
            task.cancel()
        await ctx.storage.close()

    # First: components' own contexts (the config store) open after the storage and close before it.
    app.cleanup_ctx.append(storage_ctx)
    for dotted in components if components is not None else COMPONENTS:
        _load(dotted)(app, ctx)
    app[SERIES_CACHE] = SeriesCacheCounters(ctx)
    app.router.add_get("/-/healthy", _healthy)
    app.router.add_get("/-/ready", _ready)
    app.router.add_get("/metrics", _metrics)
    return app


def split_listen(listen: str) -> tuple[str, int]:
    """``host:port`` (``[::1]:9201`` for IPv6) → host, port."""
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit():
        raise SotpError(f"invalid listen address {listen!r}: use host:port, e.g. 127.0.0.1:9201")
    return host.strip("[]"), int(port)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    config_options(parser)
    parser.add_argument("--listen", help="host:port to serve on (server.listen; default 127.0.0.1:9201)")
    parser.add_argument(
        "--storage",
        help="sqlite:///path/to.db (default: sotp.db in the data directory) or postgresql://user@host:port/db",
    )
    parser.add_argument("--ruler-url", action="append", default=[], metavar="URL",
                        help="a sotp ruler answering /api/v1/rules and /api/v1/alerts (ruler.urls); repeatable")
    parser.add_argument("--workers", type=int, metavar="N",
                        help="server processes sharing the port (server.workers; default 1): one per core")
    parser.add_argument(WORKER_FD_OPTION, type=int, help=argparse.SUPPRESS)
    parser.add_argument(
        "--reuse-port", action="store_true",
        help="bind with SO_REUSEPORT, to run several sotp serve processes on one port on purpose (off by "
        "default: it would let another process of the same user share the port)",
    )
    check_option(parser)


def run(args: argparse.Namespace) -> int:
    if args.check:
        return check_file(args.config, args.data_dir)
    config = load_or_exit("serve", args.config, args.data_dir)
    if isinstance(config, int):
        return config
    if args.listen:
        config.server.listen = args.listen
    if args.storage:
        config.server.storage = args.storage
    if args.ruler_url:
        config.ruler = {**config.ruler, "urls": [*config.ruler.get("urls", []), *args.ruler_url]}
    if args.workers is not None:
        config.server.workers = args.workers
    if config.server.workers < 1:
        raise SotpError(f"server.workers must be at least 1, got {config.server.workers}")
    host, port = split_listen(config.server.listen)
    if args.worker_fd is None and config.server.workers > 1:
        return supervise(config.server.workers, host, port, getattr(args, "command_argv", sys.argv[1:]))
    app = build_app(config)
    # A write request makes ~10^5 short-lived objects; with the default thresholds the cyclic collector
    # runs many times per request and doubles decode time (measured: 100 → 63 ms per 100k samples).
    gc.freeze()
    gc.set_threshold(100_000, 20, 100)
    malloc.limit_arenas()
    # No access log: a line per write request costs more than the write (Prometheus logs none either).
    if args.worker_fd is not None:
        log.info("serve worker %d on its supervisor's socket (storage %s)", os.getpid(),
                 config.server.storage.split("@")[-1])
        web.run_app(app, sock=inherited_socket(args.worker_fd), print=None, handle_signals=True, access_log=None)
        return 0
    log.info("serving on http://%s:%d (storage %s)", host, port, config.server.storage.split("@")[-1])
    # SO_REUSEPORT only on request: it lets any process of the same user bind the port too and take a share
    # of the connections (and the tokens they carry). `--workers` shares one socket instead.
    web.run_app(app, host=host, port=port, print=None, reuse_port=bool(args.reuse_port), handle_signals=True,
                access_log=None)
    return 0


__all__ = ["COMPONENTS", "build_app", "configure_parser", "run", "signal"]
