"""``tapestats``: SCSI tape drive statistics under /sys/class/scsi_tape/st*/stats (times in nanoseconds)."""

from __future__ import annotations

import os
import re

from exporters.host.collectors import NoData
from exporters.host.options import Options
from exporters.host.sources import Sources
from exporters.host.sysfs import go_uint, read_attr
from sotp.codec.exposition import MetricFamily

_DEVICE = re.compile(r"^st[0-9]+$")
_ROWS = [  # stats file -> (metric suffix, type, help, scale)
    ("in_flight", "io_now", "gauge", "The number of I/Os currently outstanding to this device.", 1.0),
    ("io_ns", "io_time_seconds_total", "counter",
     "The amount of time spent waiting for all I/O to complete (including read and write). This includes tape "
     "movement commands such as seeking between file or set marks and implicit tape movement such as when rewind "
     "on close tape devices are used.", 0.000000001),
    ("other_cnt", "io_others_total", "counter",
     "The number of I/Os issued to the tape drive other than read or write commands. The time taken to complete "
     "these commands uses the following calculation io_time_seconds_total-read_time_seconds_total-"
     "write_time_seconds_total", 1.0),
    ("read_byte_cnt", "read_bytes_total", "counter", "The number of bytes read from the tape drive.", 1.0),
    ("read_cnt", "reads_completed_total", "counter", "The number of read requests issued to the tape drive.", 1.0),
    ("read_ns", "read_time_seconds_total", "counter", "The amount of time spent waiting for read requests to complete.",
     0.000000001),
    ("resid_cnt", "residual_total", "counter",
     "The number of times during a read or write we found the residual amount to be non-zero. This should mean "
     "that a program is issuing a read larger thean the block size on tape. For write not all data made it to "
     "tape.", 1.0),
    ("write_byte_cnt", "written_bytes_total", "counter", "The number of bytes written to the tape drive.", 1.0),
    ("write_cnt", "writes_completed_total", "counter", "The number of write requests issued to the tape drive.", 1.0),
    ("write_ns", "write_time_seconds_total", "counter",
     "The amount of time spent waiting for write requests to complete.", 0.000000001),
]


def collect(src: Sources, opts: Options) -> list[MetricFamily]:
    base = os.path.join(src.sys, "class", "scsi_tape")
    try:
        names = sorted(n for n in os.listdir(base) if _DEVICE.match(n))
    except FileNotFoundError as err:
        raise NoData("no SCSI tape drives") from err
    tapes = {}
    for name in names:
        stats = os.path.join(base, name, "stats")
        values = dict.fromkeys((f for f, *_ in _ROWS), 0)
        for entry in os.listdir(stats):
            value = read_attr(os.path.join(stats, entry))
            if entry in values:
                values[entry] = go_uint(value)
        tapes[name] = values
    ignored = re.compile(opts.tapestats_ignored_devices)
    fams = [(f, MetricFamily(f"node_tape_{suffix}", typ, help_), scale) for f, suffix, typ, help_, scale in _ROWS]
    for name, values in tapes.items():
        if ignored.search(name):
            continue
        for f, fam, scale in fams:
            fam.add({"device": name}, float(values[f]) * scale if scale != 1.0 else float(values[f]))
    return [fam for _, fam, _ in fams]
