"""SOTP's SNMP exporter against real agents, compared with Debian's prometheus-snmp-exporter 0.21.

Peers, all on 127.0.0.1 and started here: Debian ``snmpd`` with a config written by the test (v2c
community ``public`` and a v3 authPriv SHA/AES user), ``snmpsim`` serving the recorded Cisco C3560
(57 interfaces) as community ``public`` and as v3 context ``cisco-c3560``, a recorded Juniper MX960
(61 interfaces), and a tiny hand-written device with Counter64 values beyond 2^53 and quoted strings.
The oracle reads upstream's generated v0.21 ``if_mib`` file as it is (and copies with credentials
inline, the v0.21 way); SOTP reads the same files.
"""

from __future__ import annotations

import bz2
import contextlib
import importlib.util
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.conftest import (
    REPO,
    Proc,
    free_port,
    missing,
    require_binary,
    sotp_cmd,
    start_snmpd,
    wait_for_port,
    wait_snmp,
)
from tests.exporters.snmp.fakes import UPSTREAM_V021
from tests.exporters.snmp.recording_agent import RecordingAgent, grouped

pytestmark = pytest.mark.integration

BACKENDS = ["pysnmp", "ezsnmp", "native"]
V3 = {"username": "sotpuser", "security_level": "authPriv", "password": "authpass123", "auth_protocol": "SHA",
      "priv_protocol": "AES", "priv_password": "privpass123"}
EDGE_DEVICE = """\
1.3.6.1.2.1.1.3.0|67|100
1.3.6.1.2.1.2.1.0|2|2
1.3.6.1.2.1.2.2.1.1.1|2|1
1.3.6.1.2.1.2.2.1.1.2|2|2
1.3.6.1.2.1.2.2.1.2.1|4|big
1.3.6.1.2.1.2.2.1.2.2|4|small
1.3.6.1.2.1.31.1.1.1.6.1|70|18446744073709551615
1.3.6.1.2.1.31.1.1.1.6.2|70|9007199254740993
1.3.6.1.2.1.31.1.1.1.10.1|70|12345
1.3.6.1.2.1.31.1.1.1.18.1|4|he said "hi" \\ ok
1.3.6.1.2.1.31.1.1.1.18.2|4x|c3a97465207e31
"""


# -- helpers ------------------------------------------------------------------------------------------------
def fetch(url: str, headers: dict[str, str] | None = None, timeout: float = 30) -> tuple[int, str]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def parse(text: str) -> tuple[dict[str, str], dict[str, float]]:
    """(family -> type, series line without value -> value)."""
    types: dict[str, str] = {}
    series: dict[str, float] = {}
    # Label values keep a raw CR (Go's exposition escapes only backslash, quote and LF): split on LF only.
    for line in text.split("\n"):
        if line.startswith("# TYPE "):
            _, _, name, typ = line.split(" ")
            types[name] = typ
        elif line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            series[key] = float(value)
    return types, series


def label_names(series: dict[str, float]) -> dict[str, set[frozenset[str]]]:
    out: dict[str, set[frozenset[str]]] = {}
    for key in series:
        name, _, rest = key.partition("{")
        out.setdefault(name, set()).add(frozenset(re.findall(r'(\w+)="', rest)))
    return out


def start_exporter(d: Path, config: Path, *extra: str) -> tuple[Proc, str]:
    port = free_port()
    proc = Proc(sotp_cmd("exporter", "snmp", "--config", str(config), "--listen", f"127.0.0.1:{port}", *extra),
                d / f"sotp-{port}.log")
    wait_for_port(port)
    return proc, f"http://127.0.0.1:{port}"


def start_oracle(d: Path, config: Path, *extra: str) -> tuple[Proc, str]:
    binary = require_binary("prometheus-snmp-exporter", "/usr/bin/prometheus-snmp-exporter")
    port = free_port()
    proc = Proc([binary, f"--config.file={config}", f"--web.listen-address=127.0.0.1:{port}", *extra],
                d / f"oracle-{port}.log")
    wait_for_port(port)
    return proc, f"http://127.0.0.1:{port}"


