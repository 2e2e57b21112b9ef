"""``rapl``: CPU package and DRAM energy counters from /sys/class/powercap (Intel/AMD RAPL), in joules.

Zones named ``package-0`` become ``node_rapl_package_joules_total{index="0"}``; zones sharing a name without
an index are numbered in the order found. Unreadable ``energy_uj`` files (root-only since Linux 5.10) mean
no data.
"""

from __future__ import annotations

import os
import re

from exporters.host.collectors import NoData
from exporters.host.options import Options
from exporters.host.sources import Sources
from exporters.host.sysfs import read_uint
from sotp.codec.exposition import MetricFamily

_INVALID = re.compile(r"_*[^0-9A-Za-z_]+_*")


def collect(src: Sources, opts: Options) -> list[MetricFamily]:
    base = os.path.join(src.sys, "class", "powercap")
    try:
        entries = sorted(os.listdir(base))
    except (FileNotFoundError, PermissionError) as err:
        raise NoData("the platform has no powercap files") from err
    used: dict[str, int] = {}
    fams: dict[str, MetricFamily] = {}
    for entry in entries:
        path = os.path.join(base, entry)
        try:
            with open(os.path.join(path, "name")) as fh:
                name = fh.read().strip()
        except OSError:
            continue
        head, sep, tail = name.partition("-")
        if sep and "-" not in tail and tail.lstrip("+-").isdigit():
            index, name = int(tail), head
        else:
            index = used.get(name, 0)
        try:
            read_uint(os.path.join(path, "max_energy_range_uj"))
        except PermissionError as err:
            raise NoData(f"cannot read {path}: {err.strerror}") from err
        used[name] = index + 1
        try:
            micro = read_uint(os.path.join(path, "energy_uj"))
        except PermissionError as err:
            raise NoData(f"cannot read {path}/energy_uj: {err.strerror}") from err
        metric = f"node_rapl_{_INVALID.sub('_', name)}_joules_total"
        fam = fams.get(metric)
        if fam is None:
            fam = fams[metric] = MetricFamily(metric, "counter", f"Current RAPL {name} value in joules")
        fam.add({"index": str(index), "path": path}, micro / 1000000.0)
    return list(fams.values())
