"""Parity with Debian's prometheus-node-exporter 1.5 on this machine: names, types, labels, slow values.

Both exporters run as real processes on free ports and are scraped over HTTP; the text is parsed with
prometheus_client's parser, an implementation independent of SOTP's writer.
"""

from __future__ import annotations

import math
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Proc, free_port, require_binary, sotp_cmd, wait_for_port

pytestmark = pytest.mark.integration

Families = dict[str, Any]


def scrape(port: int) -> Families:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    return {f.name: f for f in text_string_to_metric_families(text)}


@pytest.fixture(scope="module")
def both(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Families, Families]]:
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
        # scrape back to back so the slow gauges are read within a few milliseconds of each other
        yield scrape(ne_port), scrape(sotp_port)
    finally:
        for p in procs:
            p.stop()


def test_every_sotp_family_exists_in_node_exporter_with_the_same_type(both: tuple[Families, Families]) -> None:
    ne, ours = both
    shared = set(ne) & set(ours)
    assert len(shared) >= 60, sorted(ours)
    # SOTP publishes no node_* family under a name node_exporter does not know.
    assert sorted(n for n in ours if n not in ne) == []
    for name in shared:
        assert ours[name].type == ne[name].type, name


def test_label_names_match(both: tuple[Families, Families]) -> None:
    ne, ours = both
    for name in set(ne) & set(ours):
        theirs = {tuple(sorted(s.labels)) for s in ne[name].samples}
        mine = {tuple(sorted(s.labels)) for s in ours[name].samples}
        if mine and theirs:
            assert mine == theirs, name


def _label_values(fam: Any, label: str) -> set[str]:
    return {s.labels[label] for s in fam.samples if label in s.labels}


@pytest.mark.parametrize(
    ("family", "label"),
    [
        ("node_cpu_seconds", "cpu"),
        ("node_cpu_seconds", "mode"),
        ("node_disk_reads_completed", "device"),  # same device filter (no partitions, no loops)
        ("node_network_receive_bytes", "device"),  # same netdev filter (lo excluded)
        ("node_network_up", "device"),  # netclass keeps lo
        ("node_filesystem_size_bytes", "mountpoint"),  # same mount point / fs type excludes
        ("node_filesystem_size_bytes", "fstype"),
    ],
)
def test_same_label_values(both: tuple[Families, Families], family: str, label: str) -> None:
    ne, ours = both
    assert _label_values(ours[family], label) == _label_values(ne[family], label)


def _sample_map(fam: Any) -> dict[tuple[tuple[str, str], ...], float]:
    return {tuple(sorted(s.labels.items())): s.value for s in fam.samples}


Check = Callable[[float, float], bool]
EXACT: Check = lambda a, b: a == b  # noqa: E731
SLOW: Check = lambda a, b: math.isclose(a, b, rel_tol=0.05, abs_tol=64 << 20)  # noqa: E731


@pytest.mark.parametrize(
    ("family", "check"),
    [
        ("node_memory_MemTotal_bytes", EXACT),
        ("node_memory_SwapTotal_bytes", EXACT),
        ("node_memory_Hugepagesize_bytes", EXACT),
        ("node_memory_MemAvailable_bytes", SLOW),
        ("node_memory_Cached_bytes", SLOW),
        ("node_memory_Buffers_bytes", SLOW),
        ("node_filesystem_size_bytes", EXACT),
        ("node_filesystem_files", EXACT),
        ("node_filesystem_avail_bytes", SLOW),
        ("node_boot_time_seconds", EXACT),
        ("node_network_mtu_bytes", EXACT),
        ("node_network_speed_bytes", EXACT),
        ("node_network_flags", EXACT),
        ("node_network_info", EXACT),
        ("node_uname_info", EXACT),
        ("node_disk_info", EXACT),
        ("node_time_clocksource_current_info", EXACT),
        ("node_time_seconds", lambda a, b: abs(a - b) < 5),
    ],
)
def test_slow_values_agree(both: tuple[Families, Families], family: str, check: Check) -> None:
    ne, ours = both
    theirs, mine = _sample_map(ne[family]), _sample_map(ours[family])
    assert mine.keys() == theirs.keys(), family
    for key, v in mine.items():
        assert check(v, theirs[key]), f"{family}{dict(key)}: sotp {v} vs node_exporter {theirs[key]}"


def test_counters_do_not_run_behind(both: tuple[Families, Families]) -> None:
    # node_exporter was scraped first: every SOTP counter read later must be >= its reading.
    ne, ours = both
    for family in ("node_cpu_seconds", "node_context_switches", "node_intr", "node_disk_read_bytes",
                   "node_network_receive_bytes"):
        theirs = _sample_map(ne[family])
        for key, v in _sample_map(ours[family]).items():
            assert v >= theirs[key], f"{family}{dict(key)}"
