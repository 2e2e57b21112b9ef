"""``mdadm``: Linux software RAID arrays from /proc/mdstat: state, disks (active, failed, spare, required)
and blocks (total, synced during a resync/recovery/check), parsed as procfs 0.8 does."""

from __future__ import annotations

import re

from exporters.host.collectors import NoData
from exporters.host.options import Options
from exporters.host.sources import Sources
from exporters.host.sysfs import go_float
from sotp.codec.exposition import MetricFamily

_STATUS = re.compile(r"(\d+) blocks .*\[(\d+)/(\d+)\] \[([U_]+)\]")
_BLOCKS = re.compile(r"\((\d+)/\d+\)")
_PCT = re.compile(r"= (.+)%")
_FINISH = re.compile(r"finish=(.+)min")
_SPEED = re.compile(r"speed=(.+)[A-Z]")
_STATES = (("active", "active"), ("inactive", "inactive"), ("recovering", "recovering"), ("resync", "resyncing"),
           ("check", "checking"))


def _status(device_line: str, status_line: str) -> tuple[int, int, int]:
    """(active, total, size in blocks)."""
    fields = status_line.split()
    if not fields:
        raise ValueError(f"unexpected mdstat status line {status_line!r}")
    size = int(fields[0])
    if "raid0" in device_line or "linear" in device_line:
        total = device_line.count("[")
        return total, total, size
    if "inactive" in device_line:
        return 0, 0, size
    m = _STATUS.search(status_line)
    if m is None:
        raise ValueError(f"couldn't find all the substring matches: {status_line}")
    return int(m.group(3)), int(m.group(2)), size


def _recovery(line: str) -> int:
    """Blocks synced so far; the other fields must parse too, as procfs requires."""
    m = _BLOCKS.search(line)
    if m is None:
        raise ValueError(f"unexpected mdstat recovery line: {line}")
    for pattern in (_PCT, _FINISH, _SPEED):
        found = pattern.search(line)
        if found is None:
            raise ValueError(f"unexpected mdstat recovery line: {line}")
        go_float(found.group(1).strip() if pattern is _PCT else found.group(1))
    return int(m.group(1))


def parse(text: str) -> list[tuple[str, str, int, int, int, int, int, int]]:
    """(name, state, active, total, failed, spare, blocks, synced) per array."""
    lines = text.split("\n")
    out = []
    for i, line in enumerate(lines):
        if not line.strip() or line[0] == " " or line.startswith(("Personalities", "unused")):
            continue
        fields = line.split()
        if len(fields) < 3:
            raise ValueError(f"not enough fields in mdline (expected at least 3): {line}")
        name, state = fields[0], fields[2]
        if len(lines) <= i + 3:
            raise ValueError(f"error parsing {name!r}: too few lines for md device")
        active, total, size = _status(lines[i], lines[i + 1])
        sync = lines[i + 3] if "bitmap" in lines[i + 2] else lines[i + 2]
        synced = size
        if "recovery" in sync or "resync" in sync or "check" in sync:
            state = "recovering" if "recovery" in sync else "checking" if "check" in sync else "resyncing"
            synced = 0 if "PENDING" in sync or "DELAYED" in sync else _recovery(sync)
        out.append((name, state, active, total, line.count("(F)"), line.count("(S)"), size, synced))
    return out


def collect(src: Sources, opts: Options) -> list[MetricFamily]:
    try:
        text = src.read(src.proc, "mdstat")
    except FileNotFoundError as err:
        raise NoData("no /proc/mdstat (md driver not loaded)") from err
    required = MetricFamily("node_md_disks_required", "gauge", "Total number of disks of device.")
    disks = MetricFamily("node_md_disks", "gauge", "Number of active/failed/spare disks of device.")
    state_fam = MetricFamily("node_md_state", "gauge", "Indicates the state of md-device.")
    blocks = MetricFamily("node_md_blocks", "gauge", "Total number of blocks on device.")
    synced_fam = MetricFamily("node_md_blocks_synced", "gauge", "Number of blocks synced on device.")
    for name, state, active, total, failed, spare, size, synced in parse(text):
        required.add({"device": name}, float(total))
        for label, value in (("active", active), ("failed", failed), ("spare", spare)):
            disks.add({"device": name, "state": label}, float(value))
        for label, activity in _STATES:
            state_fam.add({"device": name, "state": label}, 1.0 if state == activity else 0.0)
        blocks.add({"device": name}, float(size))
        synced_fam.add({"device": name}, float(synced))
    return [required, disks, state_fam, blocks, synced_fam]
