"""``nvme``: ``node_nvme_info`` (firmware, model, serial, state) for each controller in /sys/class/nvme."""

from __future__ import annotations

import os

from exporters.host.collectors import sys_class
from exporters.host.options import Options
from exporters.host.sources import Sources
from exporters.host.sysfs import read_attr
from sotp.codec.exposition import MetricFamily


def collect(src: Sources, opts: Options) -> list[MetricFamily]:
    base, devices = sys_class(src.sys, "nvme", "no NVMe devices")
    info = MetricFamily("node_nvme_info", "gauge", "Non-numeric data from /sys/class/nvme/<device>, value is always 1.")
    for device in devices:
        path = os.path.join(base, device)
        values = {f: read_attr(os.path.join(path, f)) for f in ("firmware_rev", "model", "serial", "state")}
        info.add({"device": device, "firmware_revision": values["firmware_rev"], "model": values["model"],
                  "serial": values["serial"], "state": values["state"]}, 1.0)
    return [info]
