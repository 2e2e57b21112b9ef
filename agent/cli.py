"""``sotp agent``: collect this host's metrics every interval and push them over remote write 1.0.

Runs until SIGTERM/SIGINT; on the way out it flushes what it can and keeps the rest in the buffer
directory, which the next start replays first.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import threading
from pathlib import Path

from agent import install
from agent.buffer import Buffer
from agent.loop import Agent, Settings
from agent.sender import Sender
from exporters.host import flags
from exporters.host.options import Options
from exporters.host.registry import collect
from sotp.config import parse_duration
from sotp.errors import ConfigError
from sotp.model import LABEL_NAME_RE

log = logging.getLogger("agent")


def _default_buffer_dir() -> str:
    # systemd's StateDirectory= sets $STATE_DIRECTORY; elsewhere keep it beside the embedded store.
    state = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    return str(Path(state) / "buffer") if state else "./data/agent-buffer"


def configure_parser(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="{install,uninstall}",
                                    help="optional: set up or remove the systemd service instead of running")
    install.configure_install(actions.add_parser("install", help="write and enable the hardened systemd unit"))
    install.configure_uninstall(actions.add_parser("uninstall", help="stop and remove the systemd unit"))
    parser.add_argument("--url", help="remote-write URL, e.g. http://core:9201/api/v1/write (required)")
    parser.add_argument("--token-file", help="file holding the bearer token (scope write)")
    parser.add_argument("--ca-file", help="PEM CA bundle to verify an https:// receiver (default: system store)")
    parser.add_argument("--interval", default="15s", help="collection interval (default 15s)")
    parser.add_argument("--timeout", default="10s", help="HTTP timeout per request (default 10s)")
    parser.add_argument("--job", default="node", help="job label (default node)")
    parser.add_argument("--instance", default=socket.gethostname(), help="instance label (default hostname)")
    parser.add_argument("--label", action="append", default=[], metavar="NAME=VALUE",
                        help="extra label on every series (repeatable)")
    parser.add_argument("--buffer-dir", default=_default_buffer_dir(),
                        help="on-disk buffer for batches the receiver has not taken yet "
                             "(default $STATE_DIRECTORY/buffer or ./data/agent-buffer)")
    parser.add_argument("--buffer-max-bytes", type=int, default=64 << 20,
                        help="size limit of the buffer directory; oldest batches are dropped first (default 64 MiB)")
    parser.add_argument("--max-samples-per-send", type=int, default=2000, help="batch size (default 2000)")
    parser.add_argument("--max-backoff", default="30s", help="cap of the retry backoff (default 30s)")
    flags.add_arguments(parser)


def target_labels(args: argparse.Namespace) -> dict[str, str]:
    labels: dict[str, str] = {}
    for item in args.label:
        name, sep, value = item.partition("=")
        if not sep or not LABEL_NAME_RE.match(name) or name.startswith("__"):
            raise ConfigError(f"--label {item!r}: use NAME=VALUE with NAME matching [a-zA-Z_][a-zA-Z0-9_]*")
        labels[name] = value
    labels["instance"] = args.instance
    labels["job"] = args.job
    return labels


def settings(args: argparse.Namespace) -> tuple[Settings, list[str], Options]:
    """Check every setting that needs no file or network (``sotp agent install`` checks the service's flags
    with it before writing anything): the loop's settings, the collectors and their options."""
    names = flags.collectors_from_args(args)
    options = flags.options_from_args(args)
    if not args.url:
        raise ConfigError("--url is required: the remote-write URL, e.g. http://core:9201/api/v1/write")
    if not args.url.startswith(("http://", "https://")):
        raise ConfigError(f"--url {args.url!r}: use http://host:port/api/v1/write or https://...")
    loop = Settings(
        interval=parse_duration(args.interval, "--interval"),
        target=target_labels(args),
        max_samples_per_send=args.max_samples_per_send,
        max_backoff=parse_duration(args.max_backoff, "--max-backoff"),
    )
    if loop.interval <= 0:
        raise ConfigError("--interval must be positive")
    parse_duration(args.timeout, "--timeout")
    return loop, names, options


def build(args: argparse.Namespace) -> Agent:
    token = None
    if args.token_file:
        try:
            token = Path(args.token_file).read_text().strip()
        except OSError as err:
            raise ConfigError(f"cannot read --token-file {args.token_file}: {err.strerror}") from err
    loop, names, options = settings(args)
    if args.ca_file and not os.access(args.ca_file, os.R_OK):
        raise ConfigError(f"cannot read --ca-file {args.ca_file}")
    sources = flags.sources_from_args(args)
    sender = Sender(args.url, token, parse_duration(args.timeout, "--timeout"), args.ca_file)
    buffer = Buffer(Path(args.buffer_dir), args.buffer_max_bytes)
    return Agent(loop, lambda: collect(sources, names, options), sender, buffer)


def run(args: argparse.Namespace) -> int:
    if args.action is not None:
        try:
            return install.install(args) if args.action == "install" else install.uninstall(args)
        except (ConfigError, OSError) as err:
            log.error("sotp agent %s: %s", args.action, err)
            return 1
    try:
        agent = build(args)
    except (ConfigError, OSError) as err:
        log.error("%s", err)
        return 2
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    log.info("agent pushing to %s every %ss as instance=%s job=%s", args.url, agent.s.interval,
             args.instance, args.job)
    agent.run(stop)
    return 0
