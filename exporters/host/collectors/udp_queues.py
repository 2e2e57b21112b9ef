"""``udp_queues``: bytes queued in the kernel for UDP sockets, summed over /proc/net/udp and udp6."""

from __future__ import annotations

from exporters.host.collectors import NoData
from exporters.host.options import Options
from exporters.host.sources import Sources
from sotp.codec.exposition import MetricFamily


def _summary(text: str) -> tuple[int, int]:
    tx = rx = 0
    for line in text.splitlines()[1:]:  # a header line first
        fields = line.split()
        if len(fields) < 10:
            raise ValueError(f"cannot parse net socket line as it has less then 10 columns {line.strip()!r}")
        tx_queue, sep, rx_queue = fields[4].partition(":")
        if not sep:
            raise ValueError(f"cannot parse tx/rx queues in socket line as it has a missing colon {fields[4]!r}")
        tx += int(tx_queue, 16)
        rx += int(rx_queue, 16)
    return tx, rx


def collect(src: Sources, opts: Options) -> list[MetricFamily]:
    fam = MetricFamily("node_udp_queues", "gauge",
                       "Number of allocated memory in the kernel for UDP datagrams in bytes.")
    missing = 0
    for ip, name in (("v4", "udp"), ("v6", "udp6")):
        try:
            tx, rx = _summary(src.read(src.proc, "net", name))
        except FileNotFoundError:
            missing += 1
            continue
        fam.add({"ip": ip, "queue": "tx"}, float(tx))
        fam.add({"ip": ip, "queue": "rx"}, float(rx))
    if missing == 2:
        raise NoData("neither /proc/net/udp nor /proc/net/udp6 exists")
    return [fam]
