"""``hwmon``: hardware sensors under /sys/class/hwmon (temperatures, voltages, fans, currents, power,
energy, humidity, alarms), named and scaled as node_exporter 1.5 does.

Each chip is named after its device (``platform_coretemp_0``), else its ``name`` file, else its directory;
sensor files ``<type><n>_<property>`` become ``node_hwmon_<type>[_<property>]_<unit>{chip,sensor}``. A chip
that cannot be read fails the collector after the other chips were read, as there.
"""

from __future__ import annotations

import os
import re

from exporters.host.collectors import PartialFailure, sys_class
from exporters.host.options import Options
from exporters.host.sources import Sources
from exporters.host.sysfs import go_float, valid_utf8
from sotp.codec.exposition import MetricFamily

_INVALID = re.compile(r"[^a-z0-9:_]")
_FILENAME = re.compile(r"^(?P<type>[^0-9]+)(?P<id>[0-9]*)?(_(?P<property>.+))?$")
_TYPES = ("vrm", "beep_enable", "update_interval", "in", "cpu", "fan", "pwm", "temp", "curr", "power", "energy",
          "humidity", "intrusion")


def clean(name: str) -> str:
    return _INVALID.sub("_", name.lower()).strip("_")


def _explode(filename: str) -> tuple[str, int, str] | None:
    m = _FILENAME.match(filename)
    if m is None:
        return None
    num = int(m.group("id")) if m.group("id") else 0
    if num > 2**63 - 1:
        return None
    return m.group("type"), num, m.group("property") or ""


def _read(path: str) -> str | None:
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            data = os.read(fd, 128)
        finally:
            os.close(fd)
    except OSError:
        return None
    return data.decode("utf-8", errors="surrogateescape").strip("\n")


def _sensors(directory: str, data: dict[str, dict[str, str]]) -> None:
    for name in os.listdir(directory):
        parts = _explode(name)
        if parts is None or parts[0] not in _TYPES:
            continue
        value = _read(os.path.join(directory, name))
        if value is not None:
            data.setdefault(f"{parts[0]}{parts[1]}", {})[parts[2]] = value


def _chip_name(directory: str) -> str:
    device = os.path.join(directory, "device")
    if os.path.exists(device):
        real = os.path.realpath(device)
        prefix, dev_name = os.path.split(real)
        dev_type = os.path.basename(prefix.rstrip("/"))
        if clean(dev_type) and clean(dev_name):
            return f"{clean(dev_type)}_{clean(dev_name)}"
        if clean(dev_name):
            return clean(dev_name)
    try:
        with open(os.path.join(directory, "name"), "rb") as fh:
            raw = fh.read().decode("utf-8", errors="surrogateescape")
        if raw and clean(raw):
            return clean(raw)
    except OSError:
        pass
    name = clean(os.path.basename(os.path.realpath(directory)))
    if name:
        return name
    raise ValueError(f"could not derive a monitoring name for {directory}")


class _Out:
    def __init__(self) -> None:
        self.fams: dict[tuple[str, str], MetricFamily] = {}

    def add(self, name: str, typ: str, help_: str, labels: dict[str, str], value: float) -> None:
        fam = self.fams.get((name, help_))
        if fam is None:
            fam = self.fams[(name, help_)] = MetricFamily(name, typ, help_)
        fam.add(labels, value)


