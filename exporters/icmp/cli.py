"""``sotp exporter icmp``: serve ``/probe`` and continuous ``/metrics`` until SIGTERM or SIGINT; SIGHUP or
``POST /-/reload`` re-reads the configuration (an invalid one is logged and the running one kept).

Without ``--config`` (as ``sotp up`` starts it) the default module ``icmp`` is served and ``localhost``
is pinged continuously; ``--target`` adds continuous targets to any configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import time

from aiohttp import web

from exporters.icmp import config as icmp_config
from exporters.icmp.continuous import ContinuousPinger
from exporters.icmp.errors import SocketUnavailable
from exporters.icmp.pinger import Pinger
from exporters.icmp.server import STATE, make_app
from sotp.errors import ConfigError

log = logging.getLogger("exporters.icmp")


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="icmp.yml",
                        help="modules and continuous targets, or a sotp.yml with an icmp: section "
                        "(default: module icmp, continuous ping of localhost)")
    parser.add_argument("--listen", default="127.0.0.1:9115", metavar="HOST:PORT",
                        help="HTTP address (default: %(default)s)")
    parser.add_argument("--socket", choices=["auto", "datagram", "raw"], help="ICMP socket kind (overrides config)")
    parser.add_argument("--max-in-flight", type=int, metavar="N", help="echoes in flight at once (overrides config)")
    parser.add_argument("--target", action="append", default=[], metavar="HOST",
                        help="add a continuous target (repeatable)")
    parser.add_argument("--timeout-offset", type=float, metavar="SECONDS",
                        help="subtracted from the scrape timeout header (overrides config; default 0.5)")


def split_listen(listen: str) -> tuple[str, int]:
    """``127.0.0.1:9115`` / ``[::1]:9115`` / ``:9115`` -> (host, port)."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"--listen: {listen!r} is not HOST:PORT (e.g. 127.0.0.1:9115)")
    return host.strip("[]") or "0.0.0.0", int(port)


def build_config(args: argparse.Namespace) -> icmp_config.IcmpConfig:
    cfg = icmp_config.load(args.config)
    if args.config is None and not args.target:
        cfg.continuous.targets = ["localhost"]
    cfg.continuous.targets += [t for t in args.target if t not in cfg.continuous.targets]
    if args.socket:
        cfg.socket = args.socket
    if args.max_in_flight is not None:
        cfg.max_in_flight = args.max_in_flight
    if args.timeout_offset is not None:
        cfg.timeout_offset = args.timeout_offset
    cfg.validate("")
    cfg.continuous.validate("continuous")
    return cfg


async def serve(args: argparse.Namespace, cfg: icmp_config.IcmpConfig, host: str, port: int) -> int:
    pinger = Pinger(mode=cfg.socket, max_in_flight=cfg.max_in_flight)
    modes = pinger.open_default()
    if all(m == "unavailable" for m in modes.values()):
        log.error("icmp: no ICMP socket can be opened; see the messages above")
        return 1
    app = make_app(cfg, pinger, ContinuousPinger(cfg.continuous, pinger))
    state = app[STATE]

    async def reload() -> str | None:
        # The same sources as at start-up (file and flags); an invalid file keeps the running config.
        try:
            new = build_config(args)
        except ConfigError as err:
            log.error("icmp: reload failed, keeping the running configuration: %s", err)
            state.last_reload_ok = False
            return str(err)
        await state.apply(new)
        state.last_reload_ok = True
        state.last_reload_success = time.time()
        return None

    state.reload = reload
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as err:
        log.error("icmp: cannot listen on %s:%d: %s (choose another --listen)", host, port, err.strerror)
        await runner.cleanup()
        pinger.close()
        return 1
    log.info("icmp exporter listening on http://%s:%d (modules: %s; %d continuous targets every %s)",
             host, port, ", ".join(sorted(cfg.modules)), len(cfg.continuous.targets), cfg.continuous.interval)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    reloads: set[asyncio.Task[str | None]] = set()

    def on_sighup() -> None:
        task = asyncio.create_task(reload())
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGHUP, on_sighup)
    state.start_continuous()
    await stop.wait()
    log.info("icmp exporter stopping")
    await state.stop_continuous()
    await runner.cleanup()
    pinger.close()
    return 0


def run(args: argparse.Namespace) -> int:
    try:
        cfg = build_config(args)
        host, port = split_listen(args.listen)
    except ConfigError as err:
        sys.stderr.write(f"sotp exporter icmp: {err}\n")
        return 2
    try:
        return asyncio.run(serve(args, cfg, host, port))
    except SocketUnavailable as err:
        sys.stderr.write(f"sotp exporter icmp: {err}\n")
        return 1
