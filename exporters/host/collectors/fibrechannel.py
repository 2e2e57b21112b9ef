"""``fibrechannel``: Fibre Channel host bus adapters under /sys/class/fc_host (port information and the
HBA's error and traffic counters; a counter reading 2^64-1 is one the firmware does not implement)."""

from __future__ import annotations

import os

from exporters.host.collectors import sys_class
from exporters.host.options import Options
from exporters.host.sources import Sources
from exporters.host.sysfs import go_uint, read_attr
from sotp.codec.exposition import MetricFamily

_COUNTERS = [  # statistics file -> (metric, help)
    ("dumped_frames", "dumped_frames_total", "Number of dumped frames"),
    ("error_frames", "error_frames_total", "Number of errors in frames"),
    ("invalid_crc_count", "invalid_crc_total", "Invalid Cyclic Redundancy Check count"),
    ("rx_frames", "rx_frames_total", "Number of frames received"),
    ("rx_words", "rx_words_total", "Number of words received by host port"),
    ("tx_frames", "tx_frames_total", "Number of frames transmitted by host port"),
    ("tx_words", "tx_words_total", "Number of words transmitted by host port"),
    ("seconds_since_last_reset", "seconds_since_last_reset_total", "Number of seconds since last host port reset"),
    ("invalid_tx_word_count", "invalid_tx_words_total", "Number of invalid words transmitted by host port"),
    ("link_failure_count", "link_failure_total", "Number of times the host port link has failed"),
    ("loss_of_sync_count", "loss_of_sync_total", "Number of failures on either bit or transmission word boundaries"),
    ("loss_of_signal_count", "loss_of_signal_total", "Number of times signal has been lost"),
    ("nos_count", "nos_total", "Number Not_Operational Primitive Sequence received by host port"),
    ("fcp_packet_aborts", "fcp_packet_aborts_total", "Number of aborted packets"),
]
_ATTRS = ("speed", "port_state", "port_type", "node_name", "port_id", "port_name", "fabric_name", "dev_loss_tmo",
          "symbolic_name", "supported_classes", "supported_speeds")
_HEX = ("node_name", "port_id", "port_name", "fabric_name")  # "0x..." with the prefix dropped
UNIMPLEMENTED = 0xFFFFFFFFFFFFFFFF


def _host(path: str) -> tuple[dict[str, str], dict[str, int]]:
    attrs = {}
    for name in _ATTRS:
        value = read_attr(os.path.join(path, name))
        attrs[name] = value[2:] if name in _HEX and len(value) > 2 else value
    counters = dict.fromkeys((f for f, _, _ in _COUNTERS), 0)
    stats = os.path.join(path, "statistics")
    for entry in os.scandir(stats):
        if not entry.is_file(follow_symlinks=False) or entry.name == "reset_statistics":
            continue
        try:
            value = read_attr(entry.path)
        except OSError as err:
            if isinstance(err, FileNotFoundError) or err.strerror in ("Operation not supported", "Invalid argument"):
                continue
            raise
        if entry.name in counters:
            counters[entry.name] = go_uint(value)
    return attrs, counters


def collect(src: Sources, opts: Options) -> list[MetricFamily]:
    base, names = sys_class(src.sys, "fc_host", "no Fibre Channel hosts")
    hosts = {name: _host(os.path.join(base, name)) for name in names}
    info = MetricFamily("node_fibrechannel_info", "gauge",
                        "Non-numeric data from /sys/class/fc_host/<host>, value is always 1.")
    fams = {f: MetricFamily(f"node_fibrechannel_{metric}", "counter", help_) for f, metric, help_ in _COUNTERS}
    for name, (attrs, counters) in hosts.items():
        info.add({"dev_loss_tmo": attrs["dev_loss_tmo"], "fabric_name": attrs["fabric_name"], "fc_host": name,
                  "port_id": attrs["port_id"], "port_name": attrs["port_name"], "port_state": attrs["port_state"],
                  "port_type": attrs["port_type"], "speed": attrs["speed"], "supported_classes":
                  attrs["supported_classes"], "supported_speeds": attrs["supported_speeds"],
                  "symbolic_name": attrs["symbolic_name"]}, 1.0)
        for f, fam in fams.items():
            if counters[f] != UNIMPLEMENTED:
                fam.add({"fc_host": name}, float(counters[f]))
    return [info, *fams.values()]
