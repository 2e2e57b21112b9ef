"""``sotp worker``: the scrape scheduler (and SSH config backups when ``backup:`` is configured).

``sotp worker --config sotp.yml --storage URL [--shard i/n] [--listen 127.0.0.1:9202] [--check]``

The ``--listen`` address serves ``/metrics`` (self-metrics), ``/-/healthy``, ``/-/ready``, ``POST|PUT
/-/reload`` and ``/-/targets`` (JSON: each target's URL, labels, health and last error), behind the same
token check as ``sotp serve`` (:func:`sotp.auth.guard_app`, tokens from the config's ``auth:``):
``/-/targets`` needs ``read``, ``/-/reload`` needs ``admin``. As Prometheus's ``--web.enable-lifecycle``,
``/-/reload`` answers 403 unless ``--enable-lifecycle`` is given. SIGHUP and ``/-/reload`` re-read the
config file; a bad file is rejected with its reason (logged, and the reload answer is 500 with it) and
the running config stays.

Backup hook: when the config has a non-empty ``backup:`` section or devices with ``backup:``, and the module
:data:`BACKUP_MODULE` exists, the worker runs ``await worker.backup.scheduler.run(config, storage, stop)``
as a task (``config``: :class:`sotp.config.Config`, ``storage``: the opened
:class:`sotp.storage.Storage`, ``stop``: an :class:`asyncio.Event` set when the task must return). On a
reload that changes either, the task is stopped (``stop`` set, awaited) and started again.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import importlib.util
import logging
import signal
import sys
import time
from collections.abc import Callable, Coroutine
from typing import Any, Final

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from sotp.auth import Gate, auth_config, guard_app
from sotp.cli.check import check_file, checked_config
from sotp.cli.options import config_options
from sotp.cli.serve import split_listen
from sotp.config import Config
from sotp.errors import SotpError, StorageError
from sotp.storage import Storage, open_storage
from worker.scrape.config import WorkerConfig, worker_config
from worker.scrape.manager import ScrapeManager, Shard
from worker.scrape.metrics import WorkerMetrics

log = logging.getLogger("sotp.worker")

DEFAULT_LISTEN: Final = "127.0.0.1:9202"
BACKUP_MODULE: Final = "worker.backup.scheduler"

BackupRun = Callable[[Config, Storage, asyncio.Event], Coroutine[Any, Any, None]]


def configure_parser(parser: argparse.ArgumentParser) -> None:
    config_options(parser)
    parser.add_argument(
        "--storage",
        help="where samples go: sqlite:///path/to.db, postgresql://user@host:port/db or memory:// "
        "(default: server.storage from the config, else sotp.db in the data directory)",
    )
    parser.add_argument("--shard", default="0/1", help="i/n: scrape only targets with hashmod(address, n) == i")
    parser.add_argument(
        "--check", action="store_true",
        help="validate the config, print each job's targets after relabeling (and --shard), and exit",
    )
    parser.add_argument(
        "--listen", default=DEFAULT_LISTEN, help=f"host:port for /metrics, /-/reload, /-/healthy ({DEFAULT_LISTEN}; "
        "'' disables)"
    )
    parser.add_argument(
        "--enable-lifecycle", action="store_true",
        help="allow POST /-/reload over HTTP (admin token when auth is on), like Prometheus's --web.enable-lifecycle",
    )


def find_backup_runner() -> BackupRun | None:
    """The backup scheduler's ``run`` if ``worker.backup.scheduler`` is installed, else None."""
    try:
        if importlib.util.find_spec(BACKUP_MODULE) is None:
            return None
    except ModuleNotFoundError:
        return None
    fn: BackupRun = importlib.import_module(BACKUP_MODULE).run
    return fn


def backup_spec(config: Config) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """What the backup task runs from: the ``backup:`` section and the devices with ``backup:`` (raw)."""
    return config.backup, [d for d in config.devices if isinstance(d, dict) and d.get("backup") is not None]


