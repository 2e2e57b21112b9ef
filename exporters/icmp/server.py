"""The exporter's HTTP side: ``/probe`` (blackbox), ``/metrics`` (continuous + self-metrics), ``/-/healthy``."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import yaml
from aiohttp import web

from exporters.icmp.config import IcmpConfig
from exporters.icmp.continuous import ContinuousPinger
from exporters.icmp.pinger import Pinger
from exporters.icmp.probe import probe_timeout, run_probe
from sotp.codec.exposition import CONTENT_TYPE, MetricFamily, format_families

log = logging.getLogger(__name__)

DEFAULT_MODULE = "icmp"


@dataclass
class ExporterState:
    """Everything the handlers share; built once per process by :func:`make_app`.

    ``reload`` (set by the command) re-reads the configuration and returns an error message or ``None``."""

    config: IcmpConfig
    pinger: Pinger
    continuous: ContinuousPinger
    probes: dict[tuple[str, str], int] = field(default_factory=dict)
    reload: Callable[[], Awaitable[str | None]] | None = None
    last_reload_ok: bool = True
    last_reload_success: float = field(default_factory=time.time)
    _task: asyncio.Task[None] | None = None

    def start_continuous(self) -> None:
        self._task = asyncio.create_task(self.continuous.run())

    async def stop_continuous(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def apply(self, cfg: IcmpConfig) -> None:
        """Switch to ``cfg`` (already validated): modules at once; the continuous loop is restarted only
        when its section changed, keeping the counters of targets that stay (unless the buckets changed).
        Echoes in flight at the switch are dropped uncounted, so no loss appears from a reload."""
        old = self.config
        if (cfg.socket, cfg.max_in_flight) != (old.socket, old.max_in_flight):
            log.warning("icmp: socket and max_in_flight changes take effect after a restart")
            cfg.socket, cfg.max_in_flight = old.socket, old.max_in_flight
        self.config = cfg
        if cfg.continuous != old.continuous:
            new = ContinuousPinger(cfg.continuous, self.pinger)
            cur = self.continuous
            if cfg.continuous.buckets == old.continuous.buckets:
                keep = set(cfg.continuous.targets)
                new.stats = {k: v for k, v in cur.stats.items() if k[0] in keep}
            # Counters must not go back to 0 on a reload.
            new.cycles_skipped, new.pings_skipped = cur.cycles_skipped, cur.pings_skipped
            errors = {t.host: t.resolve_errors for t in cur.targets}
            for t in new.targets:
                t.resolve_errors = errors.get(t.host, 0)
            await self.stop_continuous()
            self.continuous = new
            self.start_continuous()
        log.info("icmp: configuration reloaded (modules: %s; %d continuous targets)",
                 ", ".join(sorted(cfg.modules)), len(cfg.continuous.targets))


STATE = web.AppKey("icmp_state", ExporterState)


def _text(body: str, status: int = 200) -> web.Response:
    return web.Response(text=body, status=status, headers={"Content-Type": CONTENT_TYPE})


async def handle_probe(request: web.Request) -> web.Response:
    state = request.app[STATE]
    params = request.query
    name = params.get("module") or DEFAULT_MODULE
    module = state.config.modules.get(name)
    if module is None:
        return web.Response(text=f'Unknown module "{name}"\n', status=400)
    try:
        timeout = probe_timeout(
            request.headers.get("X-Prometheus-Scrape-Timeout-Seconds"), module, state.config.timeout_offset
        )
    except ValueError as err:
        return web.Response(text=f"Failed to parse timeout from Prometheus header: {err}\n", status=500)
    target = params.get("target", "")
    if not target:
        return web.Response(text="Target parameter is missing\n", status=400)
    result = await run_probe(state.pinger, target, module, timeout)
    key = (name, "success" if result.success else "failure")
    state.probes[key] = state.probes.get(key, 0) + 1
    metrics = format_families(result.families())
    if params.get("debug") == "true":  # blackbox's debug page: what happened, what would be returned, config
        body = (
            "Logs for the probe:\n" + "".join(n + "\n" for n in result.notes)
            + "\n\n\nMetrics that would have been returned:\n" + metrics
            + "\n\n\nModule configuration:\n" + yaml.safe_dump(dataclasses.asdict(module), sort_keys=False)
        )
        return web.Response(text=body, content_type="text/plain")
    return _text(metrics)


def self_families(state: ExporterState) -> list[MetricFamily]:
    """The exporter's own metrics: socket kinds, echoes in flight, unmatched replies, probes run."""
    info = MetricFamily("sotp_icmp_socket_info", "gauge",
                        "ICMP sockets in use: mode is datagram (unprivileged) or raw")
    for (family, source), mode in sorted(state.pinger.modes().items()):
        info.add({"family": family, "mode": mode, "source": source}, 1.0)
    in_flight = MetricFamily("sotp_icmp_in_flight", "gauge", "Echo requests awaiting a reply")
    in_flight.add({}, float(state.pinger.in_flight))
    limit = MetricFamily("sotp_icmp_max_in_flight", "gauge", "Configured bound on echo requests in flight")
    limit.add({}, float(state.pinger.max_in_flight))
    unmatched = MetricFamily("sotp_icmp_unmatched_replies_total", "counter",
                             "Echo replies that matched no pending request (late, duplicate or foreign)")
    unmatched.add({}, float(state.pinger.unmatched))
    probes = MetricFamily("sotp_icmp_probes_total", "counter", "Probes served on /probe by module and result")
    for (module, result), n in sorted(state.probes.items()):
        probes.add({"module": module, "result": result}, float(n))
    ok = MetricFamily("sotp_icmp_config_last_reload_successful", "gauge",
                      "Whether the last configuration reload attempt was successful")
    ok.add({}, 1.0 if state.last_reload_ok else 0.0)
    when = MetricFamily("sotp_icmp_config_last_reload_success_timestamp_seconds", "gauge",
                        "Timestamp of the last successful configuration reload (or of the start)")
    when.add({}, state.last_reload_success)
    return [info, in_flight, limit, unmatched, probes, ok, when]


