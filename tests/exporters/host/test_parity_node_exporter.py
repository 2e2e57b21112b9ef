"""Live parity with Debian's prometheus-node-exporter 1.5 on this machine, both ways.

Both exporters run as real processes on free ports, with their default flags, and are scraped over HTTP
in the order node_exporter, SOTP, node_exporter; the text is parsed with prometheus_client's parser, an
implementation independent of SOTP's writer.

* **Coverage**: every family node_exporter publishes here (``go_*``, ``process_*``, ``promhttp_*`` aside)
  is published by SOTP, except those in :data:`NOT_PUBLISHED` (each with its reason); the figure is
  printed as ``coverage N/M``. SOTP publishes no ``node_*`` family node_exporter does not have here.
* **Metadata**: same HELP, type and series (label names and values) for every shared family.
* **Values, bounded on both sides** (tests/exporters/host/bounds.py): SOTP's reading was taken between
  node_exporter's two readings, so a counter must lie within them exactly (the rate times the time between
  the scrapes is the whole room it gets, so a unit error such as jiffies vs seconds or pages vs bytes
  fails); a gauge must lie within them widened by ``REL_TOL`` (5 %), plus an absolute slack for the few
  gauges that move by whole units from one millisecond to the next on a shared machine (``ABS_SLACK``,
  each with its reason).
"""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Proc, free_port, require_binary, sotp_cmd, wait_for_port
from tests.exporters.host.bounds import Families, from_client, series_mismatches, violations

pytestmark = pytest.mark.integration

#: node_exporter families SOTP does not publish, and why (also listed in docs/agent.md).
NOT_PUBLISHED = {
    "node_exporter_build_info": "describes the node_exporter binary (Go version, build revision); SOTP is not "
                                "node_exporter and does not claim its version",
}


def scrape(port: int) -> Families:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as r:
        text = r.read().decode()
    return from_client({f.name: f for f in text_string_to_metric_families(text)
                        if not f.name.startswith(("go_", "process_", "promhttp_"))})


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


def test_coverage_of_node_exporters_families(three: tuple[Families, Families, Families]) -> None:
    ne, ours, _ = three
    missing = set(ne) - set(ours)
    print(f"\ncoverage {len(set(ne) & set(ours))}/{len(ne)} of node_exporter 1.5's families on this machine; "
          f"not published: {', '.join(sorted(missing)) or 'none'}")
    assert missing <= set(NOT_PUBLISHED), sorted(missing - set(NOT_PUBLISHED))
    assert sorted(set(ours) - set(ne)) == []  # nothing under a name node_exporter does not publish here


def test_help_and_type_match(three: tuple[Families, Families, Families]) -> None:
    ne, ours, _ = three
    wrong = [(n, ne[n][:2], ours[n][:2]) for n in set(ne) & set(ours) if ne[n][:2] != ours[n][:2]]
    assert wrong == []


def test_same_series(three: tuple[Families, Families, Families]) -> None:
    """Same label names and values: what node_exporter saw both times SOTP must have; what SOTP has,
    node_exporter saw at least once (an interface or a mount may come or go between scrapes)."""
    assert series_mismatches(*three) == []


def test_collectors_succeed_and_fail_alike(three: tuple[Families, Families, Families]) -> None:
    before, ours, _ = three
    name = "node_scrape_collector_success"
    theirs = {k[1][0][1]: v for k, v in before[name].samples.items()}
    mine = {k[1][0][1]: v for k, v in ours[name].samples.items()}
    assert set(mine) <= set(theirs)
    assert {c: (mine[c], theirs[c]) for c in mine if mine[c] != theirs[c]} == {}


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
