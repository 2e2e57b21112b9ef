"""Target discovery: ``static_configs`` and ``file_sd_configs`` (JSON or YAML files, re-read on change).

File SD follows Prometheus's format: a list of ``{targets: [...], labels: {...}}`` groups; each group gets
``__meta_filepath``. A file that cannot be read or parsed keeps its previous groups (logged), so a
half-written file never empties a job. Files are polled (mtime and size) every
:data:`POLL_INTERVAL_S` and fully re-read every ``refresh_interval``.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any

import yaml

from sotp.model import LABEL_NAME_RE
from worker.scrape.config import FileSDConfig, ScrapeConfig, StaticConfig
from worker.scrape.targets import TargetGroup

log = logging.getLogger(__name__)

POLL_INTERVAL_S = 1.0


def static_groups(job: str, configs: list[StaticConfig]) -> list[TargetGroup]:
    """One group per ``static_configs`` entry."""
    return [
        TargetGroup(
            source=f"{job}/static/{i}",
            targets=tuple({"__address__": t} for t in sc.targets),
            labels=dict(sc.labels),
        )
        for i, sc in enumerate(configs)
    ]


def parse_file_groups(path: str, text: str) -> list[TargetGroup]:
    """Parse one file SD file; raises ValueError naming the file and the problem."""
    try:
        data: Any = json.loads(text) if path.endswith(".json") else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as err:
        raise ValueError(f"cannot parse {path}: {err}") from err
    if data is None:
        return []
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a list of target groups")
    groups = []
    for i, item in enumerate(data):
        if not isinstance(item, dict) or set(item) - {"targets", "labels"}:
            raise ValueError(f"{path}[{i}]: a target group has only 'targets' and 'labels'")
        targets = item.get("targets") or []
        labels = item.get("labels") or {}
        if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
            raise ValueError(f"{path}[{i}].targets: expected a list of host:port strings")
        if not isinstance(labels, dict):
            raise ValueError(f"{path}[{i}].labels: expected a mapping")
        for k in labels:
            if not isinstance(k, str) or not LABEL_NAME_RE.match(k):
                raise ValueError(f"{path}[{i}].labels: invalid label name {k!r}")
        group_labels = {str(k): str(v) for k, v in labels.items()}
        group_labels["__meta_filepath"] = path
        groups.append(
            TargetGroup(source=f"{path}:{i}", targets=tuple({"__address__": t} for t in targets), labels=group_labels)
        )
    return groups


@dataclass
class FileWatcher:
    """Holds the groups of one ``file_sd_configs`` entry and refreshes them when files change."""

    cfg: FileSDConfig
    refresh_s: float
    _stamps: dict[str, tuple[float, int]] = field(default_factory=dict)
    _groups: dict[str, list[TargetGroup]] = field(default_factory=dict)
    _last_full: float = 0.0

    def paths(self) -> list[str]:
        out: list[str] = []
        for pattern in self.cfg.files:
            out.extend(sorted(glob.glob(pattern)))
        return out

    def refresh(self) -> bool:
        """Re-read changed files; True when the set of groups may have changed."""
        now = time.monotonic()
        full = now - self._last_full >= self.refresh_s
        if full:
            self._last_full = now
        changed = False
        current = self.paths()
        for gone in set(self._groups) - set(current):
            del self._groups[gone]
            self._stamps.pop(gone, None)
            changed = True
        for path in current:
            try:
                st = os.stat(path)
            except OSError:
                continue
            stamp = (st.st_mtime, st.st_size)
            if not full and self._stamps.get(path) == stamp:
                continue
            self._stamps[path] = stamp
            try:
                with open(path, encoding="utf-8") as fh:
                    groups = parse_file_groups(path, fh.read())
            except (OSError, ValueError) as err:
                log.error("file_sd: keeping the previous targets of %s: %s", path, err)
                continue
            if self._groups.get(path) != groups:
                self._groups[path] = groups
                changed = True
        return changed

    def groups(self) -> list[TargetGroup]:
        return [g for path in sorted(self._groups) for g in self._groups[path]]


@dataclass
class JobDiscovery:
    """Every target group of one job: static ones plus the file watchers' current groups."""

    static: list[TargetGroup]
    watchers: list[FileWatcher]

    @classmethod
    def for_job(cls, cfg: ScrapeConfig) -> JobDiscovery:
        from sotp.config import parse_duration

        watchers = [FileWatcher(fc, parse_duration(fc.refresh_interval)) for fc in cfg.file_sd_configs]
        return cls(static_groups(cfg.job_name, cfg.static_configs), watchers)

    def refresh(self) -> bool:
        changed = False
        for w in self.watchers:
            changed = w.refresh() or changed
        return changed

    def groups(self) -> list[TargetGroup]:
        return self.static + [g for w in self.watchers for g in w.groups()]
