"""``btrfs``: Btrfs filesystems under /sys/fs/btrfs/<uuid>: label, global reserve, space reserved, used and
allocated per block group type and layout, and device sizes.

node_exporter adds per-device error counters and unused bytes read with btrfs ioctls on the mounted
filesystem; SOTP publishes what node_exporter publishes when those ioctls are unavailable (device sizes
from sysfs, labelled by device only). See docs/agent.md.
"""

from __future__ import annotations

import glob
import os

from exporters.host.options import Options
from exporters.host.sources import Sources
from exporters.host.sysfs import read_attr
from sotp.codec.exposition import MetricFamily

SECTOR = 512


class _Reader:
    """procfs's btrfs reader: missing files read as empty/0, other read errors are remembered."""

    def __init__(self, path: str, devices: int = 0) -> None:
        self.path = path
        self.devices = devices
        self.err: OSError | None = None

    def text(self, name: str) -> str:
        try:
            return read_attr(os.path.join(self.path, name))
        except FileNotFoundError:
            return ""
        except OSError as err:
            self.err = err
            return ""

    def value(self, name: str) -> int:
        text = self.text(name)
        return int(text) if text.isdigit() else 0

    def listing(self, name: str) -> list[str]:
        try:
            return sorted(os.listdir(os.path.join(self.path, name)))
        except OSError as err:
            self.err = err
            return []

    def ratio(self, layout: str) -> float:
        if layout in ("single", "raid0"):
            return 1.0
        if layout in ("dup", "raid1", "raid10"):
            return 2.0
        if layout == "raid5":
            return self.devices / (self.devices - 1.0)
        if layout == "raid6":
            return self.devices / (self.devices - 2.0)
        return 0.0


def _allocation(parent: _Reader, kind: str) -> tuple[int, dict[str, tuple[int, int, float]], OSError | None]:
    sub = _Reader(os.path.join(parent.path, "allocation", kind), parent.devices)
    for f in ("bytes_may_use", "bytes_pinned", "bytes_readonly"):
        sub.value(f)
    reserved = sub.value("bytes_reserved")
    for f in ("bytes_used", "disk_used", "disk_total", "flags", "total_bytes", "total_bytes_pinned"):
        sub.value(f)
    layouts: dict[str, tuple[int, int, float]] = {}
    try:
        entries = sorted(os.scandir(sub.path), key=lambda e: e.name)
    except OSError as err:
        sub.err = err
        entries = []
    for entry in entries:
        if entry.is_dir():
            layouts[entry.name] = (sub.value(f"{entry.name}/total_bytes"), sub.value(f"{entry.name}/used_bytes"),
                                   sub.ratio(entry.name))
    return reserved, layouts, sub.err


def collect(src: Sources, opts: Options) -> list[MetricFamily]:
    filesystems = []
    for path in sorted(glob.glob(os.path.join(src.sys, "fs", "btrfs", "*-*"))):
        r = _Reader(path)
        devices = {n: SECTOR * r.value(f"devices/{n}/size") for n in r.listing("devices")}
        r.devices = len(devices)
        label, uuid = r.text("label"), r.text("metadata_uuid") or os.path.basename(path)
        r.listing("features")
        for f in ("clone_alignment", "nodesize", "quota_override", "sectorsize", "allocation/global_rsv_reserved"):
            r.value(f)
        rsv = r.value("allocation/global_rsv_size")
        allocation = {}
        for kind in ("data", "metadata", "system"):
            reserved, layouts, err = _allocation(r, kind)
            allocation[kind] = (reserved, layouts)
            r.err = err  # procfs keeps the error of the last allocation read only
        if r.err is not None:
            raise r.err
        filesystems.append((uuid, label, rsv, allocation, devices))
    fams = {
        "info": MetricFamily("node_btrfs_info", "gauge", "Filesystem information"),
        "rsv": MetricFamily("node_btrfs_global_rsv_size_bytes", "gauge", "Size of global reserve."),
        "reserved": MetricFamily("node_btrfs_reserved_bytes", "gauge", "Amount of space reserved for a data type"),
        "used": MetricFamily("node_btrfs_used_bytes", "gauge", "Amount of used space by a layout/data type"),
        "size": MetricFamily("node_btrfs_size_bytes", "gauge", "Amount of space allocated for a layout/data type"),
        "ratio": MetricFamily("node_btrfs_allocation_ratio", "gauge", "Data allocation ratio for a layout/data type"),
        "device": MetricFamily("node_btrfs_device_size_bytes", "gauge",
                               "Size of a device that is part of the filesystem."),
    }
    for uuid, label, rsv, allocation, devices in filesystems:
        fams["info"].add({"label": label, "uuid": uuid}, 1.0)
        fams["rsv"].add({"uuid": uuid}, float(rsv))
        for kind, (reserved, layouts) in allocation.items():
            fams["reserved"].add({"block_group_type": kind, "uuid": uuid}, float(reserved))
            for mode, (total, used, ratio) in layouts.items():
                labels = {"block_group_type": kind, "mode": mode, "uuid": uuid}
                fams["used"].add(labels, float(used))
                fams["size"].add(labels, float(total))
                fams["ratio"].add(labels, ratio)
        for device, size in devices.items():
            fams["device"].add({"device": device, "uuid": uuid}, float(size))
    return list(fams.values())
