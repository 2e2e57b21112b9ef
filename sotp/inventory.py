"""The ``devices:`` inventory and the ``snmp:`` section of ``sotp.yml``: each network device named once.

A device lists what to do with it — SNMP (through ``sotp exporter snmp``), ICMP (the ICMP exporter's
continuous ping) and SSH configuration backups — and the worker derives its scrape jobs and backup list
from this, all carrying the label ``device="<name>"`` so one device is one row on the Network page::

    snmp: {config_file: snmp.yml, module: "if_mib,system", auth: public_v2}
    devices:
      - name: edge1
        address: 192.0.2.1                  # the default for snmp.target, icmp.address and backup.host
        labels: {site: lab}                 # added to every series of the device
        snmp: {target: "192.0.2.1:161", module: if_mib, auth: core_v3}   # or `snmp: true` for the defaults
        icmp: true
        backup: {device_type: cisco_ios, username: backup, password: env:EDGE1_PASSWORD}

``snmp.targets`` (a plain list of addresses) is a shorthand for devices with only ``snmp: true``, named by
their address. This module only parses and checks the inventory; the worker turns it into jobs
(``worker.inventory``) and the backup section checks each device's ``backup:`` keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from sotp.config import Config, from_dict
from sotp.errors import ConfigError
from sotp.model import LABEL_NAME_RE

#: The label joining a device's SNMP, ICMP and backup series.
DEVICE_LABEL: Final = "device"
#: Labels a device's ``labels:`` may not set: the scrape sets them.
RESERVED_LABELS: Final = frozenset({DEVICE_LABEL, "instance", "job", "host", "ip"})
DEFAULT_SNMP_EXPORTER: Final = "127.0.0.1:9116"
DEFAULT_ICMP_EXPORTER: Final = "127.0.0.1:9115"


@dataclass
class SnmpSection:
    """``snmp:`` — where the SNMP exporter is, what it loads, and the defaults of every device."""

    #: snmp_exporter-style module file for ``sotp exporter snmp`` (empty: the built-in modules and auths).
    config_file: str = ""
    #: host:port at which the worker reaches ``sotp exporter snmp`` (``sotp up`` sets its own).
    exporter: str = DEFAULT_SNMP_EXPORTER
    module: str = "if_mib,system"
    auth: str = "public_v2"
    #: Shorthand: devices known only by an SNMP address (each named by it).
    targets: list[str] = field(default_factory=list)

    def validate(self, path: str) -> None:
        _check_hostport(self.exporter, f"{path}.exporter")
        if not self.module.strip() or any(not m.strip() for m in self.module.split(",")):
            raise ConfigError(f"{path}.module: give module names separated by commas, e.g. if_mib,system")
        if not self.auth:
            raise ConfigError(f"{path}.auth: must name an auth of the SNMP config (e.g. public_v2)")
        if len(set(self.targets)) != len(self.targets):
            raise ConfigError(f"{path}.targets: lists an address twice")


@dataclass
class DeviceSnmp:
    """A device's ``snmp:``; empty fields take the device's address and the ``snmp:`` section's defaults."""

    target: str = ""
    module: str = ""
    auth: str = ""


@dataclass
class DeviceIcmp:
    """A device's ``icmp:``: the address pinged (default: the device's address)."""

    address: str = ""


