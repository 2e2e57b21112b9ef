"""``vmstat``: /proc/vmstat fields matching ``--collector.vmstat.fields`` (untyped, as node_exporter)."""

from __future__ import annotations

import re

from exporters.host.options import Options
from exporters.host.sources import Sources
from sotp.codec.exposition import MetricFamily


def collect(src: Sources, opts: Options) -> list[MetricFamily]:
    fields = re.compile(opts.vmstat_fields)
    out = []
    for line in src.read(src.proc, "vmstat").splitlines():
        parts = line.split()
        value = float(parts[1])  # every line must parse, matched or not, as node_exporter checks
        if not fields.search(parts[0]):
            continue
        fam = MetricFamily(f"node_vmstat_{parts[0]}", "untyped", f"/proc/vmstat information field {parts[0]}.")
        fam.add({}, value)
        out.append(fam)
    return out
