"""``thermal_zone``: temperatures of /sys/class/thermal zones and the states of cooling devices."""

from __future__ import annotations

import errno
import glob
import os

from exporters.host.options import Options
from exporters.host.sources import Sources
from exporters.host.sysfs import read_attr, read_int
from sotp.codec.exposition import MetricFamily


def collect(src: Sources, opts: Options) -> list[MetricFamily]:
    temp = MetricFamily("node_thermal_zone_temp", "gauge", "Zone temperature in Celsius")
    cur = MetricFamily("node_cooling_device_cur_state", "gauge", "Current throttle state of the cooling device")
    top = MetricFamily("node_cooling_device_max_state", "gauge", "Maximum throttle state of the cooling device")
    base = os.path.join(src.sys, "class", "thermal")
    for zone in sorted(glob.glob(os.path.join(base, "thermal_zone[0-9]*"))):
        try:
            kind = read_attr(os.path.join(zone, "type"))
            read_attr(os.path.join(zone, "policy"))  # required, as procfs reads it
            value = read_int(os.path.join(zone, "temp"))
        except OSError as err:
            if err.errno == errno.ENODATA:  # a zone that has no reading right now
                continue
            raise
        temp.add({"type": kind, "zone": os.path.basename(zone).removeprefix("thermal_zone")}, value / 1000.0)
    for device in sorted(glob.glob(os.path.join(base, "cooling_device[0-9]*"))):
        kind = read_attr(os.path.join(device, "type"))
        labels = {"name": os.path.basename(device).removeprefix("cooling_device"), "type": kind}
        top.add(labels, float(int(read_attr(os.path.join(device, "max_state")))))
        cur.add(labels, float(int(read_attr(os.path.join(device, "cur_state")))))  # -1 for intel powerclamp
    return [temp, cur, top]
