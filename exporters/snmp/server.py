"""HTTP side: ``/snmp?target=&module=&auth=`` (multi-target, snmp_exporter's parameters) and ``/metrics``.

Every ``/snmp`` request builds its own output (no global registry). Bad parameters are answered 400
with snmp_exporter's wording; a device failure is answered 200 with ``snmp_scrape_error{reason=...} 1``
beside the ``snmp_scrape_*`` figures, so a dead switch is a metric and never a hung request: the whole
request is bounded by Prometheus' ``X-Prometheus-Scrape-Timeout-Seconds`` (minus 0.5 s) or
``exporter.scrape_timeout``. Two semaphores bound the load: one for the exporter, one per target.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from aiohttp import web

from exporters.scrape_timeout import HEADER as SCRAPE_TIMEOUT_HEADER
from exporters.scrape_timeout import scrape_timeout_header
from exporters.snmp.collector import CompiledModule, Sample, collect, to_families
from exporters.snmp.config import Auth, Module, SnmpConfig
from exporters.snmp.pdu import ScrapeError
from exporters.snmp.scraper import ScrapeResult, Session, parse_target, scrape
from sotp.codec.exposition import CONTENT_TYPE, MetricFamily, format_families

log = logging.getLogger("sotp.exporters.snmp")

DEFAULT_MODULE = "if_mib"
DEFAULT_AUTH = "public_v2"
SCRAPE_HELP = {
    "snmp_scrape_walk_duration_seconds": "Time SNMP walk/bulkwalk took.",
    "snmp_scrape_packets_sent": "Packets sent for get, bulkget, and walk; including retries.",
    "snmp_scrape_packets_retried": "Packets retried for get, bulkget, and walk.",
    "snmp_scrape_pdus_returned": "PDUs returned from get, bulkget, and walk.",
    "snmp_scrape_duration_seconds": "Total SNMP time scrape took (walk and processing).",
    "snmp_scrape_error": "1 when the scrape of the target failed; reason is timeout, refused, auth, agent, "
    "target, deadline or error (see the exporter's log for the message).",
}


class Backend(Protocol):
    """Opens :class:`Session`\\ s for one SNMP library."""

    name: str

    async def open(self, host: str, port: int, auth: Auth, timeout: float, max_repetitions: int,
                   connected: bool = True) -> Session:
        """A session to ``host:port``. ``connected`` (the module's ``not use_unconnected_udp_socket``) lets a
        backend that uses a connected socket see ICMP port unreachable; backends that cannot ignore it."""
        ...

    def close(self) -> None: ...


def make_backend(name: str, max_workers: int = 16) -> Backend:
    """The backend called ``name`` (imports only that library)."""
    if name == "ezsnmp":
        from exporters.snmp.backend_ezsnmp import EzsnmpBackend

        return EzsnmpBackend(max_workers)
    if name == "native":
        from exporters.snmp.backend_native import NativeBackend

        return NativeBackend()
    from exporters.snmp.backend_pysnmp import PysnmpBackend

    return PysnmpBackend()


class BadRequest(Exception):
    """A request parameter problem: answered 400 with the message."""


@dataclass
class Stats:
    """The exporter's own counters, exposed on /metrics."""

    request_errors: int = 0
    scrape_errors: dict[str, int] = field(default_factory=dict)
    duration: dict[str, tuple[int, float]] = field(default_factory=dict)  # module -> (count, sum)
    in_flight: int = 0


class Exporter:
    """Config, backend, limits and statistics of one exporter process."""

    def __init__(self, config: SnmpConfig, backend: Backend) -> None:
        self.config = config
        self.backend = backend
        self.compiled = {name: CompiledModule.build(m) for name, m in config.modules.items()}
        self.global_limit = asyncio.Semaphore(config.exporter.max_concurrent_scrapes)
        self._targets: dict[str, tuple[asyncio.Semaphore, int]] = {}
        self.stats = Stats()

    # -- parameters ---------------------------------------------------------------------------------------
    def resolve(self, query: dict[str, list[str]]) -> tuple[str, list[tuple[str, Auth]]]:
        """(target, [(module name, auth)]) from query parameters, or :class:`BadRequest`."""
        targets = query.get("target", [])
        if len(targets) != 1 or not targets[0]:
            raise BadRequest("'target' parameter must be specified once")
        auths = query.get("auth", [])
        if len(auths) > 1:
            raise BadRequest("'auth' parameter must only be specified once")
        modules: list[str] = []
        for value in query.get("module", []) or [DEFAULT_MODULE]:
            for name in value.split(","):
                if name and name not in modules:
                    modules.append(name)
        if not modules:
            modules = [DEFAULT_MODULE]
        for name in modules:
            if name not in self.config.modules:
                raise BadRequest(f"Unknown module '{name}'")
        if auths and auths[0]:
            auth = self.config.auths.get(auths[0])
            if auth is None:
                raise BadRequest(f"Unknown auth '{auths[0]}'")
            return targets[0], [(name, auth) for name in modules]
        # No auth named: each v0.21 module's inline credentials, else public_v2.
        default = self.config.auths[DEFAULT_AUTH]
        return targets[0], [(name, self.config.modules[name].inline_auth or default) for name in modules]

    def _target_limit(self, target: str) -> asyncio.Semaphore:
        sem, users = self._targets.get(target, (None, 0))
        if sem is None:
            sem = asyncio.Semaphore(self.config.exporter.max_concurrent_per_target)
        self._targets[target] = (sem, users + 1)
        return sem

    def _release_target(self, target: str) -> None:
        sem, users = self._targets[target]
        if users <= 1:
            del self._targets[target]
        else:
            self._targets[target] = (sem, users - 1)

    # -- scraping -----------------------------------------------------------------------------------------
    async def scrape_module(self, target: str, name: str, auth: Auth, labels: dict[str, str]) -> list[Sample]:
        """Samples of one module including ``snmp_scrape_*``; device failures become ``snmp_scrape_error``."""
        module: Module = self.config.modules[name]
        start = time.perf_counter()
        result = ScrapeResult()
        error: ScrapeError | None = None
        limit = self._target_limit(target)
        try:
            async with limit, self.global_limit:
                self.stats.in_flight += 1
                try:
                    host, port = parse_target(target)
                    session = await self.backend.open(host, port, auth, module.timeout_s, module.max_repetitions,
                                                      not module.use_unconnected_udp_socket)
                    try:
                        await scrape(session, module, target, result)
                    finally:
                        await session.close()
                finally:
                    self.stats.in_flight -= 1
        except ScrapeError as err:
            error = err
        except Exception as err:  # a library fault must not turn into a 500 for every module of the request
            log.exception("unexpected failure scraping %s module %s", target, name)
            error = ScrapeError(f"{target}: unexpected {type(err).__name__}: {err}")
        finally:
            self._release_target(target)
        samples: list[Sample] = []
        if error is not None:
            log.info("scrape of %s module %s failed: %s", target, name, error)
            self._count_error(error.reason)
            samples.append(("snmp_scrape_error", "gauge", SCRAPE_HELP["snmp_scrape_error"],
                            {**labels, "reason": error.reason}, 1.0))
        else:
            try:
                samples.extend(collect(self.compiled[name], result.pdus, self.config.exporter.wrap_large_counters))
            except Exception:  # a mapping bug on odd data: report it as a scrape error, keep serving
                log.exception("cannot map the varbinds of %s module %s", target, name)
                self._count_error("error")
                samples.append(("snmp_scrape_error", "gauge", SCRAPE_HELP["snmp_scrape_error"],
                                {**labels, "reason": "error"}, 1.0))
            samples.append(("snmp_scrape_walk_duration_seconds", "gauge",
                            SCRAPE_HELP["snmp_scrape_walk_duration_seconds"], labels, result.walk_seconds))
            samples.append(("snmp_scrape_pdus_returned", "gauge", SCRAPE_HELP["snmp_scrape_pdus_returned"],
                            labels, float(len(result.pdus))))
        samples.append(("snmp_scrape_packets_sent", "gauge", SCRAPE_HELP["snmp_scrape_packets_sent"],
                        labels, float(result.packets)))
        samples.append(("snmp_scrape_packets_retried", "gauge", SCRAPE_HELP["snmp_scrape_packets_retried"],
                        labels, float(result.retries)))
        elapsed = time.perf_counter() - start
        samples.append(("snmp_scrape_duration_seconds", "gauge", SCRAPE_HELP["snmp_scrape_duration_seconds"],
                        labels, elapsed))
        count, total = self.stats.duration.get(name, (0, 0.0))
        self.stats.duration[name] = (count + 1, total + elapsed)
        return samples

    def _count_error(self, reason: str) -> None:
        self.stats.scrape_errors[reason] = self.stats.scrape_errors.get(reason, 0) + 1

    async def scrape(self, target: str, modules: Sequence[tuple[str, Auth]], deadline: float) -> list[MetricFamily]:
        """All modules for one target, in order, within ``deadline`` seconds."""
        samples: list[Sample] = []
        # One module: the exact v0.21 output. Several: a module label tells their snmp_scrape_* apart
        # (as snmp_exporter >= 0.24 does).
        for name, auth in modules:
            labels = {"module": name} if len(modules) > 1 else {}
            start = time.perf_counter()
            try:
                async with asyncio.timeout(max(deadline, 0.001)):
                    samples.extend(await self.scrape_module(target, name, auth, labels))
            except TimeoutError:
                log.info("scrape of %s module %s exceeded the %.1fs deadline", target, name, deadline)
                self._count_error("deadline")
                samples.append(("snmp_scrape_error", "gauge", SCRAPE_HELP["snmp_scrape_error"],
                                 {**labels, "reason": "deadline"}, 1.0))
                samples.append(("snmp_scrape_duration_seconds", "gauge",
                                SCRAPE_HELP["snmp_scrape_duration_seconds"], labels, time.perf_counter() - start))
            deadline -= time.perf_counter() - start
        return to_families(samples)

    def self_metrics(self) -> list[MetricFamily]:
        s = self.stats
        req = MetricFamily("snmp_request_errors_total", "counter", "Errors in requests to the SNMP exporter")
        req.add({}, float(s.request_errors))
        err = MetricFamily("snmp_scrape_errors_total", "counter", "Device scrapes that failed, by reason.")
        for reason, n in sorted(s.scrape_errors.items()):
            err.add({"reason": reason}, float(n))
        dur = MetricFamily("snmp_collection_duration_seconds", "summary",
                           "Duration of collections by the SNMP exporter")
        for module, (count, total) in sorted(s.duration.items()):
            dur.add({"module": module}, total, "_sum")
            dur.add({"module": module}, float(count), "_count")
        flight = MetricFamily("snmp_scrapes_in_flight", "gauge", "Device scrapes running now.")
        flight.add({}, float(s.in_flight))
        return [dur, req, err, flight]


EXPORTER = web.AppKey("snmp_exporter", Exporter)


def _deadline(request: web.Request, default: float) -> float:
    try:
        seconds = scrape_timeout_header(request.headers.get(SCRAPE_TIMEOUT_HEADER))
    except ValueError:
        seconds = None
    return default if seconds is None else max(seconds - 0.5, 0.5)


async def handle_snmp(request: web.Request) -> web.Response:
    exp = request.app[EXPORTER]
    query: dict[str, list[str]] = {}
    for key, value in request.query.items():
        query.setdefault(key, []).append(value)
    try:
        target, modules = exp.resolve(query)
    except BadRequest as err:
        exp.stats.request_errors += 1
        return web.Response(status=400, text=str(err) + "\n", content_type="text/plain")
    assert isinstance(exp.config.exporter.scrape_timeout, float)
    families = await exp.scrape(target, modules, _deadline(request, exp.config.exporter.scrape_timeout))
    return web.Response(body=format_families(families).encode(), headers={"Content-Type": CONTENT_TYPE})


async def handle_metrics(request: web.Request) -> web.Response:
    body = format_families(request.app[EXPORTER].self_metrics())
    return web.Response(body=body.encode(), headers={"Content-Type": CONTENT_TYPE})


async def handle_index(request: web.Request) -> web.Response:
    exp = request.app[EXPORTER]
    modules = ", ".join(sorted(exp.config.modules))
    auths = ", ".join(sorted(exp.config.auths))
    html = (
        "<html><head><title>SOTP SNMP Exporter</title></head><body><h1>SOTP SNMP Exporter</h1>"
        "<form action='/snmp'>Target: <input name='target' value='127.0.0.1'> "
        "Module: <input name='module' value='if_mib'> Auth: <input name='auth' value='public_v2'> "
        f"<input type='submit'></form><p>Modules: {modules}</p><p>Auths: {auths}</p>"
        f"<p>Backend: {exp.backend.name}</p><p><a href='/metrics'>Metrics</a></p></body></html>"
    )
    return web.Response(text=html, content_type="text/html")


def build_app(exporter: Exporter) -> web.Application:
    """The aiohttp application; the backend is closed at cleanup."""
    app = web.Application()
    app[EXPORTER] = exporter
    app.router.add_get("/snmp", handle_snmp)
    app.router.add_get("/metrics", handle_metrics)
    app.router.add_get("/", handle_index)

    async def close_backend(app: web.Application) -> None:
        app[EXPORTER].backend.close()

    app.on_cleanup.append(close_backend)
    return app
