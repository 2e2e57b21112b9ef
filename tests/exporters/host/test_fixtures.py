"""Host collectors against recorded proc/sys trees (tests/exporters/fixtures/host/<case>/).

Expected values are worked out by hand from the fixture files (ticks / USER_HZ, kB * 1024, sectors * 512,
blocks * bsize, ...), so a wrong unit or field index fails here, not only in the live parity test.
Each case folder holds ``proc/``, ``sys/``, optional ``run/udev/data``, and the two system calls a tree
cannot carry: ``statfs.json`` (per mount point) and ``uname.json``; ``now.txt`` pins the clock.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest

from exporters.host import Sources, collect
from exporters.host.options import Options
from exporters.host.sources import FsStat, Uname
from sotp.codec.exposition import MetricFamily, format_families

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "host"


def fixture_sources(case: str) -> Sources:
    root = FIXTURES / case
    statfs = json.loads((root / "statfs.json").read_text())
    uname = json.loads((root / "uname.json").read_text())
    now = float((root / "now.txt").read_text())

    def statvfs(path: str) -> FsStat:
        if path not in statfs:
            raise OSError(5, "Input/output error", path)  # as a dead NFS mount answers
        return FsStat(**statfs[path])

    return Sources(
        proc=root / "proc", sys=root / "sys", udev=root / "run" / "udev" / "data",
        statvfs=statvfs, uname=lambda: Uname(**uname), now=lambda: now,
    )


def by_name(families: list[MetricFamily]) -> dict[str, MetricFamily]:
    out = {f.name: f for f in families}
    assert len(out) == len(families), "a family name appears twice"
    return out


def value(fams: dict[str, MetricFamily], name: str, **labels: str) -> float:
    fam = fams[name]
    hits = [v for n, lbs, v in fam.samples if n == name and dict(lbs) == labels]
    assert len(hits) == 1, f"{name}{labels}: {len(hits)} samples in {fam.samples[:5]}"
    return hits[0]


TWO_CPU: list[tuple[str, dict[str, str], float]] = [
    # cpu1 line: user 4842 nice 6 system 2258 idle 179944 iowait 489 irq 1 softirq 89 steal 11 guest 250 gnice 5
    ("node_cpu_seconds_total", {"cpu": "1", "mode": "user"}, 48.42),
    ("node_cpu_seconds_total", {"cpu": "1", "mode": "nice"}, 0.06),
    ("node_cpu_seconds_total", {"cpu": "1", "mode": "idle"}, 1799.44),
    ("node_cpu_seconds_total", {"cpu": "1", "mode": "steal"}, 0.11),
    ("node_cpu_seconds_total", {"cpu": "0", "mode": "iowait"}, 0.48),
    ("node_cpu_guest_seconds_total", {"cpu": "1", "mode": "user"}, 2.5),
    ("node_cpu_guest_seconds_total", {"cpu": "1", "mode": "nice"}, 0.05),
    ("node_memory_MemTotal_bytes", {}, 24683656 * 1024),
    ("node_memory_Cached_bytes", {}, 330016 * 1024),  # Cached alone, not Cached + SReclaimable
    ("node_memory_Active_anon_bytes", {}, 1000 * 1024),
    ("node_memory_HugePages_Total", {}, 0),
    ("node_memory_SwapFree_bytes", {}, 1048000 * 1024),
    ("node_load1", {}, 0.15),
    ("node_load15", {}, 0.06),
    ("node_boot_time_seconds", {}, 1795743682),
    ("node_context_switches_total", {}, 1359941),
    ("node_intr_total", {}, 457124),
    ("node_forks_total", {}, 11792),
    ("node_procs_running", {}, 3),
    ("node_procs_blocked", {}, 1),
    ("node_time_seconds", {}, 1795745000.25),
    ("node_disk_reads_completed_total", {"device": "vda"}, 77172),
    ("node_disk_read_bytes_total", {"device": "vda"}, 3847530 * 512),
    ("node_disk_read_time_seconds_total", {"device": "vda"}, 24.306),
    ("node_disk_written_bytes_total", {"device": "vda"}, 6132776 * 512),
    ("node_disk_io_now", {"device": "vda"}, 2),
    ("node_disk_io_time_seconds_total", {"device": "vda"}, 13.312),
    ("node_disk_io_time_weighted_seconds_total", {"device": "vda"}, 53.879),
    ("node_disk_discarded_sectors_total", {"device": "vda"}, 863304),
    ("node_disk_flush_requests_time_seconds_total", {"device": "vda"}, 0.587),
    ("node_disk_writes_completed_total", {"device": "nvme0n1"}, 5),
    ("node_disk_read_bytes_total", {"device": "zram0"}, 40 * 512),
    ("node_disk_info", {"device": "vda", "major": "254", "minor": "0", "model": "QEMU_HARDDISK",
                        "path": "pci-0000:00:05.0", "revision": "", "serial": "SN123", "wwn": ""}, 1),
    ("node_filesystem_size_bytes", {"device": "/dev/vda", "fstype": "ext4", "mountpoint": "/"}, 66052044 * 4096),
    ("node_filesystem_free_bytes", {"device": "/dev/vda", "fstype": "ext4", "mountpoint": "/"}, 59734000 * 4096),
    ("node_filesystem_avail_bytes", {"device": "/dev/vda", "fstype": "ext4", "mountpoint": "/"}, 56000000 * 4096),
    ("node_filesystem_files_free", {"device": "/dev/vda", "fstype": "ext4", "mountpoint": "/"}, 16320966),
    ("node_filesystem_readonly", {"device": "/dev/vda1", "fstype": "xfs", "mountpoint": "/srv/my data"}, 1),
    ("node_filesystem_avail_bytes", {"device": "/dev/vda1", "fstype": "xfs", "mountpoint": "/srv/my data"}, 500 * 1024),
    ("node_filesystem_device_error", {"device": "nfs:/export", "fstype": "nfs", "mountpoint": "/gone"}, 1),
    ("node_filesystem_size_bytes", {"device": "tmpfs", "fstype": "tmpfs", "mountpoint": "/tmp"}, 2048 * 4096),
    ("node_network_receive_bytes_total", {"device": "eth0"}, 506261757),
    ("node_network_receive_multicast_total", {"device": "eth0"}, 6),
    ("node_network_transmit_colls_total", {"device": "eth0"}, 10),
    ("node_network_transmit_compressed_total", {"device": "eth0"}, 12),
    ("node_network_up", {"device": "eth0"}, 1),
    ("node_network_up", {"device": "lo"}, 0),
    ("node_network_flags", {"device": "eth0"}, 0x1003),
    ("node_network_device_id", {"device": "eth0"}, 0),
    ("node_network_speed_bytes", {"device": "eth0"}, 1000 * 125000),
    ("node_network_mtu_bytes", {"device": "lo"}, 65536),
    ("node_network_protocol_type", {"device": "lo"}, 772),
    ("node_network_info", {"address": "02:fc:00:00:00:01", "broadcast": "ff:ff:ff:ff:ff:ff", "device": "eth0",
                           "duplex": "full", "ifalias": "uplink", "operstate": "up"}, 1),
    ("node_uname_info", {"domainname": "(none)", "machine": "x86_64", "nodename": "fixture-host",
                         "release": "6.1.0-18-amd64", "sysname": "Linux", "version": "#1 SMP Debian 6.1.76-1"}, 1),
    ("node_time_clocksource_current_info", {"clocksource": "tsc", "device": "0"}, 1),
    ("node_time_clocksource_available_info", {"clocksource": "acpi_pm", "device": "0"}, 1),
    ("node_scrape_collector_success", {"collector": "meminfo"}, 1),
]


@pytest.fixture(scope="module")
def two_cpu() -> dict[str, MetricFamily]:
    return by_name(collect(fixture_sources("two-cpu-vm")))


@pytest.mark.parametrize(("name", "labels", "want"), TWO_CPU, ids=[f"{n}{sorted(lb.values())}" for n, lb, _ in TWO_CPU])
def test_two_cpu_vm_values(two_cpu: dict[str, MetricFamily], name: str, labels: dict[str, str], want: float) -> None:
    assert math.isclose(value(two_cpu, name, **labels), want, rel_tol=1e-12)


ABSENT = [
    # excluded by node_exporter's defaults: partitions and loop devices, lo in netdev, pseudo filesystems
    ("node_disk_reads_completed_total", "device", {"loop0", "vda1", "nvme0n1p1"}),
    ("node_network_receive_bytes_total", "device", {"lo"}),
    ("node_filesystem_size_bytes", "mountpoint", {"/proc", "/sys", "/dev/shm", "/sys/fs/cgroup",
                                                  "/var/lib/docker/overlay2/abc/merged"}),
    # a dead mount reports only device_error (node_exporter 1.5), no sizes, no readonly
    ("node_filesystem_size_bytes", "mountpoint", {"/gone"}),
    ("node_filesystem_readonly", "mountpoint", {"/gone"}),
    # lo has no speed attribute (EINVAL in sysfs): no sample rather than a made-up 0
    ("node_network_speed_bytes", "device", {"lo"}),
]


@pytest.mark.parametrize(("name", "label", "values"), ABSENT, ids=[f"{n}-{sorted(v)[0]}" for n, _, v in ABSENT])
def test_two_cpu_vm_excluded(two_cpu: dict[str, MetricFamily], name: str, label: str, values: set[str]) -> None:
    present = {dict(lbs).get(label) for _, lbs, _ in two_cpu[name].samples}
    assert not present & values


def test_duplicate_mount_reported_once(two_cpu: dict[str, MetricFamily]) -> None:
    roots = [lbs for _, lbs, _ in two_cpu["node_filesystem_size_bytes"].samples if lbs["mountpoint"] == "/"]
    assert len(roots) == 1


def test_types_and_label_names(two_cpu: dict[str, MetricFamily]) -> None:
    want = {
        "node_cpu_seconds_total": ("counter", ["cpu", "mode"]),
        "node_memory_MemAvailable_bytes": ("gauge", []),
        "node_filesystem_avail_bytes": ("gauge", ["device", "fstype", "mountpoint"]),
        "node_disk_io_time_seconds_total": ("counter", ["device"]),
        "node_disk_io_now": ("gauge", ["device"]),
        "node_network_transmit_packets_total": ("counter", ["device"]),
        "node_network_carrier_changes_total": ("counter", ["device"]),
        "node_load5": ("gauge", []),
        "node_context_switches_total": ("counter", []),
        "node_boot_time_seconds": ("gauge", []),
        "node_scrape_collector_duration_seconds": ("gauge", ["collector"]),
    }
    for name, (typ, labels) in want.items():
        fam = two_cpu[name]
        assert fam.type == typ, name
        assert {tuple(lbs) for _, lbs, _ in fam.samples} == {tuple(labels)}, name


def test_exposition_text_is_go_formatted(two_cpu: dict[str, MetricFamily]) -> None:
    text = format_families(two_cpu.values())
    assert "node_memory_MemTotal_bytes 2.5276063744e+10\n" in text  # Go 'g' format, not 25276063744.0
    assert 'node_filesystem_readonly{device="/dev/vda1",fstype="xfs",mountpoint="/srv/my data"} 1\n' in text
    assert "# TYPE node_cpu_seconds_total counter\n" in text


def test_old_kernel_and_missing_meminfo() -> None:
    fams = by_name(collect(fixture_sources("old-kernel-no-meminfo")))
    # meminfo failed (no file) and says so; the other collectors still answer
    assert value(fams, "node_scrape_collector_success", collector="meminfo") == 0
    assert value(fams, "node_scrape_collector_success", collector="diskstats") == 1
    assert not any(n.startswith("node_memory_") for n in fams)
    # an 11-field diskstats line (kernel < 4.18): classic counters, no discard/flush samples
    assert value(fams, "node_disk_written_bytes_total", device="sda") == 160 * 512
    assert value(fams, "node_disk_io_time_weighted_seconds_total", device="sda") == 0.012
    assert not fams["node_disk_discards_completed_total"].samples
    # /proc/1/mounts absent: /proc/mounts is used
    assert value(fams, "node_filesystem_avail_bytes", device="/dev/sda2", fstype="ext3", mountpoint="/") == 40 * 512
    # no /sys/class/net at all: no netclass samples, and no data (success 0, as node_exporter's ErrNoData)
    assert value(fams, "node_scrape_collector_success", collector="netclass") == 0
    assert "node_network_up" not in fams
    assert value(fams, "node_uname_info", domainname="example.org", machine="armv7l", nodename="old",
                 release="4.9.0", sysname="Linux", version="#1 SMP") == 1
    assert value(fams, "node_cpu_seconds_total", cpu="0", mode="steal") == 0  # 8-field cpu line


def test_samples_sorted_like_go(two_cpu: dict[str, MetricFamily]) -> None:
    devices = [lbs["device"] for _, lbs, _ in two_cpu["node_network_up"].samples]
    assert devices == sorted(devices)
    assert list(two_cpu) == sorted(two_cpu)


def test_hung_mount_does_not_stall_collection() -> None:
    """A statfs that never returns (a dead NFS server) costs one timeout, then the mount is skipped
    with device_error 1 until the call comes back, as node_exporter's stuck-mount handling does."""
    import threading
    import time

    from exporters.host.collectors import filesystem

    base = fixture_sources("two-cpu-vm")
    release = threading.Event()
    calls: list[str] = []

    def statvfs(path: str) -> FsStat:
        calls.append(path)
        if path == "/srv/my data":
            release.wait(30)
        return base.statvfs(path)

    src = dataclasses.replace(base, statvfs=statvfs)
    opts = Options(filesystem_mount_timeout=0.2)
    hung = {"device": "/dev/vda1", "fstype": "xfs", "mountpoint": "/srv/my data"}
    root = {"device": "/dev/vda", "fstype": "ext4", "mountpoint": "/"}
    try:
        start = time.monotonic()
        fams = by_name(collect(src, ["filesystem"], opts))
        assert time.monotonic() - start < 2
        assert value(fams, "node_filesystem_device_error", **hung) == 1
        assert value(fams, "node_filesystem_size_bytes", **root) == 66052044 * 4096  # others unaffected
        fams = by_name(collect(src, ["filesystem"], opts))  # still hung: not called again, no new wait
        assert calls.count("/srv/my data") == 1
        assert value(fams, "node_filesystem_device_error", **hung) == 1
    finally:
        release.set()
    deadline = time.monotonic() + 5
    while "/srv/my data" in filesystem._stuck and time.monotonic() < deadline:
        time.sleep(0.01)
    fams = by_name(collect(src, ["filesystem"], opts))
    assert value(fams, "node_filesystem_device_error", **hung) == 0
    assert value(fams, "node_filesystem_avail_bytes", **hung) == 500 * 1024