# -- peers --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("snmp")


@pytest.fixture(scope="module")
def snmpd(workdir: Path) -> Iterator[str]:
    v3 = (f'createUser {V3["username"]} SHA "{V3["password"]}" AES "{V3["priv_password"]}"\n'
          f"rouser {V3['username']} priv\n")
    proc, port = start_snmpd(workdir, v3)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def snmpsim(workdir: Path) -> Iterator[str]:
    spec = importlib.util.find_spec("snmpsim_data")
    responder = Path(sys.executable).parent / "snmpsim-command-responder"
    if spec is None or spec.origin is None or not responder.exists():
        missing("snmpsim and snmpsim-data are not installed (pip install 'sotp[dev]')")
    assert spec is not None and spec.origin is not None
    recordings = Path(spec.origin).parent / "data" / "network"
    data = workdir / "snmpsim-data"
    data.mkdir()
    text = bz2.decompress((recordings / "switch" / "cisco-c3560.snmprec.bz2").read_bytes())
    juniper = bz2.decompress((recordings / "router" / "juniper-mx960-13-3r9-13.snmprec.bz2").read_bytes())
    (data / "juniper-mx960.snmprec").write_bytes(juniper)
    # The community (v2c) or context name (v3) selects the data file by its stem.
    (data / "public.snmprec").write_bytes(text)
    (data / "cisco-c3560.snmprec").write_bytes(text)
    (data / "edge.snmprec").write_text(EDGE_DEVICE)
    port = free_port()
    proc = Proc([str(responder), "--log-level=error", "--v3-engine-id=auto", f"--v3-user={V3['username']}",
                 f"--v3-auth-key={V3['password']}", "--v3-auth-proto=SHA", f"--v3-priv-key={V3['priv_password']}",
                 "--v3-priv-proto=AES", f"--data-dir={data}", f"--agent-udpv4-endpoint=127.0.0.1:{port}"],
                workdir / "snmpsim.log", env={"SNMPSIM_ALLOW_ROOT": "true"})
    try:
        wait_snmp(port)
        yield f"127.0.0.1:{port}"
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def v021_file(workdir: Path) -> Path:
    """The upstream v0.21 file as it is, plus copies of if_mib with v3 credentials inline (v0.21 shape)."""
    data = yaml.safe_load(UPSTREAM_V021.read_text())
    data["if_mib_v1"] = {**data["if_mib"], "version": 1}
    data["if_mib_v3"] = {**data["if_mib"], "version": 3, "auth": dict(V3)}
    data["if_mib_v3_c3560"] = {**data["if_mib"], "version": 3, "auth": {**V3, "context_name": "cisco-c3560"}}
    data["if_mib_edge"] = {**data["if_mib"], "auth": {"community": "edge"}}
    data["if_mib_juniper"] = {**data["if_mib"], "auth": {"community": "juniper-mx960"}}
    # SOTP's own modules, handed to the oracle too (v0.21 shape: the module bodies at top level).
    builtin = yaml.safe_load((REPO / "exporters" / "snmp" / "modules.yml").read_text())["modules"]
    for name in ("if_mib", "system", "host_resources"):
        data[f"sotp_{name}"] = builtin[name]
    path = workdir / "snmp_v021_plus.yml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="module")
