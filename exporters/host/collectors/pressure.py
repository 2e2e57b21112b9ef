"""``pressure``: pressure stall information (PSI) totals from /proc/pressure/{cpu,io,memory}, in seconds.

No data on kernels before 4.20, without CONFIG_PSI, or booted with psi=0 (the files then answer
EOPNOTSUPP), as node_exporter reports it.
"""

from __future__ import annotations

import errno

from exporters.host.collectors import NoData
from exporters.host.options import Options
from exporters.host.sources import Sources
from sotp.codec.exposition import MetricFamily

_FAMILIES = [  # (resource, line, name, help)
    ("cpu", "some", "cpu_waiting", "Total time in seconds that processes have waited for CPU time"),
    ("io", "some", "io_waiting", "Total time in seconds that processes have waited due to IO congestion"),
    ("io", "full", "io_stalled", "Total time in seconds no process could make progress due to IO congestion"),
    ("memory", "some", "memory_waiting", "Total time in seconds that processes have waited for memory"),
    ("memory", "full", "memory_stalled",
     "Total time in seconds no process could make progress due to memory congestion"),
]


def _totals(text: str) -> dict[str, int]:
    """``some avg10=0.00 avg60=0.00 avg300=0.00 total=123`` -> {"some": 123} (microseconds)."""
    out = {}
    for line in text.splitlines():
        kind, _, rest = line.partition(" ")
        if kind in ("some", "full"):
            fields = dict(f.split("=", 1) for f in rest.split())
            out[kind] = int(fields["total"])
    return out


def collect(src: Sources, opts: Options) -> list[MetricFamily]:
    totals: dict[str, dict[str, int]] = {}
    for resource in ("cpu", "io", "memory"):
        try:
            totals[resource] = _totals(src.read(src.proc, "pressure", resource))
        except FileNotFoundError as err:
            raise NoData("pressure information is unavailable: Linux >= 4.20 with CONFIG_PSI is needed") from err
        except OSError as err:
            if err.errno == errno.EOPNOTSUPP:
                raise NoData("pressure information is disabled: boot with psi=1") from err
            raise
    out = []
    for resource, kind, name, help_ in _FAMILIES:
        fam = MetricFamily(f"node_pressure_{name}_seconds_total", "counter", help_)
        fam.add({}, totals[resource][kind] / 1000.0 / 1000.0)  # node_exporter's two divisions: same rounding
        out.append(fam)
    return out
