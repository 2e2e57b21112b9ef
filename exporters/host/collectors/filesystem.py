"""``filesystem``: size, free, avail, inodes and read-only state of mounted filesystems.

Mounts come from ``<proc>/1/mounts`` (falling back to ``<proc>/mounts``), filtered with the defaults of
Debian's node_exporter 1.5; each remaining mount point is ``statvfs``-ed under ``rootfs``.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import NamedTuple

from exporters.host.options import Options
from exporters.host.sources import FsStat, Sources
from sotp.codec.exposition import MetricFamily

log = logging.getLogger("exporters.host")


class Mount(NamedTuple):
    device: str
    mountpoint: str
    fstype: str
    options: str


def mounts(src: Sources) -> list[Mount]:
    """Mount points from ``/proc/1/mounts`` (``/proc/mounts`` when hidepid hides pid 1). As node_exporter
    1.5, only ``\\040`` (space) and ``\\011`` (tab) are unescaped, and in the mount point only; with a
    rootfs the prefix is stripped so mount points read as the host sees them."""
    try:
        text = src.read(src.proc, "1", "mounts")
    except FileNotFoundError:
        text = src.read(src.proc, "mounts")
    out = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 4:
            raise ValueError(f"malformed mount point information: {line!r}")
        mountpoint = parts[1].replace("\\040", " ").replace("\\011", "\t")
        if src.rootfs:
            mountpoint = mountpoint.removeprefix(src.rootfs) or "/"
        out.append(Mount(parts[0], mountpoint, parts[2], parts[3]))
    return out

# Mount points whose statfs has not returned yet (a hung NFS server): skipped until it does, as
# node_exporter's stuckMounts. Guarded by _lock; shared by every Sources, keyed by path.
_stuck: set[str] = set()
_lock = threading.Lock()


def bounded_statvfs(src: Sources, path: str, timeout: float) -> FsStat | None:
    """``statvfs`` in a helper thread, so one dead network mount cannot stall the whole collection.

    Returns None while the mount point is unresponsive (timed out now or in an earlier collection and
    not back yet); raises OSError as ``statvfs`` does.
    """
    with _lock:
        if path in _stuck:
            return None
    result: list[FsStat] = []
    error: list[OSError] = []
    done = threading.Event()

    def work() -> None:
        try:
            result.append(src.statvfs(path))
        except OSError as err:
            error.append(err)
        finally:
            with _lock:  # discard and signal under the lock: the timeout path must see both or neither
                _stuck.discard(path)
                done.set()

    threading.Thread(target=work, name=f"statfs {path}", daemon=True).start()
    if not done.wait(timeout):
        with _lock:
            if not done.is_set():
                _stuck.add(path)
                log.warning("statfs(%s) did not return within %.1fs; reporting device_error until it does",
                            path, timeout)
                return None
    if error:
        raise error[0]
    return result[0]


def collect(src: Sources, opts: Options) -> list[MetricFamily]:
    specs = [
        ("size_bytes", "Filesystem size in bytes."),
        ("free_bytes", "Filesystem free space in bytes."),
        ("avail_bytes", "Filesystem space available to non-root users in bytes."),
        ("files", "Filesystem total file nodes."),
        ("files_free", "Filesystem total free file nodes."),
        ("readonly", "Filesystem read-only status."),
        ("device_error", "Whether an error occurred while getting statistics for the given device."),
    ]
    fams = {k: MetricFamily(f"node_filesystem_{k}", "gauge", h) for k, h in specs}
    exclude_mounts = re.compile(opts.filesystem_mount_points_exclude)
    exclude_types = re.compile(opts.filesystem_fs_types_exclude)
    seen: set[tuple[str, str, str]] = set()
    for m in mounts(src):
        if exclude_mounts.search(m.mountpoint) or exclude_types.search(m.fstype):
            continue
        key = (m.device, m.mountpoint, m.fstype)
        if key in seen:  # the same mount listed twice (bind mounts, namespaces) is reported once
            continue
        seen.add(key)
        labels = {"device": m.device, "fstype": m.fstype, "mountpoint": m.mountpoint}
        try:
            st = bounded_statvfs(src, src.rootfs + m.mountpoint, opts.filesystem_mount_timeout)
        except OSError:
            st = None
        if st is None:  # node_exporter 1.5 reports only device_error for such a mount
            fams["device_error"].add(labels, 1.0)
            continue
        bsize = float(st.bsize)  # float products, as Go computes them
        fams["size_bytes"].add(labels, float(st.blocks) * bsize)
        fams["free_bytes"].add(labels, float(st.bfree) * bsize)
        fams["avail_bytes"].add(labels, float(st.bavail) * bsize)
        fams["files"].add(labels, float(st.files))
        fams["files_free"].add(labels, float(st.ffree))
        fams["readonly"].add(labels, 1.0 if "ro" in m.options.split(",") else 0.0)
        fams["device_error"].add(labels, 0.0)
    return list(fams.values())
