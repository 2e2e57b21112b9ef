"""``sotp up``'s SNMP part: devices in sotp.yml are scraped with SOTP's default module set."""

from __future__ import annotations

import argparse
from pathlib import Path

from exporters.snmp import DEVICE_MODULES
from exporters.snmp.config import builtin_modules
from sotp.cli.up import configure_parser, plan, prepare
from worker.inventory import derived_scrape_configs


def _stack(tmp_path: Path, *argv: str):  # type: ignore[no-untyped-def]
    parser = argparse.ArgumentParser()
    configure_parser(parser)
    return prepare(parser.parse_args(["--data-dir", str(tmp_path / "data"), *argv]))


def test_snmp_targets_alone_run_the_exporter_with_builtin_modules(tmp_path: Path) -> None:
    cfg = tmp_path / "sotp.yml"
    cfg.write_text("snmp:\n  targets: [192.0.2.10, 192.0.2.11:1161]\n")
    stack = _stack(tmp_path, "--config", str(cfg))
    (snmp,) = [c.argv for c in plan(stack) if "snmp" in c.argv and "exporter" in c.argv]
    assert "--config" not in snmp  # built-in modules only
    (job,) = [j for j in derived_scrape_configs(stack.config) if j["job_name"] == "snmp"]
    assert [g["targets"] for g in job["static_configs"]] == [["192.0.2.10"], ["192.0.2.11:1161"]]
    for group in job["static_configs"]:
        modules = group["labels"]["__param_module"].split(",")
        assert modules == list(DEVICE_MODULES) and set(modules) <= set(builtin_modules())


def test_no_snmp_targets_no_snmp_exporter(tmp_path: Path) -> None:
    stack = _stack(tmp_path)
    assert not [c for c in plan(stack) if "snmp" in c.argv and "exporter" in c.argv]
    assert "snmp" not in [j["job_name"] for j in derived_scrape_configs(stack.config)]
