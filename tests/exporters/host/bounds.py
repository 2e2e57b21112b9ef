"""The two-sided bounds of the parity tests: a reading taken between two readings of a reference.

Families are compared in one normal form, ``{name: Family(type, help, {(sample name, labels): value})}``,
whichever parser produced them (prometheus_client's for the live exporters, SOTP's own families in
process for the psutil backend).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

from sotp.codec.exposition import MetricFamily

SeriesKey = tuple[str, tuple[tuple[str, str], ...]]


class Family(NamedTuple):
    type: str
    help: str
    samples: dict[SeriesKey, float]


Families = dict[str, Family]

#: Gauges: SOTP's value may exceed node_exporter's range (before, after) by this fraction of it.
REL_TOL = 0.05
#: Absolute slack by family-name prefix, for gauges that jump by whole units between two reads on a machine
#: shared with other test runs (processes, sockets, file handles, dirty pages come and go).
ABS_SLACK: dict[str, float] = {
    "node_procs_": 16,  # runnable/blocked processes
    "node_sockstat_": 512,  # sockets (and their pages/bytes: sockstat mem is a few pages)
    "node_sockstat_TCP_mem_bytes": 4 << 20,
    "node_sockstat_UDP_mem_bytes": 4 << 20,
    "node_filefd_allocated": 1024,  # open file handles
    "node_netstat_Tcp_CurrEstab": 256,  # established TCP connections
    "node_nf_conntrack_entries": 256,
    "node_arp_entries": 8,
    "node_udp_queues": 4 << 20,  # bytes queued on UDP sockets
    "node_disk_io_now": 16,  # I/Os in flight
    "node_memory_": 128 << 20,  # free/dirty/cached memory moves by tens of MB in milliseconds
    "node_load": 2.0,  # load averages
    "node_entropy_available_bits": 256,
    "node_timex_offset_seconds": 0.05,  # NTP offset and error estimates move continuously
    "node_timex_frequency_adjustment_ratio": 1e-4,
    "node_timex_maxerror_seconds": 0.05,
    "node_timex_estimated_error_seconds": 0.05,
    "node_timex_status": 1 << 16,  # status bits may flip between reads (the value is a bit field)
}
#: Counters that may step back by a tick: the kernel's per-CPU idle/iowait can read a jiffy lower than
#: before; each exporter hides that with its own history, so the two histories may differ by a tick or two.
COUNTER_SLACK = {"node_cpu_seconds_total": 0.05, "node_cpu_guest_seconds_total": 0.05}
#: Different by nature: how long each exporter took.
NOT_COMPARED = {"node_scrape_collector_duration_seconds"}




def from_client(families: dict[str, Any]) -> Families:
    """prometheus_client's parsed families, keyed by the full name (it drops ``_total`` from counters)."""
    out = {}
    for fam in families.values():
        name = f"{fam.name}_total" if fam.type == "counter" else str(fam.name)
        out[name] = Family(fam.type, fam.documentation,
                           {(s.name, tuple(sorted(s.labels.items()))): s.value for s in fam.samples})
    return out


def from_sotp(families: list[MetricFamily]) -> Families:
    return {f.name: Family(f.type, f.help, {(n, tuple(sorted(lbs.items()))): v for n, lbs, v in f.samples})
            for f in families if f.samples}


def _slack(name: str) -> float:
    best = ""
    for prefix in ABS_SLACK:
        if name.startswith(prefix) and len(prefix) > len(best):
            best = prefix
    return ABS_SLACK[best] if best else 0.0


def series_mismatches(before: Families, ours: Families, after: Families) -> list[str]:
    """What the reference had both times must be ours; what is ours, the reference had at least once."""
    wrong = []
    for name in (set(before) & set(ours)) - NOT_COMPARED - {"node_scrape_collector_success"}:
        b, o, a = before[name].samples, ours[name].samples, after.get(name, before[name]).samples
        if missing := sorted(set(b) & set(a) - set(o))[:3]:
            wrong.append(f"{name}: missing {missing}")
        if extra := sorted(set(o) - set(b) - set(a))[:3]:
            wrong.append(f"{name}: unknown to the reference {extra}")
    return wrong


def violations(before: Families, ours: Families, after: Families,
               scale: dict[str, float] | None = None) -> tuple[int, list[str]]:
    """(series checked, those outside their bounds); ``scale`` multiplies our values of the named
    families, to show that a unit error is caught."""
    checked = 0
    wrong = []
    for name in (set(before) & set(ours) & set(after)) - NOT_COMPARED:
        counter = ours[name].type == "counter"
        b, o, a = before[name].samples, ours[name].samples, after[name].samples
        for key, v in o.items():
            if key not in b or key not in a or math.isnan(v):
                continue
            v *= (scale or {}).get(key[0], 1.0)
            lo, hi = min(b[key], a[key]), max(b[key], a[key])
            if counter:
                room = COUNTER_SLACK.get(key[0], 0.0) + 1e-12 * abs(hi)  # float rounding only
            else:
                room = REL_TOL * max(abs(lo), abs(hi)) + _slack(key[0])
            checked += 1
            if not lo - room <= v <= hi + room:
                wrong.append(f"{key[0]}{dict(key[1])}: reference {b[key]} then {a[key]}, ours {v}")
    return checked, wrong
