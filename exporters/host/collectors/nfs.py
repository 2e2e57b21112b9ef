"""``nfs``: NFS client statistics from /proc/net/rpc/nfs: packets, connections, RPCs and every procedure of
NFSv2, v3 and v4 (``method`` is procfs's field name, as node_exporter labels it)."""

from __future__ import annotations

from exporters.host import nfs_stats
from exporters.host.collectors import NoData
from exporters.host.options import Options
from exporters.host.sources import Sources
from sotp.codec.exposition import MetricFamily


def _one(name: str, help_: str, value: int) -> MetricFamily:
    fam = MetricFamily(name, "counter", help_)
    fam.add({}, float(value))
    return fam


def collect(src: Sources, opts: Options) -> list[MetricFamily]:
    try:
        stats = nfs_stats.parse(src.read(src.proc, "net", "rpc", "nfs"), server=False)
    except FileNotFoundError as err:
        raise NoData("no /proc/net/rpc/nfs (no NFS client)") from err
    net = nfs_stats.values(stats, "net", 4)
    rpc = nfs_stats.values(stats, "rpc", 3)
    packets = MetricFamily("node_nfs_packets_total", "counter",
                           "Total NFSd network packets (sent+received) by protocol type.")
    packets.add({"protocol": "udp"}, float(net[1]))
    packets.add({"protocol": "tcp"}, float(net[2]))
    requests = MetricFamily("node_nfs_requests_total", "counter", "Number of NFS procedures invoked.")
    for proto, kind, names in (("2", "proc2", nfs_stats.V2), ("3", "proc3", nfs_stats.V3),
                               ("4", "proc4", nfs_stats.CLIENT_V4)):
        counts = nfs_stats.procedures(stats, kind)
        for method in names:
            requests.add({"method": method, "proto": proto}, float(counts.get(method, 0)))
    return [
        packets,
        _one("node_nfs_connections_total", "Total number of NFSd TCP connections.", net[3]),
        _one("node_nfs_rpcs_total", "Total number of RPCs performed.", rpc[0]),
        _one("node_nfs_rpc_retransmissions_total", "Number of RPC transmissions performed.", rpc[1]),
        _one("node_nfs_rpc_authentication_refreshes_total", "Number of RPC authentication refreshes performed.",
             rpc[2]),
        requests,
    ]
