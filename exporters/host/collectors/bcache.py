"""``bcache``: bcache cache sets under /sys/fs/bcache/<uuid>: btree and cache state, per backing device dirty
data, writeback rate and hit/miss totals, per cache device I/O errors and bytes written.

Values are bcache's "human" numbers (``1.5M``: the fraction counts 1024ths in tenths, as procfs reads it).
``btree_read_average_duration_us`` is scaled by 1e-9 as node_exporter 1.5 does (it names it seconds).
"""

from __future__ import annotations

import glob
import os

from exporters.host.collectors import Families
from exporters.host.options import Options
from exporters.host.sources import Sources
from sotp.codec.exposition import MetricFamily

_UNITS = {"k": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40, "P": 1 << 50, "E": 1 << 60, "Z": 1 << 70,
          "Y": 1 << 80}
_TOP = [  # (file, metric, type, help)
    ("average_key_size", "average_key_size_sectors", "gauge", "Average data per key in the btree (sectors)."),
    ("btree_cache_size", "btree_cache_size_bytes", "gauge", "Amount of memory currently used by the btree cache."),
    ("cache_available_percent", "cache_available_percent", "gauge",
     "Percentage of cache device without dirty data, usable for writeback (may contain clean cached data)."),
    ("congested", "congested", "gauge", "Congestion."),
    ("root_usage_percent", "root_usage_percent", "gauge",
     "Percentage of the root btree node in use (tree depth increases if too high)."),
    ("tree_depth", "tree_depth", "gauge", "Depth of the btree."),
    ("internal/active_journal_entries", "active_journal_entries", "gauge",
     "Number of journal entries that are newer than the index."),
    ("internal/btree_nodes", "btree_nodes", "gauge", "Total nodes in the btree."),
    ("internal/btree_read_average_duration_us", "btree_read_average_duration_seconds", "gauge",
     "Average btree read duration."),
    ("internal/cache_read_races", "cache_read_races_total", "counter",
     "Counts instances where while data was being read from the cache, the bucket was reused and invalidated - "
     "i.e. where the pointer was stale after the read completed."),
]
_PERIOD = [
    ("bypassed", "bypassed_bytes_total", "Amount of IO (both reads and writes) that has bypassed the cache."),
    ("cache_hits", "cache_hits_total", "Hits counted per individual IO as bcache sees them."),
    ("cache_misses", "cache_misses_total", "Misses counted per individual IO as bcache sees them."),
    ("cache_bypass_hits", "cache_bypass_hits_total", "Hits for IO intended to skip the cache."),
    ("cache_bypass_misses", "cache_bypass_misses_total", "Misses for IO intended to skip the cache."),
    ("cache_miss_collisions", "cache_miss_collisions_total",
     "Instances where data insertion from cache miss raced with write (data already present)."),
    ("cache_readaheads", "cache_readaheads_total", "Count of times readahead occurred."),
]
_WRITEBACK = [  # writeback_rate_debug line -> (metric, help, signed)
    ("target", "dirty_target_bytes", "Current dirty data target threshold for this backing device in bytes."),
    ("rate", "writeback_rate", "Current writeback rate for this backing device in bytes."),
    ("proportional", "writeback_rate_proportional_term",
     "Current result of proportional controller, part of writeback rate"),
    ("integral", "writeback_rate_integral_term", "Current result of integral controller, part of writeback rate"),
    ("change", "writeback_change", "Last writeback rate change step for this backing device."),
]


def dehumanize(text: str) -> int:
    if not text:
        raise ValueError("zero-length reply")
    if ord(text[-1]) > 57:  # a unit letter
        mul = float(_UNITS.get(text[-1], 0))
        whole, _, frac = text[:-1].partition(".")
        mant = float(whole)
        if _ or "." in text[:-1]:
            mant += float(frac.split(".")[0]) / 10.24
        return int(mant * mul)
    return int(float(text))


def _signed(text: str) -> int:
    value = dehumanize(text.removeprefix("-"))
    return -value if text.startswith("-") else value


