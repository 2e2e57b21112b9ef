"""``stat``: boot time, context switches, interrupts, forks and process states from /proc/stat
(and softirqs per vector with ``--collector.stat.softirq``)."""

from __future__ import annotations

from exporters.host.options import Options
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
# the kernel's softirq vectors, in /proc/stat's column order
_SOFTIRQ = ("hi", "timer", "net_tx", "net_rx", "block", "block_iopoll", "tasklet", "sched", "hrtimer", "rcu")


def collect(src: Sources, opts: Options) -> list[MetricFamily]:
    values: dict[str, list[str]] = {}
    for line in src.read(src.proc, "stat").splitlines():
        key, _, rest = line.partition(" ")
        values[key] = rest.split()
    out = []
    for key, (name, typ, help_) in _FIELDS.items():
        fam = MetricFamily(name, typ, help_)
        # a field the kernel does not print reads as 0 (procfs leaves it unset); intr: the total comes first
        fam.add({}, float(values[key][0]) if values.get(key) else 0.0)
        out.append(fam)
    if opts.stat_softirq:
        fam = MetricFamily("node_softirqs_total", "counter", "Number of softirq calls.")
        counts = values.get("softirq", [])[1:]  # the first number is the total
        for i, vector in enumerate(_SOFTIRQ):
            fam.add({"vector": vector}, float(counts[i]) if i < len(counts) else 0.0)
        out.append(fam)
    return out
