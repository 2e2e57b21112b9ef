"""``icmp.yml``: blackbox_exporter's ``modules:`` (icmp prober only) plus SOTP's ``continuous:`` section.

A blackbox.yml whose modules use the icmp prober loads unchanged; ``count`` and ``interval`` are SOTP
additions (blackbox sends one echo per probe). Example::

    modules:
      icmp:
        prober: icmp
        timeout: 5s
        icmp:
          preferred_ip_protocol: ip4
          count: 3
          interval: 200ms
    continuous:
      targets: [router1.example.net, 192.0.2.1]
      interval: 1s
    socket: auto          # auto | datagram | raw
    max_in_flight: 1024
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from sotp.config import Config, from_dict, load_config, parse_duration, read_yaml_file
from sotp.errors import ConfigError
from sotp.inventory import DEFAULT_ICMP_EXPORTER, inventory

#: smokeping_prober's RTT buckets: 50 µs doubling to 26.2144 s (20 buckets, then +Inf).
DEFAULT_BUCKETS: tuple[float, ...] = tuple(5e-05 * 2**k for k in range(20))


def _check_common(path: str, payload_size: int, ttl: int | None, source: str) -> None:
    if not 0 <= payload_size <= 65000:
        raise ConfigError(f"{path}.payload_size: {payload_size} is out of range (0 to 65000 bytes)")
    if ttl is not None and not 1 <= ttl <= 255:
        raise ConfigError(f"{path}.ttl: {ttl} is out of range (1 to 255)")
    if source:
        try:
            ipaddress.ip_address(source)
        except ValueError as err:
            raise ConfigError(f"{path}.source_ip_address: {source!r} is not an IP address") from err


@dataclass
class ICMPProbe:
    """A module's ``icmp:`` options (blackbox_exporter's names)."""

    preferred_ip_protocol: Literal["ip4", "ip6"] = "ip6"
    ip_protocol_fallback: bool = True
    source_ip_address: str = ""
    #: Echo data bytes; 0 means the default of 56 (ping's).
    payload_size: int = 0
    dont_fragment: bool = False
    ttl: int | None = None
    #: SOTP: echoes per probe, sent ``interval`` apart; the probe succeeds when any is answered.
    count: int = 1
    interval: str = "1s"

    def validate(self, path: str) -> None:
        _check_common(path, self.payload_size, self.ttl, self.source_ip_address)
        if not 1 <= self.count <= 100:
            raise ConfigError(f"{path}.count: {self.count} is out of range (1 to 100)")
        if self.interval_s <= 0:
            raise ConfigError(f"{path}.interval: must be positive, got {self.interval!r}")

    @property
    def interval_s(self) -> float:
        return parse_duration(self.interval, "interval")


@dataclass
class Module:
    """One entry of ``modules:``; ``timeout: 0`` means "the scrape's timeout minus the offset"."""

    prober: str = "icmp"
    timeout: str = "0s"
    icmp: ICMPProbe = field(default_factory=ICMPProbe)

    def validate(self, path: str) -> None:
        if self.prober != "icmp":
            raise ConfigError(
                f"{path}.prober: {self.prober!r} is not supported by the sotp icmp exporter (only 'icmp'); "
                "keep other probers in blackbox_exporter's own config"
            )
        self.timeout_s  # noqa: B018 - parse now so a bad duration fails at load time

    @property
    def timeout_s(self) -> float:
        return parse_duration(self.timeout, "timeout")


@dataclass
class Continuous:
    """``continuous:``: targets pinged in the background every ``interval`` (smokeping_prober's model)."""

    targets: list[str] = field(default_factory=list)
    interval: str = "1s"
    timeout: str = "1s"
    payload_size: int = 56
    preferred_ip_protocol: Literal["ip4", "ip6"] = "ip6"
    ip_protocol_fallback: bool = True
    source_ip_address: str = ""
    dont_fragment: bool = False
    ttl: int | None = None
    #: How often host names are resolved again (an address change starts new series).
    resolve_interval: str = "5m"
    buckets: list[float] = field(default_factory=lambda: list(DEFAULT_BUCKETS))

    def validate(self, path: str) -> None:
        _check_common(path, self.payload_size, self.ttl, self.source_ip_address)
        for key in ("interval", "timeout", "resolve_interval"):
            if parse_duration(getattr(self, key), f"{path}.{key}") <= 0:
                raise ConfigError(f"{path}.{key}: must be positive, got {getattr(self, key)!r}")
        if not self.buckets or sorted(set(self.buckets)) != self.buckets:
            raise ConfigError(f"{path}.buckets: must be a non-empty, strictly increasing list of seconds")
        if len(set(self.targets)) != len(self.targets):
            raise ConfigError(f"{path}.targets: lists a host twice")

    @property
    def interval_s(self) -> float:
        return parse_duration(self.interval)

    @property
    def timeout_s(self) -> float:
        return parse_duration(self.timeout)

    @property
    def resolve_interval_s(self) -> float:
        return parse_duration(self.resolve_interval)


def _default_modules() -> dict[str, Module]:
    return {"icmp": Module()}


@dataclass
class IcmpConfig:
    """The whole ``icmp.yml`` (also the ``icmp:`` section of ``sotp.yml``)."""

    modules: dict[str, Module] = field(default_factory=_default_modules)
    continuous: Continuous = field(default_factory=Continuous)
    socket: Literal["auto", "datagram", "raw"] = "auto"
    #: Echo requests awaiting a reply at once, over all probes and continuous pings.
    max_in_flight: int = 1024
    #: Seconds kept from the scrape's X-Prometheus-Scrape-Timeout-Seconds (blackbox's --timeout-offset).
    timeout_offset: float = 0.5
    #: In sotp.yml: host:port at which the worker scrapes this exporter for the devices' pings
    #: (``sotp up`` sets its own). The exporter itself ignores it.
    exporter: str = DEFAULT_ICMP_EXPORTER

    def validate(self, path: str) -> None:
        if not 1 <= self.max_in_flight <= 65535:
            raise ConfigError(f"{path or '<root>'}.max_in_flight: {self.max_in_flight} is out of range (1 to 65535)")
        host, sep, port = self.exporter.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ConfigError(f"{path or '<root>'}.exporter: {self.exporter!r} is not host:port (e.g. 127.0.0.1:9115)")


def section(config: Config) -> IcmpConfig:
    """The ``icmp:`` section of a sotp.yml, with every device's ``icmp:`` address added to the continuous targets."""
    cfg = from_dict(IcmpConfig, config.icmp, "icmp")
    for target in inventory(config).icmp_targets():
        if target.address not in cfg.continuous.targets:
            cfg.continuous.targets.append(target.address)
    return cfg


def load(path: str | Path | None) -> IcmpConfig:
    """Load ``icmp.yml``, or the ``icmp:`` section of a ``sotp.yml`` (a file with a top-level ``icmp`` key);
    ``None`` gives the defaults (module ``icmp``, no continuous targets)."""
    if path is None:
        return IcmpConfig()
    p = Path(path)
    data = read_yaml_file(p, "icmp config file")
    if isinstance(data, dict) and ("icmp" in data or "devices" in data):
        # A whole sotp.yml: validate it as such, then read its icmp: section (same schema as icmp.yml).
        return section(load_config(p))
    return from_dict(IcmpConfig, data)