def sotp_file(workdir: Path) -> Path:
    """SOTP's v0.23+ shape: named auths, quick-failing modules, small concurrency limits."""
    quick = {"get": ["1.3.6.1.2.1.1.5.0"], "timeout": "300ms", "retries": 1,
             "metrics": [{"name": "sysName", "oid": "1.3.6.1.2.1.1.5", "type": "DisplayString"}]}
    data = {
        "auths": {
            "wrong_v2": {"community": "wrong"},
            "sotp_v3": {"version": 3, **V3},
            "bad_v3": {"version": 3, **V3, "password": "not-the-password"},
        },
        "modules": {
            "quick": quick, "slow": {**quick, "timeout": "5s", "retries": 3},
            "quick_unconnected": {**quick, "use_unconnected_udp_socket": True},
            # One per concurrent scrape of the limit tests, so the agent can tell the scrapes apart.
            **{f"quick{i}": {**quick, "get": [f"1.3.6.1.2.1.1.{i}.0"]} for i in (1, 2, 3)},
            "patient": {**quick, "timeout": "20s", "retries": 0},
        },
        "exporter": {"max_concurrent_per_target": 1},
    }
    path = workdir / "snmp_sotp.yml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="module")
def oracle(workdir: Path, v021_file: Path) -> Iterator[str]:
    proc, url = start_oracle(workdir, v021_file)
    yield url
    proc.stop()


@pytest.fixture(scope="module", params=BACKENDS)
def sotp(request: pytest.FixtureRequest, workdir: Path, v021_file: Path) -> Iterator[str]:
    proc, url = start_exporter(workdir, v021_file, "--backend", request.param)
    yield url
    proc.stop()


@pytest.fixture(scope="module", params=BACKENDS)
def sotp2(request: pytest.FixtureRequest, workdir: Path, sotp_file: Path) -> Iterator[str]:
    proc, url = start_exporter(workdir, sotp_file, "--backend", request.param)
    yield url
    proc.stop()


# -- parity with snmp_exporter ------------------------------------------------------------------------------
def assert_same_shape(ours: str, theirs: str, same_values: bool) -> None:
    t_ours, s_ours = parse(ours)
    t_theirs, s_theirs = parse(theirs)
    assert t_ours == t_theirs, "families or types differ"
    assert label_names(s_ours) == label_names(s_theirs), "label names differ"
    assert set(s_ours) == set(s_theirs), "series differ"
    for name in ("snmp_scrape_packets_sent", "snmp_scrape_packets_retried", "snmp_scrape_pdus_returned"):
        assert s_ours[name] == s_theirs[name], name
    if same_values:
        volatile = ("snmp_scrape_duration_seconds", "snmp_scrape_walk_duration_seconds", "sysUpTime")
        diff = {k for k in s_ours if not k.startswith(volatile) and s_ours[k] != s_theirs[k]}
        assert not diff, f"values differ: {[(k, s_ours[k], s_theirs[k]) for k in sorted(diff)[:5]]}"


@pytest.mark.parametrize(
    ("device", "module", "same_values"),
    [
        ("snmpd", "if_mib", False),
        ("snmpd", "if_mib_v1", False),
        ("snmpd", "if_mib_v3", False),
        ("snmpsim", "if_mib", True),
        ("snmpsim", "if_mib_v3_c3560", True),
        ("snmpsim", "if_mib_juniper", True),
        ("snmpsim", "if_mib_edge", True),
        ("snmpsim", "sotp_if_mib", True),
        ("snmpd", "sotp_system", False),
        ("snmpd", "sotp_host_resources", False),
    ],
    ids=["snmpd-v2c", "snmpd-v1", "snmpd-v3-authpriv", "snmpsim-c3560-v2c", "snmpsim-c3560-v3-context",
         "snmpsim-juniper-mx960", "snmpsim-edge-values", "builtin-if_mib-c3560", "builtin-system-snmpd",
         "builtin-host_resources-snmpd"],
)
def test_parity_with_snmp_exporter(
    request: pytest.FixtureRequest, sotp: str, oracle: str, device: str, module: str, same_values: bool
) -> None:
    target = request.getfixturevalue(device)
    status_o, theirs = fetch(f"{oracle}/snmp?target={target}&module={module}")
    status_s, ours = fetch(f"{sotp}/snmp?target={target}&module={module}")
    assert (status_o, status_s) == (200, 200), (theirs[:300], ours[:300])
    assert "snmp_scrape_error" not in ours
    if device == "snmpsim" and module != "if_mib_edge":
        assert len([k for k in parse(ours)[1] if k.startswith("ifHCInOctets{")]) >= 50
    assert_same_shape(ours, theirs, same_values)


