"""``nfsd``: NFS server statistics from /proc/net/rpc/nfsd: reply cache, file handles, disk I/O, threads,
read-ahead cache, packets, RPC errors and requests per protocol and method."""

from __future__ import annotations

from exporters.host import nfs_stats
from exporters.host.collectors import NoData
from exporters.host.options import Options
from exporters.host.sources import Sources
from sotp.codec.exposition import MetricFamily

# requests node_exporter publishes per protocol (procfs field names; Null and the unused v4 ops left out)
_V4 = tuple(n for n in nfs_stats.V4_OPS if n not in ("Op0Unused", "Op1Unused", "Op2Future", "PutPubFH", "PutRootFH"))


def _one(name: str, typ: str, help_: str, value: int) -> MetricFamily:
    fam = MetricFamily(f"node_nfsd_{name}", typ, help_)
    fam.add({}, float(value))
    return fam


def collect(src: Sources, opts: Options) -> list[MetricFamily]:
    try:
        stats = nfs_stats.parse(src.read(src.proc, "net", "rpc", "nfsd"), server=True)
    except FileNotFoundError as err:
        raise NoData("no /proc/net/rpc/nfsd (no NFS server)") from err
    rc, fh, io = (nfs_stats.values(stats, k, n) for k, n in (("rc", 3), ("fh", 5), ("io", 2)))
    th, ra, net = (nfs_stats.values(stats, k, n) for k, n in (("th", 2), ("ra", 12), ("net", 4)))
    rpc = nfs_stats.values(stats, "rpc", 5)
    packets = MetricFamily("node_nfsd_packets_total", "counter",
                           "Total NFSd network packets (sent+received) by protocol type.")
    packets.add({"proto": "udp"}, float(net[1]))
    packets.add({"proto": "tcp"}, float(net[2]))
    errors = MetricFamily("node_nfsd_rpc_errors_total", "counter", "Total number of NFSd RPC errors by error type.")
    for label, value in (("fmt", rpc[2]), ("auth", rpc[3]), ("cInt", rpc[4])):
        errors.add({"error": label}, float(value))
    requests = MetricFamily("node_nfsd_requests_total", "counter", "Total number NFSd Requests by method and protocol.")
    for proto, kind, names in (("2", "proc2", nfs_stats.V2[1:]), ("3", "proc3", nfs_stats.V3[1:]),
                               ("4", "proc4ops", _V4)):
        counts = nfs_stats.procedures(stats, kind)
        for method in names:
            requests.add({"method": method, "proto": proto}, float(counts.get(method, 0)))
    return [
        _one("reply_cache_hits_total", "counter",
             "Total number of NFSd Reply Cache hits (client lost server response).", rc[0]),
        _one("reply_cache_misses_total", "counter",
             "Total number of NFSd Reply Cache an operation that requires caching (idempotent).", rc[1]),
        _one("reply_cache_nocache_total", "counter",
             "Total number of NFSd Reply Cache non-idempotent operations (rename/delete/…).", rc[2]),
        _one("file_handles_stale_total", "counter", "Total number of NFSd stale file handles", fh[0]),
        _one("disk_bytes_read_total", "counter", "Total NFSd bytes read.", io[0]),
        _one("disk_bytes_written_total", "counter", "Total NFSd bytes written.", io[1]),
        _one("server_threads", "gauge", "Total number of NFSd kernel threads that are running.", th[0]),
        _one("read_ahead_cache_size_blocks", "gauge", "How large the read ahead cache is in blocks.", ra[0]),
        _one("read_ahead_cache_not_found_total", "counter", "Total number of NFSd read ahead cache not found.", ra[11]),
        packets,
        _one("connections_total", "counter", "Total number of NFSd TCP connections.", net[3]),
        errors,
        _one("server_rpcs_total", "counter", "Total number of NFSd RPCs.", rpc[0]),
        requests,
    ]
