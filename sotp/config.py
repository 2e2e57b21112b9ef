"""Configuration: one YAML file, loaded into typed dataclasses; unknown keys are rejected with their path.

Components describe their own section as dataclasses and load it with :func:`from_dict`; secrets are
given as ``env:VAR`` or ``file:/path`` and resolved with :func:`resolve_secret`, never logged.

Paths: a relative path written in ``sotp.yml`` (any key in :data:`PATH_KEYS`, a ``file:`` secret, a
``sqlite:`` storage URL) is relative to the file's directory, as Prometheus resolves its own; files SOTP
creates by default (the SQLite store, the tokens file) live in the *data directory*: ``--data-dir`` when
given, else ``data/`` beside the config file, else ``./data``. :func:`load_config` makes all of them
absolute, so every command reading the same file uses the same files wherever it is started.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin, get_type_hints

from sotp.errors import ConfigError

T = TypeVar("T")

_DURATION_RE = re.compile(r"^((\d+)y)?((\d+)w)?((\d+)d)?((\d+)h)?((\d+)m)?((\d+)s)?((\d+)ms)?$")
_UNITS = (365 * 86400.0, 7 * 86400.0, 86400.0, 3600.0, 60.0, 1.0, 0.001)


def parse_duration(text: str | int | float, path: str = "duration") -> float:
    """Parse a Prometheus duration (``1h30m``, ``15s``, ``500ms``) or plain seconds into seconds."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        return float(text)
    s = str(text).strip()
    try:
        return float(s)
    except ValueError:
        pass
    m = _DURATION_RE.match(s)
    if not s or not m or not any(m.group(i) for i in range(2, 15, 2)):
        raise ConfigError(f"{path}: invalid duration {text!r} (use e.g. 15s, 1m30s, 500ms)")
    return sum(float(m.group(2 * i + 2) or 0) * unit for i, unit in enumerate(_UNITS))


def resolve_secret(value: str, path: str = "secret") -> str:
    """Resolve ``env:NAME`` or ``file:/path`` (trailing newline stripped); other strings are literal."""
    if value.startswith("env:"):
        name = value[4:]
        if name not in os.environ:
            raise ConfigError(f"{path}: environment variable {name} is not set")
        return os.environ[name]
    if value.startswith("file:"):
        p = Path(value[5:])
        try:
            return p.read_text().rstrip("\n")
        except OSError as err:
            raise ConfigError(f"{path}: cannot read secret file {p}: {err.strerror}") from err
    return value


