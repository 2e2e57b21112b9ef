"""The collector set and one scrape: run each collector, time it, report failures as node_exporter does.

Collector modules are imported on first use, so a collector turned off with ``--no-collector.<name>``
costs no memory in the agent.
"""

from __future__ import annotations

import importlib
import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping
from typing import cast

from exporters.host.collectors import NoData, PartialFailure
from exporters.host.options import Options
from exporters.host.sources import Sources
from sotp.codec.exposition import MetricFamily

log = logging.getLogger("exporters.host")

Collector = Callable[[Sources, Options], list[MetricFamily]]

#: node_exporter's collector name -> the module under ``exporters.host.collectors`` implementing it.
COLLECTORS: dict[str, str] = {
    "arp": "arp",
    "bcache": "bcache",
    "bonding": "bonding",
    "btrfs": "btrfs",
    "conntrack": "conntrack",
    "cpu": "cpu",
    "cpufreq": "cpufreq",
    "diskstats": "diskstats",
    "dmi": "dmi",
    "edac": "edac",
    "entropy": "entropy",
    "fibrechannel": "fibrechannel",
    "filefd": "filefd",
    "filesystem": "filesystem",
    "hwmon": "hwmon",
    "infiniband": "infiniband",
    "ipvs": "ipvs",
    "loadavg": "loadavg",
    "mdadm": "mdadm",
    "meminfo": "meminfo",
    "netclass": "netclass",
    "netdev": "netdev",
    "netstat": "netstat",
    "nfs": "nfs",
    "nfsd": "nfsd",
    "nvme": "nvme",
    "os": "os_release",
    "powersupplyclass": "powersupplyclass",
    "pressure": "pressure",
    "rapl": "rapl",
    "schedstat": "schedstat",
    "selinux": "selinux",
    "sockstat": "sockstat",
    "softnet": "softnet",
    "stat": "stat",
    "systemd": "systemd",
    "tapestats": "tapestats",
    "textfile": "textfile",
    "thermal_zone": "thermal_zone",
    "time": "clock",
    "timex": "timex",
    "udp_queues": "udp_queues",
    "uname": "uname",
    "vmstat": "vmstat",
    "xfs": "xfs",
    "zfs": "zfs",
}

#: Collectors Debian's node_exporter 1.5 runs by default that SOTP does not implement, with the reason.
NOT_IMPLEMENTED: dict[str, str] = {}

#: Collectors node_exporter 1.5 has but leaves off by default (``--collector.<name>`` turns them on there).
OFF_BY_DEFAULT_UPSTREAM = (
    "buddyinfo", "cgroups", "drbd", "drm", "ethtool", "interrupts", "ksmd", "lnstat", "logind", "meminfo_numa",
    "mountstats", "network_route", "ntp", "perf", "processes", "qdisc", "runit", "slabinfo", "supervisord", "sysctl",
    "tcpstat", "wifi", "zoneinfo",
)

DEFAULT_ENABLED: tuple[str, ...] = tuple(sorted(COLLECTORS))

#: Collectors of ``--backend psutil`` (exporters.host.psutil_collectors), and those that read no /proc and
#: are shared with the Linux set. Listed here so that choosing them does not import psutil.
PSUTIL_COLLECTORS = ("cpu", "diskstats", "filesystem", "loadavg", "meminfo", "netclass", "netdev", "stat", "uname")
SHARED_COLLECTORS = ("textfile", "time")
BACKENDS = ("procfs", "psutil")

#: Collectors of hardware most machines lack, with the file or directory that must exist for them to find
#: anything: (``proc`` or ``sys``, path, whether its absence is "no data" rather than an empty success). Where
#: it is missing, the collector is answered without importing its module, which keeps the agent's memory
#: down on VMs; the answer is the one the module gives (tests/exporters/host/test_registry.py checks it).
PRESENCE: dict[str, tuple[str, str, bool]] = {
    "btrfs": ("sys", "fs/btrfs", False),
    "bcache": ("sys", "fs/bcache", False),
    "bonding": ("sys", "class/net/bonding_masters", True),
    "conntrack": ("proc", "sys/net/netfilter/nf_conntrack_count", True),
    "cpufreq": ("sys", "devices/system/cpu", False),
    "dmi": ("sys", "class/dmi/id", True),
    "edac": ("sys", "devices/system/edac/mc", False),
    "fibrechannel": ("sys", "class/fc_host", True),
    "hwmon": ("sys", "class/hwmon", True),
    "infiniband": ("sys", "class/infiniband", True),
    "ipvs": ("proc", "net/ip_vs_stats", True),
    "mdadm": ("proc", "mdstat", True),
    "nfs": ("proc", "net/rpc/nfs", True),
    "nfsd": ("proc", "net/rpc/nfsd", True),
    "nvme": ("sys", "class/nvme", True),
    "powersupplyclass": ("sys", "class/power_supply", True),
    "rapl": ("sys", "class/powercap", True),
    "schedstat": ("proc", "schedstat", True),
    "tapestats": ("sys", "class/scsi_tape", True),
    "thermal_zone": ("sys", "class/thermal", False),
    "xfs": ("sys", "fs/xfs", False),
    "zfs": ("proc", "spl/kstat/zfs", True),
}

_loaded: dict[tuple[str, str], Collector] = {}


