"""``netclass``: interface properties from /sys/class/net/<iface> (all interfaces, ``lo`` included)."""

from __future__ import annotations

import os

from exporters.host.sources import Sources
from sotp.codec.exposition import MetricFamily

# sysfs file -> (metric suffix, type); help text is node_exporter's "Network device property: <suffix>".
_PROPS = [
    ("addr_assign_type", "address_assign_type", "gauge"),
    ("carrier", "carrier", "gauge"),
    ("carrier_changes", "carrier_changes_total", "counter"),
    ("carrier_up_count", "carrier_up_changes_total", "counter"),
    ("carrier_down_count", "carrier_down_changes_total", "counter"),
    ("dev_id", "device_id", "gauge"),
    ("dormant", "dormant", "gauge"),
    ("flags", "flags", "gauge"),
    ("ifindex", "iface_id", "gauge"),
    ("iflink", "iface_link", "gauge"),
    ("link_mode", "iface_link_mode", "gauge"),
    ("mtu", "mtu_bytes", "gauge"),
    ("name_assign_type", "name_assign_type", "gauge"),
    ("netdev_group", "net_dev_group", "gauge"),
    ("type", "protocol_type", "gauge"),
    ("speed", "speed_bytes", "gauge"),
    ("tx_queue_len", "transmit_queue_length", "gauge"),
]
_INFO = ("address", "broadcast", "duplex", "ifalias", "operstate")


def _read(path: str) -> str | None:
    """A sysfs attribute, or None when the driver does not support it (EINVAL) or it is absent.
    Plain ``open`` on a string path: ~20 reads per interface make pathlib's overhead visible."""
    try:
        with open(path) as fh:
            return fh.read().strip()
    except OSError:
        return None


def _number(text: str) -> float:
    return float(int(text, 16)) if text.startswith("0x") else float(text)


def collect(src: Sources) -> list[MetricFamily]:
    fams = {
        suffix: MetricFamily(f"node_network_{suffix}", typ, f"Network device property: {suffix}")
        for _, suffix, typ in _PROPS
    }
    info = MetricFamily(
        "node_network_info", "gauge", "Non-numeric data from /sys/class/net/<iface>, value is always 1."
    )
    up = MetricFamily("node_network_up", "gauge", "Value is 1 if operstate is 'up', 0 otherwise.")
    base = os.path.join(src.sys, "class", "net")
    for device in sorted(os.listdir(base)) if os.path.isdir(base) else []:
        iface = os.path.join(base, device) + "/"
        labels = {"device": device}
        for attr, suffix, _ in _PROPS:
            text = _read(iface + attr)
            if not text:
                continue
            try:
                value = _number(text)
            except ValueError:
                continue
            if suffix == "speed_bytes":
                value *= 125000.0  # Mbit/s -> bytes/s; -1 (unknown) stays negative, as node_exporter
            fams[suffix].add(labels, value)
        values = {k: _read(iface + k) or "" for k in _INFO}
        info.add(
            {"address": values["address"], "broadcast": values["broadcast"], "device": device,
             "duplex": values["duplex"], "ifalias": values["ifalias"], "operstate": values["operstate"]},
            1.0,
        )
        up.add(labels, 1.0 if values["operstate"] == "up" else 0.0)
    return [*fams.values(), info, up]
