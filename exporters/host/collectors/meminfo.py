"""``meminfo``: every /proc/meminfo field as ``node_memory_<Field>[_bytes]``.

Read from /proc directly because psutil's ``cached`` adds SReclaimable to Cached, which would publish a
different meaning under node_exporter's name.
"""

from __future__ import annotations

import re

from exporters.host.options import Options
from exporters.host.sources import Sources
from sotp.codec.exposition import MetricFamily

_PAREN = re.compile(r"\((.*)\)")


def collect(src: Sources, opts: Options) -> list[MetricFamily]:
    out: list[MetricFamily] = []
    for line in src.read(src.proc, "meminfo").splitlines():
        parts = line.split()
        if len(parts) < 2 or not parts[0].endswith(":"):
            continue
        key = _PAREN.sub(r"_\1", parts[0][:-1])  # Active(anon) -> Active_anon
        value = float(parts[1])
        if len(parts) == 3:  # a unit is present; the kernel only ever writes kB
            value *= 1024
            key += "_bytes"
        fam = MetricFamily(f"node_memory_{key}", "gauge", f"Memory information field {key}.")
        fam.add({}, value)
        out.append(fam)
    return out
