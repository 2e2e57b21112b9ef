"""The psutil backend (``--backend psutil``: macOS, Windows, the BSDs) against the /proc collectors on this
machine, with the live parity test's rules (tests/exporters/host/bounds.py): each psutil family exists in
the /proc set with the same type, HELP and series, and its values lie between two /proc readings taken
before and after it (counters exactly, gauges within 5 % and the stated slack). psutil itself reads /proc
here, so this checks SOTP's mapping of psutil's fields to node_exporter's names and units, the part that
is the same on every OS."""

from __future__ import annotations

import subprocess
import sys

import pytest

from exporters.host.options import Options
from exporters.host.registry import PSUTIL_COLLECTORS, SHARED_COLLECTORS, collect
from exporters.host.sources import Sources
from tests.conftest import REPO, sotp_cmd
from tests.exporters.host.bounds import Families, from_sotp, series_mismatches, violations

pytest.importorskip("psutil", reason="psutil is a dev dependency (pip install -r requirements/dev.lock)")

NAMES = sorted(PSUTIL_COLLECTORS + SHARED_COLLECTORS)


@pytest.fixture(scope="module")
def three() -> tuple[Families, Families, Families]:
    procfs, psutil = Sources(), Sources(backend="psutil")
    opts = Options()
    collect(procfs, NAMES, opts), collect(psutil, NAMES, opts)  # warm up (cpu history, module imports)
    return from_sotp(collect(procfs, NAMES, opts)), from_sotp(collect(psutil, NAMES, opts)), \
        from_sotp(collect(procfs, NAMES, opts))


def test_every_psutil_collector_succeeds(three: tuple[Families, Families, Families]) -> None:
    success = three[1]["node_scrape_collector_success"].samples
    assert {k[1][0][1]: v for k, v in success.items()} == dict.fromkeys(NAMES, 1.0)


def test_families_exist_in_the_proc_set_with_the_same_type_and_help(three: tuple[Families, Families, Families]) -> None:
    procfs, psutil, _ = three
    assert sorted(set(psutil) - set(procfs)) == []
    assert [(n, psutil[n][:2], procfs[n][:2]) for n in psutil if psutil[n][:2] != procfs[n][:2]] == []
    # the headline families every dashboard draws are there
    for name in ("node_cpu_seconds_total", "node_memory_MemAvailable_bytes", "node_filesystem_avail_bytes",
                 "node_disk_read_bytes_total", "node_network_receive_bytes_total", "node_load1",
                 "node_boot_time_seconds", "node_uname_info"):
        assert name in psutil, name


def test_same_series(three: tuple[Families, Families, Families]) -> None:
    before, psutil, after = three
    ours = {n: f for n, f in psutil.items() if n not in ("node_scrape_collector_success",)}
    assert series_mismatches(before, ours, after) == []


def test_values_lie_between_two_proc_readings(three: tuple[Families, Families, Families]) -> None:
    checked, wrong = violations(*three)
    print(f"\n{checked} series compared")
    assert checked > 50
    assert wrong == []


def test_left_out_where_the_meaning_differs(three: tuple[Families, Families, Families]) -> None:
    psutil = three[1]
    for name in ("node_memory_Cached_bytes",  # psutil adds SReclaimable
                 "node_network_up", "node_network_speed_bytes",  # IFF_UP flag, 0 for unknown speed
                 "node_filesystem_files"):  # no inodes in psutil
        assert name not in psutil


def test_psutil_backend_refuses_proc_only_collectors() -> None:
    r = subprocess.run(sotp_cmd("exporter", "host", "--backend", "psutil", "--collector.netstat"), cwd=REPO,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "netstat" in r.stderr and "--backend psutil" in r.stderr


def test_auto_backend_on_linux_is_procfs_and_never_imports_psutil() -> None:
    probe = ("import sys, argparse\n"
             "from exporters.host import flags\n"
             "p = argparse.ArgumentParser(); flags.add_arguments(p); a = p.parse_args([])\n"
             "from exporters.host.registry import collect\n"
             "collect(flags.sources_from_args(a), flags.collectors_from_args(a), flags.options_from_args(a))\n"
             "print(flags.backend_from_args(a), 'psutil' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert r.stdout.split() == ["procfs", "False"], r.stderr
