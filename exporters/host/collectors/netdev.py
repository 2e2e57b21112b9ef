"""``netdev``: per-interface traffic counters from /proc/net/dev (``lo`` excluded, as Debian's default).

node_exporter 1.5 reads them over netlink by default; the kernel prints the same sums in /proc/net/dev
(``drop`` includes missed errors, ``frame`` the length/over/CRC errors, ``carrier`` the aborted/window/
heartbeat errors), so the values are identical. Netlink adds ``receive_nohandler``, which SOTP reads from
``/sys/class/net/<device>/statistics/rx_nohandler`` (0 where the kernel has no such counter, as netlink's
zeroed field reads).
"""

from __future__ import annotations

import os

from exporters.host.options import DeviceFilter, Options
from exporters.host.sources import Sources
from sotp.codec.exposition import MetricFamily

_RECEIVE = ("bytes", "packets", "errs", "drop", "fifo", "frame", "compressed", "multicast")
_TRANSMIT = ("bytes", "packets", "errs", "drop", "fifo", "colls", "carrier", "compressed")


def _nohandler(src: Sources, device: str) -> float:
    try:
        with open(os.path.join(src.sys, "class", "net", device, "statistics", "rx_nohandler")) as fh:
            return float(int(fh.read().strip()))
    except (OSError, ValueError):
        return 0.0


def collect(src: Sources, opts: Options) -> list[MetricFamily]:
    names = [f"receive_{f}" for f in _RECEIVE] + [f"transmit_{f}" for f in _TRANSMIT]
    if opts.netdev_netlink:
        names.append("receive_nohandler")
    fams = {
        n: MetricFamily(f"node_network_{n}_total", "counter", f"Network device statistic {n}.") for n in names
    }
    devices = DeviceFilter(opts.netdev_device_exclude, opts.netdev_device_include)
    for line in src.read(src.proc, "net", "dev").splitlines()[2:]:  # two header lines
        device, sep, rest = line.partition(":")
        device = device.strip()
        if not sep or devices.ignored(device):
            continue
        labels = {"device": device}
        for n, value in zip(names, rest.split(), strict=False):
            fams[n].add(labels, float(value))
        if opts.netdev_netlink:
            fams["receive_nohandler"].add(labels, _nohandler(src, device))
    return list(fams.values())
