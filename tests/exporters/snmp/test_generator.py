"""``sotp snmp generate`` on a MIB written for these tests (data/SOTP-TEST-MIB): every generator rule
whose outcome the upstream modules do not already pin down, with expected values worked out by hand
from snmp_exporter's generator (generator/tree.go), and the command's errors."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporters.snmp.generator.config import go_duration
from exporters.snmp.generator.generate import minimize_oids
from tests.conftest import REPO, sotp_cmd

DATA = Path(__file__).resolve().parent / "data"
NET_SNMP = REPO / "tests" / "fixtures" / "mibs" / "net-snmp"
BASE = "1.3.6.1.4.1.99999"
GENERATOR = """
modules:
  t:
    walk: [sotpPortOctets, sotpPortState, sotpPortTemp, sotpPeerUptime]
    lookups:
      - {source_indexes: [sotpPortIndex], lookup: sotpPortName}
      - {source_indexes: [sotpPortIndex], lookup: sotpPortGroup}
      - {source_indexes: [sotpPortGroup], lookup: sotpGroupName, drop_source_indexes: true}
    overrides:
      sotpPortState: {type: EnumAsStateSet}
      sotpPortOctets: {name: sotpPortBits, help: Bits through the port, scale: 8}
      sotpPortTemp: {regex_extracts: {C: [{regex: '(\\d+)'}]}}
    filters:
      static: [{targets: [sotpPortName], indices: ["1", "2"]}]
      dynamic: [{oid: 1.3.6.1.4.1.99999.1.1.6, targets: [1.3.6.1.4.1.99999.1.1.5], values: ["1"]}]
    walk_params: {max_repetitions: 10, timeout: 90s}
    retries: 0
