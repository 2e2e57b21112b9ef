"""Loading ``snmp.yml``: snmp_exporter's model, with credentials (``auths``) kept apart from ``modules``.

Two file shapes are accepted, both as upstream wrote them:

* v0.23 and later: ``{auths: {name: Auth}, modules: {name: Module}}``;
* v0.21 and earlier: every top-level key is a module, and a module may carry ``version`` and ``auth``
  inline (Debian's ``prometheus-snmp-exporter`` 0.21 and its generated ``if_mib`` use this shape).
  Such inline credentials stay attached to the module and are used when a request names no ``auth``.

SOTP's own ``if_mib``, ``system`` and ``host_resources`` modules ship as package data and are always
available; a module of the same name in the user's file replaces them. An optional top-level
``exporter:`` section holds SOTP's settings (backend, counter wrapping, concurrency limits).
Secrets (``community``, ``password``, ``priv_password``) may be written as ``env:VAR`` or ``file:/path``.
"""

from __future__ import annotations

import dataclasses
import re
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml

from sotp.config import from_dict, parse_duration, read_yaml_file, resolve_secret
from sotp.errors import ConfigError

BUILTIN_MODULE_FILES = ("if_mib.yml", "system.yml", "host_resources.yml")

#: Metric types whose value is the number in the varbind.
NUMERIC_TYPES = frozenset({"counter", "gauge", "Float", "Double"})
#: Metric types with their own rendering (see collector.py).
SPECIAL_TYPES = frozenset(
    {"DateAndTime", "ParseDateAndTime", "NTPTimeStamp", "EnumAsInfo", "EnumAsStateSet", "Bits"}
)
#: Types that render a value or an index as a string label (also valid as index types, see below).
STRING_TYPES = frozenset(
    {
        "OctetString",
        "DisplayString",
        "PhysAddress48",
        "IpAddr",
        "InetAddressIPv4",
        "InetAddressIPv6",
        "InetAddress",
        "InetAddressMissingSize",
        "LldpPortId",
        "ObjectIdentifier",
    }
)
INDEX_TYPES = frozenset(
    {
        "Integer32",
        "Integer",
        "gauge",
        "counter",
        "PhysAddress48",
        "OctetString",
        "DisplayString",
        "InetAddressIPv4",
        "InetAddressIPv6",
        "InetAddress",
        "InetAddressMissingSize",
        "LldpPortId",
        "EnumAsInfo",
    }
)
SECURITY_LEVELS = ("noAuthNoPriv", "authNoPriv", "authPriv")
AUTH_PROTOCOLS = ("MD5", "SHA", "SHA224", "SHA256", "SHA384", "SHA512")
PRIV_PROTOCOLS = ("DES", "AES", "AES192", "AES256", "AES192C", "AES256C")
_OID_RE = re.compile(r"^\.?\d+(\.\d+)*$")


def normalize_oid(oid: str, path: str) -> str:
    """``1.3.6.1`` without a leading dot; raise :class:`ConfigError` for anything that is not numeric."""
    if not _OID_RE.match(oid):
        raise ConfigError(f"{path}: {oid!r} is not a numeric OID (use the generator to resolve MIB names)")
    return oid.lstrip(".")


@dataclasses.dataclass
class Auth:
    """Credentials: v1/v2c community, or a v3 USM user (``security_level`` picks what is used)."""

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
            raise ConfigError(f"{path}.version: {self.version} is not an SNMP version (use 1, 2 or 3)")
        if self.security_level not in SECURITY_LEVELS:
            raise ConfigError(f"{path}.security_level: {self.security_level!r} is not one of {SECURITY_LEVELS}")
        if self.auth_protocol not in AUTH_PROTOCOLS:
            raise ConfigError(f"{path}.auth_protocol: {self.auth_protocol!r} is not one of {AUTH_PROTOCOLS}")
        if self.priv_protocol not in PRIV_PROTOCOLS:
            raise ConfigError(f"{path}.priv_protocol: {self.priv_protocol!r} is not one of {PRIV_PROTOCOLS}")
        self.community = resolve_secret(self.community, f"{path}.community")
        self.password = resolve_secret(self.password, f"{path}.password")
        self.priv_password = resolve_secret(self.priv_password, f"{path}.priv_password")
        if self.version == 3:
            if not self.username:
                raise ConfigError(f"{path}.username: required for version 3")
            if self.security_level != "noAuthNoPriv" and not self.password:
                raise ConfigError(f"{path}.password: required for security_level {self.security_level}")
            if self.security_level == "authPriv" and not self.priv_password:
                raise ConfigError(f"{path}.priv_password: required for security_level authPriv")


