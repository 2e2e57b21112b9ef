"""Agents answering a walk with an error-status, against Debian's prometheus-snmp-exporter 0.21.

snmp_exporter (gosnmp's walk) ends the walk of a subtree quietly at any error-status — v1's noSuchName
past the end of the agent's view, genErr, noAccess, tooBig... — keeps what it had and walks the next
subtree; an error-status answering the module's GETs fails the scrape (except v1's noSuchName). SOTP
must give the same series, values and packet counts.

Peers, started here on 127.0.0.1: snmpsim serving a device whose columns each end in a different
error-status (snmpsim's ``error`` variation), and Debian's snmpd with a community restricted to the
system group (v1 walks past its end get noSuchName, v2c walks endOfMibView).
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.conftest import Proc, free_port, missing, start_snmpd, wait_snmp
from tests.exporters.snmp.recording_agent import ScriptedAgent
from tests.exporters.snmp.test_integration import assert_same_shape, fetch, parse, start_exporter, start_oracle

pytestmark = pytest.mark.integration

BACKENDS = ["pysnmp", "ezsnmp", "native"]
#: Column -> the error-status its 4th row answers with (snmpsim's names; gosnmp ends the walk at each).
STATUSES = {1: "genError", 2: "noAccess", 3: "authorizationError", 4: "tooBig", 5: "resourceUnavailable",
            6: "noSuchName"}
COLUMN = "1.3.6.1.2.1.2.2.1"


def error_device() -> str:
    """Rows 1-5 of ifTable columns 1-7; row 4 of columns 1-6 answers an error-status, column 7 none."""
    lines = ["1.3.6.1.2.1.1.5.0|4|errdev", "1.3.6.1.2.1.1.6.0|4:error|op=get,status=noAccess"]
    for col in range(1, 8):
        for row in range(1, 6):
            if row == 4 and col in STATUSES:
                lines.append(f"{COLUMN}.{col}.{row}|2:error|op=get,status={STATUSES[col]}")
            else:
                lines.append(f"{COLUMN}.{col}.{row}|2|{col * 10 + row}")
    return "\n".join(lines) + "\n"


def metric(col: int) -> dict[str, object]:
    return {"name": f"col{col}", "oid": f"{COLUMN}.{col}", "type": "gauge",
            "indexes": [{"labelname": "ifIndex", "type": "gauge"}]}


SYSTEM_METRICS = [{"name": "sysName", "oid": "1.3.6.1.2.1.1.5", "type": "DisplayString"},
                  {"name": "sysServices", "oid": "1.3.6.1.2.1.1.7", "type": "gauge"},
                  {"name": "sysORID", "oid": "1.3.6.1.2.1.1.9.1.2", "type": "OctetString",
                   "indexes": [{"labelname": "sysORIndex", "type": "gauge"}]},
                  {"name": "ifNumber", "oid": "1.3.6.1.2.1.2.1", "type": "gauge"},
                  {"name": "ifIndex", "oid": "1.3.6.1.2.1.2.2.1.1", "type": "gauge",
                   "indexes": [{"labelname": "ifIndex", "type": "gauge"}]}]


def modules() -> dict[str, dict[str, object]]:
    """snmp_exporter v0.21's shape: every top-level key is a module, credentials inline."""
    cols = [f"{COLUMN}.{c}" for c in range(1, 8)]
    walk = {"walk": cols, "metrics": [metric(c) for c in range(1, 8)], "auth": {"community": "errors"}}
    system = {"walk": ["1.3.6.1.2.1.1", "1.3.6.1.2.1.2"], "metrics": SYSTEM_METRICS, "auth": {"community": "sysonly"}}
    return {
        # max_repetitions 2: the first GETBULK of a column brings rows 1-2, the second (asking for 3-4)
        # is answered with the error-status.
        "errors_v2": {**walk, "version": 2, "max_repetitions": 2},
        "errors_bulk25": {**walk, "version": 2, "max_repetitions": 25},
        "errors_v1": {**walk, "version": 1},
        # A scalar walked (the GET gosnmp falls back to answers noAccess), then a column.
        "errors_scalar": {**walk, "version": 2, "walk": ["1.3.6.1.2.1.1.6.0", f"{COLUMN}.7"]},
        "sysonly_v1": {**system, "version": 1},
        "sysonly_v2": {**system, "version": 2},
        # An error-status answering a GET fails the scrape in both.
        "errors_get": {**walk, "version": 2, "walk": [], "get": [f"{COLUMN}.1.4", f"{COLUMN}.7.1"]},
        # ScriptedAgent devices: answers out of order, repeated.
        "scripted": {"walk": [f"{COLUMN}.1"], "metrics": [metric(1)], "version": 2, "auth": {"community": "public"}},
        "scripted_allowed": {"walk": [f"{COLUMN}.1"], "metrics": [metric(1)], "version": 2,
                             "auth": {"community": "public"}, "allow_nonincreasing_oids": True},
    }


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("snmp-walk-errors")


