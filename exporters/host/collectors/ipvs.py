"""``ipvs``: IP Virtual Server totals from /proc/net/ip_vs_stats and per-backend connections and weights
from /proc/net/ip_vs, summed over the labels ``--collector.ipvs.backend-labels`` keeps."""

from __future__ import annotations

import ipaddress

from exporters.host.collectors import NoData
from exporters.host.options import IPVS_LABELS, Options
from exporters.host.sources import Sources
from sotp.codec.exposition import MetricFamily

_TOTALS = [("connections_total", "The total number of connections made."),
           ("incoming_packets_total", "The total number of incoming packets."),
           ("outgoing_packets_total", "The total number of outgoing packets."),
           ("incoming_bytes_total", "The total amount of incoming data."),
           ("outgoing_bytes_total", "The total amount of outgoing data.")]


def _go_ip(packed: bytes) -> str:
    """Go's ``net.IP.String()``: dotted for IPv4 and IPv4-mapped IPv6, RFC 5952 for the rest."""
    if len(packed) == 4:
        return str(ipaddress.IPv4Address(packed))
    v6 = ipaddress.IPv6Address(packed)
    return str(v6.ipv4_mapped) if v6.ipv4_mapped is not None else str(v6)


def _ip_port(text: str) -> tuple[str, int]:
    if len(text) == 13:
        ip = _go_ip(bytes.fromhex(text[0:8]))
    elif len(text) == 46:
        ip = _go_ip(ipaddress.IPv6Address(text[1:40]).packed)
    else:
        raise ValueError(f"unexpected IP:Port: {text}")
    return ip, int(text[-4:], 16)


def _backends(text: str) -> list[dict[str, str | int]]:
    out: list[dict[str, str | int]] = []
    proto, mark, local, port = "", "", "", 0
    for line in text.splitlines():
        fields = line.split()
        if not fields:
            continue
        if fields[0] in ("IP", "Prot") or (len(fields) > 1 and fields[1] == "RemoteAddress:Port"):
            continue
        if fields[0] in ("TCP", "UDP") and len(fields) >= 2:
            proto, mark = fields[0], ""
            local, port = _ip_port(fields[1])
        elif fields[0] == "FWM" and len(fields) >= 2:
            proto, mark, local, port = fields[0], fields[1], "", 0
        elif fields[0] == "->" and len(fields) >= 6:
            remote, remote_port = _ip_port(fields[1])
            out.append({"local_address": local, "local_port": str(port), "remote_address": remote,
                        "remote_port": str(remote_port), "proto": proto, "local_mark": mark,
                        "weight": int(fields[3]), "active": int(fields[4]), "inactive": int(fields[5])})
    return out


def collect(src: Sources, opts: Options) -> list[MetricFamily]:
    try:
        stats = src.read(src.proc, "net", "ip_vs_stats")
    except FileNotFoundError as err:
        raise NoData("ipvs collector metrics are not available for this system") from err
    lines = stats.split("\n", 3)
    if len(lines) != 4:
        raise ValueError("ip_vs_stats corrupt: too short")
    fields = lines[2].split()
    if len(fields) != 5:
        raise ValueError("ip_vs_stats corrupt: unexpected number of fields")
    out = []
    for (suffix, help_), field in zip(_TOTALS, fields, strict=True):
        fam = MetricFamily(f"node_ipvs_{suffix}", "counter", help_)
        fam.add({}, float(int(field, 16)))
        out.append(fam)
    keep = [label for label in IPVS_LABELS if label in set(opts.ipvs_backend_labels.split(","))]
    sums: dict[tuple[str | int, ...], list[int]] = {}
    for backend in _backends(src.read(src.proc, "net", "ip_vs")):
        key = tuple(backend[label] for label in keep)
        total = sums.setdefault(key, [0, 0, 0])
        total[0] += int(backend["active"])
        total[1] += int(backend["inactive"])
        total[2] += int(backend["weight"])
    fams = [MetricFamily("node_ipvs_backend_connections_active", "gauge",
                         "The current active connections by local and remote address."),
            MetricFamily("node_ipvs_backend_connections_inactive", "gauge",
                         "The current inactive connections by local and remote address."),
            MetricFamily("node_ipvs_backend_weight", "gauge",
                         "The current backend weight by local and remote address.")]
    for key, total in sums.items():
        labels = {label: str(v) for label, v in zip(keep, key, strict=True)}
        for fam, value in zip(fams, total, strict=True):
            fam.add(labels, float(value))
    return [*out, *fams]
