"""Host collectors on psutil, for systems without /proc and /sys (macOS, Windows, the BSDs) and, with
``--source psutil``, on Linux (where tests compare them with the /proc collectors on the same machine).

The families keep node_exporter's *Linux* names, labels, types and HELP wherever psutil's value means the
same thing, so the same dashboards work on every server; node_exporter itself names macOS and BSD memory
differently (``node_memory_total_bytes``...), and Windows has no node_exporter at all. What is left out,
and why (docs/agent.md has the table):

* ``node_memory_Cached_bytes``: psutil's ``cached`` adds SReclaimable to Cached on Linux (and means other
  things elsewhere); the other memory fields are published where psutil has them.
* ``node_filesystem_files``/``_files_free``: psutil has no inode counts.
* ``node_network_up``/``_info``/``_speed_bytes``: psutil's ``isup`` is the IFF_UP flag, not the operational
  state node_exporter reports, and its speed is 0 (not -1) when unknown. ``node_network_mtu_bytes`` is the same.
* disk discard/flush counters, ``io_now`` and ``io_time_weighted``: not in psutil. On Windows and macOS,
  ``read_time``/``write_time`` are what the OS reports and ``busy_time`` (``io_time``) is Linux-only.
* ``node_procs_running``/``_blocked``, ``node_forks_total``: not in psutil.

psutil is imported here only: the Linux agent's default path (the /proc collectors) never loads it, which
keeps its memory below node_exporter's.
"""

from __future__ import annotations

import os
import re
import sys

import psutil

from exporters.host.options import DeviceFilter, Options
from exporters.host.sources import Sources
from sotp.codec.exposition import MetricFamily

# psutil's cpu_times field -> node_exporter's mode (Windows: interrupt and dpc are irq and softirq)
_MODES = {"user": "user", "nice": "nice", "system": "system", "idle": "idle", "iowait": "iowait", "irq": "irq",
          "softirq": "softirq", "steal": "steal", "interrupt": "irq", "dpc": "softirq"}
# psutil's virtual_memory field -> node_exporter's /proc/meminfo field (same meaning)
_MEMORY = {"total": "MemTotal", "free": "MemFree", "available": "MemAvailable", "buffers": "Buffers",
           "active": "Active", "inactive": "Inactive", "shared": "Shmem", "slab": "Slab"}


def cpu(src: Sources, opts: Options) -> list[MetricFamily]:
    seconds = MetricFamily("node_cpu_seconds_total", "counter", "Seconds the CPUs spent in each mode.")
    guest = MetricFamily("node_cpu_guest_seconds_total", "counter",
                         "Seconds the CPUs spent in guests (VMs) for each mode.")
    for i, times in enumerate(psutil.cpu_times(percpu=True)):
        values = times._asdict()
        for field, mode in _MODES.items():
            if field in values:
                seconds.add({"cpu": str(i), "mode": mode}, float(values[field]))
        if opts.cpu_guest and "guest" in values:
            guest.add({"cpu": str(i), "mode": "user"}, float(values["guest"]))
            guest.add({"cpu": str(i), "mode": "nice"}, float(values.get("guest_nice", 0.0)))
    return [seconds, guest]


def meminfo(src: Sources, opts: Options) -> list[MetricFamily]:
    out = []
    values = psutil.virtual_memory()._asdict()
    swap = psutil.swap_memory()
    pairs = [(key, float(values[field])) for field, key in _MEMORY.items() if field in values]
    pairs += [("SwapTotal", float(swap.total)), ("SwapFree", float(swap.free))]
    for key, value in pairs:
        fam = MetricFamily(f"node_memory_{key}_bytes", "gauge", f"Memory information field {key}_bytes.")
        fam.add({}, value)
        out.append(fam)
    return out


def filesystem(src: Sources, opts: Options) -> list[MetricFamily]:
    specs = [("size_bytes", "Filesystem size in bytes."), ("free_bytes", "Filesystem free space in bytes."),
             ("avail_bytes", "Filesystem space available to non-root users in bytes."),
             ("readonly", "Filesystem read-only status."),
             ("device_error", "Whether an error occurred while getting statistics for the given device.")]
    fams = {k: MetricFamily(f"node_filesystem_{k}", "gauge", h) for k, h in specs}
    exclude_mounts = re.compile(opts.filesystem_mount_points_exclude)
    exclude_types = re.compile(opts.filesystem_fs_types_exclude)
    seen: set[tuple[str, str, str]] = set()
    for part in psutil.disk_partitions(all=True):
        if exclude_mounts.search(part.mountpoint) or exclude_types.search(part.fstype):
            continue
        key = (part.device, part.mountpoint, part.fstype)
        if key in seen:
            continue
        seen.add(key)
        labels = {"device": part.device, "fstype": part.fstype, "mountpoint": part.mountpoint}
        try:
            usage = psutil.disk_usage(part.mountpoint)
        except OSError:
            fams["device_error"].add(labels, 1.0)
            continue
        # psutil: free is what non-root users may use (f_bavail); used counts from f_bfree
        fams["size_bytes"].add(labels, float(usage.total))
        fams["free_bytes"].add(labels, float(usage.total - usage.used))
        fams["avail_bytes"].add(labels, float(usage.free))
        fams["readonly"].add(labels, 1.0 if "ro" in part.opts.split(",") else 0.0)
        fams["device_error"].add(labels, 0.0)
    return list(fams.values())


