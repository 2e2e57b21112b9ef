"""``netdev``: per-interface traffic counters from /proc/net/dev (``lo`` excluded, as Debian's default)."""

from __future__ import annotations

import re

from exporters.host.sources import Sources
from sotp.codec.exposition import MetricFamily

DEVICE_EXCLUDE = re.compile(r"^lo$")
_RECEIVE = ("bytes", "packets", "errs", "drop", "fifo", "frame", "compressed", "multicast")
_TRANSMIT = ("bytes", "packets", "errs", "drop", "fifo", "colls", "carrier", "compressed")


def collect(src: Sources) -> list[MetricFamily]:
    names = [f"receive_{f}" for f in _RECEIVE] + [f"transmit_{f}" for f in _TRANSMIT]
    fams = {
        n: MetricFamily(f"node_network_{n}_total", "counter", f"Network device statistic {n}.") for n in names
    }
    for line in src.read(src.proc, "net", "dev").splitlines()[2:]:  # two header lines
        device, sep, rest = line.partition(":")
        device = device.strip()
        if not sep or DEVICE_EXCLUDE.search(device):
            continue
        for n, value in zip(names, rest.split(), strict=False):
            fams[n].add({"device": device}, float(value))
    return sorted(fams.values(), key=lambda f: f.name)
