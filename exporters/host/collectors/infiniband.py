"""``infiniband``: InfiniBand HCAs under /sys/class/infiniband: port state, rate and the port counters
(data counters count 4-byte words in sysfs, bytes here)."""

from __future__ import annotations

import os
import struct

from exporters.host.collectors import sys_class
from exporters.host.options import Options
from exporters.host.sources import Sources
from exporters.host.sysfs import go_uint, read_attr
from sotp.codec.exposition import MetricFamily

_WORDS = ("port_rcv_data", "port_xmit_data", "port_rcv_data_64", "port_xmit_data_64")  # x4 to bytes
# (directory, file, metric, help)
_COUNTERS = [
    ("counters_ext", "port_multicast_rcv_packets", "legacy_multicast_packets_received_total",
     "Number of multicast packets received"),
    ("counters_ext", "port_multicast_xmit_packets", "legacy_multicast_packets_transmitted_total",
     "Number of multicast packets transmitted"),
    ("counters_ext", "port_rcv_data_64", "legacy_data_received_bytes_total",
     "Number of data octets received on all links"),
    ("counters_ext", "port_rcv_packets_64", "legacy_packets_received_total",
     "Number of data packets received on all links"),
    ("counters_ext", "port_unicast_rcv_packets", "legacy_unicast_packets_received_total",
     "Number of unicast packets received"),
    ("counters_ext", "port_unicast_xmit_packets", "legacy_unicast_packets_transmitted_total",
     "Number of unicast packets transmitted"),
    ("counters_ext", "port_xmit_data_64", "legacy_data_transmitted_bytes_total",
     "Number of data octets transmitted on all links"),
    ("counters_ext", "port_xmit_packets_64", "legacy_packets_transmitted_total",
     "Number of data packets received on all links"),
    ("counters", "excessive_buffer_overrun_errors", "excessive_buffer_overrun_errors_total",
     "Number of times that OverrunErrors consecutive flow control update periods occurred, each having at least "
     "one overrun error."),
    ("counters", "link_downed", "link_downed_total",
     "Number of times the link failed to recover from an error state and went down"),
    ("counters", "link_error_recovery", "link_error_recovery_total",
     "Number of times the link successfully recovered from an error state"),
    ("counters", "local_link_integrity_errors", "local_link_integrity_errors_total",
     "Number of times that the count of local physical errors exceeded the threshold specified by LocalPhyErrors."),
    ("counters", "multicast_rcv_packets", "multicast_packets_received_total",
     "Number of multicast packets received (including errors)"),
    ("counters", "multicast_xmit_packets", "multicast_packets_transmitted_total",
     "Number of multicast packets transmitted (including errors)"),
    ("counters", "port_rcv_constraint_errors", "port_constraint_errors_received_total",
     "Number of packets received on the switch physical port that are discarded"),
    ("counters", "port_xmit_constraint_errors", "port_constraint_errors_transmitted_total",
     "Number of packets not transmitted from the switch physical port"),
    ("counters", "port_rcv_data", "port_data_received_bytes_total", "Number of data octets received on all links"),
    ("counters", "port_xmit_data", "port_data_transmitted_bytes_total",
     "Number of data octets transmitted on all links"),
    ("counters", "port_rcv_discards", "port_discards_received_total",
     "Number of inbound packets discarded by the port because the port is down or congested"),
    ("counters", "port_xmit_discards", "port_discards_transmitted_total",
     "Number of outbound packets discarded by the port because the port is down or congested"),
    ("counters", "port_rcv_errors", "port_errors_received_total",
     "Number of packets containing an error that were received on this port"),
    ("counters", "port_rcv_packets", "port_packets_received_total",
     "Number of packets received on all VLs by this port (including errors)"),
    ("counters", "port_xmit_packets", "port_packets_transmitted_total",
     "Number of packets transmitted on all VLs from this port (including errors)"),
    ("counters", "port_xmit_wait", "port_transmit_wait_total",
     "Number of ticks during which the port had data to transmit but no data was sent during the entire tick"),
    ("counters", "unicast_rcv_packets", "unicast_packets_received_total",
     "Number of unicast packets received (including errors)"),
    ("counters", "unicast_xmit_packets", "unicast_packets_transmitted_total",
     "Number of unicast packets transmitted (including errors)"),
    ("counters", "port_rcv_remote_physical_errors", "port_receive_remote_physical_errors_total",
     "Number of packets marked with the EBP (End of Bad Packet) delimiter received on the port."),
    ("counters", "port_rcv_switch_relay_errors", "port_receive_switch_relay_errors_total",
     "Number of packets that could not be forwarded by the switch."),
    ("counters", "symbol_error", "symbol_error_total",
     "Number of minor link errors detected on one or more physical lanes."),
    ("counters", "VL15_dropped", "vl15_dropped_total",
     "Number of incoming VL15 packets dropped due to resource limitations."),
]


