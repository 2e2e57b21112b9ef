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
from typing import NamedTuple


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
    """The host being observed. ``rootfs`` prefixes mount points before ``statvfs`` (as node_exporter's
    ``--path.rootfs`` does when it runs in a container with the host's / mounted somewhere)."""

    proc: Path = Path("/proc")
    sys: Path = Path("/sys")
    rootfs: str = ""
    udev: Path = Path("/run/udev/data")
    statfs_timeout: float = 5.0  # node_exporter's --collector.filesystem.mount-timeout
    statvfs: Callable[[str], FsStat] = field(default=_statvfs)
    uname: Callable[[], Uname] = field(default=_uname)
    now: Callable[[], float] = field(default=time.time)

    def read(self, base: Path, *parts: str) -> str:
        return base.joinpath(*parts).read_text()