def _chip(directory: str, out: _Out) -> None:
    chip = _chip_name(directory)
    data: dict[str, dict[str, str]] = {}
    _sensors(directory, data)
    if os.path.exists(os.path.join(directory, "device")):
        _sensors(os.path.join(directory, "device"), data)
    try:
        with open(os.path.join(directory, "name"), "rb") as fh:
            raw = fh.read().decode("utf-8", errors="surrogateescape")
        if raw and clean(raw):
            out.add("node_hwmon_chip_names", "gauge", "Annotation metric for human-readable chip names",
                    {"chip": chip, "chip_name": clean(raw)}, 1.0)
    except OSError:
        pass
    for sensor, values in data.items():
        kind = _FILENAME.match(sensor).group("type")  # type: ignore[union-attr]
        labels = {"chip": chip, "sensor": sensor}
        if "label" in values:
            label = valid_utf8(values["label"].encode("utf-8", errors="surrogateescape"))
            out.add("node_hwmon_sensor_label", "gauge", "Label for given chip and sensor",
                    {"chip": chip, "label": label, "sensor": sensor}, 1.0)
        if kind == "beep_enable":
            out.add("node_hwmon_beep_enabled", "gauge", "Hardware beep enabled", labels,
                    1.0 if values.get("") == "1" else 0.0)
            continue
        if kind in ("vrm", "update_interval"):
            try:
                v = go_float(values.get("", ""))
            except ValueError:
                continue
            if kind == "vrm":
                out.add("node_hwmon_voltage_regulator_version", "gauge", "Hardware voltage regulator", labels, v)
            else:
                out.add("node_hwmon_update_interval_seconds", "gauge", "Hardware monitor update interval", labels,
                        v * 0.001)
            continue
        prefix = "node_hwmon_" + kind
        for element, raw in values.items():
            if element == "label":
                continue
            name = prefix
            if element == "input":
                if "" in values:
                    name += "_input"
            elif element:
                name += "_" + clean(element)
            try:
                v = go_float(raw)
            except ValueError:
                continue
            _element(out, kind, element, name, labels, v)


def _element(out: _Out, kind: str, element: str, name: str, labels: dict[str, str], v: float) -> None:
    if element in ("fault", "alarm"):
        out.add(name, "gauge", f"Hardware sensor {element} status ({kind})", labels, v)
    elif element == "beep":
        out.add(name + "_enabled", "gauge", "Hardware monitor sensor has beeping enabled", labels, v)
    elif kind in ("in", "cpu"):
        out.add(name + "_volts", "gauge", f"Hardware monitor for voltage ({element})", labels, v * 0.001)
    elif kind == "temp" and element != "type":
        out.add(name + "_celsius", "gauge", f"Hardware monitor for temperature ({element or 'input'})", labels,
                v * 0.001)
    elif kind == "curr":
        out.add(name + "_amps", "gauge", f"Hardware monitor for current ({element})", labels, v * 0.001)
    elif kind == "energy":
        out.add(name + "_joule_total", "counter", f"Hardware monitor for joules used so far ({element})", labels,
                v / 1000000.0)
    elif kind == "power" and element == "accuracy":
        out.add(name, "gauge", "Hardware monitor power meter accuracy, as a ratio", labels, v / 1000000.0)
    elif kind == "power" and element in ("average_interval", "average_interval_min", "average_interval_max"):
        out.add(name + "_seconds", "gauge", f"Hardware monitor power usage update interval ({element})", labels,
                v * 0.001)
    elif kind == "power":
        out.add(name + "_watt", "gauge", f"Hardware monitor for power usage in watts ({element})", labels,
                v / 1000000.0)
    elif kind == "humidity":
        out.add(name, "gauge", "Hardware monitor for humidity, as a ratio (multiply with 100.0 to get the humidity "
                f"as a percentage) ({element})", labels, v / 1000000.0)
    elif kind == "fan" and element in ("input", "min", "max", "target"):
        out.add(name + "_rpm", "gauge", f"Hardware monitor for fan revolutions per minute ({element})", labels, v)
    else:
        out.add(name, "gauge", f"Hardware monitor {kind} element {element}", labels, v)


def collect(src: Sources, opts: Options) -> list[MetricFamily]:
    base, entries = sys_class(src.sys, "hwmon", "hwmon collector metrics are not available for this system")
    out = _Out()
    error: Exception | None = None
    for entry in entries:
        path = os.path.join(base, entry)
        if not os.path.isdir(path):
            continue
        try:
            _chip(path, out)
        except (OSError, ValueError) as err:  # the other chips are still reported; the scrape says failed
            error = err
    families = list(out.fams.values())
    if error is not None:
        raise PartialFailure(families, error)
    return families
