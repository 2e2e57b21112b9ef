"""``netstat``: protocol counters from /proc/net/netstat, /proc/net/snmp and /proc/net/snmp6, filtered by
``--collector.netstat.fields``. Untyped, as node_exporter exposes them (most are counters, a few such as
``Tcp_CurrEstab`` are gauges)."""

from __future__ import annotations

import contextlib
import re

from exporters.host.options import Options
from exporters.host.sources import Sources
from sotp.codec.exposition import MetricFamily


def _pairs_of_lines(text: str, path: str) -> dict[str, dict[str, str]]:
    """``Proto: name name...`` followed by ``Proto: value value...`` (fields split on single spaces)."""
    out: dict[str, dict[str, str]] = {}
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    for i in range(0, len(lines), 2):
        names = lines[i].split(" ")
        values = lines[i + 1].split(" ") if i + 1 < len(lines) else [""]
        protocol = names[0][:-1]  # "TcpExt:" -> "TcpExt"
        if len(names) != len(values):
            raise ValueError(f"field count mismatch in {path}: {protocol}")
        out[protocol] = dict(zip(names[1:], values[1:], strict=True))
    return out


def _snmp6(text: str) -> dict[str, dict[str, str]]:
    """``Ip6InOctets 123`` lines: the protocol is everything up to the first ``6``."""
    out: dict[str, dict[str, str]] = {}
    for line in text.splitlines():
        stat = line.split()
        if len(stat) < 2:
            continue
        six = stat[0].find("6")
        if six != -1:
            out.setdefault(stat[0][: six + 1], {})[stat[0][six + 1 :]] = stat[1]
    return out


def collect(src: Sources, opts: Options) -> list[MetricFamily]:
    stats = _pairs_of_lines(src.read(src.proc, "net", "netstat"), "net/netstat")
    stats.update(_pairs_of_lines(src.read(src.proc, "net", "snmp"), "net/snmp"))
    with contextlib.suppress(FileNotFoundError):  # no snmp6: IPv6 disabled
        stats.update(_snmp6(src.read(src.proc, "net", "snmp6")))
    fields = re.compile(opts.netstat_fields)
    out = []
    for protocol, values in stats.items():
        for name, raw in values.items():
            key = f"{protocol}_{name}"
            try:
                value = float(raw)
            except ValueError:
                raise ValueError(f"invalid value {raw} in netstats ({key})") from None
            if not fields.search(key):
                continue
            fam = MetricFamily(f"node_netstat_{key}", "untyped", f"Statistic {protocol}{name}.")
            fam.add({}, value)
            out.append(fam)
    return out
