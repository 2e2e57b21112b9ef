"""Byte-for-byte parity with Debian's node_exporter 1.5 on recorded trees, collector by collector.

Both exporters run with the same command line (SOTP takes node_exporter's flags) against the same proc/sys
tree: node_exporter's own v1.5.0 test fixtures (tests/fixtures/node_exporter/v1.5.0, Apache-2.0; the sysfs
and udev trees are ttar archives extracted here), and SOTP's textfile cases
(tests/exporters/fixtures/host/textfile/<case>/). The expected output is node_exporter's, produced in the
same test: every HELP, TYPE, sample line and value must be identical, in the same order. Only what
differs by nature is left out: ``go_*``/``process_*``/``promhttp_*``, ``node_exporter_build_info`` and
collector durations. Collectors that read system calls rather than files (filesystem's statfs, time,
timex, uname) are compared live in test_parity_node_exporter.py.
"""

from __future__ import annotations

import re
import shutil
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from exporters.host.registry import COLLECTORS
from tests.conftest import REPO, Proc, free_port, require_binary, sotp_cmd, wait_for_port
from tests.exporters.host.ttar import extract

pytestmark = pytest.mark.integration

NE_FIXTURES = REPO / "tests" / "fixtures" / "node_exporter" / "v1.5.0"
TEXTFILE_CASES = REPO / "tests" / "exporters" / "fixtures" / "host" / "textfile"
LIVE_ONLY = {"filesystem", "time", "timex", "uname"}  # system calls, not files
SKIP = re.compile(r"^(# (HELP|TYPE) )?(go_|process_|promhttp_|node_exporter_build_info|"
                  r"node_scrape_collector_duration_seconds)")


@pytest.fixture(scope="module")
def trees(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """node_exporter's sysfs and udev fixture trees, extracted from their ttar archives."""
    root = tmp_path_factory.mktemp("ne-fixtures")
    extract(NE_FIXTURES / "sys.ttar", root)
    extract(NE_FIXTURES / "udev.ttar", root)
    return root


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as r:
        text: str = r.read().decode()
    return text


def both(flags: list[str], logs: Path) -> tuple[str, str]:
    """Run node_exporter and ``sotp exporter host`` with ``flags``; one scrape of each, comparable lines."""
    binary = require_binary("prometheus-node-exporter", "/usr/bin/prometheus-node-exporter")
    ne_port, sotp_port = free_port(), free_port()
    ne = Proc([binary, f"--web.listen-address=127.0.0.1:{ne_port}", *flags], logs / "node_exporter.log")
    ours = Proc(sotp_cmd("exporter", "host", "--listen", f"127.0.0.1:{sotp_port}", *flags), logs / "sotp.log")
    try:
        wait_for_port(ne_port)
        wait_for_port(sotp_port)
        texts = scrape(ne_port), scrape(sotp_port)
    finally:
        ne.stop()
        ours.stop()
    theirs, mine = ("\n".join(ln for ln in t.splitlines() if not SKIP.match(ln)) for t in texts)
    return theirs, mine


def tree_flags(trees: Path, collectors: list[str]) -> list[str]:
    return [f"--path.rootfs={NE_FIXTURES}", f"--path.procfs={NE_FIXTURES / 'proc'}", f"--path.sysfs={trees / 'sys'}",
            f"--path.udev.data={trees / 'udev' / 'data'}", "--collector.disable-defaults",
            *(f"--collector.{c}" for c in collectors)]


def test_every_file_based_collector_matches_on_node_exporters_fixtures(trees: Path, tmp_path: Path) -> None:
    # the flags of node_exporter's own end-to-end test, where they apply to the collectors SOTP has
    collectors = sorted(set(COLLECTORS) - LIVE_ONLY)
    flags = [*tree_flags(trees, collectors), "--no-collector.netdev.netlink",
             f"--collector.textfile.directory={NE_FIXTURES / 'textfile' / 'two_metric_files'}",
             "--collector.arp.device-exclude=nope", "--collector.netclass.ignored-devices=(dmz|int)",
             "--collector.netclass.ignore-invalid-speed", "--collector.netdev.device-exclude=",
             "--collector.netdev.device-include=lo", "--collector.bcache.priorityStats", "--collector.cpu.info",
             "--collector.cpu.info.bugs-include=^(cpu_meltdown|spectre_.*|mds)$",
             "--collector.cpu.info.flags-include=^(aes|avx.?|constant_tsc)$", "--collector.stat.softirq"]
    theirs, mine = both(flags, tmp_path)
    assert theirs.count("\n") > 500  # the fixtures really were read
    for name in collectors:
        assert f'node_scrape_collector_success{{collector="{name}"}}' in theirs
    assert mine == theirs


def test_default_options_on_node_exporters_fixtures(trees: Path, tmp_path: Path) -> None:
    # Debian's defaults this time: lo excluded from netdev, no cpu info, no softirqs, netlink on
    # (receive_nohandler: netlink reads the live host there, so netdev is left to the live parity test)
    collectors = sorted(set(COLLECTORS) - LIVE_ONLY - {"netdev"})
    theirs, mine = both(tree_flags(trees, collectors), tmp_path)
    assert mine == theirs


def textfile_cases() -> Iterator[tuple[str, Path]]:
    for case in sorted(p for p in (NE_FIXTURES / "textfile").iterdir() if p.is_dir()):
        yield f"node_exporter-{case.name}", case
    for case in sorted(p for p in TEXTFILE_CASES.iterdir() if p.is_dir()):
        yield case.name, case
    yield "missing-directory", TEXTFILE_CASES / "no-such-directory"
    yield "glob-over-two-directories", TEXTFILE_CASES / "glob_*"


CASES = list(textfile_cases())


@pytest.mark.parametrize("directory", [c for _, c in CASES], ids=[i for i, _ in CASES])
def test_textfile_collector_matches(directory: Path, tmp_path: Path) -> None:
    work = tmp_path / "textfiles"
    if "*" in directory.name or not directory.exists():
        arg = str(directory)
    else:  # a copy, so every file has the same (fresh) mtime for both exporters
        shutil.copytree(directory, work)
        arg = str(work)
    theirs, mine = both(["--collector.disable-defaults", "--collector.textfile",
                         f"--collector.textfile.directory={arg}"], tmp_path)
    assert "node_textfile_scrape_error" in theirs
    assert mine == theirs
