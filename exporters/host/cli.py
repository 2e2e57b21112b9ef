"""``sotp exporter host``: serve node_exporter-compatible host metrics on ``/metrics`` until SIGTERM."""

from __future__ import annotations

import argparse
import logging
import signal
import threading

from exporters.host import flags
from exporters.host.server import MAX_CONNECTIONS, make_server, serve_until_stopped
from sotp.errors import ConfigError

log = logging.getLogger("exporters.host")


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--listen", "--web.listen-address", dest="listen", default="127.0.0.1:9100",
                        help="address to serve /metrics on")
    flags.add_arguments(parser)
    parser.add_argument(
        "--max-connections", "--web.max-requests", dest="max_connections", type=int, default=MAX_CONNECTIONS,
        help=f"connections served at once; more get 503 (default {MAX_CONNECTIONS}, as node_exporter's "
        "--web.max-requests)",
    )


def run(args: argparse.Namespace) -> int:
    if args.max_connections < 1:
        log.error("--max-connections %d: must be at least 1", args.max_connections)
        return 2
    try:
        names = flags.collectors_from_args(args)
        options = flags.options_from_args(args)
    except ConfigError as err:
        log.error("%s", err)
        return 2
    try:
        server = make_server(args.listen, flags.sources_from_args(args), names, options, args.max_connections)
    except (OSError, ValueError) as err:
        log.error("cannot listen on %s: %s (--listen)", args.listen, err)
        return 1
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    log.info("host exporter listening on http://%s/metrics (collectors: %s)", args.listen, ", ".join(names))
    serve_until_stopped(server, stop)
    log.info("host exporter stopped")
    return 0
