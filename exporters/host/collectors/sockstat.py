"""``sockstat``: sockets in use per protocol from /proc/net/sockstat and sockstat6.

``mem`` is in pages; ``mem_bytes`` multiplies it by this machine's page size, as node_exporter does.
Either file may be missing (IPv4 or IPv6 disabled): it is skipped.
"""

from __future__ import annotations

from exporters.host.options import Options
from exporters.host.sources import Sources
from sotp.codec.exposition import MetricFamily

_KEYS = ("inuse", "orphan", "tw", "alloc", "mem", "memory")


def _parse(text: str) -> tuple[int | None, list[tuple[str, dict[str, int]]]]:
    used = None
    protocols = []
    for line in text.splitlines():
        fields = line.split(" ")
        if len(fields) < 3:
            raise ValueError(f"malformed sockstat line: {line!r}")
        kvs = fields[1:]
        if len(kvs) % 2:
            raise ValueError(f"odd number of fields in key/value pairs: {line!r}")
        values = {kvs[i]: int(kvs[i + 1]) for i in range(0, len(kvs), 2)}
        proto = fields[0].removesuffix(":")
        if proto == "sockets":
            used = values.get("used", 0)
        else:
            protocols.append((proto, values))
    return used, protocols


def collect(src: Sources, opts: Options) -> list[MetricFamily]:
    out = []
    for name in ("sockstat", "sockstat6"):
        try:
            used, protocols = _parse(src.read(src.proc, "net", name))
        except FileNotFoundError:
            continue
        if used is not None and name == "sockstat":
            fam = MetricFamily("node_sockstat_sockets_used", "gauge", "Number of IPv4 sockets in use.")
            fam.add({}, float(used))
            out.append(fam)
        for proto, values in protocols:
            pairs = [(k, values.get(k, 0 if k == "inuse" else None)) for k in _KEYS]
            if values.get("mem") is not None:
                pairs.append(("mem_bytes", values["mem"] * src.page_size))
            for key, value in pairs:
                if value is None:
                    continue
                fam = MetricFamily(f"node_sockstat_{proto}_{key}", "gauge",
                                   f"Number of {proto} sockets in state {key}.")
                fam.add({}, float(value))
                out.append(fam)
    return out
