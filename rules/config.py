"""The ruler's configuration: Prometheus's ``rule_files``, ``alerting`` and ``global`` keys, plus ``ruler:``.

```yaml
global:
  evaluation_interval: 1m          # default interval of groups without their own
  external_labels: {site: lab}     # added to alerts sent to Alertmanager; $externalLabels in templates
rule_files: [deploy/rules/*.rules.yml]  # globs, relative to the config file's directory
alerting:
  alertmanagers:
    - static_configs: [{targets: ["127.0.0.1:9093"]}]
      scheme: http                 # or https
      path_prefix: /
      timeout: 10s
      basic_auth: {username: sotp, password: env:AM_PASSWORD}    # or
      authorization: {type: Bearer, credentials: file:/etc/sotp/am-token}
ruler:
  listen: 127.0.0.1:9204           # the ruler's own /api/v1/rules, /api/v1/alerts and /metrics
  external_url: http://localhost:9201/
  resend_delay: 1m
  outage_tolerance: 1h
  for_grace_period: 10m
  tenant_rule_files: {"team=a": [rules/team-a/*.yml]}   # evaluated as tenant team="a"
  urls: [http://127.0.0.1:9204]    # where sotp serve asks for /api/v1/rules and /api/v1/alerts
```
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass, field
from typing import Any, Literal

from sotp.config import Config, from_dict, parse_duration, resolve_secret
from sotp.errors import ConfigError


@dataclass
class BasicAuth:
    username: str = ""
    password: str = ""
    password_file: str = ""


@dataclass
class Authorization:
    type: str = "Bearer"
    credentials: str = ""
    credentials_file: str = ""


@dataclass
class StaticConfig:
    targets: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)


@dataclass
class AlertmanagerConfig:
    """One ``alerting.alertmanagers`` entry (static targets; Alertmanager API v2)."""

    static_configs: list[StaticConfig] = field(default_factory=list)
    scheme: Literal["http", "https"] = "http"
    path_prefix: str = "/"
    timeout: str = "10s"
    api_version: Literal["v2"] = "v2"
    basic_auth: BasicAuth | None = None
    authorization: Authorization | None = None
    tls_config: dict[str, Any] = field(default_factory=dict)

    def validate(self, path: str) -> None:
        parse_duration(self.timeout, f"{path}.timeout")
        if self.tls_config:
            raise ConfigError(f"{path}.tls_config: client TLS settings are not supported yet; use scheme: https "
                              "with a certificate the system trusts, or remove tls_config")
        if self.basic_auth is not None and self.authorization is not None:
            raise ConfigError(f"{path}: at most one of basic_auth and authorization may be set")
        for i, sc in enumerate(self.static_configs):
            for t in sc.targets:
                if "/" in t or not t.rpartition(":")[2].isdigit():
                    raise ConfigError(f"{path}.static_configs[{i}].targets: {t!r} must be host:port")

    def urls(self) -> list[str]:
        prefix = "/" + self.path_prefix.strip("/")
        base = prefix.rstrip("/")
        return [f"{self.scheme}://{t}{base}/api/v2/alerts" for sc in self.static_configs for t in sc.targets]

    def headers(self, path: str) -> dict[str, str]:
        import base64

        if self.basic_auth is not None:
            pw = self.basic_auth.password
            if self.basic_auth.password_file:
                pw = resolve_secret("file:" + self.basic_auth.password_file, f"{path}.basic_auth.password_file")
            else:
                pw = resolve_secret(pw, f"{path}.basic_auth.password")
            token = base64.b64encode(f"{self.basic_auth.username}:{pw}".encode()).decode()
            return {"Authorization": f"Basic {token}"}
        if self.authorization is not None:
            cred = self.authorization.credentials
            if self.authorization.credentials_file:
                cred = resolve_secret("file:" + self.authorization.credentials_file,
                                      f"{path}.authorization.credentials_file")
            else:
                cred = resolve_secret(cred, f"{path}.authorization.credentials")
            return {"Authorization": f"{self.authorization.type} {cred}"}
        return {}


@dataclass
class AlertingConfig:
    alertmanagers: list[AlertmanagerConfig] = field(default_factory=list)


@dataclass
class RulerSection:
    """``ruler:`` — SOTP's own settings of ``sotp ruler``."""

    listen: str = "127.0.0.1:9204"
    external_url: str = ""
    resend_delay: str = "1m"
    outage_tolerance: str = "1h"
    for_grace_period: str = "10m"
    tenant_rule_files: dict[str, list[str]] = field(default_factory=dict)
    urls: list[str] = field(default_factory=list)

    def validate(self, path: str) -> None:
        for key in ("resend_delay", "outage_tolerance", "for_grace_period"):
            parse_duration(getattr(self, key), f"{path}.{key}")
        from sotp.auth import parse_tenant

        for tenant in self.tenant_rule_files:
            try:
                parse_tenant(tenant)
            except ConfigError as err:
                raise ConfigError(f"{path}.tenant_rule_files: {err}") from None


@dataclass
class RulerConfig:
    """Everything ``sotp ruler`` reads, resolved: intervals in ms, files expanded."""

    files: list[str]
    tenant_files: dict[tuple[str, str], list[str]]
    evaluation_interval_ms: int
    external_labels: dict[str, str]
    external_url: str
    resend_delay_ms: int
    outage_tolerance_ms: int
    for_grace_period_ms: int
    alertmanagers: list[AlertmanagerConfig]
    listen: str
    urls: list[str]


def _expand(patterns: list[str], base: str) -> list[str]:
    out: list[str] = []
    for pat in patterns:
        full = pat if os.path.isabs(pat) else os.path.join(base, pat)
        out.extend(sorted(glob.glob(full)))
    return out


def ruler_config(config: Config, base_dir: str = ".") -> RulerConfig:
    """Validate and resolve the ruler's sections of ``sotp.yml`` (raises :class:`ConfigError`)."""
    from sotp.auth import parse_tenant

    glob_ = config.global_ or {}
    interval = parse_duration(glob_.get("evaluation_interval", "1m"), "global.evaluation_interval")
    if interval <= 0:
        raise ConfigError("global.evaluation_interval: must be positive")
    ext = glob_.get("external_labels") or {}
    if not isinstance(ext, dict):
        raise ConfigError("global.external_labels: expected a mapping of label names to values")
    alerting = from_dict(AlertingConfig, config.alerting, "alerting")
    section = from_dict(RulerSection, config.ruler, "ruler")
    tenants = {parse_tenant(k): _expand(v, base_dir) for k, v in section.tenant_rule_files.items()}
    host = os.uname().nodename
    port = section.listen.rpartition(":")[2]
    return RulerConfig(
        files=_expand(list(config.rule_files), base_dir),
        tenant_files=tenants,
        evaluation_interval_ms=int(interval * 1000),
        external_labels={str(k): str(v) for k, v in ext.items()},
        external_url=section.external_url or f"http://{host}:{port}/",
        resend_delay_ms=int(parse_duration(section.resend_delay, "ruler.resend_delay") * 1000),
        outage_tolerance_ms=int(parse_duration(section.outage_tolerance, "ruler.outage_tolerance") * 1000),
        for_grace_period_ms=int(parse_duration(section.for_grace_period, "ruler.for_grace_period") * 1000),
        alertmanagers=alerting.alertmanagers,
        listen=section.listen,
        urls=list(section.urls),
    )
