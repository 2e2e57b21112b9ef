"""The collector set and one scrape: run each collector, time it, report failures as node_exporter does.

Collector modules are imported on first use, so a collector turned off with ``--no-collector.<name>``
costs no memory in the agent.
"""

from __future__ import annotations

import importlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import cast

from exporters.host.collectors import NoData
from exporters.host.options import Options
from exporters.host.sources import Sources
from sotp.codec.exposition import MetricFamily

log = logging.getLogger("exporters.host")

Collector = Callable[[Sources, Options], list[MetricFamily]]

#: node_exporter's collector name -> the module under ``exporters.host.collectors`` implementing it.
COLLECTORS: dict[str, str] = {
    "arp": "arp",
    "conntrack": "conntrack",
    "cpu": "cpu",
    "diskstats": "diskstats",
    "entropy": "entropy",
    "filefd": "filefd",
    "filesystem": "filesystem",
    "loadavg": "loadavg",
    "meminfo": "meminfo",
    "netclass": "netclass",
    "netdev": "netdev",
    "netstat": "netstat",
    "os": "os_release",
    "pressure": "pressure",
    "selinux": "selinux",
    "sockstat": "sockstat",
    "softnet": "softnet",
    "stat": "stat",
    "textfile": "textfile",
    "time": "clock",
    "timex": "timex",
    "udp_queues": "udp_queues",
    "uname": "uname",
    "vmstat": "vmstat",
}

#: Collectors Debian's node_exporter 1.5 runs by default that SOTP does not implement, with the reason.
NOT_IMPLEMENTED: dict[str, str] = {
    name: "not implemented yet"
    for name in ("bcache", "bonding", "btrfs", "cpufreq", "dmi", "edac", "fibrechannel", "hwmon", "infiniband", "ipvs",
                 "mdadm", "nfs", "nfsd", "nvme", "powersupplyclass", "rapl", "schedstat", "systemd", "tapestats",
                 "thermal_zone", "xfs", "zfs")
}

#: Collectors node_exporter 1.5 has but leaves off by default (``--collector.<name>`` turns them on there).
OFF_BY_DEFAULT_UPSTREAM = (
    "buddyinfo", "cgroups", "drbd", "drm", "ethtool", "interrupts", "ksmd", "lnstat", "logind", "meminfo_numa",
    "mountstats", "network_route", "ntp", "perf", "processes", "qdisc", "runit", "slabinfo", "supervisord", "sysctl",
    "tcpstat", "wifi", "zoneinfo",
)

DEFAULT_ENABLED: tuple[str, ...] = tuple(sorted(COLLECTORS))

_loaded: dict[str, Collector] = {}


def load(name: str) -> Collector:
    """The ``collect`` function of collector ``name`` (importing its module once)."""
    fn = _loaded.get(name)
    if fn is None:
        module = importlib.import_module(f"exporters.host.collectors.{COLLECTORS[name]}")
        fn = _loaded[name] = cast(Collector, module.collect)
    return fn


#: The last failure logged per collector: a collector that fails the same way every scrape (no hwmon in a
#: VM) is logged once, not every 15 s; node_exporter logs it every time.
_last_error: dict[str, str] = {}


def collect(src: Sources, names: Iterable[str] | None = None, opts: Options | None = None) -> list[MetricFamily]:
    """All families of the chosen collectors (default: :data:`DEFAULT_ENABLED`), sorted by name, plus
    ``node_scrape_collector_{duration_seconds,success}``. A failing collector is logged and reported
    with success 0; the others still answer. Families of the same name from two collectors (the
    textfile collector may publish any name) are merged as Go's registry merges them."""
    opts = opts or Options()
    chosen = sorted(DEFAULT_ENABLED if names is None else names)
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
            out = load(name)(src, opts)
            ok = 1.0
            _last_error.pop(name, None)
        except NoData as err:
            log.debug("collector %s returned no data: %s", name, err)
            out, ok = [], 0.0
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
    """Order samples as client_golang does: metrics by label count, then label values in label-name order.
    The sort is stable, so a histogram's or summary's samples stay together in the order written."""
    skip = {"histogram": "le", "summary": "quantile"}.get(fam.type, "")

    def key(sample: tuple[str, Mapping[str, str], float]) -> tuple[int, tuple[str, ...]]:
        pairs = sorted((k, v) for k, v in sample[1].items() if k != skip)
        return len(pairs), tuple(v for _, v in pairs)

    fam.samples.sort(key=key)


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
