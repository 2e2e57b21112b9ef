"""``schedstat``: per-CPU scheduler time from /proc/schedstat (nanoseconds since Linux 2.6.23)."""

from __future__ import annotations

import re

from exporters.host.collectors import NoData
from exporters.host.options import Options
from exporters.host.sources import Sources
from sotp.codec.exposition import MetricFamily

_CPU_LINE = re.compile(r"cpu(\d+) (\d+) (\d+) (\d+) (\d+) (\d+) (\d+) (\d+) (\d+) (\d+)")
NS_PER_SEC = 1e9


def collect(src: Sources, opts: Options) -> list[MetricFamily]:
    try:
        text = src.read(src.proc, "schedstat")
    except FileNotFoundError as err:
        raise NoData("/proc/schedstat does not exist (CONFIG_SCHEDSTATS off)") from err
    running = MetricFamily("node_schedstat_running_seconds_total", "counter",
                           "Number of seconds CPU spent running a process.")
    waiting = MetricFamily("node_schedstat_waiting_seconds_total", "counter",
                           "Number of seconds spent by processing waiting for this CPU.")
    slices = MetricFamily("node_schedstat_timeslices_total", "counter", "Number of timeslices executed by CPU.")
    for line in text.splitlines():
        m = _CPU_LINE.search(line)
        if m is None:
            continue
        labels = {"cpu": m.group(1)}
        running.add(labels, float(m.group(8)) / NS_PER_SEC)
        waiting.add(labels, float(m.group(9)) / NS_PER_SEC)
        slices.add(labels, float(m.group(10)))
    return [running, waiting, slices]
