"""``stat``: boot time, context switches, interrupts, forks and process states from /proc/stat."""

from __future__ import annotations

from exporters.host.sources import Sources
from sotp.codec.exposition import MetricFamily

# /proc/stat key -> (name, type, help), as node_exporter's stat collector names them.
_FIELDS = {
    "intr": ("node_intr_total", "counter", "Total number of interrupts serviced."),
    "ctxt": ("node_context_switches_total", "counter", "Total number of context switches."),
    "processes": ("node_forks_total", "counter", "Total number of forks."),
    "btime": ("node_boot_time_seconds", "gauge", "Node boot time, in unixtime."),
    "procs_running": ("node_procs_running", "gauge", "Number of processes in runnable state."),
    "procs_blocked": (
        "node_procs_blocked", "gauge", "Number of processes blocked waiting for I/O to complete."
    ),
}


def collect(src: Sources) -> list[MetricFamily]:
    out = []
    for line in src.read(src.proc, "stat").splitlines():
        key, _, rest = line.partition(" ")
        if key in _FIELDS and rest.split():
            name, typ, help_ = _FIELDS[key]
            fam = MetricFamily(name, typ, help_)
            fam.add({}, float(rest.split()[0]))  # intr: the first number is the total
            out.append(fam)
    return out