def test_counter64_unwrapped_like_snmp_exporter_flag(workdir: Path, v021_file: Path, snmpsim: str) -> None:
    oracle_proc, oracle_url = start_oracle(workdir, v021_file, "--no-snmp.wrap-large-counters")
    sotp_proc, sotp_url = start_exporter(workdir, v021_file, "--no-snmp.wrap-large-counters")
    try:
        _, theirs = fetch(f"{oracle_url}/snmp?target={snmpsim}&module=if_mib_edge")
        _, ours = fetch(f"{sotp_url}/snmp?target={snmpsim}&module=if_mib_edge")
    finally:
        oracle_proc.stop()
        sotp_proc.stop()
    for text in (theirs, ours):
        (line,) = [x for x in text.splitlines() if x.startswith("ifHCInOctets{") and 'ifIndex="1"' in x]
        assert line.endswith(" 1.8446744073709552e+19")  # 2^64 - 1 as float64, not wrapped
    assert_same_shape(ours, theirs, same_values=True)


# -- SOTP's own modules, auths and multi-module requests -------------------------------------------------------
def test_modules_of_one_request_keep_their_own_inline_credentials(sotp: str, snmpsim: str) -> None:
    # if_mib has no credentials (public_v2 -> the C3560), if_mib_juniper carries community juniper-mx960.
    single = {}
    for module in ("if_mib", "if_mib_juniper"):
        _, text = fetch(f"{sotp}/snmp?target={snmpsim}&module={module}")
        single[module] = parse(text)[1]["snmp_scrape_pdus_returned"]
    _, text = fetch(f"{sotp}/snmp?target={snmpsim}&module=if_mib,if_mib_juniper")
    series = parse(text)[1]
    assert single["if_mib"] != single["if_mib_juniper"]
    for module, pdus in single.items():
        assert series[f'snmp_scrape_pdus_returned{{module="{module}"}}'] == pdus

def test_builtin_modules_and_named_v3_auth(sotp2: str, snmpd: str) -> None:
    status, text = fetch(f"{sotp2}/snmp?target={snmpd}&module=system,host_resources,if_mib&auth=sotp_v3")
    assert status == 200
    types, series = parse(text)
    assert types["sysUpTime"] == "gauge" and types["hrStorageSize"] == "gauge"
    assert any(k.startswith("sysDescr{sysDescr=\"Linux") for k in series)
    assert any('hrStorageDescr="Physical memory"' in k for k in series if k.startswith("hrStorageSize{"))
    # (hrProcessorLoad needs a minute of snmpd uptime before it has rows.)
    assert series["hrSystemProcesses"] > 0 and types["hrStorageUsed"] == "gauge"
    assert any(k.startswith('ifOperStatus{ifAlias="",ifDescr="lo"') for k in series)
    # Several modules: a module label tells their scrape figures apart.
    assert {k for k in series if k.startswith("snmp_scrape_pdus_returned")} == {
        f'snmp_scrape_pdus_returned{{module="{m}"}}' for m in ("system", "host_resources", "if_mib")}


# -- errors ---------------------------------------------------------------------------------------------------
BAD_PARAMS = [
    ("missing-target", "module=if_mib", "'target' parameter must be specified once"),
    ("empty-target", "target=&module=if_mib", "'target' parameter must be specified once"),
    ("repeated-target", "target=a&target=b", "'target' parameter must be specified once"),
    ("unknown-module", "target=127.0.0.1&module=if_mib,nope", "Unknown module 'nope'"),
    ("unknown-auth", "target=127.0.0.1&auth=nope", "Unknown auth 'nope'"),
    ("repeated-auth", "target=127.0.0.1&auth=a&auth=b", "'auth' parameter must only be specified once"),
]


