"""``sotp check config sotp.yml``: the one validator of ``sotp.yml``, also run by every long-running command.

Each section is checked by the component that runs it (:data:`CHECKS`: unknown keys with their path,
platform names, regular expressions, durations, references between sections such as a device's SNMP
module and auth). :func:`checked_config` runs them all and raises one :class:`ConfigError` listing every
problem; ``sotp up``, ``sotp serve``, ``sotp worker`` and the exporters call it at start and exit 2 with
the message instead of running with a section silently dropped. A component adds its section by adding
a line to :data:`CHECKS`.
"""

from __future__ import annotations

import argparse
import glob
import importlib
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from sotp.cli.options import config_options, shared_options
from sotp.config import Config, load_config, parse_duration
from sotp.errors import ConfigError


class Check(NamedTuple):
    """One section check: the sections it covers, ``module:function`` taking a Config, the extra it needs."""

    sections: tuple[str, ...]
    target: str
    extra: str


#: Section checks in the order problems are listed. Each function raises ConfigError naming the key path.
CHECKS: list[Check] = [
    Check(("server", "limits"), "sotp.cli.check:check_server", "server"),
    Check(("auth",), "sotp.auth:auth_config", "server"),
    Check(("pushgateway",), "remote_write.pushgateway:pushgateway_config", "server"),
    Check(("devices", "snmp"), "sotp.inventory:inventory", "server"),
    Check(("global", "scrape_configs", "devices", "icmp"), "worker.scrape.config:worker_config", "server"),
    Check(("devices", "snmp"), "worker.inventory:check_references", "snmp"),
    Check(("icmp", "devices"), "exporters.icmp.config:section", "icmp"),
    Check(("backup", "devices"), "sotp.cli.check:check_backup", "backup"),
    Check(("rule_files", "alerting", "ruler"), "sotp.cli.check:check_rules", "server"),
    Check(("agent",), "sotp.cli.check:check_agent", "agent"),
    Check(("dashboard",), "sotp.cli.check:check_dashboard", "dashboards"),
]


def check_server(config: Config) -> None:
    server = config.server
    for key in ("retention", "query_timeout"):
        if parse_duration(getattr(server, key), f"server.{key}") <= 0:
            raise ConfigError(f"server.{key}: must be positive")
    host, sep, port = server.listen.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"server.listen: {server.listen!r} is not host:port (e.g. 127.0.0.1:9201)")
    if not server.storage.startswith(("sqlite:", "postgresql:", "postgres:", "memory:")):
        raise ConfigError(
            f"server.storage: {server.storage!r} is not a storage URL (sqlite:///path/to.db or postgresql://...)"
        )
    if server.write_queue_depth < 1:
        raise ConfigError("server.write_queue_depth: must be at least 1")


def check_backup(config: Config) -> None:
    from worker.backup.config import backup_config

    cfg = backup_config(config)
    if cfg.devices and importlib.util.find_spec("netmiko") is None:
        raise ConfigError("backup: SSH backups need netmiko: pip install 'sotp[backup]'")


def check_rules(config: Config) -> None:
    """The ruler's sections, and every rule file they name, as ``sotp rules check`` reads it."""
    from rules.config import ruler_config
    from rules.rulefile import RuleFileError, load_rule_file

    base = str(config.source.parent) if config.source is not None else "."
    cfg = ruler_config(config, base)
    for pattern in config.rule_files:  # a plain name that matches nothing is a typo; a glob may match nothing
        if not glob.has_magic(pattern) and not (Path(base) / pattern).exists():
            raise ConfigError(f"rule_files: {Path(base) / pattern} does not exist")
    for path in [*cfg.files, *(f for files in cfg.tenant_files.values() for f in files)]:
        try:
            load_rule_file(path)
        except RuleFileError as err:
            raise ConfigError(f"rule_files: {err}") from None


def check_agent(config: Config) -> None:
    if config.agent:
        raise ConfigError("agent: no command reads this section; the agent takes flags (sotp agent --help)")


def check_dashboard(config: Config) -> None:
    if config.dashboard:
        raise ConfigError("dashboard: no command reads this section; the dashboard takes flags (sotp dashboard --help)")