def _value(path: str) -> int:
    """0 for a file the kernel does not have; raises for one it cannot read or parse."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        return 0
    return dehumanize(data[:-1].decode("latin-1"))  # procfs drops the last byte (the newline)


def _writeback(path: str) -> dict[str, int]:
    out = dict.fromkeys(("rate", "target", "proportional", "integral", "change"), 0)
    with open(path) as fh:
        for line in fh.read().splitlines():
            key, sep, _ = line.partition(":")
            if not sep or key not in out:
                continue
            value = line.split()[-1].removesuffix("/sec")
            out[key] = _signed(value) if key in ("proportional", "integral", "change") else dehumanize(value)
    return out


def _priority(path: str) -> tuple[int, int]:
    unused = metadata = 0
    with open(path) as fh:
        for line in fh.read().splitlines():
            if line.startswith(("Unused:", "Metadata:")):
                value = line.split()[-1].removesuffix("%")
                if not value.isdigit():
                    raise ValueError(f"failed to parse {path}: {line!r}")
                if line.startswith("Unused:"):
                    unused = int(value)
                else:
                    metadata = int(value)
    return unused, metadata


def collect(src: Sources, opts: Options) -> list[MetricFamily]:
    out = Families("node_bcache_")
    sets = []
    for path in sorted(glob.glob(os.path.join(src.sys, "fs", "bcache", "*-*"))):
        top = {f: _value(os.path.join(path, f)) for f, *_ in _TOP}
        for f, *_ in _PERIOD:  # read (and so checked) by procfs although not published
            _value(os.path.join(path, "stats_total", f))
            _value(os.path.join(path, "stats_five_minute", f))
        bdevs = []
        for bdev in sorted(glob.glob(os.path.join(path, "bdev[0-9]*"))):
            dirty = _value(os.path.join(bdev, "dirty_data"))
            writeback = _writeback(os.path.join(bdev, "writeback_rate_debug"))
            for f, *_ in _PERIOD:
                _value(os.path.join(bdev, "stats_five_minute", f))
            totals = {f: _value(os.path.join(bdev, "stats_total", f)) for f, *_ in _PERIOD}
            bdevs.append((os.path.basename(bdev), dirty, writeback, totals))
        caches = []
        for cache in sorted(glob.glob(os.path.join(path, "cache[0-9]*"))):
            values = [_value(os.path.join(cache, f)) for f in ("io_errors", "metadata_written", "written")]
            priority = _priority(os.path.join(cache, "priority_stats")) if opts.bcache_priority_stats else None
            caches.append((os.path.basename(cache), values, priority))
        sets.append((os.path.basename(path), top, bdevs, caches))
    for uuid, top, bdevs, caches in sets:
        for f, name, typ, help_ in _TOP:
            value = float(top[f]) * 1e-9 if name == "btree_read_average_duration_seconds" else float(top[f])
            out.add(name, typ, help_, {"uuid": uuid}, value)
        for bdev, dirty, writeback, totals in bdevs:
            labels = {"backing_device": bdev, "uuid": uuid}
            out.add("dirty_data_bytes", "gauge", "Amount of dirty data for this backing device in the cache.", labels,
                    float(dirty))
            for key, name, help_ in _WRITEBACK:
                out.add(name, "gauge", help_, labels, float(writeback[key]))
            for f, name, help_ in _PERIOD:
                out.add(name, "counter", help_, labels, float(totals[f]))
        for cache, values, priority in caches:
            labels = {"cache_device": cache, "uuid": uuid}
            out.add("io_errors", "gauge", "Number of errors that have occurred, decayed by io_error_halflife.", labels,
                    float(values[0]))
            out.add("metadata_written_bytes_total", "counter",
                    "Sum of all non data writes (btree writes and all other metadata).", labels, float(values[1]))
            out.add("written_bytes_total", "counter", "Sum of all data that has been written to the cache.", labels,
                    float(values[2]))
            if priority is not None:
                out.add("priority_stats_unused_percent", "gauge",
                        "The percentage of the cache that doesn't contain any data.", labels, float(priority[0]))
                out.add("priority_stats_metadata_percent", "gauge", "Bcache's metadata overhead.", labels,
                        float(priority[1]))
    return list(out.fams.values())
