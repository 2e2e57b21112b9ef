"""Scrape jobs derived from the ``devices:`` inventory (see :mod:`sotp.inventory`).

- ``snmp``: one target per device with SNMP, scraped through ``snmp.exporter`` (snmp_exporter's
  multi-target pattern); module and auth are per-target parameters (``__param_module``/``__param_auth``).
- ``icmp``: the ICMP exporter's continuous-ping ``/metrics`` at ``icmp.exporter``; metric relabeling maps
  each series' ``host`` (the pinged address) to its device.

Every series gets ``device="<name>"`` and the device's ``labels:``; the backups use the same name, so the
three sources join on ``device``.
"""

from __future__ import annotations

import re
from typing import Any, Final

from exporters.icmp.config import IcmpConfig
from sotp.config import Config, from_dict
from sotp.errors import ConfigError
from sotp.inventory import DEVICE_LABEL, Inventory, inventory

SNMP_JOB: Final = "snmp"
ICMP_JOB: Final = "icmp"


def _literal(value: str) -> str:
    """A relabel replacement that yields ``value`` verbatim (``$`` starts a template there)."""
    return value.replace("$", "$$")


def snmp_job(inv: Inventory) -> dict[str, Any] | None:
    targets = inv.snmp_targets()
    if not targets:
        return None
    return {
        "job_name": SNMP_JOB,
        "metrics_path": "/snmp",
        "static_configs": [
            {"targets": [t.target],
             "labels": {DEVICE_LABEL: t.device, "__param_module": t.module, "__param_auth": t.auth, **dict(t.labels)}}
            for t in targets
        ],
        "relabel_configs": [
            {"source_labels": ["__address__"], "target_label": "__param_target"},
            {"source_labels": ["__param_target"], "target_label": "instance"},
            {"target_label": "__address__", "replacement": inv.snmp.exporter},
        ],
    }


def icmp_job(inv: Inventory, exporter: str) -> dict[str, Any] | None:
    targets = inv.icmp_targets()
    if not targets:
        return None
    steps: list[dict[str, Any]] = []
    for t in targets:
        steps.append({"source_labels": ["host"], "regex": re.escape(t.address), "target_label": DEVICE_LABEL,
                      "replacement": _literal(t.device)})
        for name, value in t.labels:
            steps.append({"source_labels": [DEVICE_LABEL], "regex": re.escape(t.device), "target_label": name,
                          "replacement": _literal(value)})
    return {"job_name": ICMP_JOB, "static_configs": [{"targets": [exporter]}], "metric_relabel_configs": steps}


def derived_scrape_configs(config: Config) -> list[dict[str, Any]]:
    """The jobs the inventory asks for (raw scrape configs), checked against the user's job names."""
    inv = inventory(config)
    icmp_exporter = from_dict(IcmpConfig, config.icmp, "icmp").exporter
    jobs = [j for j in (snmp_job(inv), icmp_job(inv, icmp_exporter)) if j is not None]
    own = {str(raw.get("job_name")): i for i, raw in enumerate(config.scrape_configs) if isinstance(raw, dict)}
    for job in jobs:
        if job["job_name"] in own:
            raise ConfigError(
                f"scrape_configs[{own[job['job_name']]}].job_name: {job['job_name']!r} is the job derived from "
                "devices: (SNMP/ICMP); rename yours or list those devices only once"
            )
    return jobs


def check_references(config: Config) -> None:
    """Every device's SNMP module and auth exists in the SNMP config the exporter will load."""
    from exporters.snmp.config import load_config as load_snmp

    inv = inventory(config)
    targets = inv.snmp_targets()
    if not targets:
        return
    source = inv.snmp.config_file or "the built-in SNMP modules"
    snmp = load_snmp(inv.snmp.config_file or None)
    index = {d.name: i for i, d in enumerate(inv.devices)}
    for t in targets:
        i = index[t.device]
        path = f"devices[{i}].snmp" if i < len(config.devices) else "snmp"
        for module in (m.strip() for m in t.module.split(",")):
            if module not in snmp.modules:
                raise ConfigError(
                    f"{path}.module: {module!r} is not a module of {source} (known: {', '.join(sorted(snmp.modules))})"
                )
        if t.auth not in snmp.auths:
            known = ", ".join(sorted(snmp.auths))
            raise ConfigError(f"{path}.auth: {t.auth!r} is not an auth of {source} (known: {known})")


__all__ = ["ICMP_JOB", "SNMP_JOB", "check_references", "derived_scrape_configs", "icmp_job", "snmp_job"]