def _convert(tp: Any, value: Any, path: str) -> Any:
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(arg, value, path)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if errors else f"{path}: invalid value {value!r}")
    if origin is Literal:
        if value not in get_args(tp):
            choices = ", ".join(repr(a) for a in get_args(tp))
            raise ConfigError(f"{path}: {value!r} is not one of {choices}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{path}: expected a list, got {type(value).__name__}")
        (item,) = get_args(tp)
        return [_convert(item, v, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping, got {type(value).__name__}")
        kt, vt = get_args(tp)
        return {_convert(kt, k, f"{path}") : _convert(vt, v, f"{path}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return from_dict(tp, value, path)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{path}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ConfigError(f"{path}: expected a string, got {value!r}")
        return str(value)
    raise ConfigError(f"{path}: unsupported config type {tp!r}")


def from_dict(cls: type[T], data: Any, path: str = "") -> T:
    """Build dataclass ``cls`` from parsed YAML. Keys equal field names, except that a trailing ``_``
    in a field name is dropped (``global_`` reads ``global``) and a field's ``metadata["key"]`` wins.
    Unknown keys raise :class:`ConfigError` naming their full path; missing keys take defaults."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path or '<root>'}: expected a mapping, got {type(data).__name__}")
    assert dataclasses.is_dataclass(cls)
    hints = get_type_hints(cls)
    fields = {
        f.metadata.get("key", f.name.rstrip("_")): f for f in dataclasses.fields(cls) if not f.metadata.get("internal")
    }
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        sub = f"{path}.{key}" if path else str(key)
        f = fields.get(str(key))
        if f is None:
            known = ", ".join(sorted(fields))
            raise ConfigError(f"{sub}: unknown key (known keys here: {known})")
        kwargs[f.name] = _convert(hints[f.name], value, sub)
    missing = [
        k
        for k, f in fields.items()
        if f.name not in kwargs
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"{path or '<root>'}: missing required key(s): {', '.join(missing)}")
    obj = cls(**kwargs)
    validate = getattr(obj, "validate", None)
    if callable(validate):
        validate(path)
    return obj


@dataclasses.dataclass
class Limits:
    """Limits applied to every write path (remote write, push gateway, JSON ingest)."""

    max_body_bytes: int = 32 << 20
    max_decompressed_bytes: int = 128 << 20
    max_series_per_request: int = 100_000
    max_labels_per_series: int = 64
    max_label_name_length: int = 256
    max_label_value_length: int = 4096
    max_future_seconds: float = 600.0
    #: A write request's whole body must arrive within this many seconds (408 otherwise): a sender
    #: trickling bytes cannot hold a write slot for long.
    body_timeout_seconds: float = 60.0
    #: Body bytes (raw, then decompressed) all write requests in flight may hold together (503 beyond).
    max_inflight_body_bytes: int = 256 << 20
    #: Series the store may hold (every tenant together; 0: no limit). A write that would create more is
    #: refused whole (400). Series whose samples all expired stop counting once collected.
    max_series: int = 2_000_000
    #: Series one tenant-bound token's tenant may hold (0: no limit), checked the same way.
    max_series_per_tenant: int = 500_000
    #: Metric families whose metadata (type, help, unit) is kept per tenant; more are dropped (counted).
    max_metadata_per_tenant: int = 20_000
    #: Longest metric name, help or unit kept in metadata (characters; longer help and units are cut).
    max_metadata_length: int = 1024


@dataclasses.dataclass
class ServerConfig:
    """``server:`` — the ``sotp serve`` process."""

    listen: str = "127.0.0.1:9201"
    storage: str = "sqlite:///./data/sotp.db"
    retention: str = "15d"
    write_queue_depth: int = 64
    #: Server processes sharing the listening socket (``sotp serve --workers``): one per core uses them all.
    workers: int = 1
    query_timeout: str = "2m"
    query_max_samples: int = 50_000_000
    query_max_length: int = 131_072  # bytes of PromQL text, checked before parsing
    query_max_depth: int = 128  # brackets + operators along any path of the syntax tree
    query_concurrency: int = 4  # queries evaluated at once (the others wait, within their timeout)


@dataclasses.dataclass
class Config:
    """The whole ``sotp.yml``. Component sections are typed by the components that own them."""

    server: ServerConfig = dataclasses.field(default_factory=ServerConfig)
    devices: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    limits: Limits = dataclasses.field(default_factory=Limits)
    auth: dict[str, Any] = dataclasses.field(default_factory=dict)
    pushgateway: dict[str, Any] = dataclasses.field(default_factory=dict)
    global_: dict[str, Any] = dataclasses.field(default_factory=dict)
    scrape_configs: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    backup: dict[str, Any] = dataclasses.field(default_factory=dict)
    snmp: dict[str, Any] = dataclasses.field(default_factory=dict)
    icmp: dict[str, Any] = dataclasses.field(default_factory=dict)
    agent: dict[str, Any] = dataclasses.field(default_factory=dict)
    dashboard: dict[str, Any] = dataclasses.field(default_factory=dict)
    #: Prometheus's rule files (globs) and Alertmanager settings, and the ruler's own section (rules.config)
    rule_files: list[str] = dataclasses.field(default_factory=list)
    alerting: dict[str, Any] = dataclasses.field(default_factory=dict)
    ruler: dict[str, Any] = dataclasses.field(default_factory=dict)
    #: The file this was loaded from (``None``: defaults) and the data directory in effect; not YAML keys.
    source: Path | None = dataclasses.field(default=None, metadata={"internal": True})
    data_dir: Path = dataclasses.field(default=Path("data"), metadata={"internal": True})


def read_yaml_file(path: str | Path, what: str = "config file", hint: str = "") -> Any:
    """Parse a YAML file; errors name ``what``, the path and the cause (``hint`` is appended to I/O errors)."""
    import yaml  # lazily: PyYAML costs ~2 MB of RSS, and the agent uses this module only for durations

    p = Path(path)
    try:
        return yaml.safe_load(p.read_text())
    except OSError as err:
        raise ConfigError(f"cannot read {what} {p}: {err.strerror}{hint}") from err
    except yaml.YAMLError as err:
        raise ConfigError(f"cannot parse {what} {p} (YAML): {err}") from err


def to_dict(config: Config) -> dict[str, Any]:
    """``config`` as sotp.yml data (what :func:`from_dict` reads back), without the internal fields."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(config):
        if f.metadata.get("internal"):
            continue
        value = getattr(config, f.name)
        out[f.metadata.get("key", f.name.rstrip("_"))] = (
            dataclasses.asdict(value)
            if dataclasses.is_dataclass(value) and not isinstance(value, type)
            else copy.deepcopy(value)
        )
    return out


#: Keys whose values are file paths (or lists of them), wherever they appear in sotp.yml.
PATH_KEYS: frozenset[str] = frozenset({
    "files", "credentials_file", "password_file", "ca_file", "cert_file", "key_file", "tokens_file",
    "config_file", "rule_files", "known_hosts",
})
#: Keys whose ``file:`` references name a file holding a secret.
SECRET_KEYS: frozenset[str] = frozenset({"password", "secret", "credentials", "community", "priv_password"})
DEFAULT_STORE = "sotp.db"
DEFAULT_TOKENS = "tokens.json"


def default_data_dir(config_path: str | Path | None) -> Path:
    """``data/`` beside the config file, or ``./data`` without one (absolute)."""
    base = Path(config_path).resolve().parent if config_path is not None else Path.cwd()
    return base / "data"


def sqlite_url(path: Path) -> str:
    """The storage URL of the SQLite file at ``path`` (made absolute): ``sqlite:///abs/path.db``."""
    return f"sqlite://{path.resolve()}"


def _absolute(value: str, base: Path) -> str:
    # "~/..." is the user's home, expanded where the file is opened
    return value if not value or value.startswith("~") or Path(value).is_absolute() else str(base / value)


def absolutize(data: Any, base: Path) -> Any:
    """A copy of parsed YAML with relative paths (:data:`PATH_KEYS`, ``file:`` secrets, ``sqlite:`` storage)
    made absolute against ``base``. Values of other keys are left alone."""
    if isinstance(data, list):
        return [absolutize(v, base) for v in data]
    if not isinstance(data, dict):
        return data
    out: dict[Any, Any] = {}
    for key, value in data.items():
        if key in PATH_KEYS and isinstance(value, str):
            value = _absolute(value, base)
        elif key in PATH_KEYS and isinstance(value, list):
            value = [_absolute(v, base) if isinstance(v, str) else v for v in value]
        elif key in SECRET_KEYS and isinstance(value, str) and value.startswith("file:"):
            value = "file:" + _absolute(value[5:], base)
        elif key == "storage" and isinstance(value, str) and value.startswith("sqlite:///."):
            path, query, params = value.removeprefix("sqlite:///").partition("?")
            value = sqlite_url(base / path) + query + params
        else:
            value = absolutize(value, base)
        out[key] = value
    return out


def load_config(path: str | Path | None, data_dir: str | Path | None = None) -> Config:
    """Load ``sotp.yml`` (``None``: defaults, which make ``sotp up`` work with no file).

    Relative paths in the file become absolute against its directory; the SQLite store and the tokens
    file default to the data directory (``data_dir``, else :func:`default_data_dir`).
    """
    data_path = Path(data_dir).resolve() if data_dir is not None else default_data_dir(path)
    raw: Any = {} if path is None else read_yaml_file(path)
    if path is not None and isinstance(raw, dict):
        raw = absolutize(raw, Path(path).resolve().parent)
    config = from_dict(Config, raw)
    config.source = Path(path).resolve() if path is not None else None
    config.data_dir = data_path
    if not (isinstance(raw, dict) and isinstance(raw.get("server"), dict) and "storage" in raw["server"]):
        config.server.storage = sqlite_url(data_path / DEFAULT_STORE)
    config.auth = dict(config.auth)
    config.auth.setdefault("tokens_file", str(data_path / DEFAULT_TOKENS))
    return config
