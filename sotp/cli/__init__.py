"""``sotp``: the command line, and the composition root of the project.

Each subcommand maps to the dotted path of the module that implements it. Only the chosen module is
imported, so ``sotp agent`` never loads aiohttp, psycopg or streamlit. Every command module provides::

    def configure_parser(parser: argparse.ArgumentParser) -> None   # its flags (and sub-subcommands)
    def run(args: argparse.Namespace) -> int                         # the exit code

This package is the only part of the kernel allowed to name component packages.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from types import ModuleType
from typing import NamedTuple

from sotp.errors import ConfigError, SotpError


class Command(NamedTuple):
    module: str
    extra: str
    help: str


COMMANDS: dict[str, Command] = {
    "up": Command("sotp.cli.up", "all", "start the whole stack in one process group on the embedded store"),
    "serve": Command("sotp.cli.serve", "server", "receivers (remote write, push, ingest) + PromQL HTTP API"),
    "worker": Command("worker.cli", "server", "scrape scheduler (scrape_configs) and SSH config backups"),
    "agent": Command("agent.cli", "agent", "collect host metrics and push them over remote write"),
    "exporter": Command("sotp.cli.exporter", "all", "run an exporter: host, snmp or icmp"),
    "snmp": Command("exporters.snmp.tool_cli", "snmp", "generate snmp.yml from MIBs, walk with MIB names, check"),
    "dashboard": Command("dashboards.cli", "dashboards", "the Streamlit dashboard app"),
    "backup": Command("worker.backup.cli", "backup", "SSH configuration backups: run now, show diffs"),
    "ruler": Command("rules.ruler", "server", "evaluate recording and alerting rules; notify Alertmanager"),
    "rules": Command("rules.cli", "server", "check rule files and run rule unit tests (as promtool)"),
    "token": Command("sotp.cli.token", "server", "create, list and revoke API tokens"),
    "db": Command("sotp.cli.db", "server", "database maintenance: migrate"),
    "check": Command("sotp.cli.check", "server", "check a sotp.yml: every section, as the commands read it"),
}

EXPORTERS: dict[str, Command] = {
    "host": Command("exporters.host.cli", "host", "node_exporter-compatible host metrics on /metrics"),
    "snmp": Command("exporters.snmp.cli", "snmp", "snmp_exporter-compatible multi-target /snmp"),
    "icmp": Command("exporters.icmp.cli", "icmp", "blackbox-compatible /probe and continuous ping"),
}


#: Third-party loggers kept at WARNING unless --log-level asks for more (paramiko logs every SSH session).
QUIET_LOGGERS: tuple[str, ...] = ("paramiko", "netmiko", "asyncssh", "pysnmp")
FIRST_PARTY = frozenset({"sotp", "exporters", "remote_write", "query", "worker", "agent", "dashboards", "rules"})


def load_command(cmd: Command) -> ModuleType:
    """Import a command module, or exit with the ``pip install`` hint when its extra is missing."""
    try:
        return importlib.import_module(cmd.module)
    except ModuleNotFoundError as err:
        missing = err.name or "?"
        if missing.split(".")[0] in FIRST_PARTY:
            raise
        sys.stderr.write(
            f"sotp: this command needs the Python package {missing!r}: pip install 'sotp[{cmd.extra}]'\n"
        )
        raise SystemExit(2) from err


def _top_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sotp",
        description="SOTP: System Observability & Telemetry Platform.",
        epilog="Run 'sotp <command> --help' for a command's flags.",
    )
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    sub = p.add_subparsers(dest="command", metavar="<command>")
    for name, cmd in COMMANDS.items():
        sub.add_parser(name, help=cmd.help, add_help=False)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``sotp`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    top = _top_parser()
    # Split global flags from the subcommand so only the chosen module is imported.
    i = 0
    while i < len(argv) and argv[i].startswith("-") and argv[i] not in ("-h", "--help"):
        i += 2 if argv[i] == "--log-level" else 1
    if i >= len(argv) or argv[i] in ("-h", "--help") or argv[i] not in COMMANDS:
        if i < len(argv) and argv[i] not in ("-h", "--help") and argv[i] not in COMMANDS:
            top.error(f"unknown command {argv[i]!r}; choose from {', '.join(COMMANDS)}")
        top.print_help()
        return 0 if i < len(argv) else 2
    global_args = top.parse_args(argv[:i])
    level = getattr(logging, global_args.log_level.upper())
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for name in QUIET_LOGGERS:  # their INFO lines are per-connection chatter; SOTP logs the outcome itself
        logging.getLogger(name).setLevel(level if level <= logging.DEBUG else max(level, logging.WARNING))
    name = argv[i]
    cmd = COMMANDS[name]
    module = load_command(cmd)
    parser = argparse.ArgumentParser(prog=f"sotp {name}", description=cmd.help)
    module.configure_parser(parser)
    args = parser.parse_args(argv[i + 1 :])
    args.command_argv = argv  # the whole command line, for commands that start copies of themselves
    try:
        rc: int = module.run(args)
    except SotpError as err:
        # A refusal (bad configuration, unusable store) is one line naming the fix, not a traceback.
        logging.getLogger("sotp").error("sotp %s: %s", name, err)
        return 2 if isinstance(err, ConfigError) else 1
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