@dataclasses.dataclass
class Index:
    """One index of a table: how the OID suffix becomes the label ``labelname``."""

    labelname: str = ""
    type: str = ""
    fixed_size: int = 0
    implied: bool = False
    enum_values: dict[int, str] = dataclasses.field(default_factory=dict)

    def validate(self, path: str) -> None:
        if not self.labelname:
            raise ConfigError(f"{path}.labelname: required")
        if self.type not in INDEX_TYPES:
            known = ", ".join(sorted(INDEX_TYPES))
            raise ConfigError(f"{path}.type: unknown index type {self.type!r} (known: {known})")


@dataclasses.dataclass
class Lookup:
    """Another column at the same index that becomes label ``labelname`` (``labels: []`` drops it)."""

    labels: list[str] = dataclasses.field(default_factory=list)
    labelname: str = ""
    oid: str = ""
    type: str = ""

    def validate(self, path: str) -> None:
        if not self.labelname:
            raise ConfigError(f"{path}.labelname: required")
        if self.labels:
            self.oid = normalize_oid(self.oid, f"{path}.oid")


@dataclasses.dataclass
class RegexpExtract:
    """A Go-style regex and replacement (``$1``) that extracts a number from a string value."""

    regex: str = ""
    value: str = "$1"

    def validate(self, path: str) -> None:
        try:
            re.compile(self.regex)
        except re.error as err:
            raise ConfigError(f"{path}.regex: invalid regular expression {self.regex!r}: {err}") from err


@dataclasses.dataclass
class DynamicFilter:
    """Walk ``oid`` first; only indices whose value matches one of ``values`` (regexes) are then
    fetched from the ``targets`` columns (with GETs instead of walking them)."""

    oid: str = ""
    targets: list[str] = dataclasses.field(default_factory=list)
    values: list[str] = dataclasses.field(default_factory=list)

    def validate(self, path: str) -> None:
        self.oid = normalize_oid(self.oid, f"{path}.oid")
        self.targets = [normalize_oid(t, f"{path}.targets[{i}]") for i, t in enumerate(self.targets)]
        for i, value in enumerate(self.values):
            try:
                re.compile(value)
            except re.error as err:
                raise ConfigError(f"{path}.values[{i}]: invalid regular expression {value!r}: {err}") from err


@dataclasses.dataclass
class Metric:
    """One MIB object: ``name`` (metric name), ``oid``, ``type``, and for tables indexes and lookups.

    ``scale`` (when not 0) multiplies and then ``offset`` adds to the value; ``datetime_pattern`` is the
    strftime-style pattern of a ``ParseDateAndTime`` string."""

    name: str = ""
    oid: str = ""
    type: str = ""
    help: str = ""
    indexes: list[Index] = dataclasses.field(default_factory=list)
    lookups: list[Lookup] = dataclasses.field(default_factory=list)
    enum_values: dict[int, str] = dataclasses.field(default_factory=dict)
    regex_extracts: dict[str, list[RegexpExtract]] = dataclasses.field(default_factory=dict)
    datetime_pattern: str = ""
    offset: float = 0.0
    scale: float = 0.0

    def validate(self, path: str) -> None:
        if not self.name:
            raise ConfigError(f"{path}.name: required")
        self.oid = normalize_oid(self.oid, f"{path}.oid")
        if self.type == "ParseDateAndTime" and not self.datetime_pattern:
            raise ConfigError(f"{path}.datetime_pattern: required for type ParseDateAndTime (e.g. '%Y-%m-%d %H:%M:%S')")
        known = NUMERIC_TYPES | SPECIAL_TYPES | STRING_TYPES
        if self.type not in known:
            raise ConfigError(f"{path}.type: unknown metric type {self.type!r} (known: {', '.join(sorted(known))})")
        # A lookup reads the sub-ids of an index, or the value of an earlier lookup (chained lookups).
        known_labels = {i.labelname for i in self.indexes}
        for j, lookup in enumerate(self.lookups):
            for label in lookup.labels:
                if label not in known_labels:
                    raise ConfigError(
                        f"{path}.lookups[{j}].labels: {label!r} is neither an index "
                        f"nor an earlier lookup of {self.name}"
                    )
            known_labels.add(lookup.labelname)


