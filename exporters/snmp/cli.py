"""``sotp exporter snmp``: serve ``/snmp`` and ``/metrics`` until SIGTERM/SIGINT, then exit 0."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from aiohttp import web

from exporters.snmp.config import load_config
from exporters.snmp.server import Exporter, build_app, make_backend
from sotp.errors import ConfigError

log = logging.getLogger("sotp.exporters.snmp")


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=None, metavar="snmp.yml",
                        help="snmp_exporter-style config (auths + modules, or v0.21 modules); "
                             "the built-in if_mib, system and host_resources modules are always present")
    parser.add_argument("--listen", default="127.0.0.1:9116", metavar="HOST:PORT", help="address to serve on")
    parser.add_argument("--backend", choices=["pysnmp", "ezsnmp", "native"], default=None,
                        help="SNMP library (default: exporter.backend in the config, else pysnmp)")
    wrap = parser.add_mutually_exclusive_group()
    wrap.add_argument("--snmp.wrap-large-counters", dest="wrap", action="store_true", default=None,
                      help="wrap Counter64 at 2^53 so float64 stays exact (the default)")
    wrap.add_argument("--no-snmp.wrap-large-counters", dest="wrap", action="store_false",
                      help="expose Counter64 unwrapped (precision is lost above 2^53)")
    parser.add_argument("--max-concurrent-scrapes", type=int, default=None, metavar="N",
                        help="device scrapes in flight over the whole exporter (exporter.max_concurrent_scrapes)")
    parser.add_argument("--max-concurrent-per-target", type=int, default=None, metavar="N",
                        help="scrapes of one target in flight (exporter.max_concurrent_per_target)")
    parser.add_argument("--dry-run", action="store_true", help="only check the configuration and exit")


def _split_listen(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    if not port.isdigit():
        raise ConfigError(f"--listen {listen!r}: expected HOST:PORT such as 127.0.0.1:9116")
    return host.strip("[]") or "0.0.0.0", int(port)


async def serve(exporter: Exporter, host: str, port: int) -> None:
    """Run the app until SIGTERM or SIGINT."""
    runner = web.AppRunner(build_app(exporter), access_log=None)
    await runner.setup()
    # On SIGTERM, scrapes in flight get one second to finish, then are cancelled: a dead device must
    # not hold the exit for timeout x retries. (A blocking ezsnmp call still ends at its own timeout.)
    site = web.TCPSite(runner, host, port, shutdown_timeout=1.0)
    await site.start()
    log.info("snmp exporter listening on %s:%d (backend %s, %d modules)", host, port, exporter.backend.name,
             len(exporter.config.modules))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        log.info("snmp exporter stopping")
        await runner.cleanup()


def run(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
        ex = config.exporter
        if args.backend:
            ex.backend = args.backend
        if args.wrap is not None:
            ex.wrap_large_counters = args.wrap
        if args.max_concurrent_scrapes is not None:
            ex.max_concurrent_scrapes = args.max_concurrent_scrapes
        if args.max_concurrent_per_target is not None:
            ex.max_concurrent_per_target = args.max_concurrent_per_target
        ex.validate("exporter")
        host, port = _split_listen(args.listen)
    except ConfigError as err:
        sys.stderr.write(f"sotp exporter snmp: {err}\n")
        return 2
    if args.dry_run:
        sys.stdout.write(f"configuration ok: {len(config.modules)} modules, {len(config.auths)} auths\n")
        return 0

    async def main() -> None:
        backend = make_backend(config.exporter.backend, max_workers=min(config.exporter.max_concurrent_scrapes, 32))
        await serve(Exporter(config, backend), host, port)

    try:
        asyncio.run(main())
    except OSError as err:
        sys.stderr.write(f"sotp exporter snmp: cannot listen on {args.listen}: {err.strerror} (change --listen)\n")
        return 1
    return 0
