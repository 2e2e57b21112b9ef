"""``generator.yml``: snmp_exporter's generator format.

::

    auths:                       # copied to snmp.yml with snmp_exporter's defaults filled in
      public_v2: {version: 2}
    modules:
      if_mib:
        walk: [sysUpTime, interfaces, ifXTable]          # names, MODULE::names or numeric OIDs
        lookups:
          - source_indexes: [ifIndex]
            lookup: ifAlias
            drop_source_indexes: false
        overrides:
          ifType: {type: EnumAsInfo}
          ifAlias: {ignore: true}
          ifSpeed: {scale: 1000000, offset: 0, help: "...", name: ifSpeedBits}
          someString: {regex_extracts: {Temp: [{regex: '(.*)', value: '$1'}]}, datetime_pattern: "%Y"}
        filters:
          static: [{targets: [bsnDot11EssSsid], indices: ["2", "3"]}]
          dynamic: [{oid: 1.3.6.1.2.1.2.2.1.7, targets: [1.3.6.1.2.1.2.2.1.4], values: ["1"]}]
        max_repetitions: 25      # walk parameters inline (current format) or under walk_params: (older)
        retries: 3
        timeout: 5s
        use_unconnected_udp_socket: false
        allow_nonincreasing_oids: false
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

from exporters.snmp.config import AUTH_PROTOCOLS, PRIV_PROTOCOLS, SECURITY_LEVELS
from sotp.config import from_dict, parse_duration, read_yaml_file
from sotp.errors import ConfigError

#: Types an override may set, and what they become in snmp.yml (the generator's ``metricType``).
OVERRIDE_TYPES = frozenset({
    "gauge", "counter", "OctetString", "DisplayString", "PhysAddress48", "Float", "Double",
    "InetAddressIPv4", "InetAddressIPv6", "InetAddress", "InetAddressMissingSize", "LldpPortId",
    "DateAndTime", "ParseDateAndTime", "NTPTimeStamp", "EnumAsInfo", "EnumAsStateSet",
})


def _regex(text: str, path: str) -> None:
    try:
        re.compile(text)
    except re.error as err:
        raise ConfigError(f"{path}: invalid regular expression {text!r}: {err}") from err


@dataclasses.dataclass
class RegexExtract:
    regex: str = ""
    value: str = "$1"

    def validate(self, path: str) -> None:
        _regex(self.regex, f"{path}.regex")


@dataclasses.dataclass
class Override:
    """Per metric (by name, or OID for the extraction settings): what to change in the generated metric."""

    ignore: bool = False
    regex_extracts: dict[str, list[RegexExtract]] = dataclasses.field(default_factory=dict)
    datetime_pattern: str = ""
    offset: float = 0.0
    scale: float = 0.0
    type: str = ""
    help: str = ""
    name: str = ""

    def validate(self, path: str) -> None:
        if self.type and self.type not in OVERRIDE_TYPES:
            raise ConfigError(f"{path}.type: invalid metric type override {self.type!r} "
                              f"(known: {', '.join(sorted(OVERRIDE_TYPES))})")


@dataclasses.dataclass
class Lookup:
    source_indexes: list[str] = dataclasses.field(default_factory=list)
    lookup: str = ""
    drop_source_indexes: bool = False

    def validate(self, path: str) -> None:
        if not self.lookup:
            raise ConfigError(f"{path}.lookup: required (the MIB object whose value becomes the label)")
        if not self.source_indexes:
            raise ConfigError(f"{path}.source_indexes: required (the index labels the lookup reads)")


@dataclasses.dataclass
class StaticFilter:
    targets: list[str] = dataclasses.field(default_factory=list)
    indices: list[str] = dataclasses.field(default_factory=list)

    def validate(self, path: str) -> None:
        for i, index in enumerate(self.indices):
            if not re.fullmatch(r"[+-]?\d+", index):
                raise ConfigError(f"{path}.indices[{i}]: invalid index {index!r}; index must be an integer")


@dataclasses.dataclass
class DynamicFilter:
    oid: str = ""
    targets: list[str] = dataclasses.field(default_factory=list)
    values: list[str] = dataclasses.field(default_factory=list)

    def validate(self, path: str) -> None:
        if not self.oid:
            raise ConfigError(f"{path}.oid: required (the column whose value decides)")


@dataclasses.dataclass
class Filters:
    static: list[StaticFilter] = dataclasses.field(default_factory=list)
    dynamic: list[DynamicFilter] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class WalkParams:
    """Per-request settings copied to the module (only those given are written)."""

    max_repetitions: int | None = None
    retries: int | None = None
    timeout: str | float | None = None
    use_unconnected_udp_socket: bool = False
    allow_nonincreasing_oids: bool = False

    def validate(self, path: str) -> None:
        if self.timeout is not None:
            self.timeout = go_duration(parse_duration(self.timeout, f"{path}.timeout"))
        if self.max_repetitions is not None and not 0 <= self.max_repetitions < 2**32:
            raise ConfigError(f"{path}.max_repetitions: {self.max_repetitions} out of range")


@dataclasses.dataclass
class ModuleConfig:
    walk: list[str] = dataclasses.field(default_factory=list)
    lookups: list[Lookup] = dataclasses.field(default_factory=list)
    overrides: dict[str, Override] = dataclasses.field(default_factory=dict)
    filters: Filters = dataclasses.field(default_factory=Filters)
    walk_params: WalkParams | None = None
    max_repetitions: int | None = None
    retries: int | None = None
    timeout: str | float | None = None
    use_unconnected_udp_socket: bool = False
    allow_nonincreasing_oids: bool = False

    def validate(self, path: str) -> None:
        for i, oid in enumerate(self.walk):
            if oid.startswith("."):
                raise ConfigError(f"{path}.walk[{i}]: invalid OID {oid}, prefix of '.' should be removed")
        def given(value: object) -> bool:  # retries: 0 is a setting; None and false are "not given"
            return value is not None and value is not False

        inline = from_dict(WalkParams, {k: getattr(self, k) for k in (
            "max_repetitions", "retries", "timeout", "use_unconnected_udp_socket", "allow_nonincreasing_oids")
            if given(getattr(self, k))}, path)
        if self.walk_params is not None:
            nested = dataclasses.asdict(self.walk_params)
            nested.update({k: v for k, v in dataclasses.asdict(inline).items() if given(v)})
            self.walk_params = WalkParams(**nested)
        else:
            self.walk_params = inline

    @property
    def params(self) -> WalkParams:
        assert self.walk_params is not None
        return self.walk_params


@dataclasses.dataclass
class GeneratorAuth:
    """An ``auths:`` entry, with snmp_exporter's defaults (they are written out in full)."""

    community: str = "public"
    security_level: str = "noAuthNoPriv"
    username: str = ""
    password: str = ""
    auth_protocol: str = "MD5"
    priv_protocol: str = "DES"
    priv_password: str = ""
    context_name: str = ""
    version: int = 2

    def validate(self, path: str) -> None:
        if self.version not in (1, 2, 3):
            raise ConfigError(f"{path}.version: SNMP version must be 1, 2 or 3. Got: {self.version}")
        if self.version != 3:
            return
        if self.security_level not in SECURITY_LEVELS:
            raise ConfigError(f"{path}.security_level: must be one of {', '.join(SECURITY_LEVELS)}")
        if self.security_level == "authPriv":
            if not self.priv_password:
                raise ConfigError(f"{path}.priv_password: required for SNMPv3 with priv")
            if self.priv_protocol not in PRIV_PROTOCOLS:
                raise ConfigError(f"{path}.priv_protocol: must be one of {', '.join(PRIV_PROTOCOLS)}")
        if self.security_level != "noAuthNoPriv":
            if not self.password:
                raise ConfigError(f"{path}.password: required for SNMPv3 with auth")
            if self.auth_protocol not in AUTH_PROTOCOLS:
                raise ConfigError(f"{path}.auth_protocol: must be one of {', '.join(AUTH_PROTOCOLS)}")
        if not self.username:
            raise ConfigError(f"{path}.username: required for SNMPv3")


