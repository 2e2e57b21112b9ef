"""``sotp ruler``: evaluate the rule files of ``sotp.yml`` against the storage and notify Alertmanager.

It opens the same storage as ``sotp serve`` (``--storage``), evaluates every group on its aligned
schedule, writes recording-rule results and ``ALERTS``/``ALERTS_FOR_STATE`` through the one Appender,
and serves ``/api/v1/rules``, ``/api/v1/alerts``, ``/metrics``, ``/-/healthy``, ``/-/ready`` and
``POST /-/reload`` on ``ruler.listen``. SIGHUP reloads the rule files too.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
from collections.abc import AsyncIterator

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from query.engine import Engine
from rules.api import MANAGER, ruler_routes
from rules.config import AlertmanagerConfig, StaticConfig, ruler_config
from rules.manager import Manager, ManagerCollector
from rules.notifier import Notifier
from sotp.cli.check import load_or_exit
from sotp.cli.serve import split_listen
from sotp.config import parse_duration
from sotp.errors import ConfigError, StorageError
from sotp.storage import open_storage

log = logging.getLogger("rules.ruler")
REGISTRY = web.AppKey("ruler_registry", CollectorRegistry)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="sotp.yml with rule_files, alerting and ruler sections")
    parser.add_argument("--storage", help="storage URL (server.storage): sqlite:///path.db or postgresql://...")
    parser.add_argument("--listen", help="host:port of the ruler's API (ruler.listen; default 127.0.0.1:9204)")
    parser.add_argument("--rule-file", action="append", default=[], metavar="GLOB",
                        help="an extra rule file (glob); repeatable; added to rule_files")
    parser.add_argument("--alertmanager", action="append", default=[], metavar="HOST:PORT",
                        help="an extra Alertmanager (http, static); repeatable")
    parser.add_argument("--external-url", help="ruler.external_url (links in alerts)")


def build_app(manager: Manager, notifier: Notifier) -> web.Application:
    app = web.Application()
    registry = CollectorRegistry()
    registry.register(ManagerCollector(manager))
    app[REGISTRY] = registry
    ruler_routes(app, manager)

    async def healthy(request: web.Request) -> web.Response:
        return web.Response(text="SOTP ruler is Healthy.\n")

    async def ready(request: web.Request) -> web.Response:
        try:
            await manager.storage.ping()
        except StorageError as err:
            return web.Response(status=503, text=f"SOTP ruler is not ready: {err}\n")
        return web.Response(text="SOTP ruler is Ready.\n")

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(request.app[REGISTRY]), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app.router.add_get("/-/healthy", healthy)
    app.router.add_get("/-/ready", ready)
    app.router.add_get("/metrics", metrics)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        await manager.storage.open()
        errors = await manager.update()
        if errors:
            raise ConfigError("cannot load rule files:\n" + "\n".join(errors))
        await manager.start()
        sender = asyncio.create_task(notifier.run())
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(manager.update()))
        log.info("ruler: %d groups, %d rules, %d Alertmanager(s)", len(manager.groups),
                 sum(len(g.rules) for g in manager.groups.values()), len(notifier.targets))
        yield
        loop.remove_signal_handler(signal.SIGHUP)
        await manager.stop()
        await notifier.flush()
        sender.cancel()
        await manager.storage.close()

    app.cleanup_ctx.append(lifecycle)
    assert app[MANAGER] is manager
    return app


def run(args: argparse.Namespace) -> int:
    config = load_or_exit("ruler", args.config)  # the whole file checked at start, as every long-running command
    if isinstance(config, int):
        return config
    if args.storage:
        config.server.storage = args.storage
    if args.listen:
        config.ruler["listen"] = args.listen
    if args.external_url:
        config.ruler["external_url"] = args.external_url
    config.rule_files = [*config.rule_files, *args.rule_file]
    base = os.path.dirname(os.path.abspath(args.config)) if args.config else "."
    cfg = ruler_config(config, base)
    if args.alertmanager:
        cfg.alertmanagers.append(AlertmanagerConfig(static_configs=[StaticConfig(targets=list(args.alertmanager))]))
    if not cfg.files and not cfg.tenant_files:
        log.warning("no rule files configured (rule_files in sotp.yml or --rule-file): nothing to evaluate")
    storage = open_storage(config.server.storage)
    engine = Engine(storage, timeout_s=parse_duration(config.server.query_timeout, "server.query_timeout"),
                    max_samples=config.server.query_max_samples)
    notifier = Notifier(cfg.alertmanagers, cfg.external_labels, cfg.external_url)
    manager = Manager(storage, cfg, engine, notifier)
    host, port = split_listen(cfg.listen)
    log.info("ruler on http://%s:%d (storage %s)", host, port, config.server.storage.split("@")[-1])
    web.run_app(build_app(manager, notifier), host=host, port=port, print=None, handle_signals=True)
    return 0
