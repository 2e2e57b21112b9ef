"""The collector set and one scrape: run each collector, time it, report failures as node_exporter does."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

from exporters.host.collectors import cpu, diskstats, filesystem, loadavg, meminfo, netclass, netdev, stat, timex, uname
from exporters.host.sources import Sources
from sotp.codec.exposition import MetricFamily

log = logging.getLogger("exporters.host")

Collector = Callable[[Sources], list[MetricFamily]]

#: node_exporter's collector names -> the function that implements each.
COLLECTORS: dict[str, Collector] = {
    "cpu": cpu.collect,
    "diskstats": diskstats.collect,
    "filesystem": filesystem.collect,
    "loadavg": loadavg.collect,
    "meminfo": meminfo.collect,
    "netclass": netclass.collect,
    "netdev": netdev.collect,
    "stat": stat.collect,
    "time": timex.collect,
    "uname": uname.collect,
}


def collect(src: Sources, names: Iterable[str] | None = None) -> list[MetricFamily]:
    """All families of the chosen collectors (default: all), sorted by name, plus
    ``node_scrape_collector_{duration_seconds,success}``. A failing collector is logged and reported
    with success 0; the others still answer."""
    chosen = sorted(COLLECTORS if names is None else names)
    families: list[MetricFamily] = []
    duration = MetricFamily(
        "node_scrape_collector_duration_seconds", "gauge", "node_exporter: Duration of a collector scrape."
    )
    success = MetricFamily(
        "node_scrape_collector_success", "gauge", "node_exporter: Whether a collector succeeded."
    )
    for name in chosen:
        start = time.perf_counter()
        try:
            families.extend(COLLECTORS[name](src))
            ok = 1.0
        except (OSError, ValueError, IndexError) as err:
            log.warning("collector %s failed: %s", name, err)
            ok = 0.0
        duration.add({"collector": name}, time.perf_counter() - start)
        success.add({"collector": name}, ok)
    families += [duration, success]
    families.sort(key=lambda f: f.name)
    for fam in families:  # Go's registry orders a family's samples by label values
        fam.samples.sort(key=lambda s: (s[0], tuple(s[1].values())))
    return families
