"""``sotp up``'s SNMP part: devices in sotp.yml are scraped with SOTP's default module set."""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from exporters.snmp import DEVICE_MODULES
from exporters.snmp.config import builtin_modules
from sotp.cli.up import configure_parser, plan


def _plan(tmp_path: Path, *argv: str) -> tuple[list[list[str]], dict]:  # type: ignore[type-arg]
    parser = argparse.ArgumentParser()
    configure_parser(parser)
    children = plan(parser.parse_args(["--data-dir", str(tmp_path / "data"), *argv]))
    worker = yaml.safe_load((tmp_path / "data" / "worker.yml").read_text())
    return [c.argv for c in children], worker


def test_snmp_targets_alone_run_the_exporter_with_builtin_modules(tmp_path: Path) -> None:
    cfg = tmp_path / "sotp.yml"
    cfg.write_text("snmp:\n  targets: [192.0.2.10, 192.0.2.11:1161]\n")
    argvs, worker = _plan(tmp_path, "--config", str(cfg))
    (snmp,) = [a for a in argvs if "snmp" in a and "exporter" in a]
    assert "--config" not in snmp  # built-in modules only
    (job,) = [j for j in worker["scrape_configs"] if j["job_name"] == "snmp"]
    assert job["static_configs"] == [{"targets": ["192.0.2.10", "192.0.2.11:1161"]}]
    modules = job["params"]["module"][0].split(",")
    assert modules == list(DEVICE_MODULES) and set(modules) <= set(builtin_modules())


def test_no_snmp_targets_no_snmp_exporter(tmp_path: Path) -> None:
    argvs, worker = _plan(tmp_path)
    assert not [a for a in argvs if "snmp" in a and "exporter" in a]
    assert "snmp" not in [j["job_name"] for j in worker["scrape_configs"]]
