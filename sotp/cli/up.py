"""``sotp up``: the whole stack on one machine, on the embedded SQLite store, with no config needed.

It supervises one child process per component (``sotp serve``, the worker, the exporters, a local agent
and the dashboard), each started with the same command line a user would type, so ``sotp up`` is
exactly the sum of the documented commands. A child that exits is restarted with backoff; Ctrl-C or
SIGTERM stops them all. Components whose extra is not installed are skipped with the install hint.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from sotp.cli.serve import split_listen
from sotp.config import load_config, parse_duration

log = logging.getLogger("sotp.up")


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


def _sotp(*args: str) -> list[str]:
    return [sys.executable, "-m", "sotp", *args]


def worker_config(serve: str, icmp: str, snmp: str | None, snmp_targets: list[str], interval: str) -> dict[str, object]:
    """Scrape configs for the embedded stack: SOTP itself, the ICMP exporter, SNMP targets if any."""
    timeout = f"{min(10.0, parse_duration(interval, '--interval')):g}s"  # a timeout may not exceed the interval
    jobs: list[dict[str, object]] = [
        {"job_name": "sotp", "static_configs": [{"targets": [serve]}]},
        {"job_name": "icmp", "static_configs": [{"targets": [icmp]}]},
    ]
    if snmp and snmp_targets:
        jobs.append(
            {
                "job_name": "snmp",
                "metrics_path": "/snmp",
                "params": {"module": ["if_mib,system"], "auth": ["public_v2"]},
                "static_configs": [{"targets": snmp_targets}],
                "relabel_configs": [
                    {"source_labels": ["__address__"], "target_label": "__param_target"},
                    {"source_labels": ["__param_target"], "target_label": "instance"},
                    {"target_label": "__address__", "replacement": snmp},
                ],
            }
        )
    return {"global": {"scrape_interval": interval, "scrape_timeout": timeout}, "scrape_configs": jobs}


def shipped_rule_files() -> list[Path]:
    """The alerting rules SOTP ships (``deploy/rules/*.rules.yml`` of the checkout this runs from)."""
    root = Path(__file__).resolve().parents[2] / "deploy" / "rules"
    return sorted(root.glob("*.rules.yml"))


def plan(args: argparse.Namespace) -> list[Child]:
    """The children to run, with their command lines."""
    data = Path(args.data_dir).resolve()
    data.mkdir(parents=True, exist_ok=True)
    storage = f"sqlite:///{data / 'sotp.db'}"
    host = args.host
    serve = f"{host}:{args.port}"
    ports = {"host": args.port_base + 100, "icmp": args.port_base + 115, "snmp": args.port_base + 116,
             "worker": args.port + 1, "ruler": args.port + 3}
    ruler = f"{host}:{ports['ruler']}"
    config_arg = ["--config", args.config] if args.config else []
    children = [
        Child("serve", _sotp("serve", "--listen", serve, "--storage", storage, "--ruler-url", f"http://{ruler}")
              + config_arg, "aiohttp", f"http://{serve}"),
        Child("ruler", _sotp("ruler", "--listen", ruler, "--storage", storage, "--external-url", f"http://{serve}",
                             *[a for f in shipped_rule_files() for a in ("--rule-file", str(f))]) + config_arg,
              "aiohttp", f"http://{ruler}/api/v1/alerts"),
        Child("exporter-host", _sotp("exporter", "host", "--listen", f"{host}:{ports['host']}"),
              "exporters.host", f"http://{host}:{ports['host']}/metrics"),
        Child("exporter-icmp", _sotp("exporter", "icmp", "--listen", f"{host}:{ports['icmp']}"),
              "icmplib", f"http://{host}:{ports['icmp']}/metrics"),
    ]
    snmp_addr = None
    snmp_targets: list[str] = []
    if args.snmp_config:
        snmp_addr = f"{host}:{ports['snmp']}"
        snmp_targets = list(load_config(args.config).snmp.get("targets", [])) if args.config else []
        children.append(
            Child("exporter-snmp",
                  _sotp("exporter", "snmp", "--config", args.snmp_config, "--listen", snmp_addr),
                  "pysnmp", f"http://{snmp_addr}/snmp?target=<device>&module=if_mib")
        )
    wcfg = data / "worker.yml"
    wcfg.write_text(yaml.safe_dump(worker_config(serve, f"{host}:{ports['icmp']}", snmp_addr, snmp_targets,
                                                 args.interval), sort_keys=False))
    children.append(
        Child("worker", _sotp("worker", "--config", str(wcfg), "--storage", storage,
                              "--listen", f"{host}:{ports['worker']}"), "aiohttp", f"http://{host}:{ports['worker']}")
    )
    children.append(
        Child("agent", _sotp("agent", "--url", f"http://{serve}/api/v1/write", "--interval", args.interval,
                             "--buffer-dir", str(data / "agent-buffer")), "agent")
    )
    if not args.no_dashboard:
        children.append(
            Child("dashboard", _sotp("dashboard", "--api", f"http://{serve}", "--port", str(args.dashboard_port),
                                     "--scrape-interval", args.interval),
                  "streamlit", f"http://{host}:{args.dashboard_port}")
        )
    return children


def _start(child: Child, logs: Path) -> None:
    child.log_path = logs / f"{child.name}.log"
    fh = open(child.log_path, "ab")  # noqa: SIM115 - owned by the child process
    child.proc = subprocess.Popen(child.argv, stdout=fh, stderr=subprocess.STDOUT, env={**os.environ, **child.env})
    fh.close()


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="sotp.yml (optional: defaults run everything on localhost)")
    parser.add_argument("--data-dir", default="./data", help="where the SQLite store, logs and buffers live")
    parser.add_argument("--host", default="127.0.0.1", help="address every component listens on")
    parser.add_argument("--port", type=int, default=9201, help="sotp serve's port (the API and receivers)")
    parser.add_argument("--port-base", type=int, default=9000,
                        help="exporters listen on base+100 (host), base+115 (icmp), base+116 (snmp)")
    parser.add_argument("--dashboard-port", type=int, default=8501)
    parser.add_argument("--interval", default="15s", help="agent push and scrape interval")
    parser.add_argument(
        "--snmp-config", help="snmp.yml: also run the SNMP exporter (targets from sotp.yml snmp.targets)"
    )
    parser.add_argument("--no-dashboard", action="store_true", help="do not start the Streamlit app")


def run(args: argparse.Namespace) -> int:
    children = []
    for child in plan(args):
        if importlib.util.find_spec(child.needs) is None:
            print(f"sotp up: skipping {child.name}: pip install 'sotp[all]' to get {child.needs}", flush=True)
            continue
        children.append(child)
    logs = Path(args.data_dir).resolve() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    host, _ = split_listen(f"{args.host}:{args.port}")
    if host in ("127.0.0.1", "localhost", "::1"):
        print("sotp up: listening on loopback only; authentication is off (see README: Authentication)")
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    for child in children:
        _start(child, logs)
    print(f"sotp up: running (logs in {logs})", flush=True)
    for child in children:
        if child.url:
            print(f"  {child.name:<14} {child.url}", flush=True)
    print(f"  Prometheus data source for Grafana: http://{args.host}:{args.port}  — Ctrl-C stops everything",
          flush=True)
    while not stopping:
        time.sleep(0.5)
        now = time.monotonic()
        for child in children:
            if child.proc is not None and child.proc.poll() is not None:
                rc = child.proc.returncode
                child.proc = None
                child.restarts += 1
                delay = min(60.0, 2.0 ** min(child.restarts, 6))
                child.next_start = now + delay
                log.warning("%s exited with %s; restarting in %.0fs (log: %s)", child.name, rc, delay, child.log_path)
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
    print("sotp up: stopped", flush=True)
    return 0