class Worker:
    """Config (re)loading, the scrape manager, the backup task and the status HTTP app."""

    def __init__(self, config_path: str | None, storage: Storage, manager: ScrapeManager, metrics: WorkerMetrics,
                 lifecycle: bool = False, data_dir: str | None = None):
        self.config_path = config_path
        self.data_dir = data_dir
        #: Whether ``/-/reload`` may be called over HTTP (``--enable-lifecycle``).
        self.lifecycle = lifecycle
        self._gate: Gate | None = None
        self.storage = storage
        self.manager = manager
        self.metrics = metrics
        self.config: Config | None = None
        self.worker_config: WorkerConfig | None = None
        self._backup_task: asyncio.Task[None] | None = None
        self._backup_stop: asyncio.Event | None = None
        self._reload_lock = asyncio.Lock()

    @staticmethod
    def load(path: str | None, data_dir: str | None = None) -> tuple[Config, WorkerConfig]:
        """The whole file checked (every section, as ``sotp check config`` does) and the scrape jobs."""
        config = checked_config(path, data_dir)
        return config, worker_config(config)

    async def start(self, config: Config, wc: WorkerConfig) -> None:
        await self.manager.apply(wc)
        self.config, self.worker_config = config, wc
        await self._restart_backup(config)
        self.metrics.reload_ok.set(1)
        self.metrics.reload_time.set(time.time())
        log.info("scraping %d targets in %d jobs", len(self.manager.loops()), len(wc.jobs))

    async def reload(self) -> str | None:
        """Re-read the config file; returns None, or the reason it was rejected (old config kept)."""
        async with self._reload_lock:
            try:
                config, wc = self.load(self.config_path, self.data_dir)
            except SotpError as err:
                self.metrics.reload_ok.set(0)
                log.error("config reload rejected, keeping the running config: %s", err)
                return str(err)
            await self.manager.apply(wc)
            old_backup = backup_spec(self.config) if self.config is not None else None
            self.config, self.worker_config = config, wc
            if backup_spec(config) != old_backup:
                await self._restart_backup(config)
            self.metrics.reload_ok.set(1)
            self.metrics.reload_time.set(time.time())
            log.info("config reloaded: %d targets in %d jobs", len(self.manager.loops()), len(wc.jobs))
            return None

    async def _restart_backup(self, config: Config) -> None:
        await self._stop_backup()
        if not any(backup_spec(config)):
            return
        runner = find_backup_runner()
        if runner is None:
            log.warning("backup: section ignored: %s is not installed", BACKUP_MODULE)
            return
        self._backup_stop = asyncio.Event()
        self._backup_task = asyncio.create_task(runner(config, self.storage, self._backup_stop), name="backups")

    async def _stop_backup(self) -> None:
        if self._backup_task is None or self._backup_stop is None:
            return
        self._backup_stop.set()
        try:
            await asyncio.wait_for(self._backup_task, 30)
        except TimeoutError:
            log.warning("backup scheduler did not stop within 30 s; cancelling it")
        except Exception:
            log.exception("backup scheduler failed")
        self._backup_task = None

    async def close(self) -> None:
        await self._stop_backup()
        await self.manager.close()

    # -- HTTP --------------------------------------------------------------------------------------

    def app(self, config: Config, listen: str) -> web.Application:
        """The status app on ``listen``, guarded like ``sotp serve`` (tokens from ``config``'s ``auth:``)."""
        app = web.Application(client_max_size=64 << 10)  # no endpoint takes a body
        self._gate = guard_app(app, auth_config(config), listen, "sotp worker")
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/-/healthy", self._healthy)
        app.router.add_get("/-/ready", self._ready)
        app.router.add_post("/-/reload", self._reload)
        app.router.add_put("/-/reload", self._reload)
        app.router.add_get("/-/targets", self._targets)
        return app

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(self.metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthy(self, request: web.Request) -> web.Response:
        return web.Response(text="SOTP worker is Healthy.\n")

    async def _ready(self, request: web.Request) -> web.Response:
        try:
            await self.storage.ping()
        except StorageError as err:
            log.warning("not ready: %s", err)
            return web.Response(status=503, text="SOTP worker is not ready: the store does not answer (see its log).\n")
        return web.Response(text="SOTP worker is Ready.\n")

    async def _authorize(self, request: web.Request, scope: str) -> None:
        if self._gate is not None:
            await self._gate.authenticate(request, scope)  # AuthError → 401/403 by the gate's middleware

    async def _reload(self, request: web.Request) -> web.Response:
        if not self.lifecycle:
            return web.Response(status=403, text="Lifecycle API is not enabled (start the worker with "
                                "--enable-lifecycle, or send SIGHUP).\n")
        await self._authorize(request, "admin")
        error = await self.reload()
        if error is not None:
            return web.Response(status=500, text=f"failed to reload config: {error}\n")
        return web.Response(text="config reloaded\n")

    async def _targets(self, request: web.Request) -> web.Response:
        await self._authorize(request, "read")
        out: list[dict[str, Any]] = []
        for lp in self.manager.loops():
            r = lp.last_result
            out.append({
                "job": lp.target.job,
                "url": lp.target.url,
                "labels": dict(lp.target.labels.items_tuple()),
                "health": "unknown" if r is None else ("up" if r.up else "down"),
                "lastError": "" if r is None else (r.error or ""),
                "scrapes": lp.scrapes,
            })
        return web.json_response({"status": "success", "data": {"activeTargets": out}})


async def serve(args: argparse.Namespace) -> int:
    """The worker's main coroutine (``sotp up`` may call it in-process too)."""
    try:
        shard = Shard.parse(args.shard)
        listen = split_listen(args.listen) if args.listen else None
        config, wc = Worker.load(args.config, args.data_dir)
        url = args.storage or config.server.storage
        storage = open_storage(url)
    except (SotpError, ValueError) as err:
        sys.stderr.write(f"sotp worker: {err}\n")
        return 2
    try:
        await storage.open()
    except SotpError as err:
        log.error("cannot open storage %s: %s", url.split("@")[-1], err)
        return 1
    metrics = WorkerMetrics()
    worker = Worker(args.config, storage, ScrapeManager(storage, metrics, shard), metrics,
                    lifecycle=getattr(args, "enable_lifecycle", False), data_dir=args.data_dir)
    runner: web.AppRunner | None = None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    reloads: set[asyncio.Task[str | None]] = set()

    def on_hup() -> None:
        task = asyncio.create_task(worker.reload())
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGHUP, on_hup)
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    try:
        if listen is not None:
            host, port = listen
            runner = web.AppRunner(worker.app(config, args.listen), access_log=None)
            await runner.setup()
            try:
                await web.TCPSite(runner, host, port, reuse_address=True).start()
            except OSError as err:
                log.error("cannot listen on %s (--listen): %s", args.listen, err.strerror or err)
                return 2
            log.info("worker status on http://%s:%d (shard %d/%d, storage %s)", host, port, shard.index,
                     shard.total, url.split("@")[-1])
        await worker.start(config, wc)
        await stop.wait()
        log.info("stopping")
    finally:
        for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await worker.close()
        if runner is not None:
            await runner.cleanup()
        with contextlib.suppress(SotpError):
            await storage.close()
    return 0


