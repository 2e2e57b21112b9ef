"""Modules made by ``sotp snmp generate`` scraped by SOTP and by Debian's snmp_exporter: same output.

``sotp snmp generate`` turns snmp_exporter v0.30.1's generator.yml and the MIBs in tests/fixtures/mibs
into snmp.yml (every module whose MIBs were gathered); SOTP's own default modules that upstream has no
counterpart for (host_resources, entity_sensor, juniper: exporters/snmp/modules.yml, itself checked
against a fresh generation in test_default_modules.py) are added. SOTP's exporter reads that file as it is; Debian's
prometheus-snmp-exporter 0.21 reads the same modules in its own v0.21 shape (credentials inline; the
fields it predates, ``offset``/``scale``/``filters``, left out: their effect is applied by hand to its
values, ``value × scale + offset``, before comparing). Both scrape the same agents:

* snmpsim serving recordings of real devices from snmpsim-data where one answers the module;
* a synthetic snmpsim device per module (synth.py) answering every metric, index type and lookup;
* Debian's snmpd for the host modules (live counters: families, types, labels and series compared).
"""

from __future__ import annotations

import bz2
import importlib.util
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO, Proc, free_port, missing, require_binary, sotp_cmd
from tests.exporters.snmp.synth import synthesize
from tests.exporters.snmp.test_integration import fetch, label_names, parse, start_exporter, start_oracle, wait_snmp

pytestmark = pytest.mark.integration

FIXTURES = REPO / "tests" / "fixtures"
GENERATOR = FIXTURES / "snmp_exporter" / "v0.30.1" / "generator.yml"
MIB_DIRS = sorted(p for p in (FIXTURES / "mibs").iterdir() if p.is_dir())
HOST_MODULES = ("system", "if_mib", "ip_mib", "ucd_la_table", "ucd_memory", "ucd_system_stats", "hrSystem",
                "hrStorage", "hrDevice", "hrSWRun", "hrSWRunPerf", "hrSWInstalled", "host_resources")
#: Module -> snmpsim-data recording of a device that answers it.
RECORDINGS = {
    "system": "network/switch/cisco-c3560.snmprec.bz2",
    "if_mib": "network/switch/cisco-c3560.snmprec.bz2",
    "ip_mib": "network/switch/zte-zrx10.snmprec.bz2",
    "ucd_la_table": "os/linux/unknown-006.snmprec.bz2",
    "ucd_memory": "os/linux/unknown-006.snmprec.bz2",
    "ucd_system_stats": "os/linux/unknown-006.snmprec.bz2",
    "hrSystem": "os/linux/unknown-007.snmprec.bz2",
    "hrStorage": "network/router/juniper-mx960-16-1r6-7-a.snmprec.bz2",
    "hrDevice": "os/linux/ibm-power-chrp.snmprec.bz2",
    "hrSWRun": "os/linux/unknown-007.snmprec.bz2",
    "hrSWRunPerf": "os/linux/unknown-007.snmprec.bz2",
    "hrSWInstalled": "os/linux/ibm-power-chrp.snmprec.bz2",
    "cisco_device": "network/appliance/cisco-unknown-01.snmprec.bz2",
    "cisco_wlc": "network/appliance/cisco-controller.snmprec.bz2",
    "cisco_imc": "network/appliance/cisco-ucs-6100-k9.snmprec.bz2",
    "apcups": "UPS/apc-8932.snmprec",
    "arista_sw": "cloud/arista-dcs-7150s-52-cl.snmprec.bz2",
    "ups_mib": "UPS/eastpower-istars-swv053.snmprec.bz2",
    "ubiquiti_airos": "network/wifi/ubiquiti-m5.snmprec.bz2",
    "host_resources": "os/linux/unknown-007.snmprec.bz2",
    "entity_sensor": "cloud/arista-dcs-7150s-52-cl.snmprec.bz2",
    "juniper": "network/router/juniper-mx960-16-1r6-7-a.snmprec.bz2",
}
#: SOTP's default modules with no snmp_exporter counterpart.
SOTP_ONLY = ("host_resources", "entity_sensor", "juniper")
MODULES = sorted({*RECORDINGS, *HOST_MODULES, "cisco_fc_fe", "keepalived", "powercom", "dell_network", "eltex_mes",
                  "kemp_loadmaster", "fieldserver", "printer_mib", "dell", "servertech_sentry3", "ubiquiti_airmax",
                  "ubiquiti_unifi", "raritan", "dlink"})
