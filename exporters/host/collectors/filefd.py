"""``filefd``: allocated and maximum file handles from /proc/sys/fs/file-nr (tab-separated)."""

from __future__ import annotations

from exporters.host.options import Options
from exporters.host.sources import Sources
from sotp.codec.exposition import MetricFamily


def collect(src: Sources, opts: Options) -> list[MetricFamily]:
    parts = src.read(src.proc, "sys", "fs", "file-nr").strip().split("\t")
    if len(parts) < 3:
        raise ValueError(f"unexpected number of file stats in {src.proc}/sys/fs/file-nr: {parts!r}")
    out = []
    for name, value in (("allocated", parts[0]), ("maximum", parts[2])):
        fam = MetricFamily(f"node_filefd_{name}", "gauge", f"File descriptor statistics: {name}.")
        fam.add({}, float(value))
        out.append(fam)
    return out
