"""Live parity with Debian's prometheus-node-exporter 1.5 on this machine, both ways.

Both exporters run as real processes on free ports, with their default flags, and are scraped over HTTP
in the order node_exporter, SOTP, node_exporter; the text is parsed with prometheus_client's parser, an
implementation independent of SOTP's writer.

* **Coverage**: every family node_exporter publishes here (``go_*``, ``process_*``, ``promhttp_*`` aside)
  is published by SOTP, except those in :data:`NOT_PUBLISHED` (each with its reason); the figure is
  printed as ``coverage N/M``. SOTP publishes no ``node_*`` family node_exporter does not have here.
* **Metadata**: same HELP, type and series (label names and values) for every shared family.
* **Values, bounded on both sides**: SOTP's reading was taken between node_exporter's two readings, so a
  counter must lie within them exactly (the rate times the time between the scrapes is the whole room it
  gets, so a unit error such as jiffies vs seconds or pages vs bytes fails); a gauge must lie within them
  widened by :data:`REL_TOL`, plus an absolute slack for the few gauges that move by whole units from one
  millisecond to the next on a shared machine (:data:`ABS_SLACK`, each with its reason).
"""

from __future__ import annotations

import math
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Proc, free_port, require_binary, sotp_cmd, wait_for_port

pytestmark = pytest.mark.integration

Families = dict[str, Any]
SeriesKey = tuple[str, tuple[tuple[str, str], ...]]

#: node_exporter families SOTP does not publish, and why (also listed in docs/agent.md).
NOT_PUBLISHED = {
    "node_exporter_build_info": "describes the node_exporter binary (Go version, build revision); SOTP is not "
                                "node_exporter and does not claim its version",
}
#: Gauges: SOTP's value may exceed node_exporter's range (before, after) by this fraction of it.
REL_TOL = 0.05
#: Absolute slack by family-name prefix, for gauges that jump by whole units between two reads on a machine
#: shared with other test runs (processes, sockets, file handles, dirty pages come and go).
ABS_SLACK: dict[str, float] = {
    "node_procs_": 16,  # runnable/blocked processes
    "node_sockstat_": 512,  # sockets (and their pages/bytes: sockstat mem is a few pages)
    "node_sockstat_TCP_mem_bytes": 4 << 20,
    "node_sockstat_UDP_mem_bytes": 4 << 20,
    "node_filefd_allocated": 1024,  # open file handles
    "node_netstat_Tcp_CurrEstab": 256,  # established TCP connections
    "node_nf_conntrack_entries": 256,
    "node_arp_entries": 8,
    "node_udp_queues": 4 << 20,  # bytes queued on UDP sockets
    "node_disk_io_now": 16,  # I/Os in flight
    "node_memory_": 128 << 20,  # free/dirty/cached memory moves by tens of MB in milliseconds
    "node_load": 2.0,  # load averages
    "node_entropy_available_bits": 256,
    "node_timex_offset_seconds": 0.05,  # NTP offset and error estimates move continuously
    "node_timex_frequency_adjustment_ratio": 1e-4,
    "node_timex_maxerror_seconds": 0.05,
    "node_timex_estimated_error_seconds": 0.05,
    "node_timex_status": 1 << 16,  # status bits may flip between reads (the value is a bit field)
}
#: Counters that may step back by a tick: the kernel's per-CPU idle/iowait can read a jiffy lower than
#: before; each exporter hides that with its own history, so the two histories may differ by a tick or two.
COUNTER_SLACK = {"node_cpu_seconds_total": 0.05, "node_cpu_guest_seconds_total": 0.05}
#: Different by nature: how long each exporter took.
NOT_COMPARED = {"node_scrape_collector_duration_seconds"}


def scrape(port: int) -> Families:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as r:
        text = r.read().decode()
    return {f.name: f for f in text_string_to_metric_families(text) if not f.name.startswith(("go_", "process_",
                                                                                            "promhttp_"))}


@pytest.fixture(scope="module")
def three(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Families, Families, Families]]:
    """node_exporter's scrape, SOTP's, node_exporter's again: SOTP read the host in between."""
    binary = require_binary("prometheus-node-exporter", "/usr/bin/prometheus-node-exporter")
    logs = tmp_path_factory.mktemp("parity")
    ne_port, sotp_port = free_port(), free_port()
    procs = [
        Proc([binary, f"--web.listen-address=127.0.0.1:{ne_port}"], logs / "node_exporter.log"),
        Proc(sotp_cmd("exporter", "host", "--listen", f"127.0.0.1:{sotp_port}"), logs / "sotp.log"),
    ]
    try:
        wait_for_port(ne_port)
        wait_for_port(sotp_port)
        scrape(ne_port), scrape(sotp_port)  # warm up: both have their collectors' history (cpu) now
        yield scrape(ne_port), scrape(sotp_port), scrape(ne_port)
    finally:
        for p in procs:
            p.stop()


