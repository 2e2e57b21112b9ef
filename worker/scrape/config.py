"""The ``global:`` and ``scrape_configs:`` subset of Prometheus's configuration, as typed dataclasses.

Loaded with :func:`sotp.config.from_dict`, so unknown keys are rejected with their path
(``scrape_configs[2].relabel_configs[0].acton: unknown key``). Defaults are Prometheus 2.42's.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from sotp.config import Config, from_dict, parse_duration, resolve_secret
from sotp.errors import ConfigError
from sotp.model import LABEL_NAME_RE
from worker.inventory import derived_scrape_configs

RelabelAction = Literal[
    "replace", "keep", "drop", "hashmod", "labelmap", "labeldrop", "labelkeep", "lowercase", "uppercase"
]

#: A replace/hashmod target label may hold ``$1``/``${name}`` templates (Prometheus's relabelTarget).
_TARGET_TEMPLATE_RE = re.compile(r"^(?:(?:[a-zA-Z_]|\$(?:\{\w+\}|\w+))+\w*)+$")


@dataclass
class RelabelConfig:
    """One ``relabel_configs``/``metric_relabel_configs`` step, with Prometheus's defaults."""

    source_labels: list[str] = field(default_factory=list)
    separator: str = ";"
    target_label: str = ""
    regex: str = "(.*)"
    modulus: int = 0
    replacement: str = "$1"
    action: RelabelAction = "replace"

    def validate(self, path: str) -> None:
        for i, name in enumerate(self.source_labels):
            if not LABEL_NAME_RE.match(name):
                raise ConfigError(f"{path}.source_labels[{i}]: invalid label name {name!r}")
        try:
            re.compile(f"^(?:{self.regex})$")
        except re.error as err:
            raise ConfigError(f"{path}.regex: invalid regular expression {self.regex!r}: {err}") from err
        act = self.action
        if act in ("replace", "hashmod", "lowercase", "uppercase") and not self.target_label:
            raise ConfigError(f"{path}: relabel action {act!r} needs target_label")
        if act == "replace" and not _TARGET_TEMPLATE_RE.match(self.target_label):
            raise ConfigError(f"{path}.target_label: {self.target_label!r} is not a valid label name or template")
        if act in ("hashmod", "lowercase", "uppercase") and not LABEL_NAME_RE.match(self.target_label):
            raise ConfigError(f"{path}.target_label: {self.target_label!r} is not a valid label name")
        if act == "hashmod" and self.modulus <= 0:
            raise ConfigError(f"{path}.modulus: hashmod needs a positive modulus")
        if act in ("labeldrop", "labelkeep") and (
            self.source_labels or self.target_label or self.separator != ";" or self.replacement != "$1"
        ):
            raise ConfigError(f"{path}: {act} accepts only regex (no source_labels, target_label, ...)")
        if act == "labelmap" and not _TARGET_TEMPLATE_RE.match(self.replacement):
            raise ConfigError(f"{path}.replacement: {self.replacement!r} is not a valid label name or template")


@dataclass
class StaticConfig:
    """``static_configs[]``: addresses and labels shared by them."""

    targets: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)

    def validate(self, path: str) -> None:
        for name in self.labels:
            if not LABEL_NAME_RE.match(name):
                raise ConfigError(f"{path}.labels: invalid label name {name!r}")


@dataclass
class FileSDConfig:
    """``file_sd_configs[]``: JSON or YAML files (globs allowed) of target groups, re-read on change."""

    files: list[str] = field(default_factory=list)
    refresh_interval: str = "5m"

    def validate(self, path: str) -> None:
        if not self.files:
            raise ConfigError(f"{path}.files: list at least one file or glob")
        for i, f in enumerate(self.files):
            if not re.search(r"\.(json|ya?ml)$", f):
                raise ConfigError(f"{path}.files[{i}]: {f!r} must end in .json, .yml or .yaml")
        parse_duration(self.refresh_interval, f"{path}.refresh_interval")