def _state(text: str, path: str) -> int:
    """``4: ACTIVE`` -> 4."""
    parts = text.split(":")
    if len(parts) != 2 or not parts[0].strip().isdigit():
        raise ValueError(f"could not parse {path}: {text.strip()!r} is not 'ID: NAME'")
    return int(parts[0].strip())


def _rate(text: str, path: str) -> int:
    """``100 Gb/sec (4X EDR)`` -> bytes per second, from the Gb/s figure read as a float32 as procfs does."""
    head, sep, _ = text.partition(" ")
    if not sep:
        raise ValueError(f"could not parse {path}: {text.strip()!r}")
    gbps = struct.unpack("f", struct.pack("f", float(head.strip())))[0]
    return int(gbps * 125000000)


def _counters(port: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for directory in ("counters", "counters_ext"):
        path = os.path.join(port, directory)
        if directory == "counters_ext" and not os.path.isdir(path):
            continue
        for entry in os.scandir(path):
            if not entry.is_file(follow_symlinks=False):
                continue
            try:
                value = read_attr(entry.path)
            except OSError as err:
                if isinstance(err, (FileNotFoundError, PermissionError)) or err.strerror in (
                        "Operation not supported", "Invalid argument"):
                    continue
                raise
            if not any(entry.name == f for d, f, *_ in _COUNTERS if d == directory):
                continue
            try:
                number = go_uint(value)
            except ValueError:
                if "N/A (no PMA)" not in value:
                    raise
                continue  # a port without performance management: no such counter
            if entry.name in _WORDS:
                number = number * 4 % (1 << 64)
            out[f"{directory}/{entry.name}"] = number
    return out


def collect(src: Sources, opts: Options) -> list[MetricFamily]:
    base, devices = sys_class(src.sys, "infiniband", "no InfiniBand devices")
    info = MetricFamily("node_infiniband_info", "gauge",
                        "Non-numeric data from /sys/class/infiniband/<device>, value is always 1.")
    gauges = {
        "state_id": MetricFamily("node_infiniband_state_id", "gauge", "State of the InfiniBand port (0: no change, "
                                 "1: down, 2: init, 3: armed, 4: active, 5: act defer)"),
        "physical_state_id": MetricFamily("node_infiniband_physical_state_id", "gauge",
                                          "Physical state of the InfiniBand port (0: no change, 1: sleep, 2: polling, "
                                          "3: disable, 4: shift, 5: link up, 6: link error recover, 7: phytest)"),
        "rate_bytes_per_second": MetricFamily("node_infiniband_rate_bytes_per_second", "gauge",
                                              "Maximum signal transfer rate"),
    }
    counters = [(f"{d}/{f}", MetricFamily(f"node_infiniband_{m}", "counter", h)) for d, f, m, h in _COUNTERS]
    rows = []
    for device in devices:
        path = os.path.join(base, device)
        attrs = {}
        for f in ("board_id", "fw_ver", "hca_type"):
            try:
                attrs[f] = read_attr(os.path.join(path, f))
            except FileNotFoundError:
                if f != "hca_type":
                    raise
                attrs[f] = ""
        ports = []
        for port in os.listdir(os.path.join(path, "ports")):
            port_path = os.path.join(path, "ports", port)
            number = go_uint(port) if port.isdigit() else int("x" + port)  # ValueError for a non-number
            with open(os.path.join(port_path, "state")) as fh:
                state = _state(fh.read(), port_path)
            with open(os.path.join(port_path, "phys_state")) as fh:
                phys = _state(fh.read(), port_path)
            with open(os.path.join(port_path, "rate")) as fh:
                rate = _rate(fh.read(), port_path)
            ports.append((str(number), state, phys, rate, _counters(port_path)))
        rows.append((device, attrs, ports))
    for device, attrs, ports in rows:
        info.add({"board_id": attrs["board_id"], "device": device, "firmware_version": attrs["fw_ver"],
                  "hca_type": attrs["hca_type"]}, 1.0)
        for port, state, phys, rate, values in ports:
            labels = {"device": device, "port": port}
            gauges["state_id"].add(labels, float(state))
            gauges["physical_state_id"].add(labels, float(phys))
            gauges["rate_bytes_per_second"].add(labels, float(rate))
            for key, fam in counters:
                if key in values:
                    fam.add(labels, float(values[key]))
    return [info, *gauges.values(), *(fam for _, fam in counters)]