def _function(target: str) -> Callable[[Config], Any]:
    module, _, name = target.partition(":")
    fn: Callable[[Config], Any] = getattr(importlib.import_module(module), name)
    return fn


def problems(config: Config) -> tuple[list[str], list[str]]:
    """Every section's problem (one per check) and the sections left unchecked (their extra is missing)."""
    errors: list[str] = []
    skipped: list[str] = []
    for check in CHECKS:
        try:
            fn = _function(check.target)
        except ModuleNotFoundError as err:
            if (err.name or "").split(".")[0] in {"sotp", "worker", "exporters", "remote_write", "query"}:
                raise
            skipped.append(f"{'/'.join(check.sections)}: not checked, pip install 'sotp[{check.extra}]'")
            continue
        try:
            fn(config)
        except ConfigError as err:
            if str(err) not in errors:
                errors.append(str(err))
    return errors, skipped


def checked_config(path: str | Path | None, data_dir: str | Path | None = None) -> Config:
    """Load and check the whole file; raises one ConfigError listing every problem."""
    config = load_config(path, data_dir)
    errors, _ = problems(config)
    if errors:
        where = f"{path}: " if path else ""
        raise ConfigError(where + "\n  ".join(["invalid configuration:", *errors]))
    return config


def load_or_exit(command: str, path: str | Path | None, data_dir: str | Path | None = None) -> Config | int:
    """For long-running commands: the checked config, or 2 after printing why (to stderr)."""
    try:
        return checked_config(path, data_dir)
    except ConfigError as err:
        sys.stderr.write(f"sotp {command}: {err}\n")
        return 2


def report(config: Config) -> list[str]:
    """What the file configures, one line per part, absolute paths."""
    from sotp.auth import auth_config, auth_enabled
    from sotp.inventory import inventory

    lines = [f"server: listen {config.server.listen}, storage {config.server.storage.split('@')[-1]}"]
    lines.append(f"data directory: {config.data_dir}")
    state = "on" if auth_enabled(config) else "off"
    lines.append(f"auth: {state} (tokens file {auth_config(config).tokens_file})")
    inv = inventory(config)
    for d in inv.devices:
        uses = [k for k in ("snmp", "icmp") if getattr(d, k)] + (["backup"] if d.backup is not None else [])
        lines.append(f"device {d.name}: {', '.join(uses)}")
    try:
        from worker.scrape.config import worker_config

        jobs = [j.cfg.job_name for j in worker_config(config).jobs]
        lines.append(f"scrape jobs: {', '.join(jobs) if jobs else 'none'}")
    except ModuleNotFoundError:
        pass
    return lines


def configure_parser(parser: argparse.ArgumentParser) -> None:
    common = shared_options(parser, config_options)
    sub = parser.add_subparsers(dest="what", required=True, metavar="<what>")
    cfg = sub.add_parser("config", parents=[common], help="check a sotp.yml: every section, as the commands read it")
    cfg.add_argument("file", nargs="?", help="the sotp.yml to check (or --config)")


def run(args: argparse.Namespace) -> int:
    path = args.file or args.config
    if not path:
        sys.stderr.write("sotp check config: name the file to check, e.g. sotp check config sotp.yml\n")
        return 2
    return check_file(path, args.data_dir)


def check_file(path: str | Path | None, data_dir: str | Path | None = None) -> int:
    """Check a file (``None``: the defaults) and print the verdict: 0 valid, 2 invalid (problems on stderr)."""
    shown = str(path) if path is not None else "(no config file: defaults)"
    try:
        config = load_config(path, data_dir)
        errors, skipped = problems(config)
    except ConfigError as err:
        sys.stderr.write(f"{shown}: invalid configuration:\n  {err}\n")
        return 2
    if errors:
        sys.stderr.write(f"{shown}: invalid configuration:\n" + "".join(f"  {e}\n" for e in errors))
        return 2
    print(f"{shown}: configuration valid")
    for line in report(config) + skipped:
        print(f"  {line}")
    return 0
