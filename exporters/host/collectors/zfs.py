"""``zfs``: OpenZFS kstats from /proc/spl/kstat/zfs (ARC, DMU, ZIL... as ``node_zfs_<subsystem>_<name>``),
per-pool I/O, per-dataset objset counters and pool state. Untyped, as node_exporter exposes them; HELP is
the kstat's dotted name."""

from __future__ import annotations

import glob
import os

from exporters.host.collectors import Families, NoData
from exporters.host.options import Options
from exporters.host.sources import Sources
from sotp.codec.exposition import MetricFamily

KSTAT_UINT64 = "4"
_FILES = {"zfs_abd": "abdstats", "zfs_arc": "arcstats", "zfs_dbuf": "dbuf_stats", "zfs_dmu_tx": "dmu_tx",
          "zfs_dnode": "dnodestats", "zfs_fm": "fm", "zfs_vdev_cache": "vdev_cache_stats",
          "zfs_vdev_mirror": "vdev_mirror_stats", "zfs_xuio": "xuio_stats", "zfs_zfetch": "zfetchstats",
          "zfs_zil": "zil"}
_STATES = ("online", "degraded", "faulted", "offline", "removed", "unavail")


def _metric_name(key: str) -> str:
    return key.split(".")[-1].replace("-", "_")


def _uint(text: str, key: str) -> int:
    if not text.isdigit():
        raise ValueError(f"could not parse expected integer value for {key!r}")
    return int(text)


def _kstats(text: str, what: str) -> list[tuple[str, list[str]]]:
    """The ``name type data`` rows after the header; raises when there is no header."""
    rows = []
    started = False
    for line in text.splitlines():
        parts = line.split()
        if not started and parts == ["name", "type", "data"]:
            started = True
            continue
        if started and len(parts) >= 3:
            rows.append((parts[0], parts))
    if not started:
        raise ValueError(f"did not parse a single {what} metric")
    return rows


def collect(src: Sources, opts: Options) -> list[MetricFamily]:
    base = os.path.join(src.proc, "spl", "kstat", "zfs")
    if not os.path.exists(base):
        raise NoData("ZFS / ZFS statistics are not available")
    out = Families()
    for subsystem, filename in _FILES.items():
        try:
            with open(os.path.join(base, filename)) as fh:
                text = fh.read()
        except OSError:
            continue  # this kstat does not exist in this ZFS version
        for name, parts in _kstats(text, filename):
            if parts[1] == KSTAT_UINT64:
                key = f"kstat.zfs.misc.{filename}.{name}"
                out.add(f"node_{subsystem}_{_metric_name(key)}", "untyped", key, {}, float(_uint(parts[2], key)))
    for path in sorted(glob.glob(os.path.join(base, "*", "io"))):
        pool = os.path.basename(os.path.dirname(path))
        fields: list[str] = []
        with open(path) as fh:
            for line in fh.read().splitlines():
                parts = line.split()
                if not fields:
                    if len(parts) >= 12 and parts[0] == "nread":
                        fields = parts
                    continue
                for i, field in enumerate(fields):
                    key = f"kstat.zfs.misc.io.{field}"
                    out.add(f"node_zfs_zpool_{_metric_name(key)}", "untyped", key, {"zpool": pool},
                            float(_uint(parts[i], key)))
    for path in sorted(glob.glob(os.path.join(base, "*", "objset-*"))):
        pool, dataset = "", ""
        with open(path) as fh:
            rows = _kstats(fh.read(), os.path.basename(path))
        for name, parts in rows:
            if name == "dataset_name":
                pool, dataset = os.path.basename(os.path.dirname(path)), parts[2]
            elif parts[1] == KSTAT_UINT64:
                key = f"kstat.zfs.misc.objset.{name}"
                out.add(f"node_zfs_zpool_dataset_{_metric_name(key)}", "untyped", key,
                        {"dataset": dataset, "zpool": pool}, float(_uint(parts[2], key)))
    for path in sorted(glob.glob(os.path.join(base, "*", "state"))):
        with open(path) as fh:
            state = (fh.read().split("\n", 1)[0]).lower()
        pool = os.path.basename(os.path.dirname(path))
        for name in _STATES:
            out.add("node_zfs_zpool_state", "gauge", "kstat.zfs.misc.state", {"state": name, "zpool": pool},
                    1.0 if state == name else 0.0)
    return list(out.fams.values())