def diskstats(src: Sources, opts: Options) -> list[MetricFamily]:
    rows = [  # (psutil field, node_exporter suffix, help, scale: psutil times are milliseconds)
        ("read_count", "reads_completed_total", "The total number of reads completed successfully.", 1.0),
        ("read_merged_count", "reads_merged_total", "The total number of reads merged.", 1.0),
        ("read_bytes", "read_bytes_total", "The total number of bytes read successfully.", 1.0),
        ("read_time", "read_time_seconds_total", "The total number of seconds spent by all reads.", 0.001),
        ("write_count", "writes_completed_total", "The total number of writes completed successfully.", 1.0),
        ("write_merged_count", "writes_merged_total", "The number of writes merged.", 1.0),
        ("write_bytes", "written_bytes_total", "The total number of bytes written successfully.", 1.0),
        ("write_time", "write_time_seconds_total", "This is the total number of seconds spent by all writes.",
         0.001),
        ("busy_time", "io_time_seconds_total", "Total seconds spent doing I/Os.", 0.001),
    ]
    fams = [(field, MetricFamily(f"node_disk_{suffix}", "counter", help_), scale)
            for field, suffix, help_, scale in rows]
    devices = DeviceFilter(opts.diskstats_device_exclude, opts.diskstats_device_include)
    for device, io in (psutil.disk_io_counters(perdisk=True, nowrap=True) or {}).items():
        if devices.ignored(device):
            continue
        values = io._asdict()
        for field, fam, scale in fams:
            if field in values:
                fam.add({"device": device}, float(values[field]) * scale)
    return [fam for _, fam, _ in fams]


def netdev(src: Sources, opts: Options) -> list[MetricFamily]:
    rows = [("bytes_recv", "receive_bytes"), ("packets_recv", "receive_packets"), ("errin", "receive_errs"),
            ("dropin", "receive_drop"), ("bytes_sent", "transmit_bytes"), ("packets_sent", "transmit_packets"),
            ("errout", "transmit_errs"), ("dropout", "transmit_drop")]
    fams = [(field, MetricFamily(f"node_network_{name}_total", "counter", f"Network device statistic {name}."))
            for field, name in rows]
    devices = DeviceFilter(opts.netdev_device_exclude, opts.netdev_device_include)
    for device, io in psutil.net_io_counters(pernic=True, nowrap=True).items():
        if devices.ignored(device):
            continue
        for field, fam in fams:
            fam.add({"device": device}, float(getattr(io, field)))
    return [fam for _, fam in fams]


def netclass(src: Sources, opts: Options) -> list[MetricFamily]:
    mtu = MetricFamily("node_network_mtu_bytes", "gauge", "Network device property: mtu_bytes")
    ignored = re.compile(opts.netclass_ignored_devices)
    for device, stats in psutil.net_if_stats().items():
        if not ignored.search(device):
            mtu.add({"device": device}, float(stats.mtu))
    return [mtu]


def loadavg(src: Sources, opts: Options) -> list[MetricFamily]:
    # on Windows psutil computes these itself from a thread it starts: they read 0 for the first seconds
    out = []
    for name, value in zip(("1", "5", "15"), psutil.getloadavg(), strict=True):
        fam = MetricFamily(f"node_load{name}", "gauge", f"{name}m load average.")
        fam.add({}, float(value))
        out.append(fam)
    return out


def stat(src: Sources, opts: Options) -> list[MetricFamily]:
    stats = psutil.cpu_stats()
    rows = [("node_boot_time_seconds", "gauge", "Node boot time, in unixtime.", float(psutil.boot_time())),
            ("node_context_switches_total", "counter", "Total number of context switches.",
             float(stats.ctx_switches)),
            ("node_intr_total", "counter", "Total number of interrupts serviced.", float(stats.interrupts))]
    out = []
    for name, typ, help_, value in rows:
        fam = MetricFamily(name, typ, help_)
        fam.add({}, value)
        out.append(fam)
    return out


def uname(src: Sources, opts: Options) -> list[MetricFamily]:
    if hasattr(os, "uname"):
        from exporters.host.collectors import uname as posix

        return posix.collect(src, opts)
    import platform

    u = platform.uname()
    fam = MetricFamily("node_uname_info", "gauge", "Labeled system information as provided by the uname system call.")
    fam.add({"domainname": "", "machine": u.machine, "nodename": u.node, "release": u.release,
             "sysname": u.system, "version": u.version}, 1.0)
    return [fam]


#: The collectors of this set: psutil's own, plus the /proc-free ones shared with the Linux set.
COLLECTORS = {"cpu": cpu, "diskstats": diskstats, "filesystem": filesystem, "loadavg": loadavg, "meminfo": meminfo,
              "netclass": netclass, "netdev": netdev, "stat": stat, "uname": uname}
SHARED = ("textfile", "time")  # pure Python, no /proc: the same modules as on Linux
PLATFORM = sys.platform
