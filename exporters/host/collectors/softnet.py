"""``softnet``: per-CPU packet processing from /proc/net/softnet_stat (hexadecimal columns).

As node_exporter 1.5 (procfs 0.8), the ``cpu`` label is the line number, and only the first three columns
are used: processed, dropped, time squeezed.
"""

from __future__ import annotations

from exporters.host.options import Options
from exporters.host.sources import Sources
from sotp.codec.exposition import MetricFamily


def collect(src: Sources, opts: Options) -> list[MetricFamily]:
    processed = MetricFamily("node_softnet_processed_total", "counter", "Number of processed packets")
    dropped = MetricFamily("node_softnet_dropped_total", "counter", "Number of dropped packets")
    squeezed = MetricFamily("node_softnet_times_squeezed_total", "counter",
                            "Number of times processing packets ran out of quota")
    for cpu, line in enumerate(src.read(src.proc, "net", "softnet_stat").splitlines()):
        columns = line.split()
        if len(columns) < 9:
            raise ValueError(f"{len(columns)} columns were detected in softnet_stat, but at least 9 were expected")
        labels = {"cpu": str(cpu)}
        for fam, column in ((processed, 0), (dropped, 1), (squeezed, 2)):
            value = int(columns[column], 16)
            if value > 0xFFFFFFFF:
                raise ValueError(f"softnet_stat value {columns[column]} is out of the uint32 range")
            fam.add(labels, float(value))
    return [processed, dropped, squeezed]
