"""``netclass``: interface properties from /sys/class/net/<iface> (all interfaces, ``lo`` included)."""

from __future__ import annotations

import os
import re

from exporters.host.collectors import NoData
from exporters.host.options import Options
from exporters.host.sources import Sources
from exporters.host.sysfs import go_int
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


def collect(src: Sources, opts: Options) -> list[MetricFamily]:
    fams = {
        suffix: MetricFamily(f"node_network_{suffix}", typ, f"Network device property: {suffix}")
        for _, suffix, typ in _PROPS
    }
    info = MetricFamily(
        "node_network_info", "gauge", "Non-numeric data from /sys/class/net/<iface>, value is always 1."
    )
    up = MetricFamily("node_network_up", "gauge", "Value is 1 if operstate is 'up', 0 otherwise.")
    base = os.path.join(src.sys, "class", "net")
    ignored = re.compile(opts.netclass_ignored_devices)
    try:
        entries = sorted(os.scandir(base), key=lambda e: e.name)
    except (FileNotFoundError, PermissionError) as err:
        raise NoData(f"cannot read {base}: {err.strerror}") from err
    for entry in entries:
        # regular files such as bonding_masters are not devices; devices are directories or symlinks
        if entry.is_file(follow_symlinks=False) or ignored.search(entry.name):
            continue
        device = entry.name
        iface = os.path.join(base, device) + "/"
        labels = {"device": device}
        for attr, suffix, _ in _PROPS:
            text = _read(iface + attr)
            if text is None:
                continue
            try:
                number = go_int(text)
            except ValueError:
                number = 0  # procfs hands node_exporter a zero for a value it cannot parse
            if suffix == "speed_bytes":
                if number < 0 and opts.netclass_ignore_invalid_speed:
                    continue
                number = number * 1000 * 1000 // 8  # Mbit/s -> bytes/s; -1 (unknown) stays negative
            value = float(number)
            fams[suffix].add(labels, value)
        values = {k: _read(iface + k) or "" for k in _INFO}
        info.add(
            {"address": values["address"], "broadcast": values["broadcast"], "device": device,
             "duplex": values["duplex"], "ifalias": values["ifalias"], "operstate": values["operstate"]},
            1.0,
        )
        up.add(labels, 1.0 if values["operstate"] == "up" else 0.0)
    return [*fams.values(), info, up]