CASES = ([(m, "synthetic") for m in MODULES] + [(m, "recording") for m in sorted(RECORDINGS)]
         + [(m, "snmpd") for m in HOST_MODULES])


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("generated")


@pytest.fixture(scope="module")
def generated(workdir: Path) -> dict[str, Any]:
    """snmp.yml written by ``sotp snmp generate`` (the command line, as a user runs it)."""
    out = workdir / "generated.yml"
    argv = sotp_cmd("snmp", "generate", str(GENERATOR), "-o", str(out))
    for d in MIB_DIRS:
        argv += ["-m", str(d)]
    for m in MODULES:
        if m not in SOTP_ONLY:
            argv += ["--module", m]
    r = subprocess.run(argv, capture_output=True, text=True, cwd=REPO, timeout=600)
    assert r.returncode == 0, r.stderr
    data: dict[str, Any] = yaml.safe_load(out.read_text())
    builtin = yaml.safe_load((REPO / "exporters" / "snmp" / "modules.yml").read_text())["modules"]
    data["modules"].update({m: builtin[m] for m in SOTP_ONLY})
    assert sorted(data["modules"]) == MODULES
    return data


@pytest.fixture(scope="module")
def snmpsim(workdir: Path, generated: dict[str, Any]) -> Iterator[str]:
    """One snmpsim serving, by community, ``<module>-synthetic`` and ``<module>-recording`` devices."""
    spec = importlib.util.find_spec("snmpsim_data")
    responder = Path(sys.executable).parent / "snmpsim-command-responder"
    if spec is None or spec.origin is None or not responder.exists():
        missing("snmpsim and snmpsim-data are not installed (pip install 'sotp[dev]')")
    assert spec is not None and spec.origin is not None
    recordings = Path(spec.origin).parent / "data"
    data = workdir / "snmpsim-data"
    data.mkdir()
    for module in MODULES:
        (data / f"{module}-synthetic.snmprec").write_text(synthesize(generated["modules"][module]))
    for module, name in RECORDINGS.items():
        raw = (recordings / name).read_bytes()
        text = (bz2.decompress(raw) if name.endswith(".bz2") else raw).decode("latin-1")
        (data / f"{module}-recording.snmprec").write_text(trim(text, generated["modules"][module]), "latin-1")
    port = free_port()
    proc = Proc([str(responder), "--log-level=error", f"--data-dir={data}", f"--agent-udpv4-endpoint=127.0.0.1:{port}"],
                workdir / "snmpsim.log", env={"SNMPSIM_ALLOW_ROOT": "true"})
    try:
        wait_snmp(port, community=f"{MODULES[0]}-synthetic", timeout=120)
        yield f"127.0.0.1:{port}"
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def snmpd(workdir: Path) -> Iterator[str]:
    binary = require_binary("snmpd", "/usr/sbin/snmpd")
    port = free_port()
    conf = workdir / "snmpd.conf"
    conf.write_text("rocommunity public 127.0.0.1\ndontLogTCPWrappersConnects yes\n")
    (workdir / "persist").mkdir()
    proc = Proc([binary, "-f", "-C", "-c", str(conf), "-Lf", str(workdir / "snmpd.log"), f"udp:127.0.0.1:{port}"],
                workdir / "snmpd.out", env={"SNMP_PERSISTENT_DIR": str(workdir / "persist"), "MIBS": "",
                                            "MIBDIRS": str(workdir)})
    try:
        wait_snmp(port)
        yield f"127.0.0.1:{port}"
    finally:
        proc.stop()


def trim(recording: str, module: dict[str, Any]) -> str:
    """The recording's lines under the module's walks and gets (and sysUpTime.0, for readiness): some
    recordings hold a million OIDs, which snmpsim takes minutes to index."""
    roots = tuple(f"{oid}." for oid in module.get("walk", []) + module.get("get", []))
    keep = [static(line) for line in recording.split("\n")
            if line.startswith(("1.3.6.1.2.1.1.3.0|", *roots)) or line.split("|", 1)[0] in module.get("get", [])]
    return "".join(f"{line}\n" for line in keep)


def static(line: str) -> str:
    """A value snmpsim varies between reads (``66:numeric|min=0,scale=95,...``) pinned to its scale,
    so both exporters read the same number."""
    oid, tag, value = line.split("|", 2)
    if ":" not in tag:
        return line
    params = dict(p.split("=", 1) for p in value.split(",") if "=" in p)
    return f"{oid}|{tag.split(':')[0]}|{params.get('scale', params.get('initial', params.get('value', '0')))}"