@dataclass
class BasicAuth:
    """``basic_auth``: password (``env:VAR``/``file:/path`` accepted) or password_file."""

    username: str = ""
    password: str = ""
    password_file: str = ""

    def validate(self, path: str) -> None:
        if self.password and self.password_file:
            raise ConfigError(f"{path}: set at most one of password and password_file")


@dataclass
class Authorization:
    """``authorization``: ``Authorization: <type> <credentials>`` (type Bearer by default)."""

    type: str = "Bearer"
    credentials: str = ""
    credentials_file: str = ""

    def validate(self, path: str) -> None:
        if self.credentials and self.credentials_file:
            raise ConfigError(f"{path}: set at most one of credentials and credentials_file")
        if self.type.lower() == "basic":
            raise ConfigError(f"{path}.type: use basic_auth instead of authorization type Basic")


@dataclass(frozen=True)
class TLSConfig:
    """``tls_config`` for ``scheme: https``: CA to trust, client certificate, SNI name, or no verification."""

    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    server_name: str = ""
    insecure_skip_verify: bool = False

    def validate(self, path: str) -> None:
        if bool(self.cert_file) != bool(self.key_file):
            raise ConfigError(f"{path}: set both cert_file and key_file for a client certificate")
        for key in ("ca_file", "cert_file", "key_file"):
            f = getattr(self, key)
            if f and not os.path.isfile(f):
                raise ConfigError(f"{path}.{key}: no such file {f!r}")


@dataclass
class GlobalConfig:
    """``global:``. Only the scrape settings matter to the worker; the others are accepted for
    compatibility with a prometheus.yml."""

    scrape_interval: str = "1m"
    scrape_timeout: str = "10s"
    evaluation_interval: str = "1m"
    external_labels: dict[str, str] = field(default_factory=dict)

    def validate(self, path: str) -> None:
        interval = parse_duration(self.scrape_interval, f"{path}.scrape_interval")
        timeout = parse_duration(self.scrape_timeout, f"{path}.scrape_timeout")
        parse_duration(self.evaluation_interval, f"{path}.evaluation_interval")
        if interval <= 0:
            raise ConfigError(f"{path}.scrape_interval: must be positive")
        if timeout > interval:
            raise ConfigError(f"{path}.scrape_timeout: {self.scrape_timeout} is greater than scrape_interval")


@dataclass
class ScrapeConfig:
    """One ``scrape_configs[]`` entry (Prometheus's subset; see docs/worker.md)."""

    job_name: str
    scrape_interval: str = ""
    scrape_timeout: str = ""
    metrics_path: str = "/metrics"
    scheme: Literal["http", "https"] = "http"
    params: dict[str, list[str]] = field(default_factory=dict)
    honor_labels: bool = False
    honor_timestamps: bool = True
    static_configs: list[StaticConfig] = field(default_factory=list)
    file_sd_configs: list[FileSDConfig] = field(default_factory=list)
    relabel_configs: list[RelabelConfig] = field(default_factory=list)
    metric_relabel_configs: list[RelabelConfig] = field(default_factory=list)
    basic_auth: BasicAuth | None = None
    authorization: Authorization | None = None
    follow_redirects: bool = True
    tls_config: TLSConfig = field(default_factory=TLSConfig)
    sample_limit: int = 0
    label_limit: int = 0
    label_name_length_limit: int = 0
    label_value_length_limit: int = 0
    body_size_limit: str = "0"

    def validate(self, path: str) -> None:
        if not self.job_name:
            raise ConfigError(f"{path}.job_name: must not be empty")
        if self.basic_auth and self.authorization:
            raise ConfigError(f"{path}: set at most one of basic_auth and authorization")
        if not self.metrics_path.startswith("/"):
            raise ConfigError(f"{path}.metrics_path: {self.metrics_path!r} must start with /")
        for key in ("sample_limit", "label_limit", "label_name_length_limit", "label_value_length_limit"):
            if getattr(self, key) < 0:
                raise ConfigError(f"{path}.{key}: must be 0 (no limit) or positive")
        parse_size(self.body_size_limit, f"{path}.body_size_limit")


