"""``powersupplyclass``: batteries, AC adapters and UPSes under /sys/class/power_supply.

Values keep node_exporter's scaling: micro-units (µA, µV, µWh, µAh, µW) to base units, tenths of a degree
to degrees; strings go to ``node_power_supply_info`` labels.
"""

from __future__ import annotations

import os
import re

from exporters.host.collectors import sys_class
from exporters.host.options import Options
from exporters.host.sources import Sources
from exporters.host.sysfs import go_int, read_attr
from sotp.codec.exposition import MetricFamily

# sysfs file -> (metric name, divisor)
_NUMBERS = {
    "authentic": ("authentic", 1.0), "calibrate": ("calibrate", 1.0), "capacity": ("capacity", 1.0),
    "capacity_alert_max": ("capacity_alert_max", 1.0), "capacity_alert_min": ("capacity_alert_min", 1.0),
    "cycle_count": ("cyclecount", 1.0), "online": ("online", 1.0), "present": ("present", 1.0),
    "time_to_empty_now": ("time_to_empty_seconds", 1.0), "time_to_full_now": ("time_to_full_seconds", 1.0),
    "current_boot": ("current_boot", 1e6), "current_max": ("current_max", 1e6), "current_now": ("current_ampere", 1e6),
    "energy_empty": ("energy_empty", 1e6), "energy_empty_design": ("energy_empty_design", 1e6),
    "energy_full": ("energy_full", 1e6), "energy_full_design": ("energy_full_design", 1e6),
    "energy_now": ("energy_watthour", 1e6), "voltage_boot": ("voltage_boot", 1e6), "voltage_max": ("voltage_max", 1e6),
    "voltage_max_design": ("voltage_max_design", 1e6), "voltage_min": ("voltage_min", 1e6),
    "voltage_min_design": ("voltage_min_design", 1e6), "voltage_now": ("voltage_volt", 1e6),
    "voltage_ocv": ("voltage_ocv", 1e6), "charge_control_limit": ("charge_control_limit", 1e6),
    "charge_control_limit_max": ("charge_control_limit_max", 1e6), "charge_counter": ("charge_counter", 1e6),
    "charge_empty": ("charge_empty", 1e6), "charge_empty_design": ("charge_empty_design", 1e6),
    "charge_full": ("charge_full", 1e6), "charge_full_design": ("charge_full_design", 1e6),
    "charge_now": ("charge_ampere", 1e6), "charge_term_current": ("charge_term_current", 1e6),
    "constant_charge_current": ("constant_charge_current", 1e6),
    "constant_charge_current_max": ("constant_charge_current_max", 1e6),
    "constant_charge_voltage": ("constant_charge_voltage", 1e6),
    "constant_charge_voltage_max": ("constant_charge_voltage_max", 1e6),
    "precharge_current": ("precharge_current", 1e6), "input_current_limit": ("input_current_limit", 1e6),
    "power_now": ("power_watt", 1e6),
    "temp": ("temp_celsius", 10.0), "temp_alert_max": ("temp_alert_max_celsius", 10.0),
    "temp_alert_min": ("temp_alert_min_celsius", 10.0), "temp_ambient": ("temp_ambient_celsius", 10.0),
    "temp_ambient_max": ("temp_ambient_max_celsius", 10.0), "temp_ambient_min": ("temp_ambient_min_celsius", 10.0),
    "temp_max": ("temp_max_celsius", 10.0), "temp_min": ("temp_min_celsius", 10.0),
}
# parsed as numbers by procfs (a bad value fails the collector) but not published
_UNPUBLISHED = ("charge_avg", "current_avg", "energy_avg", "power_avg", "time_to_empty_avg", "time_to_full_avg",
                "voltage_avg")
_STRINGS = {"capacity_level": "capacity_level", "charge_type": "charge_type", "health": "health",
            "manufacturer": "manufacturer", "model_name": "model_name", "serial_number": "serial_number",
            "status": "status", "technology": "technology", "type": "type", "usb_type": "usb_type", "scope": "scope"}


def _supply(path: str) -> tuple[dict[str, float], dict[str, str]]:
    numbers: dict[str, float] = {}
    strings: dict[str, str] = {}
    for entry in sorted(os.scandir(path), key=lambda e: e.name):
        if not entry.is_file(follow_symlinks=False):
            continue
        try:
            value = read_attr(entry.path)
        except OSError as err:
            if isinstance(err, FileNotFoundError) or err.strerror in ("Operation not supported", "Invalid argument"):
                continue
            raise
        if entry.name in _NUMBERS or entry.name in _UNPUBLISHED:
            number = go_int(value)  # ValueError fails the collector, as procfs's vp.Err() does
            if entry.name in _NUMBERS:
                name, divisor = _NUMBERS[entry.name]
                numbers[name] = float(number) / divisor if divisor != 1.0 else float(number)
        elif entry.name in _STRINGS:
            strings[_STRINGS[entry.name]] = value
    return numbers, strings


def collect(src: Sources, opts: Options) -> list[MetricFamily]:
    base, names = sys_class(src.sys, "power_supply", "no /sys/class/power_supply")
    supplies = {name: _supply(os.path.join(base, name)) for name in names}
    ignored = re.compile(opts.powersupply_ignored_supplies)
    fams: dict[str, MetricFamily] = {}
    info = MetricFamily("node_power_supply_info", "gauge", "info of /sys/class/power_supply/<power_supply>.")
    for name, (numbers, strings) in supplies.items():
        if ignored.search(name):
            continue
        for metric, value in numbers.items():
            fam = fams.get(metric)
            if fam is None:
                fam = fams[metric] = MetricFamily(f"node_power_supply_{metric}", "gauge",
                                                  f"{metric} value of /sys/class/power_supply/<power_supply>.")
            fam.add({"power_supply": name}, value)
        labels = {"power_supply": name, **{k: v for k, v in strings.items() if v}}
        info.add(dict(sorted(labels.items())), 1.0)
    return [*fams.values(), info]
