"""SOTP's built-in modules are ``sotp snmp generate``'s output for ``exporters/snmp/generator.yml``.

The committed ``exporters/snmp/modules.yml`` must equal a fresh generation from the MIBs in
tests/fixtures (so it is never edited by hand or left stale), and the modules it shares with
snmp_exporter's generator.yml must equal upstream's generated ones (if_mib apart from IANA's newer
ifType values, as in test_generator_upstream.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from exporters.snmp.generator.config import load_generator_config
from exporters.snmp.generator.generate import generate
from exporters.snmp.mib.loader import load_mibs
from exporters.snmp.mib.tree import name_index, prepare_tree

REPO = Path(__file__).resolve().parents[3]
FIXTURES = REPO / "tests" / "fixtures"
MIB_DIRS = sorted(p for p in (*(FIXTURES / "mibs").iterdir(), *(FIXTURES / "mibs-sotp").iterdir()) if p.is_dir())
SHARED_WITH_UPSTREAM = ("system", "if_mib", "ip_mib", "ucd_la_table", "ucd_memory", "ucd_system_stats",
                        "cisco_device", "arista_sw", "ups_mib", "printer_mib")


@pytest.fixture(scope="module")
def regenerated() -> dict[str, Any]:
    mibs = load_mibs(MIB_DIRS)
    assert not mibs.problems, [str(p) for p in mibs.problems]
    prepare_tree(mibs.root)
    config = load_generator_config(REPO / "exporters" / "snmp" / "generator.yml")
    return generate(config, mibs.root, name_index(mibs.root, with_modules=True))


def test_committed_modules_are_fresh(regenerated: dict[str, Any]) -> None:
    committed = yaml.safe_load((REPO / "exporters" / "snmp" / "modules.yml").read_text())
    assert sorted(committed["modules"]) == sorted(regenerated["modules"])
    for name, module in regenerated["modules"].items():
        assert committed["modules"][name] == module, (
            f"exporters/snmp/modules.yml is stale for {name}: regenerate it (command in exporters/snmp/generator.yml)")
    assert committed["auths"] == regenerated["auths"]


@pytest.mark.parametrize("name", SHARED_WITH_UPSTREAM)
def test_shared_modules_equal_upstream(regenerated: dict[str, Any], name: str) -> None:
    upstream = yaml.safe_load((FIXTURES / "snmp_exporter" / "v0.30.1" / "snmp.yml").read_text())["modules"][name]
    ours = regenerated["modules"][name]
    if name == "if_mib":  # IANA registered ifTypes after net-snmp's IANAifType-MIB: common values only.
        mine = next(m for m in ours["metrics"] if m["name"] == "ifType")
        theirs = next(m for m in upstream["metrics"] if m["name"] == "ifType")
        assert set(mine["enum_values"]) < set(theirs["enum_values"])
        assert all(theirs["enum_values"][k] == v for k, v in mine["enum_values"].items())
        mine["enum_values"] = theirs["enum_values"]
    assert ours == upstream
