"""SOTP's generator against snmp_exporter's: upstream's generator.yml in, upstream's snmp.yml as the oracle.

The oracle is snmp_exporter v0.30.1's ``generator/generator.yml`` and the ``snmp.yml`` its generator
produced (both committed under tests/fixtures/snmp_exporter/v0.30.1/). The MIB files those modules need
were gathered from public source repositories into tests/fixtures/mibs/ (origins in
tests/fixtures/README.md). Every module whose MIBs are there must be identical as parsed YAML; the one
allowed difference is IANA's growing ifType enumeration (net-snmp's IANAifType-MIB revision is older
than the iana.org file upstream used): the values both know must be identical, and upstream may only
have more.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from exporters.snmp.generator.config import load_generator_config
from exporters.snmp.generator.generate import GeneratorError, ModuleGenerator
from exporters.snmp.mib.loader import load_mibs
from exporters.snmp.mib.tree import Node, name_index, prepare_tree

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
UPSTREAM = FIXTURES / "snmp_exporter" / "v0.30.1"
MIB_DIRS = sorted(p for p in (FIXTURES / "mibs").iterdir() if p.is_dir())

#: Modules whose MIBs are in tests/fixtures/mibs (and where they come from).
GATHERED = {
    "system": "net-snmp", "if_mib": "net-snmp", "ip_mib": "net-snmp", "ucd_la_table": "net-snmp",
    "ucd_memory": "net-snmp", "ucd_system_stats": "net-snmp", "hrSystem": "net-snmp", "hrStorage": "net-snmp",
    "hrDevice": "net-snmp", "hrSWRun": "net-snmp", "hrSWRunPerf": "net-snmp", "hrSWInstalled": "net-snmp",
    "cisco_device": "cisco-mibs", "cisco_fc_fe": "cisco-mibs", "cisco_wlc": "cisco-mibs", "cisco_imc": "cisco-mibs",
    "keepalived": "keepalived", "apcups": "prometheus-community/snmp", "powercom": "prometheus-community/snmp",
    "arista_sw": "prometheus-community/snmp", "dell_network": "prometheus-community/snmp",
    "eltex_mes": "prometheus-community/snmp", "kemp_loadmaster": "prometheus-community/snmp",
    "fieldserver": "prometheus-community/snmp", "ups_mib": "observium", "ubiquiti_airos": "observium",
    "printer_mib": "observium + prometheus-community/snmp (IANA-PRINTER-MIB, IANA-CHARSET-MIB)",
    "dell": "netdisco-mibs", "servertech_sentry3": "netdisco-mibs", "ubiquiti_airmax": "netdisco-mibs",
    "ubiquiti_unifi": "netdisco-mibs", "raritan": "mibs.pysnmp.com", "dlink": "mibs.pysnmp.com",
}
#: Enumerations maintained by IANA that grow after the MIB revision in the fixtures.
IANA_GROWTH = {("if_mib", "ifType")}


@pytest.fixture(scope="module")
def tree() -> tuple[Node, dict[str, Node]]:
    mibs = load_mibs(MIB_DIRS)
    assert not mibs.problems, [str(p) for p in mibs.problems]
    prepare_tree(mibs.root)
    return mibs.root, name_index(mibs.root, with_modules=True)


@pytest.fixture(scope="module")
def upstream() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((UPSTREAM / "snmp.yml").read_text())
    return data


@pytest.fixture(scope="module")
def generator_config() -> Any:
    return load_generator_config(UPSTREAM / "generator.yml")


def generate_module(name: str, generator_config: Any, tree: tuple[Node, dict[str, Node]]) -> dict[str, Any]:
    root, names = tree
    return ModuleGenerator(name, generator_config.modules[name], root, names).run()


def iana_growth(name: str, ours: dict[str, Any], theirs: dict[str, Any]) -> list[str]:
    """Check the IANA enumerations of a module; return what upstream has beyond ours (after checking that every
    value both have is identical), with those enumerations made equal in ``ours`` for the rest of the comparison."""
    extra = []
    theirs_by_name = {m["name"]: m for m in theirs["metrics"]}
    for metric in ours["metrics"]:
        if (name, metric["name"]) not in IANA_GROWTH:
            continue
        mine, upstream = metric.get("enum_values", {}), theirs_by_name[metric["name"]].get("enum_values", {})
        common = set(mine) & set(upstream)
        only_ours = sorted(set(mine) - set(upstream))
        assert not only_ours, f"{metric['name']}: values only SOTP has: {only_ours}"
        assert {k: mine[k] for k in common} == {k: upstream[k] for k in common}, f"{metric['name']}: values differ"
        extra += [f"{metric['name']}={k}:{upstream[k]}" for k in sorted(set(upstream) - common)]
        metric["enum_values"] = upstream
    return extra


@pytest.mark.parametrize("name", sorted(GATHERED))
def test_module_identical_to_upstream(name: str, generator_config: Any, tree: Any, upstream: dict[str, Any]) -> None:
    ours = generate_module(name, generator_config, tree)
    theirs = upstream["modules"][name]
    extra = iana_growth(name, ours, theirs)
    if name in {m for m, _ in IANA_GROWTH}:
        # The older IANAifType-MIB must really be older: upstream knows values it does not.
        assert extra, "expected upstream's IANA enumeration to be larger than the fixture's"
    for key in set(ours) | set(theirs):
        if key != "metrics":
            assert ours.get(key) == theirs.get(key), key
    assert [m["name"] for m in ours["metrics"]] == [m["name"] for m in theirs["metrics"]]
    for mine, upstream_metric in zip(ours["metrics"], theirs["metrics"], strict=True):
        assert mine == upstream_metric, mine["name"]


def test_report_modules_identical(generator_config: Any, tree: Any, upstream: dict[str, Any],
                                  capsys: pytest.CaptureFixture[str]) -> None:
    """The count for docs/snmp.md; modules left out must fail for want of their MIBs, not for another reason."""
    identical, growth, missing = [], [], []
    for name in sorted(upstream["modules"]):
        try:
            ours = generate_module(name, generator_config, tree)
        except GeneratorError as err:
            assert name not in GATHERED, f"{name}: {err}"
            assert "cannot find oid" in str(err), err
            missing.append(name)
            continue
        theirs = upstream["modules"][name]
        extra = iana_growth(name, ours, theirs)
        if ours == theirs:
            (growth if extra else identical).append(f"{name} (+{len(extra)} newer IANA values)" if extra else name)
        else:
            assert name not in GATHERED, f"{name} differs from upstream"
            missing.append(name)
    total = len(upstream["modules"])
    with capsys.disabled():
        print(f"\nsnmp_exporter v0.30.1 modules: {len(identical) + len(growth)} of {total} identical "
              f"({len(identical)} exactly, {len(growth)} apart from IANA growth: {', '.join(growth)}); "
              f"MIBs not gathered for {len(missing)}: {', '.join(missing)}")
    assert len(identical) + len(growth) == len(GATHERED)
