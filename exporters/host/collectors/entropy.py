"""``entropy``: the kernel's available entropy and pool size (/proc/sys/kernel/random)."""

from __future__ import annotations

from exporters.host.options import Options
from exporters.host.sources import Sources
from sotp.codec.exposition import MetricFamily


def collect(src: Sources, opts: Options) -> list[MetricFamily]:
    avail = MetricFamily("node_entropy_available_bits", "gauge", "Bits of available entropy.")
    avail.add({}, float(src.read_int(src.proc, "sys", "kernel", "random", "entropy_avail")))
    pool = MetricFamily("node_entropy_pool_size_bits", "gauge", "Bits of entropy pool.")
    pool.add({}, float(src.read_int(src.proc, "sys", "kernel", "random", "poolsize")))
    return [avail, pool]
