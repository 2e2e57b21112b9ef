"""``arp``: ARP table entries per device from /proc/net/arp."""

from __future__ import annotations

from collections import Counter

from exporters.host.options import DeviceFilter, Options
from exporters.host.sources import Sources
from sotp.codec.exposition import MetricFamily


def collect(src: Sources, opts: Options) -> list[MetricFamily]:
    entries: Counter[str] = Counter()
    for line in src.read(src.proc, "net", "arp").splitlines():
        columns = line.split()
        if len(columns) < 6:
            raise ValueError(f"unexpected ARP table format: {line!r}")
        if columns[0] != "IP":  # the header line
            entries[columns[-1]] += 1
    fam = MetricFamily("node_arp_entries", "gauge", "ARP entries by device")
    devices = DeviceFilter(opts.arp_device_exclude, opts.arp_device_include)
    for device, n in entries.items():
        if not devices.ignored(device):
            fam.add({"device": device}, float(n))
    return [fam]
