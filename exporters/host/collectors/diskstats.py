"""``diskstats``: block device I/O counters from /proc/diskstats (partitions and loop devices excluded
by node_exporter's default ``device-exclude``), plus ``node_disk_info`` and, where udev knows them, the
filesystem, device-mapper and ATA properties of each device."""

from __future__ import annotations

from exporters.host.options import DeviceFilter, Options
from exporters.host.sources import Sources
from sotp.codec.exposition import MetricFamily

MS = 0.001
SECTOR = 512.0  # /proc/diskstats counts 512-byte sectors whatever the device's block size

# (field index after the device name, suffix, type, help, scale); kernel docs: iostats.rst
_FIELDS = [
    (0, "reads_completed_total", "counter", "The total number of reads completed successfully.", 1.0),
    (1, "reads_merged_total", "counter", "The total number of reads merged.", 1.0),
    (2, "read_bytes_total", "counter", "The total number of bytes read successfully.", SECTOR),
    (3, "read_time_seconds_total", "counter", "The total number of seconds spent by all reads.", MS),
    (4, "writes_completed_total", "counter", "The total number of writes completed successfully.", 1.0),
    (5, "writes_merged_total", "counter", "The number of writes merged.", 1.0),
    (6, "written_bytes_total", "counter", "The total number of bytes written successfully.", SECTOR),
    (7, "write_time_seconds_total", "counter", "This is the total number of seconds spent by all writes.", MS),
    (8, "io_now", "gauge", "The number of I/Os currently in progress.", 1.0),
    (9, "io_time_seconds_total", "counter", "Total seconds spent doing I/Os.", MS),
    (10, "io_time_weighted_seconds_total", "counter", "The weighted # of seconds spent doing I/Os.", MS),
    (11, "discards_completed_total", "counter", "The total number of discards completed successfully.", 1.0),
    (12, "discards_merged_total", "counter", "The total number of discards merged.", 1.0),
    (13, "discarded_sectors_total", "counter", "The total number of sectors discarded successfully.", 1.0),
    (14, "discard_time_seconds_total", "counter", "This is the total number of seconds spent by all discards.", MS),
    (15, "flush_requests_total", "counter", "The total number of flush requests completed successfully", 1.0),
    (16, "flush_requests_time_seconds_total", "counter",
     "This is the total number of seconds spent by all flush requests.", MS),
]

_UDEV_KEYS = {"path": "ID_PATH", "wwn": "ID_WWN", "model": "ID_MODEL", "serial": "ID_SERIAL_SHORT",
              "revision": "ID_REVISION"}


def _udev(src: Sources, major: str, minor: str) -> dict[str, str]:
    """udev's ``E:KEY=value`` lines for a block device; empty when /run/udev is not there (containers)."""
    path = src.udev / f"b{major}:{minor}"
    props: dict[str, str] = {}
    try:
        for line in path.read_text().splitlines():
            if line.startswith("E:"):
                k, _, v = line[2:].partition("=")
                props[k] = v
    except OSError:
        pass
    return props


_ATA = [  # udev property -> (metric suffix, help)
    ("ID_ATA_ROTATION_RATE_RPM", "ata_rotation_rate_rpm", "ATA disk rotation rate in RPMs (0 for SSDs)."),
    ("ID_ATA_WRITE_CACHE", "ata_write_cache", "ATA disk has a write cache."),
    ("ID_ATA_WRITE_CACHE_ENABLED", "ata_write_cache_enabled", "ATA disk has its write cache enabled."),
]


def collect(src: Sources, opts: Options) -> list[MetricFamily]:
    fams = [(i, MetricFamily(f"node_disk_{suffix}", typ, help_), scale) for i, suffix, typ, help_, scale in _FIELDS]
    info = MetricFamily("node_disk_info", "gauge", "Info of /sys/block/<block_device>.")
    fs_info = MetricFamily("node_disk_filesystem_info", "gauge", "Info about disk filesystem.")
    dm_info = MetricFamily("node_disk_device_mapper_info", "gauge", "Info about disk device mapper.")
    ata = {key: MetricFamily(f"node_disk_{suffix}", "gauge", help_) for key, suffix, help_ in _ATA}
    devices = DeviceFilter(opts.diskstats_device_exclude, opts.diskstats_device_include)
    for line in src.read(src.proc, "diskstats").splitlines():
        parts = line.split()
        if len(parts) < 14:
            continue
        major, minor, device, stats = parts[0], parts[1], parts[2], parts[3:]
        if devices.ignored(device):
            continue
        labels = {"device": device}
        udev = _udev(src, major, minor)
        info.add(
            {"device": device, "major": major, "minor": minor,
             **{k: udev.get(key, "") for k, key in sorted(_UDEV_KEYS.items())}},
            1.0,
        )
        for i, fam, scale in fams:
            if i < len(stats):  # older kernels lack the discard (4.18) and flush (5.5) fields
                # float(ms) * 0.001, as node_exporter computes it (so 9653880 ms reads 9653.880000000001 there too)
                fam.add(labels, float(stats[i]) * scale)
        if udev.get("ID_FS_TYPE"):
            fs_info.add({"device": device, "type": udev["ID_FS_TYPE"], "usage": udev.get("ID_FS_USAGE", ""),
                         "uuid": udev.get("ID_FS_UUID", ""), "version": udev.get("ID_FS_VERSION", "")}, 1.0)
        if udev.get("DM_NAME"):
            dm_info.add({"device": device, "lv_layer": udev.get("DM_LV_LAYER", ""),
                         "lv_name": udev.get("DM_LV_NAME", ""), "name": udev["DM_NAME"],
                         "uuid": udev.get("DM_UUID", ""), "vg_name": udev.get("DM_VG_NAME", "")}, 1.0)
        if udev.get("ID_ATA"):
            for key, fam in ata.items():
                if key in udev:
                    try:
                        fam.add(labels, float(udev[key]))
                    except ValueError:
                        continue  # node_exporter logs and skips an unparsable value
    return [info, fs_info, dm_info, *ata.values(), *(fam for _, fam, _ in fams)]