@dataclasses.dataclass
class Module:
    """What to fetch (``walk`` subtrees, ``get`` OIDs) and how to name it; walk parameters per request."""

    walk: list[str] = dataclasses.field(default_factory=list)
    get: list[str] = dataclasses.field(default_factory=list)
    metrics: list[Metric] = dataclasses.field(default_factory=list)
    filters: list[DynamicFilter] = dataclasses.field(default_factory=list)
    max_repetitions: int = 25
    retries: int = 3
    timeout: float | str = 5.0
    use_unconnected_udp_socket: bool = False
    allow_nonincreasing_oids: bool = False
    # v0.21 shape only: credentials inline in the module.
    version: int | None = None
    auth: dict[str, Any] | None = None
    inline_auth: Auth | None = dataclasses.field(default=None, metadata={"key": "__inline_auth__"})

    @property
    def timeout_s(self) -> float:
        assert isinstance(self.timeout, float)
        return self.timeout

    def validate(self, path: str) -> None:
        self.walk = [normalize_oid(o, f"{path}.walk[{i}]") for i, o in enumerate(self.walk)]
        self.get = [normalize_oid(o, f"{path}.get[{i}]") for i, o in enumerate(self.get)]
        self.timeout = parse_duration(self.timeout, f"{path}.timeout")
        if self.timeout <= 0:
            raise ConfigError(f"{path}.timeout: must be positive")
        if self.retries < 0:
            raise ConfigError(f"{path}.retries: must be >= 0")
        if not 0 <= self.max_repetitions <= 10000:
            raise ConfigError(f"{path}.max_repetitions: {self.max_repetitions} out of range 0..10000")
        if self.version is not None or self.auth is not None:
            data = dict(self.auth or {})
            if self.version is not None:
                data["version"] = self.version
            self.inline_auth = from_dict(Auth, data, f"{path}.auth")


@dataclasses.dataclass
class ExporterSettings:
    """SOTP's own settings (top-level ``exporter:``); command-line flags override them."""

    backend: Literal["pysnmp", "ezsnmp", "native"] = "pysnmp"
    wrap_large_counters: bool = True
    #: Requests to devices in flight at once over the whole exporter.
    max_concurrent_scrapes: int = 64
    #: Scrapes of one target in flight at once (more wait: protects small devices).
    max_concurrent_per_target: int = 2
    #: Upper bound for a whole /snmp request when Prometheus sends no scrape-timeout header.
    scrape_timeout: float | str = 10.0

    def validate(self, path: str) -> None:
        self.scrape_timeout = parse_duration(self.scrape_timeout, f"{path}.scrape_timeout")
        if self.max_concurrent_scrapes < 1 or self.max_concurrent_per_target < 1:
            raise ConfigError(f"{path}: concurrency limits must be >= 1")


@dataclasses.dataclass
class SnmpConfig:
    """The whole configuration: named auths, named modules and the exporter's settings."""

    auths: dict[str, Auth] = dataclasses.field(default_factory=dict)
    modules: dict[str, Module] = dataclasses.field(default_factory=dict)
    exporter: ExporterSettings = dataclasses.field(default_factory=ExporterSettings)
    version: int = 0


def default_auths() -> dict[str, Auth]:
    """``public_v1`` and ``public_v2``, as in upstream's default snmp.yml."""
    return {"public_v1": Auth(version=1), "public_v2": Auth(version=2)}


def parse_config(data: Any, source: str = "snmp.yml") -> SnmpConfig:
    """Build a config from parsed YAML in either shape (see the module docstring)."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
    if "auths" in data or "modules" in data:
        return from_dict(SnmpConfig, data, source)
    rest = {k: v for k, v in data.items() if k != "exporter"}
    modules = {str(name): from_dict(Module, body, f"{source}: {name}") for name, body in rest.items()}
    exporter = from_dict(ExporterSettings, data.get("exporter"), f"{source}: exporter")
    return SnmpConfig(modules=modules, exporter=exporter)


def builtin_modules() -> dict[str, Module]:
    """SOTP's shipped modules (package data next to this file)."""
    modules: dict[str, Module] = {}
    for name in BUILTIN_MODULE_FILES:
        text = resources.files(__package__).joinpath(name).read_text()
        modules.update(parse_config(yaml.safe_load(text), name).modules)
    return modules


def load_config(path: str | Path | None) -> SnmpConfig:
    """Load ``path`` (or only the built-ins when ``None``) on top of the built-in modules and auths."""
    user = SnmpConfig()
    if path is not None:
        data = read_yaml_file(path, "SNMP config", " (set --config)")
        user = parse_config(data, str(path))
    return SnmpConfig(
        auths={**default_auths(), **user.auths},
        modules={**builtin_modules(), **user.modules},
        exporter=user.exporter,
        version=user.version,
    )