@pytest.mark.parametrize(("query", "message"), [c[1:] for c in BAD_PARAMS], ids=[c[0] for c in BAD_PARAMS])
def test_bad_parameters_are_400(sotp2: str, query: str, message: str) -> None:
    status, text = fetch(f"{sotp2}/snmp?{query}")
    assert (status, text.strip()) == (400, message)


DEVICE_FAILURES = [
    ("wrong-community", "snmpd", "quick", "wrong_v2", "timeout"),
    ("wrong-v3-password", "snmpd", "quick", "bad_v3", "auth"),
    # A closed port: ICMP port unreachable ends each try at once on the native backend's connected socket
    # (as on gosnmp's); pysnmp's and net-snmp's unconnected sockets never see it and time out.
    ("closed-port", "closed", "quick", "public_v2", "refused|timeout"),
    ("closed-port-unconnected", "closed", "quick_unconnected", "public_v2", "timeout"),
    ("bad-port", "127.0.0.1:notaport", "quick", "public_v2", "target"),
]


@pytest.mark.parametrize(("device", "module", "auth", "reason"), [c[1:] for c in DEVICE_FAILURES],
                         ids=[c[0] for c in DEVICE_FAILURES])
def test_device_failures_are_scrape_error_metrics(
    request: pytest.FixtureRequest, sotp2: str, device: str, module: str, auth: str, reason: str
) -> None:
    target = {"closed": f"127.0.0.1:{free_port()}"}.get(device) or (
        request.getfixturevalue(device) if device == "snmpd" else device)
    if "|" in reason:
        reason = reason.split("|")[0 if request.node.callspec.params["sotp2"] == "native" else 1]
    status, text = fetch(f"{sotp2}/snmp?target={target}&module={module}&auth={auth}")
    assert status == 200
    _, series = parse(text)
    assert series.get(f'snmp_scrape_error{{reason="{reason}"}}') == 1.0, text
    assert "snmp_scrape_duration_seconds" in series
    if reason in ("timeout", "refused"):  # the module's two tries, then the error (timing: bench/snmp.py --limits)
        assert (series["snmp_scrape_packets_sent"], series["snmp_scrape_packets_retried"]) == (2, 1)


@pytest.mark.parametrize(("module", "message"), [("quick", "connection refused"), ("quick_unconnected", "timeout")])
def test_closed_port_answers_like_snmp_exporter(workdir: Path, sotp_file: Path, module: str, message: str) -> None:
    """snmp_exporter's gosnmp reads ICMP port unreachable on its connected socket and fails the scrape at
    once; with use_unconnected_udp_socket it waits for its tries to time out. The native backend does the
    same (refused or timeout), with the same two tries."""
    oracle_file = workdir / "closed_oracle.yml"
    oracle_file.write_text(yaml.safe_dump({m: {**body, "version": 2, "auth": {"community": "public"}}
                                           for m, body in yaml.safe_load(sotp_file.read_text())["modules"].items()}))
    oracle_proc, oracle_url = start_oracle(workdir, oracle_file)
    sotp_proc, sotp_url = start_exporter(workdir, sotp_file, "--backend", "native")
    target = f"127.0.0.1:{free_port()}"
    try:
        status_o, theirs = fetch(f"{oracle_url}/snmp?target={target}&module={module}")
        _, ours = fetch(f"{sotp_url}/snmp?target={target}&module={module}")
    finally:
        oracle_proc.stop()
        sotp_proc.stop()
    assert status_o == 500 and message in theirs, theirs
    series = parse(ours)[1]
    reason = "refused" if message == "connection refused" else "timeout"
    assert series.get(f'snmp_scrape_error{{reason="{reason}"}}') == 1.0, ours
    assert (series["snmp_scrape_packets_sent"], series["snmp_scrape_packets_retried"]) == (2, 1)