def family_name(fam: Any) -> str:
    """prometheus_client drops ``_total`` from counter family names; put it back for messages."""
    return f"{fam.name}_total" if fam.type == "counter" else str(fam.name)


def test_coverage_of_node_exporters_families(three: tuple[Families, Families, Families]) -> None:
    ne, ours, _ = three
    theirs = {family_name(f) for f in ne.values()}
    mine = {family_name(f) for f in ours.values()}
    missing = theirs - mine
    print(f"\ncoverage {len(theirs & mine)}/{len(theirs)} of node_exporter 1.5's families on this machine; "
          f"not published: {', '.join(sorted(missing)) or 'none'}")
    assert missing <= set(NOT_PUBLISHED), sorted(missing - set(NOT_PUBLISHED))
    assert sorted(mine - theirs) == []  # nothing under a name node_exporter does not publish here


def test_help_and_type_match(three: tuple[Families, Families, Families]) -> None:
    ne, ours, _ = three
    wrong = [(family_name(ne[n]), ne[n].type, ours[n].type, ne[n].documentation, ours[n].documentation)
             for n in set(ne) & set(ours)
             if (ne[n].type, ne[n].documentation) != (ours[n].type, ours[n].documentation)]
    assert wrong == []


def samples(fam: Any) -> dict[SeriesKey, float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for s in fam.samples}


def test_same_series(three: tuple[Families, Families, Families]) -> None:
    """Same label names and values: what node_exporter saw both times SOTP must have; what SOTP has,
    node_exporter saw at least once (an interface or a mount may come or go between scrapes)."""
    before, ours, after = three
    for name in (set(before) & set(ours)) - {"node_scrape_collector_duration_seconds", "node_scrape_collector_success"}:
        b, o, a = samples(before[name]), samples(ours[name]), samples(after[name])
        assert set(b) & set(a) <= set(o), (family_name(ours[name]), sorted(set(b) & set(a) - set(o))[:5])
        assert set(o) <= set(b) | set(a), (family_name(ours[name]), sorted(set(o) - set(b) - set(a))[:5])


def test_collectors_succeed_and_fail_alike(three: tuple[Families, Families, Families]) -> None:
    before, ours, _ = three
    theirs = {k[1][0][1]: v for k, v in samples(before["node_scrape_collector_success"]).items()}
    mine = {k[1][0][1]: v for k, v in samples(ours["node_scrape_collector_success"]).items()}
    assert set(mine) <= set(theirs)
    assert {c: (mine[c], theirs[c]) for c in mine if mine[c] != theirs[c]} == {}


def _slack(name: str) -> float:
    best = ""
    for prefix in ABS_SLACK:
        if name.startswith(prefix) and len(prefix) > len(best):
            best = prefix
    return ABS_SLACK[best] if best else 0.0


def violations(before: Families, ours: Families, after: Families,
               scale: dict[str, float] | None = None) -> tuple[int, list[str]]:
    """(series checked, those outside their bounds); ``scale`` multiplies SOTP's values of the named
    families, to show that a unit error is caught."""
    checked = 0
    wrong = []
    for name in (set(before) & set(ours) & set(after)) - NOT_COMPARED:
        counter = ours[name].type == "counter"
        b, o, a = samples(before[name]), samples(ours[name]), samples(after[name])
        for key, v in o.items():
            if key not in b or key not in a or math.isnan(v):
                continue
            v *= (scale or {}).get(key[0], 1.0)
            lo, hi = min(b[key], a[key]), max(b[key], a[key])
            if counter:
                room = COUNTER_SLACK.get(key[0], 0.0) + 1e-12 * abs(hi)  # float rounding only
            else:
                room = REL_TOL * max(abs(lo), abs(hi)) + _slack(key[0])
            checked += 1
            if not lo - room <= v <= hi + room:
                wrong.append(f"{key[0]}{dict(key[1])}: node_exporter {b[key]} then {a[key]}, sotp {v}")
    return checked, wrong


def test_values_lie_between_node_exporters_two_readings(three: tuple[Families, Families, Families]) -> None:
    checked, wrong = violations(*three)
    print(f"\n{checked} series compared")
    assert checked > 300
    assert wrong == []


@pytest.mark.parametrize(
    ("family", "factor"),
    [("node_cpu_seconds_total", 100.0),  # jiffies not divided by USER_HZ
     ("node_memory_MemTotal_bytes", 1 / 1024),  # kB not multiplied
     ("node_disk_io_time_seconds_total", 1000.0),  # milliseconds not converted
     ("node_context_switches_total", 1.001),  # even 0.1 % off a counter is out of bounds
     ("node_network_receive_bytes_total", 8.0)],  # bits instead of bytes
)
def test_the_bounds_catch_a_unit_error(three: tuple[Families, Families, Families], family: str, factor: float) -> None:
    _, wrong = violations(*three, scale={family: factor})
    assert any(w.startswith(family) for w in wrong)
