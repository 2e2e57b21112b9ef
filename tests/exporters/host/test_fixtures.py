"""Host collectors against recorded proc/sys trees (tests/exporters/fixtures/host/<case>/).

Expected values are worked out by hand from the fixture files (ticks / USER_HZ, kB * 1024, sectors * 512,
blocks * bsize, ...), so a wrong unit or field index fails here, not only in the live parity test.
Each case folder holds ``proc/``, ``sys/``, ``etc/`` (read through ``--path.rootfs``), optional
``run/udev/data``, and the system calls a tree cannot carry: ``statfs.json`` (per mount point),
``uname.json`` and ``timex.json`` (adjtimex); ``now.txt`` pins the clock; the page size is 4096.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest

from exporters.host import Sources, collect
from exporters.host.options import Options
from exporters.host.sources import FsStat, Timex, Uname
from sotp.codec.exposition import MetricFamily, format_families

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "host"


def fixture_sources(case: str) -> Sources:
    root = FIXTURES / case
    statfs = json.loads((root / "statfs.json").read_text())
    uname = json.loads((root / "uname.json").read_text())
    now = float((root / "now.txt").read_text())
    timex = root / "timex.json"

    def statvfs(path: str) -> FsStat:
        path = path.removeprefix(str(root)) or "/"  # the collector prefixes mount points with the rootfs
        if path not in statfs:
            raise OSError(5, "Input/output error", path)  # as a dead NFS mount answers
        return FsStat(**statfs[path])

    def adjtimex() -> Timex:
        if not timex.exists():
            raise PermissionError(1, "Operation not permitted", "adjtimex")  # a seccomp filter says no
        return Timex(**json.loads(timex.read_text()))

    return Sources(
        proc=root / "proc", sys=root / "sys", rootfs=str(root), udev=root / "run" / "udev" / "data",
        statvfs=statvfs, uname=lambda: Uname(**uname), now=lambda: now, adjtimex=adjtimex, page_size=4096,
    )


def by_name(families: list[MetricFamily]) -> dict[str, MetricFamily]:
    out = {f.name: f for f in families}
    assert len(out) == len(families), "a family name appears twice"
    return out


def value(fams: dict[str, MetricFamily], family: str, /, **labels: str) -> float:
    fam = fams[family]
    hits = [v for n, lbs, v in fam.samples if n == family and dict(lbs) == labels]
    assert len(hits) == 1, f"{family}{labels}: {len(hits)} samples in {fam.samples[:5]}"
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
    # receive_nohandler comes from sysfs (netlink's counter in node_exporter)
    ("node_network_receive_nohandler_total", {"device": "eth0"}, 3),
    # arp: data lines counted per device, the header skipped
    ("node_arp_entries", {"device": "eth0"}, 2),
    ("node_arp_entries", {"device": "eth1"}, 1),
    # conntrack: per-CPU hex columns summed (found is column 2, invalid 4, insert 8, search_restart 16)
    ("node_nf_conntrack_entries", {}, 5),
    ("node_nf_conntrack_entries_limit", {}, 262144),
    ("node_nf_conntrack_stat_found", {}, 0xA + 0x5),
    ("node_nf_conntrack_stat_invalid", {}, 0x10 + 0x1),
    ("node_nf_conntrack_stat_ignore", {}, 3 + 3),
    ("node_nf_conntrack_stat_insert", {}, 7 + 1),
    ("node_nf_conntrack_stat_insert_failed", {}, 1),
    ("node_nf_conntrack_stat_drop", {}, 2 + 1),
    ("node_nf_conntrack_stat_early_drop", {}, 4),
    ("node_nf_conntrack_stat_search_restart", {}, 0x20 + 0x2),
    ("node_entropy_available_bits", {}, 256),
    ("node_entropy_pool_size_bits", {}, 256),
    ("node_filefd_allocated", {}, 1184),
    ("node_filefd_maximum", {}, 9223372036854775807),  # file-nr's third column
    # netstat: name line + value line per protocol; snmp6 splits at the first "6"
    ("node_netstat_TcpExt_ListenOverflows", {}, 3),
    ("node_netstat_TcpExt_ListenDrops", {}, 4),
    ("node_netstat_TcpExt_TCPTimeouts", {}, 17),
    ("node_netstat_TcpExt_TCPSynRetrans", {}, 9),
    ("node_netstat_TcpExt_SyncookiesSent", {}, 0),
    ("node_netstat_IpExt_InOctets", {}, 123456789),
    ("node_netstat_Ip_Forwarding", {}, 1),
    ("node_netstat_Icmp_InErrors", {}, 1),
    ("node_netstat_Icmp_OutMsgs", {}, 40),
    ("node_netstat_Tcp_CurrEstab", {}, 7),
    ("node_netstat_Tcp_RetransSegs", {}, 12),
    ("node_netstat_Tcp_InErrs", {}, 3),
    ("node_netstat_Tcp_OutRsts", {}, 6),
    ("node_netstat_Udp_NoPorts", {}, 2),
    ("node_netstat_Udp_SndbufErrors", {}, 0),
    ("node_netstat_Ip6_InOctets", {}, 64000),
    ("node_netstat_Ip6_OutOctets", {}, 32000),
    ("node_netstat_Icmp6_InMsgs", {}, 8),
    ("node_netstat_Udp6_InDatagrams", {}, 11),
    ("node_netstat_UdpLite6_InErrors", {}, 0),
    # sockstat: mem is in pages, mem_bytes = pages * 4096
    ("node_sockstat_sockets_used", {}, 230),
    ("node_sockstat_TCP_inuse", {}, 5),
    ("node_sockstat_TCP_tw", {}, 4),
    ("node_sockstat_TCP_alloc", {}, 9),
    ("node_sockstat_TCP_mem", {}, 3),
    ("node_sockstat_TCP_mem_bytes", {}, 3 * 4096),
    ("node_sockstat_UDP_mem_bytes", {}, 4 * 4096),
    ("node_sockstat_FRAG_memory", {}, 0),
    ("node_sockstat_TCP6_inuse", {}, 3),
    ("node_sockstat_RAW6_inuse", {}, 1),
    # softnet: hex columns, the cpu label is the line number
    ("node_softnet_processed_total", {"cpu": "0"}, 0x1E240),
    ("node_softnet_dropped_total", {"cpu": "0"}, 2),
    ("node_softnet_times_squeezed_total", {"cpu": "0"}, 10),
    ("node_softnet_processed_total", {"cpu": "1"}, 255),
    # pressure: totals are microseconds
    ("node_pressure_cpu_waiting_seconds_total", {}, 1.234567),
    ("node_pressure_io_waiting_seconds_total", {}, 2.5),
    ("node_pressure_io_stalled_seconds_total", {}, 1.000001),
    ("node_pressure_memory_waiting_seconds_total", {}, 42e-6),
    ("node_pressure_memory_stalled_seconds_total", {}, 7e-6),
    ("node_vmstat_pgpgin", {}, 2048),
    ("node_vmstat_pswpout", {}, 3),
    ("node_vmstat_pgmajfault", {}, 4),
    ("node_vmstat_oom_kill", {}, 1),
    # udp_queues: hex tx:rx queue column summed per file
    ("node_udp_queues", {"ip": "v4", "queue": "tx"}, 0x20),
    ("node_udp_queues", {"ip": "v4", "queue": "rx"}, 0x100),
    ("node_udp_queues", {"ip": "v6", "queue": "tx"}, 0x10),
    ("node_udp_queues", {"ip": "v6", "queue": "rx"}, 0),
    ("node_os_info", {"build_id": "", "id": "debian", "id_like": "", "image_id": "", "image_version": "",
                      "name": "Debian GNU/Linux", "pretty_name": "Debian GNU/Linux 12 (bookworm)", "variant": "",
                      "variant_id": "", "version": "12 (bookworm)", "version_codename": "bookworm",
                      "version_id": "12"}, 1),
    ("node_os_version", {"id": "debian", "id_like": "", "name": "Debian GNU/Linux"}, 12),
    ("node_selinux_enabled", {}, 0),
    # timex: status 0x2001 has STA_NANO, so offset and jitter are nanoseconds; freq is ppm << 16
    ("node_timex_sync_status", {}, 0),  # adjtimex returned TIME_ERROR (5)
    ("node_timex_offset_seconds", {}, 250000e-9),
    ("node_timex_pps_jitter_seconds", {}, 2000e-9),
    ("node_timex_frequency_adjustment_ratio", {}, 1 + 655360 / 65536e6),
    ("node_timex_maxerror_seconds", {}, 0.016),
    ("node_timex_estimated_error_seconds", {}, 0.0005),
    ("node_timex_tick_seconds", {}, 0.01),
    ("node_timex_status", {}, 0x2001),
    ("node_timex_loop_time_constant", {}, 7),
    ("node_timex_tai_offset_seconds", {}, 37),
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


@pytest.mark.parametrize("name", [
    "node_netstat_TcpExt_DelayedACKs",  # not in --collector.netstat.fields
    "node_netstat_Ip_DefaultTTL", "node_netstat_Ip_InHdrErrors", "node_netstat_Ip6_InReceives",
    "node_vmstat_nr_free_pages", "node_vmstat_nr_dirty",  # not in --collector.vmstat.fields
    "node_sockstat_UDP_orphan", "node_sockstat_TCP6_mem",  # the kernel does not print them
    "node_selinux_current_mode",  # SELinux off
])
def test_two_cpu_vm_fields_not_published(two_cpu: dict[str, MetricFamily], name: str) -> None:
    assert name not in two_cpu


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
        if path.endswith("/srv/my data"):
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
        assert sum(c.endswith("/srv/my data") for c in calls) == 1
        assert value(fams, "node_filesystem_device_error", **hung) == 1
    finally:
        release.set()
    deadline = time.monotonic() + 5
    while any(p.endswith("/srv/my data") for p in filesystem._stuck) and time.monotonic() < deadline:
        time.sleep(0.01)
    fams = by_name(collect(src, ["filesystem"], opts))
    assert value(fams, "node_filesystem_device_error", **hung) == 0
    assert value(fams, "node_filesystem_avail_bytes", **hung) == 500 * 1024


@pytest.mark.parametrize(
    ("collector", "prefix"),
    [("conntrack", "node_nf_conntrack"), ("pressure", "node_pressure"), ("udp_queues", "node_udp_queues"),
     ("timex", "node_timex"), ("os", "node_os"), ("arp", "node_arp")],
)
def test_old_kernel_without_the_files_reports_failure_not_zeros(collector: str, prefix: str) -> None:
    """No conntrack module, no PSI, no /proc/net/udp, adjtimex refused, no os-release, no ARP table: the
    collector reports success 0 and publishes nothing, rather than made-up zeros."""
    fams = by_name(collect(fixture_sources("old-kernel-no-meminfo"), [collector]))
    assert value(fams, "node_scrape_collector_success", collector=collector) == 0
    assert not [n for n in fams if n.startswith(prefix)]
