"""``sotp exporter host``: serve node_exporter-compatible host metrics on ``/metrics`` until SIGTERM."""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from pathlib import Path

from exporters.host.registry import COLLECTORS
from exporters.host.server import MAX_CONNECTIONS, make_server, serve_until_stopped
from exporters.host.sources import Sources

log = logging.getLogger("exporters.host")


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--listen", default="127.0.0.1:9100", help="address to serve /metrics on")
    parser.add_argument("--proc", default="/proc", help="procfs mount point (node_exporter --path.procfs)")
    parser.add_argument("--sys", default="/sys", help="sysfs mount point (node_exporter --path.sysfs)")
    parser.add_argument(
        "--rootfs", default="", help="prefix for mount points before statfs (node_exporter --path.rootfs)"
    )
    parser.add_argument("--udev-data", default="/run/udev/data", help="udev database for node_disk_info")
    parser.add_argument(
        "--max-connections", type=int, default=MAX_CONNECTIONS,
        help=f"connections served at once; more get 503 (default {MAX_CONNECTIONS}, as node_exporter's "
        "--web.max-requests)",
    )
    parser.add_argument(
        "--collectors",
        default=",".join(COLLECTORS),
        help=f"comma-separated collectors to run (default all: {', '.join(COLLECTORS)})",
    )


def collector_list(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in COLLECTORS]
    if unknown:
        raise SystemExit(f"sotp exporter host: unknown collector(s) {', '.join(unknown)}; "
                         f"choose from {', '.join(COLLECTORS)} (--collectors)")
    return names


def sources_from_args(args: argparse.Namespace) -> Sources:
    return Sources(proc=Path(args.proc), sys=Path(args.sys), rootfs=args.rootfs.rstrip("/"),
                   udev=Path(args.udev_data))


def run(args: argparse.Namespace) -> int:
    if args.max_connections < 1:
        log.error("--max-connections %d: must be at least 1", args.max_connections)
        return 2
    try:
        server = make_server(args.listen, sources_from_args(args), collector_list(args.collectors),
                             args.max_connections)
    except (OSError, ValueError) as err:
        log.error("cannot listen on %s: %s (--listen)", args.listen, err)
        return 1
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    log.info("host exporter listening on http://%s/metrics", args.listen)
    serve_until_stopped(server, stop)
    log.info("host exporter stopped")
    return 0
