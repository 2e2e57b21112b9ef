"""``edac``: correctable and uncorrectable memory errors per memory controller and chip-select row
(/sys/devices/system/edac/mc)."""

from __future__ import annotations

import glob
import os

from exporters.host.options import Options
from exporters.host.sources import Sources
from exporters.host.sysfs import read_uint
from sotp.codec.exposition import MetricFamily


def collect(src: Sources, opts: Options) -> list[MetricFamily]:
    ce = MetricFamily("node_edac_correctable_errors_total", "counter", "Total correctable memory errors.")
    ue = MetricFamily("node_edac_uncorrectable_errors_total", "counter", "Total uncorrectable memory errors.")
    row_ce = MetricFamily("node_edac_csrow_correctable_errors_total", "counter",
                          "Total correctable memory errors for this csrow.")
    row_ue = MetricFamily("node_edac_csrow_uncorrectable_errors_total", "counter",
                          "Total uncorrectable memory errors for this csrow.")
    for controller in sorted(glob.glob(os.path.join(src.sys, "devices", "system", "edac", "mc", "mc[0-9]*"))):
        mc = os.path.basename(controller).removeprefix("mc")
        unknown = {"controller": mc, "csrow": "unknown"}  # errors the driver could not place on a row
        ce.add({"controller": mc}, float(read_uint(os.path.join(controller, "ce_count"))))
        row_ce.add(unknown, float(read_uint(os.path.join(controller, "ce_noinfo_count"))))
        ue.add({"controller": mc}, float(read_uint(os.path.join(controller, "ue_count"))))
        row_ue.add(unknown, float(read_uint(os.path.join(controller, "ue_noinfo_count"))))
        for csrow in sorted(glob.glob(os.path.join(controller, "csrow[0-9]*"))):
            row = os.path.basename(csrow).removeprefix("csrow")
            row_ce.add({"controller": mc, "csrow": row}, float(read_uint(os.path.join(csrow, "ce_count"))))
            row_ue.add({"controller": mc, "csrow": row}, float(read_uint(os.path.join(csrow, "ue_count"))))
    return [ce, ue, row_ce, row_ue]
