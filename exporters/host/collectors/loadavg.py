"""``loadavg``: node_load1/5/15 from /proc/loadavg."""

from __future__ import annotations

from exporters.host.options import Options
from exporters.host.sources import Sources
from sotp.codec.exposition import MetricFamily


def collect(src: Sources, opts: Options) -> list[MetricFamily]:
    fields = src.read(src.proc, "loadavg").split()
    out = []
    for name, value in zip(("1", "5", "15"), fields[:3], strict=True):
        fam = MetricFamily(f"node_load{name}", "gauge", f"{name}m load average.")
        fam.add({}, float(value))
        out.append(fam)
    return out
