"""Where the host collectors read from: a proc root, a sys root and two system calls, all injectable.

Tests point ``proc``/``sys`` at a fixture tree (``tests/exporters/fixtures/host/<case>/``) and replace
``statvfs``/``uname``/``now`` with recorded values, as prometheus_client's ``ProcessCollector(proc=)``
does; nothing monkeypatches the OS.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from exporters.host.dbus import Connection


class FsStat(NamedTuple):
    """The ``statfs`` fields node_exporter uses (block counts are in units of ``bsize``)."""

    bsize: int
    blocks: int
    bfree: int
    bavail: int
    files: int
    ffree: int


class Uname(NamedTuple):
    sysname: str
    nodename: str
    release: str
    version: str
    machine: str
    domainname: str


class Timex(NamedTuple):
    """What ``adjtimex(2)`` reports, raw (node_exporter's timex collector scales it): ``state`` is the
    return value (``TIME_ERROR`` = 5 means unsynchronised), the rest are ``struct timex`` fields."""

    state: int
    offset: int
    freq: int
    maxerror: int
    esterror: int
    status: int
    constant: int
    tick: int
    ppsfreq: int
    jitter: int
    shift: int
    stabil: int
    jitcnt: int
    calcnt: int
    errcnt: int
    stbcnt: int
    tai: int


def _adjtimex() -> Timex:
    """Read the kernel clock discipline state (``modes`` 0: read only, no privilege needed).

    ctypes is imported here, not at module load: it costs ~0.5 MB, paid only when timex runs. Raises
    PermissionError when a seccomp filter refuses the call (node_exporter then reports no data).
    """
    import ctypes
    import ctypes.util

    long, cint = ctypes.c_long, ctypes.c_int

    class _Timex(ctypes.Structure):  # struct timex from <sys/timex.h>, padding included
        _fields_ = [("modes", ctypes.c_uint), ("offset", long), ("freq", long), ("maxerror", long),
                    ("esterror", long), ("status", cint), ("constant", long), ("precision", long),
                    ("tolerance", long), ("time_sec", long), ("time_usec", long), ("tick", long),
                    ("ppsfreq", long), ("jitter", long), ("shift", cint), ("stabil", long), ("jitcnt", long),
                    ("calcnt", long), ("errcnt", long), ("stbcnt", long), ("tai", cint), ("_pad", cint * 11)]

    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    tx = _Timex()
    state = libc.adjtimex(ctypes.byref(tx))
    if state == -1:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno), "adjtimex")
    return Timex(state, tx.offset, tx.freq, tx.maxerror, tx.esterror, tx.status, tx.constant, tx.tick,
                 tx.ppsfreq, tx.jitter, tx.shift, tx.stabil, tx.jitcnt, tx.calcnt, tx.errcnt, tx.stbcnt, tx.tai)


def _statvfs(path: str) -> FsStat:
    st = os.statvfs(path)
    # node_exporter multiplies by statfs's f_bsize; Python's f_bsize is that field.
    return FsStat(st.f_bsize, st.f_blocks, st.f_bfree, st.f_bavail, st.f_files, st.f_ffree)


def _uname() -> Uname:
    u = os.uname()
    try:
        domain = Path("/proc/sys/kernel/domainname").read_text().strip()
    except OSError:
        domain = ""
    return Uname(u.sysname, u.nodename, u.release, u.version, u.machine, domain)


@dataclass(frozen=True, slots=True)
class Sources:
    """The host being observed. ``rootfs`` prefixes mount points before ``statvfs`` and host files such as
    ``/etc/os-release`` (as node_exporter's ``--path.rootfs`` does when it runs in a container with the
    host's / mounted somewhere). ``page_size`` is this machine's (sockstat reports memory in pages)."""

    proc: Path = Path("/proc")
    sys: Path = Path("/sys")
    rootfs: str = ""
    udev: Path = Path("/run/udev/data")
    statvfs: Callable[[str], FsStat] = field(default=_statvfs)
    uname: Callable[[], Uname] = field(default=_uname)
    now: Callable[[], float] = field(default=time.time)
    adjtimex: Callable[[], Timex] = field(default=_adjtimex)
    page_size: int = field(default_factory=lambda: os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096)
    #: "procfs" (Linux: node_exporter's collectors on /proc and /sys) or "psutil" (any OS, fewer families)
    backend: str = "procfs"
    #: How the systemd collector reaches systemd; None: as node_exporter does (collectors/systemd.py)
    systemd_bus: Callable[[], Connection] | None = None

    def read(self, base: Path, *parts: str) -> str:
        return base.joinpath(*parts).read_text()

    def read_int(self, base: Path, *parts: str) -> int:
        """A file holding one decimal number (node_exporter's ``readUintFromFile``)."""
        return int(base.joinpath(*parts).read_text().strip())

    def rooted(self, path: str) -> Path:
        """An absolute host path under ``--path.rootfs`` (``/etc/os-release`` in a container's view)."""
        return Path(self.rootfs + path)
