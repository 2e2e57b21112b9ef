"""What ``sotp up`` runs from: the user's sotp.yml turned into the one file every child reads.

``sotp up`` honours every section of the file it is given. It writes ``<data dir>/sotp-up.yml``: the user's
configuration (paths made absolute by :func:`sotp.config.load_config`) plus what the embedded stack adds:

- ``server.listen`` (``--host``/``--port``), the store and tokens file in the data directory unless the file
  names others;
- ``snmp.exporter`` and ``icmp.exporter``: the addresses of the exporters ``sotp up`` starts, so the jobs the
  worker derives from ``devices:`` reach them;
- a ``sotp`` job scraping ``sotp serve``'s own ``/metrics`` (with an internal read token when auth is on);
- without any device to ping, a continuous ping of ``localhost`` and an ``icmp`` job scraping it;
- ``global.scrape_interval`` from ``--interval`` when the file sets none.

With authentication on, :func:`internal_tokens` creates (once, then reuses) the tokens of ``sotp up``'s own
agent, self-scrape and dashboard, each in a 0600 file under ``<data dir>/internal/``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from sotp.auth import TokenStore
from sotp.config import Config, parse_duration, to_dict
from sotp.inventory import inventory

GENERATED: Final = "sotp-up.yml"
#: Internal token roles and their scopes (token names are ``sotp-up-<role>``).
INTERNAL_TOKENS: Final = {"agent": ["write"], "scrape": ["read"], "dashboard": ["read"]}
SELF_JOB: Final = "sotp"
ICMP_JOB: Final = "icmp"


@dataclass(frozen=True)
class Addresses:
    """Where ``sotp up``'s components listen (``connect``: the host the others use to reach them)."""

    host: str
    connect: str
    serve: int
    worker: int
    ruler: int
    host_exporter: int
    icmp: int
    snmp: int
    dashboard: int

    def at(self, port: int) -> str:
        return f"{self.connect}:{port}"


def internal_tokens(store: TokenStore, directory: Path) -> dict[str, Path]:
    """The token file of each internal role, creating the token when its file is missing or no longer valid.

    A token is valid when the store still holds it, active, under its role's name; a stale one (file lost,
    token revoked) is revoked and replaced, so restarts of ``sotp up`` reuse the same tokens.
    """
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    for role, scopes in INTERNAL_TOKENS.items():
        name = f"sotp-up-{role}"
        path = directory / f"{role}.token"
        if path.exists():
            rec = store.lookup(path.read_text().strip())
            if rec is not None and rec.name == name:
                files[role] = path
                continue
        for rec in store.records():
            if rec.name == name and rec.revoked is None:
                store.revoke(rec.id)
        token, _ = store.create(name, scopes)
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(token + "\n")
        os.replace(tmp, path)
        files[role] = path
    return files


def generated_config(config: Config, at: Addresses, interval: str | None,
                     tokens: dict[str, Path] | None) -> dict[str, Any]:
    """The configuration every child of ``sotp up`` reads (see the module docstring)."""
    data = to_dict(config)
    data["server"]["listen"] = f"{at.host}:{at.serve}"
    data["snmp"] = {**data["snmp"], "exporter": at.at(at.snmp)}
    data["icmp"] = {**data["icmp"], "exporter": at.at(at.icmp)}
    glob = dict(data.get("global") or {})
    if "scrape_interval" not in glob:
        glob["scrape_interval"] = interval or "15s"
        if "scrape_timeout" not in glob:
            # a timeout may not exceed the interval
            glob["scrape_timeout"] = f"{min(10.0, parse_duration(glob['scrape_interval'], '--interval')):g}s"
    data["global"] = glob
    own_jobs = {str(j.get("job_name")) for j in data["scrape_configs"] if isinstance(j, dict)}
    jobs: list[dict[str, Any]] = []
    if SELF_JOB not in own_jobs:
        self_job: dict[str, Any] = {"job_name": SELF_JOB, "static_configs": [{"targets": [at.at(at.serve)]}]}
        if tokens is not None:
            self_job["authorization"] = {"credentials_file": str(tokens["scrape"])}
        jobs.append(self_job)
    if not inventory(config).icmp_targets():
        continuous = dict(data["icmp"].get("continuous") or {})
        if not continuous.get("targets"):
            continuous["targets"] = ["localhost"]
        data["icmp"]["continuous"] = continuous
        if ICMP_JOB not in own_jobs:
            jobs.append({"job_name": ICMP_JOB, "static_configs": [{"targets": [at.at(at.icmp)]}]})
    data["scrape_configs"] = jobs + list(data["scrape_configs"])
    return {key: value for key, value in data.items() if value not in ({}, [])}  # empty sections add nothing


__all__ = ["GENERATED", "INTERNAL_TOKENS", "Addresses", "generated_config", "internal_tokens"]