def check(args: argparse.Namespace) -> int:
    """``--check``: like ``promtool check config`` plus the target list; 0 when valid, 2 otherwise."""
    from worker.scrape.discovery import JobDiscovery
    from worker.scrape.relabel import compile_steps
    from worker.scrape.targets import build_targets

    try:
        shard = Shard.parse(args.shard)
    except (SotpError, ValueError) as err:
        sys.stderr.write(f"sotp worker: {err}\n")
        return 2
    rc = check_file(args.config, args.data_dir)
    if rc != 0:
        return rc
    _, wc = Worker.load(args.config, args.data_dir)
    for job in wc.jobs:
        disc = JobDiscovery.for_job(job.cfg)
        disc.refresh()
        targets = [t for t in build_targets(disc.groups(), job, compile_steps(job.cfg.relabel_configs))
                   if shard.owns(t)]
        print(f"  job {job.cfg.job_name}: {len(targets)} targets, every {job.interval_s:g}s "
              f"(timeout {job.timeout_s:g}s)")
        for t in targets:
            print(f"    {t.url}  {t.labels}")
    return 0


def run(args: argparse.Namespace) -> int:
    if args.check:
        return check(args)
    return asyncio.run(serve(args))


__all__ = ["BACKUP_MODULE", "Worker", "check", "configure_parser", "find_backup_runner", "run", "serve"]