@dataclass
class InventoryDevice:
    """One entry of ``devices:``."""

    name: str
    address: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    snmp: DeviceSnmp | bool | None = None
    icmp: DeviceIcmp | bool | None = None
    #: ``backup.devices[]`` keys except ``name``; ``host`` defaults to ``address``. Checked by the backups.
    backup: dict[str, Any] | None = None

    def validate(self, path: str) -> None:
        if not self.name or not self.name.strip():
            raise ConfigError(f"{path}.name: must not be empty")
        for key in self.labels:
            if not LABEL_NAME_RE.match(key) or key.startswith("__"):
                raise ConfigError(f"{path}.labels.{key}: not a valid label name")
            if key in RESERVED_LABELS:
                raise ConfigError(f"{path}.labels.{key}: set by SOTP itself ({', '.join(sorted(RESERVED_LABELS))})")
        if isinstance(self.snmp, DeviceSnmp) and not (self.snmp.target or self.address):
            raise ConfigError(f"{path}.snmp.target: set it or the device's address")
        if self.snmp is True and not self.address:
            raise ConfigError(f"{path}.address: snmp: true needs the device's address")
        if isinstance(self.icmp, DeviceIcmp) and not (self.icmp.address or self.address):
            raise ConfigError(f"{path}.icmp.address: set it or the device's address")
        if self.icmp is True and not self.address:
            raise ConfigError(f"{path}.address: icmp: true needs the device's address")
        if self.backup is not None:
            if "name" in self.backup:
                raise ConfigError(f"{path}.backup.name: the device's name is its backup name; remove this key")
            if not (self.backup.get("host") or self.address):
                raise ConfigError(f"{path}.backup.host: set it or the device's address")
        if not (self.snmp or self.icmp or self.backup is not None):
            raise ConfigError(f"{path}: the device has none of snmp, icmp or backup, so nothing would use it")


@dataclass(frozen=True)
class SnmpTarget:
    """What the worker scrapes for one device over SNMP."""

    device: str
    target: str
    module: str
    auth: str
    labels: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class IcmpTarget:
    """What the ICMP exporter pings continuously for one device."""

    device: str
    address: str
    labels: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Inventory:
    """The parsed ``devices:`` (plus ``snmp.targets``) and ``snmp:`` sections."""

    snmp: SnmpSection
    devices: tuple[InventoryDevice, ...]

    def snmp_targets(self) -> list[SnmpTarget]:
        out = []
        for d in self.devices:
            if not d.snmp:
                continue
            spec = d.snmp if isinstance(d.snmp, DeviceSnmp) else DeviceSnmp()
            out.append(SnmpTarget(d.name, spec.target or d.address, spec.module or self.snmp.module,
                                  spec.auth or self.snmp.auth, tuple(sorted(d.labels.items()))))
        return out

    def icmp_targets(self) -> list[IcmpTarget]:
        out = []
        for d in self.devices:
            if not d.icmp:
                continue
            spec = d.icmp if isinstance(d.icmp, DeviceIcmp) else DeviceIcmp()
            out.append(IcmpTarget(d.name, spec.address or d.address, tuple(sorted(d.labels.items()))))
        return out

    def backup_devices(self) -> list[dict[str, Any]]:
        """``backup.devices[]`` entries (raw, checked by the backup section) for devices with ``backup:``."""
        return [
            {"host": d.address, **d.backup, "name": d.name} for d in self.devices if d.backup is not None
        ]

    def labels_of(self, device: str) -> dict[str, str]:
        for d in self.devices:
            if d.name == device:
                return dict(d.labels)
        return {}


def _check_hostport(value: str, path: str) -> None:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{path}: {value!r} is not host:port (e.g. 127.0.0.1:9116)")


def inventory(config: Config) -> Inventory:
    """The validated inventory: ``devices:`` and one device per ``snmp.targets`` address."""
    snmp = from_dict(SnmpSection, config.snmp, "snmp")
    devices = [from_dict(InventoryDevice, raw, f"devices[{i}]") for i, raw in enumerate(config.devices)]
    names = {d.name for d in devices}
    for address in snmp.targets:
        if address in names:
            raise ConfigError(f"snmp.targets: {address!r} is also a device name in devices:; list it once")
        devices.append(InventoryDevice(name=address, address=address, snmp=True))
    seen: set[str] = set()
    for i, d in enumerate(devices):
        if d.name in seen:
            raise ConfigError(f"devices[{i}].name: {d.name!r} is listed twice")
        seen.add(d.name)
    return Inventory(snmp, tuple(devices))


__all__ = [
    "DEFAULT_ICMP_EXPORTER",
    "DEFAULT_SNMP_EXPORTER",
    "DEVICE_LABEL",
    "DeviceIcmp",
    "DeviceSnmp",
    "IcmpTarget",
    "Inventory",
    "InventoryDevice",
    "SnmpSection",
    "SnmpTarget",
    "inventory",
]
