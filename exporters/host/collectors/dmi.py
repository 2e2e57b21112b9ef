"""``dmi``: ``node_dmi_info`` from /sys/class/dmi/id (firmware, board, chassis and product strings).

node_exporter reads these once at start-up; they do not change while a machine runs, and reading them every
scrape costs ~20 small reads. Files only root may read (serials, UUID) are left out, as there.
"""

from __future__ import annotations

import os

from exporters.host.collectors import NoData
from exporters.host.options import Options
from exporters.host.sources import Sources
from exporters.host.sysfs import read_attr
from sotp.codec.exposition import MetricFamily

# file under /sys/class/dmi/id -> label
_LABELS = {"bios_date": "bios_date", "bios_release": "bios_release", "bios_vendor": "bios_vendor",
           "bios_version": "bios_version", "board_asset_tag": "board_asset_tag", "board_name": "board_name",
           "board_serial": "board_serial", "board_vendor": "board_vendor", "board_version": "board_version",
           "chassis_asset_tag": "chassis_asset_tag", "chassis_serial": "chassis_serial",
           "chassis_vendor": "chassis_vendor", "chassis_version": "chassis_version",
           "product_family": "product_family", "product_name": "product_name", "product_serial": "product_serial",
           "product_sku": "product_sku", "product_uuid": "product_uuid", "product_version": "product_version",
           "sys_vendor": "system_vendor"}
HELP = ("A metric with a constant '1' value labeled by bios_date, bios_release, bios_vendor, bios_version, "
        "board_asset_tag, board_name, board_serial, board_vendor, board_version, chassis_asset_tag, "
        "chassis_serial, chassis_vendor, chassis_version, product_family, product_name, product_serial, "
        "product_sku, product_uuid, product_version, system_vendor if provided by DMI.")


def collect(src: Sources, opts: Options) -> list[MetricFamily]:
    base = os.path.join(src.sys, "class", "dmi", "id")
    labels: dict[str, str] = {}
    try:
        entries = sorted(os.scandir(base), key=lambda e: e.name)
    except FileNotFoundError as err:
        raise NoData("the platform has no DMI information") from err
    for entry in entries:
        if entry.name not in _LABELS or not entry.is_file(follow_symlinks=False):
            continue
        try:
            labels[_LABELS[entry.name]] = read_attr(entry.path)
        except PermissionError:
            continue  # only root may read the serials and product_uuid
    if not labels:
        raise NoData("no readable DMI attribute")
    fam = MetricFamily("node_dmi_info", "gauge", HELP)
    fam.add(dict(sorted(labels.items())), 1.0)
    return [fam]