@dataclasses.dataclass
class GeneratorConfig:
    auths: dict[str, GeneratorAuth] = dataclasses.field(default_factory=dict)
    modules: dict[str, ModuleConfig] = dataclasses.field(default_factory=dict)
    version: int = 0


def go_duration(seconds: float) -> str:
    """Go's ``time.Duration.String()`` (``5s``, ``1m30s``, ``500ms``, ``1h0m0s``), as yaml.v2 writes durations."""
    ns = round(seconds * 1e9)
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    ns = abs(ns)
    if ns < 1_000_000_000:
        for unit, size in (("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
            if ns >= size:
                return sign + _trim(ns / size) + unit
    hours, rest = divmod(ns, 3600 * 10**9)
    minutes, rest = divmod(rest, 60 * 10**9)
    secs = _trim(rest / 1e9) + "s"
    if hours:
        return f"{sign}{hours}h{minutes}m{secs}"
    if minutes:
        return f"{sign}{minutes}m{secs}"
    return sign + secs


def _trim(value: float) -> str:
    text = f"{value:.9f}".rstrip("0").rstrip(".")
    return text or "0"


def parse_generator_config(data: Any, source: str) -> GeneratorConfig:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping with auths: and modules:")
    for name, body in (data.get("modules") or {}).items():
        if isinstance(body, dict) and isinstance(body.get("walk_params"), dict):
            wp = body["walk_params"]
            if "version" in wp or "auth" in wp:
                raise ConfigError(f"{source}: modules.{name}.walk_params: version/auth belong in auths: "
                                  "(snmp_exporter >= 0.23 format); move them there and pick with auth=")
    return from_dict(GeneratorConfig, data, source)


def load_generator_config(path: str | Path) -> GeneratorConfig:
    data = read_yaml_file(path, "generator config", " (give the generator.yml path)")
    return parse_generator_config(data, str(path))
