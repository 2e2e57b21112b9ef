"""``sotp up``: the whole stack on one machine, from one optional sotp.yml.

It checks the file as ``sotp check config`` does (exit 2 with every problem), writes the configuration its
children read (:mod:`sotp.cli.up_config`) and supervises one child process per component (``sotp serve``,
the worker, the exporters, a local agent and the dashboard), each started with the command line a user
would type, so ``sotp up`` is exactly the sum of the documented commands. ``sotp serve`` starts first and
the others once it answers, so nothing starts by failing to connect. A child that exits (or is killed) is
restarted after an exponential backoff (:class:`Backoff`: 1 s, doubling to at most 30 s; back to 1 s once a
child had run for 60 s), each exit logged with the child's name, pid and exit status; Ctrl-C or SIGTERM
stops them all. Children run in their own session, so a terminal's Ctrl-C
reaches only ``sotp up``, which then stops them in order. Components whose extra is not installed are
skipped with the install hint.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from sotp.auth import TokenStore, auth_config, auth_enabled, auth_required
from sotp.cli.check import check_file, checked_config
from sotp.cli.options import check_option, config_options
from sotp.cli.serve import split_listen
from sotp.cli.up_config import GENERATED, Addresses, generated_config, internal_tokens
from sotp.config import Config, from_dict
from sotp.errors import ConfigError
from sotp.inventory import inventory

log = logging.getLogger("sotp.up")

#: How long the other components wait for ``sotp serve`` to answer before they start anyway.
SERVE_READY_TIMEOUT_S = 60.0
#: How often sotp up looks whether auth came on while running (a ``stat`` of the tokens file).
AUTH_CHECK_S = 2.0


#: Restart delays: the first after ``BACKOFF_INITIAL_S``, doubling with each exit in a row up to
#: ``BACKOFF_MAX_S``; a child that ran ``HEALTHY_AFTER_S`` before exiting starts again from the first delay.
BACKOFF_INITIAL_S = 1.0
BACKOFF_MAX_S = 30.0
HEALTHY_AFTER_S = 60.0


@dataclass
class Backoff:
    """Restart delays of one child: exponential in its exits in a row, capped, reset by a healthy run (a
    component that crashes at start does not spin, and one that crashes once a day restarts at once)."""

    initial_s: float = BACKOFF_INITIAL_S
    max_s: float = BACKOFF_MAX_S
    healthy_s: float = HEALTHY_AFTER_S
    #: Exits in a row, each after running less than ``healthy_s``.
    failures: int = 0

    def after_exit(self, ran_s: float) -> float:
        """The delay before restarting a child that exited after running ``ran_s`` seconds."""
        if ran_s >= self.healthy_s:
            self.failures = 0
        delay = min(self.max_s, self.initial_s * 2.0 ** min(self.failures, 32))
        self.failures += 1
        return delay


def exit_status(rc: int) -> str:
    """``exited with status 3`` or ``was killed by SIGKILL`` (Popen's negative return code)."""
    if rc < 0:
        try:
            return f"was killed by {signal.Signals(-rc).name}"
        except ValueError:
            return f"was killed by signal {-rc}"
    return f"exited with status {rc}"


@dataclass
class Child:
    """One supervised component."""

    name: str
    argv: list[str]
    needs: str  # an importable module that proves the component's extra is installed
    url: str = ""
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    next_start: float = 0.0
    log_path: Path | None = None
    env: dict[str, str] = field(default_factory=dict)
    #: When the running process started (time.monotonic()).
    started: float = 0.0
    backoff: Backoff = field(default_factory=Backoff)


@dataclass(frozen=True)
class Stack:
    """Everything the children are built from."""

    config: Config  # the generated configuration, as every child reads it
    config_file: Path
    user_file: Path | None  # the sotp.yml it was generated from
    at: Addresses
    data: Path
    interval: str
    tokens: dict[str, Path] | None  # internal token files when auth is on
    snmp_config: str | None  # the SNMP exporter's module file, when the exporter runs
    run_snmp: bool
    dashboard: bool


def _sotp(*args: str) -> list[str]:
    return [sys.executable, "-m", "sotp", *args]


def _token_args(stack: Stack, role: str) -> list[str]:
    return ["--token-file", str(stack.tokens[role])] if stack.tokens is not None else []


def shipped_rule_files() -> list[Path]:
    """The alerting rules SOTP ships (``deploy/rules/*.rules.yml`` of the checkout this runs from)."""
    root = Path(__file__).resolve().parents[2] / "deploy" / "rules"
    return sorted(root.glob("*.rules.yml"))


def serve_child(s: Stack) -> Child | None:
    return Child("serve", _sotp("serve", "--config", str(s.config_file), "--ruler-url",
                                f"http://{s.at.at(s.at.ruler)}"), "aiohttp", f"http://{s.at.at(s.at.serve)}")


def ruler_child(s: Stack) -> Child | None:
    return Child("ruler", _sotp("ruler", "--config", str(s.config_file), "--listen", f"{s.at.host}:{s.at.ruler}",
                                "--external-url", f"http://{s.at.at(s.at.serve)}",
                                *[a for f in shipped_rule_files() for a in ("--rule-file", str(f))]),
                 "aiohttp", f"http://{s.at.at(s.at.ruler)}/api/v1/alerts")


def host_exporter_child(s: Stack) -> Child | None:
    listen = f"{s.at.host}:{s.at.host_exporter}"
    return Child("exporter-host", _sotp("exporter", "host", "--listen", listen), "exporters.host",
                 f"http://{s.at.at(s.at.host_exporter)}/metrics")


def icmp_exporter_child(s: Stack) -> Child | None:
    return Child("exporter-icmp", _sotp("exporter", "icmp", "--config", str(s.config_file), "--listen",
                                        f"{s.at.host}:{s.at.icmp}"), "icmplib", f"http://{s.at.at(s.at.icmp)}/metrics")


def snmp_exporter_child(s: Stack) -> Child | None:
    if not s.run_snmp:
        return None
    argv = _sotp("exporter", "snmp", "--listen", f"{s.at.host}:{s.at.snmp}")
    if s.snmp_config:
        argv += ["--config", s.snmp_config]
    return Child("exporter-snmp", argv, "pysnmp", f"http://{s.at.at(s.at.snmp)}/snmp?target=<device>&module=if_mib")


def worker_child(s: Stack) -> Child | None:
    return Child("worker", _sotp("worker", "--config", str(s.config_file), "--listen", f"{s.at.host}:{s.at.worker}"),
                 "aiohttp", f"http://{s.at.at(s.at.worker)}")


def agent_child(s: Stack) -> Child | None:
    return Child("agent", _sotp("agent", "--url", f"http://{s.at.at(s.at.serve)}/api/v1/write", "--interval",
                                s.interval, "--buffer-dir", str(s.data / "agent-buffer"), *_token_args(s, "agent")),
                 "agent")


def dashboard_child(s: Stack) -> Child | None:
    if not s.dashboard:
        return None
    return Child("dashboard", _sotp("dashboard", "--api", f"http://{s.at.at(s.at.serve)}", "--address", s.at.host,
                                    "--port", str(s.at.dashboard), "--scrape-interval", s.interval,
                                    *_token_args(s, "dashboard")),
                 "streamlit", f"http://{s.at.at(s.at.dashboard)}")


#: The components in start order; ``serve`` first (the others start once it answers). Add a component
#: here with a function building its Child from the Stack (None: not wanted with this configuration).
COMPONENTS: list[Callable[[Stack], Child | None]] = [
    serve_child, ruler_child, host_exporter_child, icmp_exporter_child, snmp_exporter_child, worker_child,
    agent_child, dashboard_child,
]


def configure_parser(parser: argparse.ArgumentParser) -> None:
    config_options(parser)
    parser.add_argument("--host", help="address every component listens on (default: server.listen's, 127.0.0.1)")
    parser.add_argument("--port", type=int, help="sotp serve's port, the API and receivers (default: server.listen's, "
                        "9201)")
    parser.add_argument("--port-base", type=int, default=9000,
                        help="exporters listen on base+100 (host), base+115 (icmp), base+116 (snmp)")
    parser.add_argument("--dashboard-port", type=int, default=8501)
    parser.add_argument("--interval", help="agent push and scrape interval (default: global.scrape_interval, 15s)")
    parser.add_argument("--snmp-config", help="snmp.yml for the SNMP exporter (overrides snmp.config_file)")
    parser.add_argument("--no-dashboard", action="store_true", help="do not start the Streamlit app")
    check_option(parser)


def addresses(args: argparse.Namespace, config: Config) -> Addresses:
    host, port = split_listen(config.server.listen)
    host = args.host or host
    port = args.port or port
    connect = "127.0.0.1" if host in ("0.0.0.0", "", "::") else host
    return Addresses(host=host, connect=connect, serve=port, worker=port + 1, ruler=port + 3,
                     host_exporter=args.port_base + 100, icmp=args.port_base + 115, snmp=args.port_base + 116,
                     dashboard=args.dashboard_port)


def prepare(args: argparse.Namespace) -> Stack:
    """Check the user's file, provision internal tokens if auth is on, write the generated config."""
    config = checked_config(args.config, args.data_dir)
    if args.snmp_config:
        config.snmp = {**config.snmp, "config_file": str(Path(args.snmp_config).resolve())}
    at = addresses(args, config)
    config.server.listen = f"{at.host}:{at.serve}"
    data = config.data_dir
    data.mkdir(parents=True, exist_ok=True)
    tokens = None
    if auth_enabled(config):
        tokens = internal_tokens(TokenStore(auth_config(config).tokens_file), data / "internal")
    interval = args.interval or str(config.global_.get("scrape_interval", "15s"))
    raw = generated_config(config, at, args.interval, tokens)
    path = data / GENERATED
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(
        f"# Generated by sotp up from {config.source or 'its defaults'}; rewritten at every start. Edit that file.\n"
        + yaml.safe_dump(raw, sort_keys=False)
    )
    tmp.replace(path)
    generated = from_dict(Config, raw)
    generated.source, generated.data_dir = path, data
    inv = inventory(generated)
    snmp_file = str(generated.snmp.get("config_file") or "") or None
    return Stack(generated, path, config.source, at, data, interval, tokens, snmp_file,
                 run_snmp=bool(inv.snmp_targets()) or args.snmp_config is not None, dashboard=not args.no_dashboard)


def plan(stack: Stack) -> list[Child]:
    """The children to run, in start order."""
    return [c for c in (build(stack) for build in COMPONENTS) if c is not None]


def _start(child: Child, logs: Path) -> None:
    child.log_path = logs / f"{child.name}.log"
    fh = open(child.log_path, "ab")  # noqa: SIM115 - owned by the child process
    # Own session: a terminal's Ctrl-C goes to sotp up alone, which stops the children itself.
    child.proc = subprocess.Popen(child.argv, stdout=fh, stderr=subprocess.STDOUT, env={**os.environ, **child.env},
                                  start_new_session=True)
    child.started = time.monotonic()
    fh.close()
    log.info("started %s (pid %d)", child.name, child.proc.pid)


def _serve_ready(stack: Stack, deadline: float, stopping: Callable[[], bool]) -> bool:
    url = f"http://{stack.at.at(stack.at.serve)}/-/ready"
    while time.monotonic() < deadline and not stopping():
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    return False


def banner(stack: Stack, children: list[Child], logs: Path) -> list[str]:
    """What ``sotp up`` prints at start: where everything is, absolute paths, the real auth state."""
    cfg = stack.config
    origin = str(stack.user_file) if stack.user_file is not None else "no config file, the defaults"
    lines = [f"sotp up: configuration {stack.config_file} (generated from {origin})"]
    lines.append(f"sotp up: data in {stack.data} (store {cfg.server.storage.split('@')[-1]}, logs {logs})")
    auth = auth_config(cfg)
    if stack.tokens is not None:
        lines.append(f"sotp up: authentication is ON: tokens in {auth.tokens_file}; sotp up's agent, self-scrape "
                     f"and dashboard use their own tokens in {stack.data / 'internal'}")
        lines.append(f"  a token for Grafana or a script: sotp token create --tokens-file {auth.tokens_file} "
                     "--name grafana --scope read")
    else:
        _, why = auth_required(auth, cfg.server.listen, TokenStore(auth.tokens_file))
        lines.append(f"sotp up: authentication is off ({why}); set auth.enabled: true or create a token "
                     f"(sotp token create --tokens-file {auth.tokens_file} ...) to require tokens")
    for d in inventory(cfg).devices:
        uses = [k for k in ("snmp", "icmp") if getattr(d, k)] + (["backup"] if d.backup is not None else [])
        lines.append(f"  device {d.name:<14} {', '.join(uses)}")
    lines.append("sotp up: running")
    for child in children:
        if child.url:
            lines.append(f"  {child.name:<14} {child.url}")
    lines.append(f"  Prometheus data source for Grafana: http://{stack.at.at(stack.at.serve)}  — Ctrl-C stops "
                 "everything")
    return lines


def _auth_turned_on(args: argparse.Namespace, stack: Stack, children: list[Child],
                    logs: Path) -> tuple[Stack, list[Child]]:
    """Auth came on while running (a token was created, and serve requires tokens from then on): give sotp up's
    own parts their tokens and restart those whose command line or configuration changed."""
    try:
        new_stack = prepare(args)
    except ConfigError as err:
        log.error("authentication is now on, but the configuration cannot be regenerated: %s", err)
        return stack, children
    wanted = {c.name: c for c in plan(new_stack)}
    print(f"sotp up: authentication is now ON ({auth_config(new_stack.config).tokens_file} holds a token): "
          f"sotp up's agent, self-scrape and dashboard now use their tokens in {new_stack.data / 'internal'}",
          flush=True)
    out = []
    for child in children:
        new = wanted.get(child.name, child)
        new.backoff, new.restarts = child.backoff, child.restarts
        if child.name != "serve" and child.proc is not None and child.proc.poll() is None:
            child.proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.proc.wait(10)
            if child.proc.poll() is None:
                child.proc.kill()
            _start(new, logs)
        elif child.name != "serve":
            new.next_start = child.next_start
        else:
            new = child
        out.append(new)
    return new_stack, out


def run(args: argparse.Namespace) -> int:
    if args.check:
        return check_file(args.config, args.data_dir)
    try:
        stack = prepare(args)
    except ConfigError as err:
        sys.stderr.write(f"sotp up: {err}\n")
        return 2
    children = []
    for child in plan(stack):
        if importlib.util.find_spec(child.needs) is None:
            print(f"sotp up: skipping {child.name}: pip install 'sotp[all]' to get {child.needs}", flush=True)
            continue
        children.append(child)
    logs = stack.data / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    first, rest = children[:1], children[1:]
    for child in first:
        _start(child, logs)
    if first and first[0].name == "serve" and not _serve_ready(
        stack, time.monotonic() + SERVE_READY_TIMEOUT_S, lambda: stopping
    ):
        log.warning("sotp serve is not ready after %.0fs; starting the others anyway (log: %s)",
                    SERVE_READY_TIMEOUT_S, first[0].log_path)
    if not stopping:
        for child in rest:
            _start(child, logs)
        print("\n".join(banner(stack, children, logs)), flush=True)
    next_auth_check = time.monotonic() + AUTH_CHECK_S
    while not stopping:
        time.sleep(0.5)
        if stopping:  # a signal during the sleep: the children may be exiting because of it, do not restart
            break
        now = time.monotonic()
        if stack.tokens is None and now >= next_auth_check:
            next_auth_check = now + AUTH_CHECK_S
            if auth_enabled(stack.config):
                stack, children = _auth_turned_on(args, stack, children, logs)
        for child in children:
            if child.proc is not None and child.proc.poll() is not None:
                rc, pid = child.proc.returncode, child.proc.pid
                child.proc = None
                child.restarts += 1
                ran = now - child.started
                delay = child.backoff.after_exit(ran)
                child.next_start = now + delay
                log.warning("%s (pid %d) %s after running %.0fs; restart %d in %gs (log: %s)", child.name, pid,
                            exit_status(rc), ran, child.restarts, delay, child.log_path)
            elif child.proc is None and now >= child.next_start:
                _start(child, logs)
    for child in children:
        if child.proc is not None and child.proc.poll() is None:
            child.proc.terminate()
    deadline = time.monotonic() + 10
    for child in children:
        if child.proc is not None:
            try:
                child.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    child.proc.wait(5)
    print("sotp up: stopped", flush=True)
    return 0