def _absent(name: str, src: Sources) -> bool | None:
    """None when collector ``name`` may find something; else whether its absence means no data."""
    where = PRESENCE.get(name)
    if where is None or src.backend != "procfs":
        return None
    base = src.proc if where[0] == "proc" else src.sys
    return None if os.path.exists(os.path.join(base, where[1])) else where[2]


def available(backend: str) -> tuple[str, ...]:
    """The collectors a backend has."""
    return tuple(sorted(COLLECTORS)) if backend == "procfs" else tuple(sorted(PSUTIL_COLLECTORS + SHARED_COLLECTORS))


def load(name: str, backend: str = "procfs") -> Collector:
    """The ``collect`` function of collector ``name`` (importing its module once)."""
    fn = _loaded.get((name, backend))
    if fn is None:
        if backend == "psutil" and name in PSUTIL_COLLECTORS:
            from exporters.host import psutil_collectors  # imports psutil: only on this path

            fn = psutil_collectors.COLLECTORS[name]
        elif backend == "procfs" or name in SHARED_COLLECTORS:
            module = importlib.import_module(f"exporters.host.collectors.{COLLECTORS[name]}")
            fn = cast(Collector, module.collect)
        else:
            raise KeyError(f"collector {name} does not exist with --backend {backend}")
        _loaded[(name, backend)] = fn
    return fn


#: The last failure logged per collector: a collector that fails the same way every scrape (no hwmon in a
#: VM) is logged once, not every 15 s; node_exporter logs it every time.
_last_error: dict[str, str] = {}


def collect(src: Sources, names: Iterable[str] | None = None, opts: Options | None = None) -> list[MetricFamily]:
    """All families of the chosen collectors (default: all of ``src.backend``'s), sorted by name, plus
    ``node_scrape_collector_{duration_seconds,success}``. A failing collector is logged and reported
    with success 0; the others still answer. Families of the same name from two collectors (the
    textfile collector may publish any name) are merged as Go's registry merges them."""
    opts = opts or Options()
    chosen = sorted(available(src.backend) if names is None else names)
    families: dict[str, MetricFamily] = {}
    duration = MetricFamily(
        "node_scrape_collector_duration_seconds", "gauge", "node_exporter: Duration of a collector scrape."
    )
    success = MetricFamily(
        "node_scrape_collector_success", "gauge", "node_exporter: Whether a collector succeeded."
    )
    for name in chosen:
        start = time.perf_counter()
        try:
            absent = _absent(name, src)
            if absent is not None:
                if absent:
                    raise NoData(f"{PRESENCE[name][1]} does not exist")
                out = []
            else:
                out = load(name, src.backend)(src, opts)
            ok = 1.0
            _last_error.pop(name, None)
        except NoData as err:
            log.debug("collector %s returned no data: %s", name, err)
            out, ok = [], 0.0
        except PartialFailure as err:
            if _last_error.get(name) != str(err):
                log.warning("collector %s failed in part: %s", name, err)
                _last_error[name] = str(err)
            out, ok = err.families, 0.0
        except (OSError, ValueError, IndexError) as err:
            if _last_error.get(name) != str(err):
                log.warning("collector %s failed: %s", name, err)
                _last_error[name] = str(err)
            out, ok = [], 0.0
        duration.add({"collector": name}, time.perf_counter() - start)
        success.add({"collector": name}, ok)
        for fam in out:
            merge_family(families, fam)
    families[duration.name] = duration
    families[success.name] = success
    result = sorted(families.values(), key=lambda f: f.name)
    for fam in result:
        sort_samples(fam)
    return result


def sort_samples(fam: MetricFamily) -> None:
    """Order as client_golang does: label names sorted in each sample (a histogram's ``le`` and a summary's
    ``quantile`` last, where its text writer puts them), and metrics by label count, then label values in
    label-name order. The sort is stable, so a histogram's or summary's samples stay together."""
    skip = {"histogram": "le", "summary": "quantile"}.get(fam.type, "")
    samples = fam.samples
    for i, (name, labels, value) in enumerate(samples):
        keys = list(labels)
        if keys != sorted(keys) and not (skip and keys[-1:] == [skip] and keys[:-1] == sorted(keys[:-1])):
            ordered = {k: labels[k] for k in sorted(keys) if k != skip}
            if skip in labels:
                ordered[skip] = labels[skip]
            samples[i] = (name, ordered, value)

    def key(sample: tuple[str, Mapping[str, str], float]) -> tuple[int, tuple[str, ...]]:
        pairs = sorted((k, v) for k, v in sample[1].items() if k != skip)
        return len(pairs), tuple(v for _, v in pairs)

    samples.sort(key=key)


def merge_family(families: dict[str, MetricFamily], fam: MetricFamily) -> None:
    """Add ``fam`` to ``families`` as client_golang's ``Gather`` does: a family seen before with the same
    HELP and type gets the new samples (a series it already has is dropped), a conflicting one is
    dropped with a log line naming both."""
    have = families.get(fam.name)
    if have is None:
        families[fam.name] = fam
        return
    if have.help != fam.help or have.type != fam.type:
        log.warning("dropping metric family %s (%s, %r): it was collected before as %s with HELP %r",
                    fam.name, fam.type, fam.help, have.type, have.help)
        return
    seen = {(n, tuple(sorted(lbs.items()))) for n, lbs, _ in have.samples}
    for sample in fam.samples:
        key = (sample[0], tuple(sorted(sample[1].items())))
        if key in seen:
            log.warning("dropping sample %s%s: it was collected before with the same labels", *key)
            continue
        seen.add(key)
        have.samples.append(sample)