_SIZE_RE = re.compile(r"^(\d+)\s*(B|KB|KiB|MB|MiB|GB|GiB)?$")
_SIZE_UNITS = {None: 1, "B": 1, "KB": 1 << 10, "KiB": 1 << 10, "MB": 1 << 20, "MiB": 1 << 20, "GB": 1 << 30,
               "GiB": 1 << 30}


def parse_size(text: str, path: str) -> int:
    """``0`` (no limit), ``512KB``, ``10MB``: bytes, with Prometheus's binary units."""
    m = _SIZE_RE.match(str(text).strip())
    if not m:
        raise ConfigError(f"{path}: invalid size {text!r} (use e.g. 10MB, 0 for no limit)")
    return int(m.group(1)) * _SIZE_UNITS[m.group(2)]


@dataclass(frozen=True)
class JobSettings:
    """A scrape config with durations, secrets and inherited globals resolved (what the scheduler uses)."""

    cfg: ScrapeConfig
    interval_s: float
    timeout_s: float
    body_size_limit: int
    auth_header: str | None


@dataclass(frozen=True)
class WorkerConfig:
    """The worker's view of ``sotp.yml``: resolved jobs in file order."""

    global_: GlobalConfig
    jobs: tuple[JobSettings, ...]
    backup: dict[str, Any]


def _auth_header(cfg: ScrapeConfig, path: str) -> str | None:
    import base64

    if cfg.basic_auth is not None:
        ba = cfg.basic_auth
        password = resolve_secret(ba.password, f"{path}.basic_auth.password") if ba.password else ""
        if ba.password_file:
            password = resolve_secret("file:" + ba.password_file, f"{path}.basic_auth.password_file")
        token = base64.b64encode(f"{ba.username}:{password}".encode()).decode()
        return f"Basic {token}"
    if cfg.authorization is not None:
        au = cfg.authorization
        cred = resolve_secret(au.credentials, f"{path}.authorization.credentials") if au.credentials else ""
        if au.credentials_file:
            cred = resolve_secret("file:" + au.credentials_file, f"{path}.authorization.credentials_file")
        return f"{au.type} {cred}"
    return None


def worker_config(config: Config) -> WorkerConfig:
    """Validate ``global:`` and ``scrape_configs:`` of a loaded :class:`sotp.config.Config`.

    Raises :class:`ConfigError` naming the key path; secrets are read here, so a missing secret file
    rejects the (re)load instead of failing every scrape.
    """
    glob = from_dict(GlobalConfig, config.global_, "global")
    g_interval = parse_duration(glob.scrape_interval, "global.scrape_interval")
    g_timeout = parse_duration(glob.scrape_timeout, "global.scrape_timeout")
    jobs: list[JobSettings] = []
    seen: set[str] = set()
    sources = [(f"scrape_configs[{i}]", raw) for i, raw in enumerate(config.scrape_configs)]
    sources += [(f"devices ({raw['job_name']} job)", raw) for raw in derived_scrape_configs(config)]
    for path, raw in sources:
        cfg = from_dict(ScrapeConfig, raw, path)
        if cfg.job_name in seen:
            raise ConfigError(f"{path}.job_name: {cfg.job_name!r} is used by an earlier scrape config")
        seen.add(cfg.job_name)
        interval = parse_duration(cfg.scrape_interval, f"{path}.scrape_interval") if cfg.scrape_interval else g_interval
        if cfg.scrape_timeout:
            timeout = parse_duration(cfg.scrape_timeout, f"{path}.scrape_timeout")
        else:
            timeout = min(g_timeout, interval)  # Prometheus caps an inherited timeout at the interval
        if interval <= 0:
            raise ConfigError(f"{path}.scrape_interval: must be positive")
        if timeout > interval:
            raise ConfigError(
                f"{path}.scrape_timeout: {timeout:g}s is greater than scrape_interval {interval:g}s"
            )
        jobs.append(
            JobSettings(
                cfg=cfg,
                interval_s=interval,
                timeout_s=timeout,
                body_size_limit=parse_size(cfg.body_size_limit, f"{path}.body_size_limit"),
                auth_header=_auth_header(cfg, path),
            )
        )
    return WorkerConfig(global_=glob, jobs=tuple(jobs), backup=dict(config.backup))
