"""From discovered target groups to scrape targets: defaults, ``relabel_configs``, address and URL.

Follows Prometheus 2.42's ``PopulateLabels``: group labels under target labels, then the job's defaults
(``job``, ``__scheme__``, ``__metrics_path__``, ``__scrape_interval__``, ``__scrape_timeout__``,
``__param_<name>``) when not set, then relabeling; a target without ``__address__`` after relabeling is
an error, a port is added from the scheme when missing, ``__meta_*`` labels are removed, and
``instance`` defaults to the address. Labels starting with ``__`` are not attached to samples.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlencode

from sotp.config import parse_duration
from sotp.errors import ConfigError
from sotp.model import Labels
from worker.scrape.config import JobSettings
from worker.scrape.relabel import Step, process

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TargetGroup:
    """A discovered group: one label dict per target (``__address__`` + meta labels) and shared labels."""

    source: str
    targets: tuple[Mapping[str, str], ...]
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Target:
    """One endpoint to scrape. ``labels`` (no ``__`` names) go on every sample it yields."""

    job: str
    labels: Labels
    url: str
    address: str
    interval_s: float
    timeout_s: float
    #: ``__address__`` as discovered, before relabeling: what ``--shard`` hashes, so the devices of a
    #: multi-target job (all rewritten to one exporter address) still spread over the shards.
    source_address: str = ""

    @property
    def key(self) -> tuple[str, Labels, str]:
        """Identity across reloads: the same job, labels and URL keep the same scrape loop."""
        return (self.job, self.labels, self.url)

    def hash64(self) -> int:
        """A stable 64-bit hash of labels and URL: spreads scrape offsets, as Prometheus's ``Target.hash``."""
        h = hashlib.blake2b(digest_size=8)
        h.update(str(self.labels).encode())
        h.update(b"\xff")
        h.update(self.url.encode())
        return int.from_bytes(h.digest(), "big")


def format_duration(seconds: float) -> str:
    """Prometheus's ``model.Duration.String()``: ``15s``, ``1m``, ``1h30m``, ``500ms``, ``0s``."""
    ms = round(seconds * 1000)
    if ms == 0:
        return "0s"
    out = []
    for unit, size in (("y", 365 * 86400000), ("w", 7 * 86400000), ("d", 86400000), ("h", 3600000),
                       ("m", 60000), ("s", 1000), ("ms", 1)):
        if ms >= size:
            out.append(f"{ms // size}{unit}")
            ms %= size
    return "".join(out)


def _with_port(address: str, scheme: str) -> str:
    """Add :80/:443 when ``address`` has no port (``host``, ``[::1]``), as Prometheus does."""
    if address.startswith("["):
        if "]:" in address:
            return address
        return f"{address}:{443 if scheme == 'https' else 80}"
    if ":" in address:
        return address  # host:port (a bare IPv6 address without brackets is invalid anyway)
    return f"{address}:{443 if scheme == 'https' else 80}"


def populate(
    group_labels: Mapping[str, str], target_labels: Mapping[str, str], job: JobSettings, steps: tuple[Step, ...]
) -> Target | None:
    """Build one target, or None when relabeling drops it. Raises ConfigError for an unusable target."""
    cfg = job.cfg
    lset: dict[str, str] = {**group_labels, **target_labels}
    defaults = {
        "job": cfg.job_name,
        "__scrape_interval__": format_duration(job.interval_s),
        "__scrape_timeout__": format_duration(job.timeout_s),
        "__metrics_path__": cfg.metrics_path,
        "__scheme__": cfg.scheme,
    }
    for name, values in cfg.params.items():
        if values:
            defaults[f"__param_{name}"] = values[0]
    for name, value in defaults.items():
        if not lset.get(name):
            lset[name] = value
    relabeled = process(lset, steps)
    if relabeled is None:
        return None
    lset = {k: v for k, v in relabeled.items() if v}
    address = lset.get("__address__", "")
    if not address:
        raise ConfigError("no __address__ label after relabeling")
    scheme = lset.get("__scheme__", "http") or "http"
    if scheme not in ("http", "https"):
        raise ConfigError(f"invalid scheme {scheme!r} for target {address}")
    address = _with_port(address, scheme)
    if "/" in address or " " in address:
        raise ConfigError(f"invalid __address__ {address!r}: use host:port")
    lset["__address__"] = address
    try:
        interval = parse_duration(lset.get("__scrape_interval__", ""), "__scrape_interval__")
        timeout = parse_duration(lset.get("__scrape_timeout__", ""), "__scrape_timeout__")
    except ConfigError as err:
        raise ConfigError(f"target {address}: {err}") from err
    if interval <= 0:
        raise ConfigError(f"target {address}: scrape interval must be positive")
    if timeout > interval:
        raise ConfigError(f"target {address}: scrape timeout cannot be greater than scrape interval")
    lset = {k: v for k, v in lset.items() if not k.startswith("__meta_")}
    lset.setdefault("instance", address)
    params: dict[str, list[str]] = {k: list(v) for k, v in cfg.params.items()}
    for name, value in lset.items():
        if name.startswith("__param_"):
            key = name[len("__param_") :]
            if params.get(key):
                params[key][0] = value
            else:
                params[key] = [value]
    query = urlencode(sorted(params.items()), doseq=True)
    path = lset.get("__metrics_path__", "/metrics")
    url = f"{scheme}://{address}{path}" + (f"?{query}" if query else "")
    public = Labels({k: v for k, v in lset.items() if not k.startswith("__")})
    source = target_labels.get("__address__") or group_labels.get("__address__") or address
    return Target(cfg.job_name, public, url, address, interval, timeout, source)


def build_targets(groups: Iterable[TargetGroup], job: JobSettings, steps: tuple[Step, ...]) -> list[Target]:
    """All targets of a job's groups, de-duplicated by identity; unusable ones are logged and skipped."""
    out: dict[tuple[str, Labels, str], Target] = {}
    for group in groups:
        for tl in group.targets:
            try:
                t = populate(group.labels, tl, job, steps)
            except ConfigError as err:
                log.warning("job %s: skipping target %s from %s: %s", job.cfg.job_name,
                            tl.get("__address__", "?"), group.source, err)
                continue
            if t is not None:
                out.setdefault(t.key, t)
    return list(out.values())