def v021_module(module: dict[str, Any], community: str) -> dict[str, Any]:
    """The module in snmp_exporter 0.21's shape: credentials inline, newer fields left out."""
    body = {k: v for k, v in module.items() if k != "filters"}
    body["metrics"] = [{k: v for k, v in m.items() if k not in ("offset", "scale", "datetime_pattern")}
                       for m in module["metrics"]]
    body["auth"] = {"community": community}
    return body


@pytest.fixture(scope="module")
def exporters(workdir: Path, generated: dict[str, Any]) -> Iterator[tuple[str, str]]:
    communities = {f"{m}-{kind}": f"{m}-{kind}" for m, kind in CASES if kind != "snmpd"}
    communities.update({f"{m}-snmpd": "public" for m in HOST_MODULES})
    oracle_file = workdir / "oracle.yml"
    oracle_file.write_text(yaml.safe_dump({
        device: v021_module(generated["modules"][device.rsplit("-", 1)[0]], community)
        for device, community in communities.items()}))
    sotp_file = workdir / "sotp.yml"
    sotp_file.write_text(yaml.safe_dump({
        "auths": {device: {"version": 2, "community": c} for device, c in communities.items()},
        "modules": generated["modules"]}))
    oracle, oracle_url = start_oracle(workdir, oracle_file)
    sotp, sotp_url = start_exporter(workdir, sotp_file, "--backend", "native")
    try:
        yield sotp_url, oracle_url
    finally:
        sotp.stop()
        oracle.stop()


def scaled_oracle(series: dict[str, float], module: dict[str, Any]) -> dict[str, float]:
    """snmp_exporter 0.21's values with the module's ``scale``/``offset`` applied by hand."""
    factors = {m["name"]: (m.get("scale") or 1.0, m.get("offset") or 0.0) for m in module["metrics"]
               if m.get("scale") or m.get("offset")}
    out = {}
    for key, value in series.items():
        scale, offset = factors.get(key.partition("{")[0], (1.0, 0.0))
        out[key] = value * scale + offset
    return out


@pytest.mark.parametrize(("module", "device"), CASES, ids=[f"{m}-{d}" for m, d in CASES])
def test_generated_module_scrapes_like_snmp_exporter(
    request: pytest.FixtureRequest, exporters: tuple[str, str], generated: dict[str, Any], module: str, device: str
) -> None:
    target = request.getfixturevalue("snmpd" if device == "snmpd" else "snmpsim")
    sotp_url, oracle_url = exporters
    name = f"{module}-{device}"
    status_o, theirs = fetch(f"{oracle_url}/snmp?target={target}&module={name}")
    status_s, ours = fetch(f"{sotp_url}/snmp?target={target}&module={module}&auth={name}")
    assert (status_o, status_s) == (200, 200), (theirs[:3000], ours[:300])
    assert "snmp_scrape_error" not in ours
    t_ours, s_ours = parse(ours)
    t_theirs, s_theirs = parse(theirs)
    metric_names = {m["name"] for m in generated["modules"][module]["metrics"] if m["type"] in ("gauge", "counter")
                    or all(i["labelname"] != m["name"] for i in m.get("indexes", []))}
    answered = {k.partition("{")[0] for k in s_ours} - {k for k in t_ours if k.startswith("snmp_scrape")}
    if device == "synthetic":
        # The synthetic device answers every metric (EnumAsInfo ones as <name>_info).
        answered = {n.removesuffix("_info") for n in answered}
        assert metric_names <= answered, sorted(metric_names - answered)[:10]
    assert t_ours == t_theirs, "families or types differ"
    assert label_names(s_ours) == label_names(s_theirs), "label names differ"
    assert set(s_ours) == set(s_theirs), sorted(set(s_ours) ^ set(s_theirs))[:5]
    for counter in ("snmp_scrape_packets_sent", "snmp_scrape_packets_retried", "snmp_scrape_pdus_returned"):
        assert s_ours[counter] == s_theirs[counter], counter
    if device != "snmpd":
        expected = scaled_oracle(s_theirs, generated["modules"][module])
        volatile = ("snmp_scrape_duration_seconds", "snmp_scrape_walk_duration_seconds")
        diff = [(k, s_ours[k], expected[k]) for k in sorted(s_ours) if not k.startswith(volatile)
                and s_ours[k] != expected[k]]
        assert not diff, f"values differ: {diff[:5]}"
