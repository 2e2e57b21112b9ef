"""``cpufreq``: current, minimum and maximum CPU frequencies from /sys/devices/system/cpu/cpu*/cpufreq (kHz
in sysfs, hertz here)."""

from __future__ import annotations

import glob
import os

from exporters.host.options import Options
from exporters.host.sources import Sources
from exporters.host.sysfs import read_attr, read_uint
from sotp.codec.exposition import MetricFamily

_FILES = [  # sysfs file -> (metric suffix, help)
    ("cpuinfo_cur_freq", "frequency_hertz", "Current cpu thread frequency in hertz."),
    ("cpuinfo_min_freq", "frequency_min_hertz", "Minimum cpu thread frequency in hertz."),
    ("cpuinfo_max_freq", "frequency_max_hertz", "Maximum cpu thread frequency in hertz."),
    ("scaling_cur_freq", "scaling_frequency_hertz", "Current scaled CPU thread frequency in hertz."),
    ("scaling_min_freq", "scaling_frequency_min_hertz", "Minimum scaled CPU thread frequency in hertz."),
    ("scaling_max_freq", "scaling_frequency_max_hertz", "Maximum scaled CPU thread frequency in hertz."),
]
# read (and required) by procfs although node_exporter publishes none of them
_REQUIRED = ("scaling_available_governors", "scaling_driver", "scaling_governor", "related_cpus", "scaling_setspeed")


def collect(src: Sources, opts: Options) -> list[MetricFamily]:
    fams = [(f, MetricFamily(f"node_cpu_{suffix}", "gauge", help_)) for f, suffix, help_ in _FILES]
    for cpu in sorted(glob.glob(os.path.join(src.sys, "devices", "system", "cpu", "cpu[0-9]*"))):
        path = os.path.join(cpu, "cpufreq")
        if not os.path.exists(path):
            continue
        values = {}
        for f, _ in fams:
            try:
                values[f] = read_uint(os.path.join(path, f))
            except (FileNotFoundError, PermissionError):
                continue  # cpuinfo_cur_freq is root-only
        for f in _REQUIRED:
            read_attr(os.path.join(path, f))
        labels = {"cpu": os.path.basename(cpu).removeprefix("cpu")}
        for f, fam in fams:
            if f in values:
                fam.add(labels, float(values[f]) * 1000.0)
    return [fam for _, fam in fams]
