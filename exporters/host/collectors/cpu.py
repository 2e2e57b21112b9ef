"""``cpu``: per-CPU time in each mode from /proc/stat (USER_HZ ticks, as node_exporter reads them)."""

from __future__ import annotations

from exporters.host.sources import Sources
from sotp.codec.exposition import MetricFamily

USER_HZ = 100.0  # the kernel reports /proc/stat in USER_HZ, fixed at 100 on Linux
MODES = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")


def collect(src: Sources) -> list[MetricFamily]:
    seconds = MetricFamily("node_cpu_seconds_total", "counter", "Seconds the CPUs spent in each mode.")
    guest = MetricFamily(
        "node_cpu_guest_seconds_total", "counter", "Seconds the CPUs spent in guests (VMs) for each mode."
    )
    for line in src.read(src.proc, "stat").splitlines():
        if not line.startswith("cpu") or line.startswith("cpu "):
            continue
        parts = line.split()
        cpu = parts[0][3:]
        ticks = [float(x) / USER_HZ for x in parts[1:11]] + [0.0] * (10 - len(parts[1:11]))
        # node_exporter sorts the modes; the guest time stays inside user/nice as the kernel counts it.
        for mode, value in sorted(zip(MODES, ticks[:8], strict=True)):
            seconds.add({"cpu": cpu, "mode": mode}, value)
        guest.add({"cpu": cpu, "mode": "nice"}, ticks[9])
        guest.add({"cpu": cpu, "mode": "user"}, ticks[8])
    return [seconds, guest]