def test_scrape_timeout_header_bounds_the_request(sotp2: str) -> None:
    # "slow" would try 4 x 5 s; Prometheus' 1.5 s scrape timeout leaves a 1 s budget: the answer is the
    # deadline error, not the module's timeout (how long it took: bench/snmp.py --limits). The device is
    # silent (a closed port would refuse at once).
    with RecordingAgent(1) as agent:
        status, text = fetch(f"{sotp2}/snmp?target=127.0.0.1:{agent.ports[0]}&module=slow",
                             headers={"X-Prometheus-Scrape-Timeout-Seconds": "1.5"})
    assert status == 200 and 'snmp_scrape_error{reason="deadline"} 1' in text
    assert 'snmp_scrape_error{reason="timeout"}' not in text


def concurrent_scrapes(url: str, requests: list[tuple[str, str]]) -> list[str]:
    """Scrape (target, module) pairs all at once; the bodies, in request order."""
    bodies = [""] * len(requests)

    def one(i: int, target: str, module: str) -> None:
        bodies[i] = fetch(f"{url}/snmp?target={target}&module={module}")[1]

    threads = [threading.Thread(target=one, args=(i, *r)) for i, r in enumerate(requests)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return bodies


def test_per_target_limit_serialises_scrapes_of_one_target(sotp2: str) -> None:
    # max_concurrent_per_target is 1: three scrapes of one silent device (two tries each, told apart by the
    # OID their module asks for) reach it one after the other, never interleaved.
    with RecordingAgent(1) as agent:
        target = f"127.0.0.1:{agent.ports[0]}"
        concurrent_scrapes(sotp2, [(target, f"quick{i}") for i in (1, 2, 3)])
    oids = [oid for _, oid in agent.arrivals]
    assert len(oids) == 6 and len(set(oids)) == 3
    assert grouped(oids), oids
    _, text = fetch(f"{sotp2}/metrics")
    types, series = parse(text)
    assert types["snmp_request_errors_total"] == "counter"
    assert series['snmp_scrape_errors_total{reason="timeout"}'] >= 3


def test_per_target_limit_lets_other_targets_run_at_once(sotp2: str) -> None:
    # The device answers only once all three were asked: the scrapes succeed only if they run together.
    with RecordingAgent(3, barrier=True) as agent:
        bodies = concurrent_scrapes(sotp2, [(f"127.0.0.1:{p}", "patient") for p in agent.ports])
    assert all("snmp_scrape_error" not in b and 'sysName{sysName="x"} 1' in b for b in bodies), bodies


def test_global_limit_serialises_scrapes_of_all_targets(workdir: Path, sotp_file: Path) -> None:
    proc, url = start_exporter(workdir, sotp_file, "--backend", "native", "--max-concurrent-scrapes", "1")
    try:
        with RecordingAgent(3) as agent:
            concurrent_scrapes(url, [(f"127.0.0.1:{p}", "quick") for p in agent.ports])
    finally:
        proc.stop()
    ports = [str(port) for port, _ in agent.arrivals]
    assert len(ports) == 6 and grouped(ports), ports


def test_sigterm_exits_cleanly_even_with_a_scrape_in_flight(workdir: Path, sotp_file: Path) -> None:
    proc, url = start_exporter(workdir, sotp_file)
    assert fetch(f"{url}/metrics")[0] == 200
    # "slow" on a silent target would take 4 x 5 s.
    def scrape_dead_device() -> None:
        # The exporter closes the connection as it stops: expected.
        with contextlib.suppress(OSError):
            fetch(f"{url}/snmp?target=127.0.0.1:{free_port()}&module=slow")

    hung = threading.Thread(target=scrape_dead_device)
    hung.start()
    time.sleep(0.5)
    proc.popen.send_signal(signal.SIGTERM)
    # The scrape in flight would take 20 s: the exporter exits without waiting for it.
    assert proc.popen.wait(15) == 0
    proc.stop()
    hung.join()


def test_bad_config_exits_2_with_the_key(workdir: Path) -> None:
    bad = workdir / "bad.yml"
    bad.write_text("modules: {m: {walk: [ifTable]}}\n")
    r = subprocess.run(sotp_cmd("exporter", "snmp", "--config", str(bad), "--dry-run"), capture_output=True,
                       text=True, cwd=Path(__file__).resolve().parents[3])
    assert r.returncode == 2 and "modules.m.walk[0]" in r.stderr and "numeric OID" in r.stderr


# -- sotp snmp walk / check ---------------------------------------------------------------------------------
NET_SNMP_MIBS = REPO / "tests" / "fixtures" / "mibs" / "net-snmp"


@pytest.mark.parametrize("root", ["system", "IF-MIB::ifTable", "1.3.6.1.2.1.25.2"])
def test_walk_names_objects_like_net_snmp(snmpd: str, root: str) -> None:
    """``sotp snmp walk`` prints the same names (and OIDs) as net-snmp's snmpwalk loading the same MIBs."""
    snmpwalk = require_binary("snmpwalk")
    ours = subprocess.run(sotp_cmd("snmp", "walk", snmpd, root, "-m", str(NET_SNMP_MIBS)), capture_output=True,
                          text=True, cwd=REPO, timeout=120)
    assert ours.returncode == 0, ours.stderr
    theirs = subprocess.run([snmpwalk, "-v2c", "-c", "public", "-M", str(NET_SNMP_MIBS), "-m", "ALL", snmpd, root],
                            capture_output=True, text=True, timeout=120)
    assert theirs.returncode == 0, theirs.stderr
    names = [line.split(" = ", 1)[0] for line in ours.stdout.splitlines()]
    reference = [line.split(" = ", 1)[0] for line in theirs.stdout.splitlines() if " = " in line]
    assert names and names == reference
    if root == "system":
        assert any(line.startswith('SNMPv2-MIB::sysDescr.0 = STRING: "Linux') for line in ours.stdout.splitlines())
    if root == "IF-MIB::ifTable":
        assert "IF-MIB::ifOperStatus.1 = INTEGER: up(1)" in ours.stdout.splitlines()


def test_walk_errors_are_clear(snmpd: str) -> None:
    r = subprocess.run(sotp_cmd("snmp", "walk", snmpd, "noSuchThing", "-m", str(NET_SNMP_MIBS)),
                       capture_output=True, text=True, cwd=REPO, timeout=120)
    assert r.returncode == 2 and "unknown MIB object 'noSuchThing'" in r.stderr
    r = subprocess.run(sotp_cmd("snmp", "walk", f"127.0.0.1:{free_port()}", "1.3.6.1.2.1.1", "--timeout", "0.2",
                                "--retries", "0"), capture_output=True, text=True, cwd=REPO, timeout=120)
    # The default (native) backend sees the closed port's ICMP port unreachable.
    assert r.returncode == 1 and "refused 1 tries (ICMP port unreachable" in r.stderr


def test_check_validates_and_warns(workdir: Path) -> None:
    bad = workdir / "check-bad.yml"
    bad.write_text("modules: {m: {walk: [1.3.6.1.2.1.2], metrics: [{name: x, oid: 1.3.6.1.2.1.2.1, type: gaug}]}}\n")
    r = subprocess.run(sotp_cmd("snmp", "check", str(bad)), capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 2 and "modules.m.metrics[0].type: unknown metric type 'gaug'" in r.stderr
    uncovered = workdir / "check-warn.yml"
    uncovered.write_text("modules: {m: {walk: [1.3.6.1.2.1.2], metrics: [{name: x, oid: 1.3.6.1.2.1.31.1.1.1.1, "
                         "type: DisplayString}]}}\n")
    r = subprocess.run(sotp_cmd("snmp", "check", str(uncovered)), capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0 and "1 warnings" in r.stdout
    assert "metric x (1.3.6.1.2.1.31.1.1.1.1) is not under any walk or get" in r.stderr
