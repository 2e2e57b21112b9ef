"""The ``backup:`` section of sotp.yml: schedule, limits and the device inventory.

Credentials are references (``env:NAME`` or ``file:/path``, see :func:`sotp.config.resolve_secret`);
a literal password in the file is refused so it cannot leak through the config or its diffs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from sotp.config import Config, from_dict, parse_duration
from sotp.errors import ConfigError
from sotp.inventory import inventory
from sotp.model import InvalidLabels, validate_label_name
from worker.backup.platforms import PLATFORMS


def _secret_ref(value: str, path: str) -> None:
    if value and not value.startswith(("env:", "file:")):
        raise ConfigError(f"{path}: give credentials as env:NAME or file:/path, never inline")


@dataclass
class Device:
    """One device to back up."""

    name: str
    host: str
    device_type: str
    username: str
    port: int = 22
    password: str = ""
    secret: str = ""  # the enable password
    key_file: str = ""
    command: str = ""  # overrides the platform's command
    #: Labels of the device: put on its backup metrics and stored with its versions; a tenant-bound token
    #: reads the device's configuration only when these carry its tenant label (e.g. ``{team: a}``).
    labels: dict[str, str] = field(default_factory=dict)
    #: Overrides ``backup.mask_secrets`` for this device.
    mask_secrets: bool | None = None

    def validate(self, path: str) -> None:
        if self.device_type not in PLATFORMS and not self.command:
            raise ConfigError(
                f"{path}.device_type: {self.device_type!r} is unknown; use one of {', '.join(sorted(PLATFORMS))} "
                "or set command"
            )
        _secret_ref(self.password, f"{path}.password")
        _secret_ref(self.secret, f"{path}.secret")
        if not (self.password or self.key_file):
            raise ConfigError(f"{path}: set password (env:/file:) or key_file")
        for name in self.labels:
            try:
                validate_label_name(name)
            except InvalidLabels as err:
                raise ConfigError(f"{path}.labels: {err}") from None
            if name.startswith("__") or name in ("device", "job"):
                raise ConfigError(f"{path}.labels: {name!r} is reserved (set by the backup metrics)")


HOST_KEY_CHECKING = ("strict", "accept-new")


@dataclass
class BackupConfig:
    """``backup:``"""

    interval: str = "1h"
    timeout: str = "30s"
    concurrency: int = 8
    #: OpenSSH known_hosts file holding the devices' host keys (``[host]:port`` entries for ports other
    #: than 22). Connections to a device whose key is missing or different are refused.
    known_hosts: str = "~/.ssh/known_hosts"
    #: ``strict`` (default): only keys already in ``known_hosts``. ``accept-new`` (OpenSSH's
    #: ``StrictHostKeyChecking=accept-new``, trust on first use): a device never seen before has its key
    #: added to ``known_hosts`` on first contact; a *changed* key is still refused.
    host_key_checking: str = "strict"
    #: Replace passwords, keys, hashes and SNMP communities before storing (worker/backup/masking.py).
    #: ``false`` stores configurations as fetched, secrets included: an explicit opt-out.
    mask_secrets: bool = True
    devices: list[Device] = field(default_factory=list)

    def validate(self, path: str) -> None:
        parse_duration(self.interval, f"{path}.interval")
        parse_duration(self.timeout, f"{path}.timeout")
        if self.concurrency < 1:
            raise ConfigError(f"{path}.concurrency: must be at least 1")
        if self.host_key_checking not in HOST_KEY_CHECKING:
            raise ConfigError(
                f"{path}.host_key_checking: {self.host_key_checking!r} is not one of {', '.join(HOST_KEY_CHECKING)}"
            )
        if not self.known_hosts:
            raise ConfigError(f"{path}.known_hosts: must not be empty (default ~/.ssh/known_hosts)")
        names = [d.name for d in self.devices]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ConfigError(f"{path}.devices: duplicate device name(s) {', '.join(dupes)}")

    @property
    def interval_s(self) -> float:
        return parse_duration(self.interval)

    @property
    def timeout_s(self) -> float:
        return parse_duration(self.timeout)

    @property
    def known_hosts_path(self) -> str:
        return os.path.expanduser(self.known_hosts)


def backup_config(config: Config) -> BackupConfig:
    """Validate and return the ``backup:`` section, with the devices of ``devices:`` that have ``backup:``."""
    cfg = from_dict(BackupConfig, config.backup, "backup")
    inv = inventory(config)
    index = {d.name: i for i, d in enumerate(inv.devices)}
    own = {d.name for d in cfg.devices}
    for raw in inv.backup_devices():
        path = f"devices[{index[raw['name']]}].backup"
        if raw["name"] in own:
            raise ConfigError(f"{path}: device {raw['name']!r} is also in backup.devices; list it once")
        labels = inv.labels_of(raw["name"])
        cfg.devices.append(from_dict(Device, {**raw, "labels": labels} if labels else raw, path))
    return cfg
