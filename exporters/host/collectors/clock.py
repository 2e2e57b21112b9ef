"""``time``: node_time_seconds, the time zone offset and the clock sources from sysfs."""

from __future__ import annotations

import time

from exporters.host.options import Options
from exporters.host.sources import Sources
from sotp.codec.exposition import MetricFamily


def collect(src: Sources, opts: Options) -> list[MetricFamily]:
    now = src.now()
    t = MetricFamily("node_time_seconds", "gauge", "System time in seconds since epoch (1970).")
    t.add({}, now)
    local = time.localtime(now)
    tz = MetricFamily("node_time_zone_offset_seconds", "gauge", "System time zone offset in seconds.")
    tz.add({"time_zone": local.tm_zone}, float(local.tm_gmtoff))
    avail = MetricFamily(
        "node_time_clocksource_available_info",
        "gauge",
        "Available clocksources read from '/sys/devices/system/clocksource'.",
    )
    current = MetricFamily(
        "node_time_clocksource_current_info",
        "gauge",
        "Current clocksource read from '/sys/devices/system/clocksource'.",
    )
    base = src.sys / "devices" / "system" / "clocksource"
    # the device label is the position in the sorted glob, as procfs numbers them
    for i, dev in enumerate(sorted(base.glob("clocksource[0-9]*"))):
        names = (dev / "available_clocksource").read_text().split()
        cur = (dev / "current_clocksource").read_text().strip()
        for name in names:
            avail.add({"clocksource": name, "device": str(i)}, 1.0)
        current.add({"clocksource": cur, "device": str(i)}, 1.0)
    return [avail, current, t, tz]
