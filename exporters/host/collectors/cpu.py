"""``cpu``: per-CPU time in each mode from /proc/stat, thermal throttle counts and isolated CPUs from sysfs,
and with ``--collector.cpu.info`` the /proc/cpuinfo labels.

Like node_exporter, the times never go backwards between scrapes: a counter the kernel reports lower than
last time keeps its previous value, and a CPU whose idle time drops by 3 s or more (hot-unplugged and back)
starts over. That state lives per proc root in ``_last``.
"""

from __future__ import annotations

import glob
import os
import re
import threading
from pathlib import Path

from exporters.host.options import Options
from exporters.host.sources import Sources
from sotp.codec.exposition import MetricFamily

USER_HZ = 100.0  # the kernel reports /proc/stat in USER_HZ, fixed at 100 on Linux
# /proc/stat column order; the exposition order is node_exporter's (user, nice, system, idle, ...)
_COLUMNS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal", "guest", "guest_nice")
_JUMP_BACK_SECONDS = 3.0

_last: dict[Path, list[list[float]]] = {}
_lock = threading.Lock()


def _read_stat(src: Sources) -> list[list[float]]:
    cpus: list[list[float]] = []
    for line in src.read(src.proc, "stat").splitlines():
        parts = line.split()
        if not parts or not parts[0].startswith("cpu") or parts[0] == "cpu":
            continue
        cpu_id = int(parts[0][3:])
        values = [float(x) / USER_HZ for x in parts[1:11]]
        while len(cpus) <= cpu_id:  # an offline CPU in the middle reads as zeros, as procfs fills the gap
            cpus.append([0.0] * 10)
        cpus[cpu_id] = values + [0.0] * (10 - len(values))
    return cpus


def _monotonic(src: Sources, new: list[list[float]]) -> list[list[float]]:
    with _lock:
        old = _last.get(src.proc)
        if old is None or len(old) != len(new):
            old = [[0.0] * 10 for _ in new]
        for prev, cur in zip(old, new, strict=True):
            if prev[3] - cur[3] >= _JUMP_BACK_SECONDS:  # idle jumped back: hotplug, start over
                prev[:] = [0.0] * 10
            for i, v in enumerate(cur):
                if v >= prev[i]:
                    prev[i] = v
        _last[src.proc] = old
        return [list(c) for c in old]


def _read_uint(path: str) -> int | None:
    try:
        with open(path) as fh:
            return int(fh.read().strip())
    except (OSError, ValueError):
        return None


def _throttles(src: Sources) -> tuple[MetricFamily, MetricFamily]:
    core = MetricFamily("node_cpu_core_throttles_total", "counter", "Number of times this CPU core has been throttled.")
    package = MetricFamily("node_cpu_package_throttles_total", "counter",
                           "Number of times this CPU package has been throttled.")
    packages: dict[int, int] = {}
    cores: dict[tuple[int, int], int | None] = {}
    for cpu in glob.glob(os.path.join(src.sys, "devices/system/cpu/cpu[0-9]*")):
        pkg = _read_uint(os.path.join(cpu, "topology", "physical_package_id"))
        core_id = _read_uint(os.path.join(cpu, "topology", "core_id"))
        if pkg is None or core_id is None:
            continue
        if (pkg, core_id) not in cores:  # siblings share a core: read it once
            cores[(pkg, core_id)] = _read_uint(os.path.join(cpu, "thermal_throttle", "core_throttle_count"))
        if pkg not in packages:
            count = _read_uint(os.path.join(cpu, "thermal_throttle", "package_throttle_count"))
            if count is not None:
                packages[pkg] = count
    for pkg, count in packages.items():
        package.add({"package": str(pkg)}, float(count))
    for (pkg, core_id), c in cores.items():
        if c is not None:
            core.add({"core": str(core_id), "package": str(pkg)}, float(c))
    return core, package


def _isolated(src: Sources) -> MetricFamily:
    fam = MetricFamily("node_cpu_isolated", "gauge",
                       "Whether each core is isolated, information from /sys/devices/system/cpu/isolated.")
    try:
        text = src.read(src.sys, "devices", "system", "cpu", "isolated")
    except OSError:
        return fam
    for part in text.rstrip("\n").split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        for cpu in range(int(lo), int(hi or lo) + 1):
            fam.add({"cpu": str(cpu)}, 1.0)
    return fam


_INFO_KEYS = {"vendor_id": "vendor", "vendor": "vendor", "cpu family": "family", "model": "model",
              "model name": "model_name", "microcode": "microcode", "stepping": "stepping",
              "cache size": "cachesize", "physical id": "package", "core id": "core"}


def _info(src: Sources, opts: Options) -> list[MetricFamily]:
    info = MetricFamily("node_cpu_info", "gauge", "CPU information from /proc/cpuinfo.")
    flags = MetricFamily("node_cpu_flag_info", "gauge",
                         "The `flags` field of CPU information from /proc/cpuinfo taken from the first core.")
    bugs = MetricFamily("node_cpu_bug_info", "gauge",
                        "The `bugs` field of CPU information from /proc/cpuinfo taken from the first core.")
    cpus: list[dict[str, str]] = []
    first_flags: list[str] | None = None
    first_bugs: list[str] | None = None
    for line in src.read(src.proc, "cpuinfo").splitlines():
        key, sep, value = line.partition(": ")
        if not sep:
            key, value = line.partition(":")[0], ""
        key = key.strip()
        if key == "processor":
            cpus.append({"cpu": str(int(value, 0))})
        elif not cpus:
            continue
        elif key in _INFO_KEYS:
            cpus[-1][_INFO_KEYS[key]] = value
        elif key == "flags" and len(cpus) == 1:
            first_flags = value.split()
        elif key == "bugs" and len(cpus) == 1:
            first_bugs = value.split()
    names = ("cachesize", "core", "cpu", "family", "microcode", "model", "model_name", "package", "stepping",
             "vendor")
    for cpu in cpus:
        info.add({k: cpu.get(k, "") for k in names}, 1.0)
    for fam, values, pattern in ((flags, first_flags, opts.cpu_info_flags_include),
                                 (bugs, first_bugs, opts.cpu_info_bugs_include)):
        if pattern and values:
            label = "flag" if fam is flags else "bug"
            for v in values:
                if re.search(pattern, v):
                    fam.add({label: v}, 1.0)
    return [info, flags, bugs]


def collect(src: Sources, opts: Options) -> list[MetricFamily]:
    out: list[MetricFamily] = []
    if opts.cpu_info or opts.cpu_info_flags_include or opts.cpu_info_bugs_include:
        out += _info(src, opts)
    seconds = MetricFamily("node_cpu_seconds_total", "counter", "Seconds the CPUs spent in each mode.")
    guest = MetricFamily("node_cpu_guest_seconds_total", "counter",
                         "Seconds the CPUs spent in guests (VMs) for each mode.")
    for cpu_id, v in enumerate(_monotonic(src, _read_stat(src))):
        cpu = str(cpu_id)
        for i, mode in enumerate(_COLUMNS[:8]):
            seconds.add({"cpu": cpu, "mode": mode}, v[i])
        if opts.cpu_guest:  # guest time is also inside user and nice, as the kernel counts it
            guest.add({"cpu": cpu, "mode": "user"}, v[8])
            guest.add({"cpu": cpu, "mode": "nice"}, v[9])
    out += [seconds, guest, _isolated(src), *_throttles(src)]
    return out