async def handle_metrics(request: web.Request) -> web.Response:
    state = request.app[STATE]
    return _text(await state.continuous.render() + format_families(self_families(state)))


async def handle_reload(request: web.Request) -> web.Response:
    state = request.app[STATE]
    if state.reload is None:
        return web.Response(text="reload is not available\n", status=503)
    error = await state.reload()
    if error is not None:
        return web.Response(text=f"failed to reload config: {error}\n", status=500)
    return web.Response(text="OK\n")


async def handle_healthy(request: web.Request) -> web.Response:
    return web.Response(text="Healthy\n")


async def handle_index(request: web.Request) -> web.Response:
    state = request.app[STATE]
    modules = ", ".join(sorted(state.config.modules))
    body = (
        "<html><head><title>SOTP ICMP exporter</title></head><body><h1>SOTP ICMP exporter</h1>"
        f"<p><a href='/probe?target=127.0.0.1&amp;module={DEFAULT_MODULE}'>Probe 127.0.0.1</a> "
        f"(modules: {modules})</p><p><a href='/metrics'>Metrics</a> "
        f"({len(state.continuous.targets)} continuous targets)</p></body></html>"
    )
    return web.Response(text=body, content_type="text/html")


def make_app(config: IcmpConfig, pinger: Pinger, continuous: ContinuousPinger) -> web.Application:
    """The aiohttp application; the caller owns the pinger and the continuous loop's lifetime."""
    app = web.Application()
    app[STATE] = ExporterState(config=config, pinger=pinger, continuous=continuous)
    app.router.add_get("/probe", handle_probe)
    app.router.add_get("/metrics", handle_metrics)
    app.router.add_get("/-/healthy", handle_healthy)
    app.router.add_post("/-/reload", handle_reload)
    app.router.add_get("/", handle_index)
    return app