@pytest.fixture(scope="module")
def snmpsim(workdir: Path) -> Iterator[str]:
    responder = Path(sys.executable).parent / "snmpsim-command-responder"
    if importlib.util.find_spec("snmpsim") is None or not responder.exists():
        missing("snmpsim is not installed (pip install 'sotp[dev]')")
    data = workdir / "snmpsim-data"
    data.mkdir()
    (data / "errors.snmprec").write_text(error_device())
    port = free_port()
    proc = Proc([str(responder), "--log-level=error", f"--data-dir={data}",
                 f"--agent-udpv4-endpoint=127.0.0.1:{port}"], workdir / "snmpsim.log",
                env={"SNMPSIM_ALLOW_ROOT": "true"})
    try:
        wait_snmp(port, community="errors")
        yield f"127.0.0.1:{port}"
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def snmpd(workdir: Path) -> Iterator[str]:
    # The sysonly community sees the system group only: the walk of it ends at the end of the view.
    proc, port = start_snmpd(workdir, "rocommunity sysonly 127.0.0.1 .1.3.6.1.2.1.1\n")
    try:
        yield f"127.0.0.1:{port}"
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def module_file(workdir: Path) -> Path:
    path = workdir / "walk_errors.yml"
    path.write_text(yaml.safe_dump(modules()))
    return path


@pytest.fixture(scope="module")
def oracle(workdir: Path, module_file: Path) -> Iterator[str]:
    proc, url = start_oracle(workdir, module_file)
    yield url
    proc.stop()


@pytest.fixture(scope="module", params=BACKENDS)
def sotp(request: pytest.FixtureRequest, workdir: Path, module_file: Path) -> Iterator[str]:
    proc, url = start_exporter(workdir, module_file, "--backend", request.param)
    yield url
    proc.stop()


CASES = [
    ("snmpsim", "errors_v2", [1, 2]),
    ("snmpsim", "errors_bulk25", []),
    ("snmpsim", "errors_v1", [1, 2, 3]),
    ("snmpsim", "errors_scalar", None),
    ("snmpd", "sysonly_v1", None),
    ("snmpd", "sysonly_v2", None),
]


@pytest.mark.parametrize(("device", "module", "rows"), CASES, ids=[c[1] for c in CASES])
def test_walk_error_status_keeps_what_came_before_like_snmp_exporter(
    request: pytest.FixtureRequest, sotp: str, oracle: str, device: str, module: str, rows: list[int] | None
) -> None:
    target = request.getfixturevalue(device)
    status_o, theirs = fetch(f"{oracle}/snmp?target={target}&module={module}")
    status_s, ours = fetch(f"{sotp}/snmp?target={target}&module={module}")
    assert (status_o, status_s) == (200, 200), (theirs[:300], ours[:300])
    assert "snmp_scrape_error" not in ours, ours
    assert_same_shape(ours, theirs, same_values=True)
    _, series = parse(ours)
    if rows is not None:
        # Columns that end in an error keep the rows before it; column 7 (no error) has all five.
        for col in STATUSES:
            assert sorted(int(k.split('"')[1]) for k in series if k.startswith(f"col{col}{{")) == rows, col
    if module.startswith("errors"):
        assert sorted(k for k in series if k.startswith("col7{")) == [f'col7{{ifIndex="{r}"}}' for r in range(1, 6)]
    if module.startswith("sysonly"):
        assert 'sysName{sysName=""} 1' not in series and any(k.startswith("sysORID{") for k in series)
        assert not any(k.startswith(("ifNumber", "ifIndex")) for k in series)  # outside the view


def test_error_status_answering_a_get_fails_the_scrape_like_snmp_exporter(
    sotp: str, oracle: str, snmpsim: str
) -> None:
    status_o, theirs = fetch(f"{oracle}/snmp?target={snmpsim}&module=errors_get")
    assert status_o == 500 and "Error Status 5" in theirs
    status_s, ours = fetch(f"{sotp}/snmp?target={snmpsim}&module=errors_get")
    assert status_s == 200 and 'snmp_scrape_error{reason="agent"} 1' in ours, ours
    assert not any(k.startswith("col") for k in parse(ours)[1])


C1 = f"{COLUMN}.1"
#: (case, module, the agent's answers by requested OID, whether snmp_exporter fails the scrape)
SCRIPTS = [
    # gosnmp only checks that no varbind repeats the OID asked for: out of order is taken as it comes.
    ("out-of-order", "scripted", {C1: [f"{C1}.2", f"{C1}.1", "1.3.9"]}, False),
    ("repeats-the-asked-oid", "scripted", {C1: [f"{C1}.1", f"{C1}.2"], f"{C1}.2": [f"{C1}.2", f"{C1}.3"]}, True),
    ("repeat-allowed", "scripted_allowed", {C1: [f"{C1}.1", f"{C1}.2"], f"{C1}.2": [f"{C1}.2", "1.3.9"]}, False),
]


@pytest.mark.parametrize(("module", "script", "fails"), [c[1:] for c in SCRIPTS], ids=[c[0] for c in SCRIPTS])
def test_non_increasing_answers_like_snmp_exporter(
    sotp: str, oracle: str, module: str, script: dict[str, list[str]], fails: bool
) -> None:
    with ScriptedAgent(script) as agent:
        target = f"127.0.0.1:{agent.port}"
        status_o, theirs = fetch(f"{oracle}/snmp?target={target}&module={module}")
        status_s, ours = fetch(f"{sotp}/snmp?target={target}&module={module}")
    if fails:
        assert status_o == 500 and "OID not increasing" in theirs, theirs
        assert status_s == 200 and 'snmp_scrape_error{reason="agent"} 1' in ours, ours
    else:
        assert (status_o, status_s) == (200, 200), (theirs[:300], ours[:300])
        assert "snmp_scrape_error" not in ours, ours
        assert_same_shape(ours, theirs, same_values=True)
