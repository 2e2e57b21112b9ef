"""``conntrack``: netfilter connection tracking table size and statistics (``node_nf_conntrack_*``).

The statistics are summed over the per-CPU lines of /proc/net/stat/nf_conntrack (hexadecimal). Without
the nf_conntrack module loaded the files do not exist: no data, as node_exporter reports it.
"""

from __future__ import annotations

from exporters.host.collectors import NoData
from exporters.host.options import Options
from exporters.host.sources import Sources
from sotp.codec.exposition import MetricFamily

# column of /proc/net/stat/nf_conntrack -> (metric suffix, help)
_STATS = [
    (2, "found", "Number of searched entries which were successful."),
    (4, "invalid", "Number of packets seen which can not be tracked."),
    (5, "ignore", "Number of packets seen which are already connected to a conntrack entry."),
    (8, "insert", "Number of entries inserted into the list."),
    (9, "insert_failed", "Number of entries for which list insertion was attempted but failed."),
    (10, "drop", "Number of packets dropped due to conntrack failure."),
    (11, "early_drop", "Number of dropped conntrack entries to make room for new ones, if maximum table size "
                       "was reached."),
    (16, "search_restart", "Number of conntrack table lookups which had to be restarted due to hashtable resizes."),
]


def _gauge(name: str, help_: str, value: float) -> MetricFamily:
    fam = MetricFamily(name, "gauge", help_)
    fam.add({}, value)
    return fam


def collect(src: Sources, opts: Options) -> list[MetricFamily]:
    try:
        count = src.read_int(src.proc, "sys", "net", "netfilter", "nf_conntrack_count")
        limit = src.read_int(src.proc, "sys", "net", "netfilter", "nf_conntrack_max")
        lines = src.read(src.proc, "net", "stat", "nf_conntrack").splitlines()[1:]  # a header line first
    except FileNotFoundError as err:
        raise NoData(f"conntrack probably not loaded ({err.filename} missing)") from err
    totals = [0] * 17
    for line in lines:
        fields = line.split()
        if len(fields) != 17:
            raise ValueError(f"invalid conntrack statistics line (want 17 fields): {line!r}")
        for i, field in enumerate(fields):
            totals[i] += int(field, 16)
    out = [
        _gauge("node_nf_conntrack_entries", "Number of currently allocated flow entries for connection tracking.",
               float(count)),
        _gauge("node_nf_conntrack_entries_limit", "Maximum size of connection tracking table.", float(limit)),
    ]
    for column, suffix, help_ in _STATS:
        out.append(_gauge(f"node_nf_conntrack_stat_{suffix}", help_, float(totals[column])))
    return out