"""


def run(tmp_path: Path, generator: str, *mibs: Path, extra: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    (tmp_path / "generator.yml").write_text(generator)
    argv = sotp_cmd("snmp", "generate", str(tmp_path / "generator.yml"), "-o", str(tmp_path / "snmp.yml"), *extra)
    for m in mibs:
        argv += ["-m", str(m)]
    return subprocess.run(argv, capture_output=True, text=True, cwd=REPO, timeout=300)


@pytest.fixture(scope="module")
def module(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("gen")
    r = run(tmp, GENERATOR, NET_SNMP, DATA)
    assert r.returncode == 0, r.stderr
    assert "wrote" in r.stderr and "1 modules, 4 metrics" in r.stderr
    out: dict[str, Any] = yaml.safe_load((tmp / "snmp.yml").read_text())["modules"]["t"]
    return out


def test_walk_get_and_walk_parameters(module: dict[str, Any]) -> None:
    # Static filter on the looked-up sotpPortName: its column and the walked columns become GETs of
    # indices 1 and 2; the other lookups' columns are walked; walk parameters are copied (retries 0 too).
    assert module["walk"] == [f"{BASE}.1.1.3", f"{BASE}.2.1.2", f"{BASE}.3.1.3"]
    assert module["get"] == [f"{BASE}.1.1.{c}.{i}" for c in (2, 4, 5, 6) for i in (1, 2)]
    assert (module["max_repetitions"], module["retries"], module["timeout"]) == (10, 0, "1m30s")
    assert module["filters"] == [{"oid": f"{BASE}.1.1.6", "targets": [f"{BASE}.1.1.5"], "values": ["1"]}]


def test_metrics_types_help_and_overrides(module: dict[str, Any]) -> None:
    by_name = {m["name"]: m for m in module["metrics"]}
    assert [m["name"] for m in module["metrics"]] == ["sotpPortTemp", "sotpPortBits", "sotpPortState", "sotpPeerUptime"]
    temp = by_name["sotpPortTemp"]
    assert (temp["type"], temp["help"]) == ("gauge", f"Temperature of the port - {BASE}.1.1.4")  # first sentence
    assert temp["regex_extracts"] == {"C": [{"value": "$1", "regex": "^(?:(\\d+))$"}]}
    bits = by_name["sotpPortBits"]
    assert (bits["oid"], bits["type"], bits["help"], bits["scale"]) == (f"{BASE}.1.1.5", "counter",
                                                                       "Bits through the port", 8.0)
    state = by_name["sotpPortState"]
    assert (state["type"], state["enum_values"]) == ("EnumAsStateSet", {1: "up", 2: "down"})


def test_chained_lookups_and_dropped_source_index(module: dict[str, Any]) -> None:
    # sotpPortGroup is looked up by port, then is the source of sotpGroupName: it becomes an index, and
    # drop_source_indexes removes its label at the end.
    metric = next(m for m in module["metrics"] if m["name"] == "sotpPortBits")
    assert metric["indexes"] == [{"labelname": "sotpPortIndex", "type": "gauge"},
                                 {"labelname": "sotpPortGroup", "type": "gauge"}]
    assert metric["lookups"] == [
        {"labels": ["sotpPortIndex"], "labelname": "sotpPortName", "oid": f"{BASE}.1.1.2", "type": "DisplayString"},
        {"labels": ["sotpPortIndex"], "labelname": "sotpPortGroup", "oid": f"{BASE}.1.1.3", "type": "gauge"},
        {"labels": ["sotpPortGroup"], "labelname": "sotpGroupName", "oid": f"{BASE}.2.1.2", "type": "DisplayString"},
        {"labels": [], "labelname": "sotpPortGroup"},
    ]


def test_inet_address_type_and_address_make_one_index(module: dict[str, Any]) -> None:
    peer = next(m for m in module["metrics"] if m["name"] == "sotpPeerUptime")
    assert peer["indexes"] == [{"labelname": "sotpPeerAddr", "type": "InetAddress"}]


def test_generated_file_loads_in_the_exporter_and_checks(tmp_path: Path) -> None:
    assert run(tmp_path, GENERATOR, NET_SNMP, DATA).returncode == 0
    r = subprocess.run(sotp_cmd("snmp", "check", str(tmp_path / "snmp.yml")), capture_output=True, text=True,
                       cwd=REPO)
    assert r.returncode == 0 and "1 modules, 4 metrics, 0 auths, 0 warnings" in r.stdout, r.stderr


ERRORS = [
    ("unknown-walk", "modules: {m: {walk: [noSuchObject]}}\n", "module m: walk: cannot find oid 'noSuchObject'"),
    ("unknown-lookup", "modules: {m: {walk: [sotpPortTable], lookups: [{source_indexes: [sotpPortIndex], "
     "lookup: nope}]}}\n", "module m: lookups[0]: unknown index 'nope'"),
    ("leading-dot", "modules: {m: {walk: [.1.3.6]}}\n", "modules.m.walk[0]: invalid OID .1.3.6"),
    ("bad-override-type", "modules: {m: {walk: [sotpTest], overrides: {x: {type: INTEGER}}}}\n",
     "modules.m.overrides.x.type: invalid metric type override 'INTEGER'"),
    ("bad-static-index", "modules: {m: {walk: [sotpTest], filters: {static: [{targets: [x], indices: [a]}]}}}\n",
     "index must be an integer"),
    ("unknown-key", "modules: {m: {walk: [sotpTest], wlak: []}}\n", "modules.m.wlak: unknown key"),
]


@pytest.mark.parametrize(("generator", "message"), [c[1:] for c in ERRORS], ids=[c[0] for c in ERRORS])
def test_errors_name_the_module_and_entry(tmp_path: Path, generator: str, message: str) -> None:
    r = run(tmp_path, generator, NET_SNMP, DATA)
    assert r.returncode in (1, 2) and message in r.stderr, r.stderr
    assert not (tmp_path / "snmp.yml").exists()


def test_mib_problems_name_file_line_and_object(tmp_path: Path) -> None:
    broken = tmp_path / "mibs"
    broken.mkdir()
    text = (DATA / "SOTP-TEST-MIB").read_text()
    (broken / "BROKEN-MIB").write_text(text.replace("SOTP-TEST-MIB", "BROKEN-MIB").replace(
        "    ::= { sotpPortEntry 6 }", "    ::= { sotpPortEntry 6 ").replace("::= { enterprises 99999 }",
                                                                          "::= { enterprises 99998 }"))
    orphan = text.replace("SOTP-TEST-MIB", "ORPHAN-MIB").replace("{ enterprises 99999 }", "{ sotpNowhere 1 }")
    (broken / "ORPHAN-MIB").write_text(orphan.replace("sotp", "orph"))
    r = run(tmp_path, "modules: {m: {walk: [sotpTest]}}\n", NET_SNMP, DATA, broken)
    assert r.returncode == 1
    line = text.splitlines().index("sotpGroupTable OBJECT-TYPE") + 1  # where the parser finds the '}' missing
    assert f"BROKEN-MIB:{line}: BROKEN-MIB: cannot parse" in r.stderr, r.stderr
    orphan_line = orphan.splitlines().index("sotpTest MODULE-IDENTITY") + 1
    assert f"ORPHAN-MIB:{orphan_line}: ORPHAN-MIB: orphTest: unlinked OID {{ orphNowhere 1 }}" in r.stderr
    assert "--no-fail-on-parse-errors" in r.stderr
    r = run(tmp_path, "modules: {m: {walk: [sotpTest]}}\n", NET_SNMP, DATA, broken,
            extra=("--no-fail-on-parse-errors",))
    assert r.returncode == 0 and (tmp_path / "snmp.yml").exists()


@pytest.mark.parametrize(("seconds", "text"), [(5, "5s"), (90, "1m30s"), (3600, "1h0m0s"), (0.5, "500ms"),
                                               (1.5, "1.5s"), (0, "0s"), (0.0015, "1.5ms")])
def test_durations_are_written_as_go_does(seconds: float, text: str) -> None:
    assert go_duration(seconds) == text


def test_minimize_oids_keeps_string_order_and_drops_covered() -> None:
    assert minimize_oids(["1.3.6.1.2", "1.3.6.1.10", "1.3.6.1.2.1", "1.3.6.1.2.5.0.", "1.3.6.1.20"]) == [
        "1.3.6.1.10", "1.3.6.1.2", "1.3.6.1.20"]
