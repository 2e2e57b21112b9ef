"""Running backups: each device fetched with a concurrency limit, versions saved when the config changed,
and the outcome written as metrics through the same Appender as every other sample.

Metrics (label ``device``, ``job="sotp-backup"``): ``sotp_config_backup_success`` (1/0),
``sotp_config_backup_last_success_timestamp_seconds``, ``sotp_config_backup_duration_seconds``,
``sotp_config_changes_total`` (versions after the first), ``sotp_config_backup_version``.
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from sotp.config import Config
from sotp.errors import ConfigError, SotpError
from sotp.model import Labels
from sotp.storage import Storage
from sotp.storage.configs import ConfigStore, ConfigVersion, DeviceInfo, config_store_for
from worker.backup.config import BackupConfig, Device, backup_config
from worker.backup.fetch import BackupFailed, Fetcher, NetmikoFetcher
from worker.backup.masking import mask_secrets
from worker.backup.platforms import PLATFORMS, Platform, digest

log = logging.getLogger("sotp.backup")
JOB = "sotp-backup"


@dataclass(frozen=True, slots=True)
class BackupResult:
    """What one device's backup did."""

    device: str
    ok: bool
    duration_s: float
    new_version: ConfigVersion | None = None
    versions: int = 0
    error: str = ""
    reason: str = ""


def _platform(device: Device) -> Platform:
    return PLATFORMS.get(device.device_type) or Platform(device.command)


def device_info(device: Device, cfg: BackupConfig) -> DeviceInfo:
    """What the store keeps beside the device's versions: its labels and how its content was masked."""
    mask = cfg.mask_secrets if device.mask_secrets is None else device.mask_secrets
    return DeviceInfo(dict(device.labels), device.device_type if mask else None)


async def backup_device(device: Device, cfg: BackupConfig, fetcher: Fetcher, store: ConfigStore) -> BackupResult:
    """Fetch one device and store a version if its configuration changed. Never raises for device faults.

    Secrets are masked before hashing and storing (unless the device opted out), so neither a stored
    version nor a diff holds one, and a device that re-salts its hashes on every display keeps one version.
    """
    started = time.monotonic()
    info = device_info(device, cfg)
    try:
        text = await fetcher.fetch(device, cfg.timeout_s)
        if not text.strip():
            raise BackupFailed(f"cannot back up {device.name}: the device returned an empty configuration", "empty")
        if info.masked_as is not None:
            text = mask_secrets(text, info.masked_as)
        saved = await store.save(device.name, text, int(time.time() * 1000), digest(text, _platform(device)), info)
        count = len(await store.versions(device.name))
    except BackupFailed as err:
        log.warning("%s", err)
        return BackupResult(device.name, False, time.monotonic() - started, error=str(err), reason=err.reason)
    except ConfigError as err:  # a credential reference that does not resolve
        log.warning("cannot back up %s: %s", device.name, err)
        return BackupResult(device.name, False, time.monotonic() - started, error=str(err), reason="credentials")
    if saved is not None:
        log.info("%s: configuration changed, stored version %d (%d bytes)", device.name, saved.version, saved.size)
    return BackupResult(device.name, True, time.monotonic() - started, saved, count)


class BackupRunner:
    """Runs rounds of backups and records their metrics. Keeps each device's last success time."""

    def __init__(self, cfg: BackupConfig, storage: Storage, store: ConfigStore, fetcher: Fetcher | None = None):
        self.cfg = cfg
        self.storage = storage
        self.store = store
        self.fetcher = fetcher or NetmikoFetcher(cfg.known_hosts_path, cfg.host_key_checking == "accept-new")
        self._last_success: dict[str, float] = {}
        self._primed = False

    async def _prime(self) -> None:
        if not self._primed:
            for v, _ in await self.store.latest():
                self._last_success.setdefault(v.device, v.fetched_ms / 1000)
            self._primed = True

    async def run_once(self, only: str | None = None) -> list[BackupResult]:
        """Back up every device (or the one named ``only``) and write the metrics in one commit."""
        await self._prime()
        devices = [d for d in self.cfg.devices if only is None or d.name == only]
        if only is not None and not devices:
            raise SotpError(f"no device named {only!r} in backup.devices")
        limit = asyncio.Semaphore(self.cfg.concurrency)

        async def one(d: Device) -> BackupResult:
            async with limit:
                return await backup_device(d, self.cfg, self.fetcher, self.store)

        results = list(await asyncio.gather(*(one(d) for d in devices)))
        await self._record(results)
        return results

    async def _record(self, results: list[BackupResult]) -> None:
        now = time.time()
        t_ms = int(now * 1000)
        app = self.storage.appender()
        labels_of = {d.name: d.labels for d in self.cfg.devices}
        for r in results:
            if r.ok:
                self._last_success[r.device] = now
            versions = r.versions if r.ok else len(await self.store.versions(r.device))
            base = {**labels_of.get(r.device, {}), "device": r.device, "job": JOB}

            def put(name: str, value: float, base: dict[str, str] = base) -> None:
                app.append(Labels({**base, "__name__": name}), t_ms, value)

            put("sotp_config_backup_success", 1.0 if r.ok else 0.0)
            put("sotp_config_backup_duration_seconds", r.duration_s)
            put("sotp_config_changes_total", float(max(0, versions - 1)))
            put("sotp_config_backup_version", float(versions))
            if r.device in self._last_success:
                put("sotp_config_backup_last_success_timestamp_seconds", self._last_success[r.device])
        try:
            await app.commit()
        except SotpError as err:
            await app.rollback()
            log.warning("cannot write backup metrics: %s", err)


def unified_diff(device: str, old: tuple[ConfigVersion, str], new: tuple[ConfigVersion, str]) -> str:
    """A unified diff between two stored versions, headed with their version numbers and times."""

    def head(v: ConfigVersion) -> str:
        return f"{device} v{v.version} ({datetime.fromtimestamp(v.fetched_ms / 1000, UTC).isoformat()})"

    return "".join(difflib.unified_diff(_diff_lines(old[1]), _diff_lines(new[1]), head(old[0]), head(new[0])))


#: What ``diff`` and git print after a last line that has no newline.
NO_NEWLINE = "\\ No newline at end of file\n"


def _diff_lines(text: str) -> list[str]:
    """Lines for difflib, each ending in a newline so a change on the last line prints as two lines.

    A last line without a newline carries diff's "no newline" marker inside the same element, so it
    differs from the same text with a newline, and the output reads as ``diff -u`` prints it.
    """
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith(("\n", "\r")):
        lines[-1] += "\n" + NO_NEWLINE
    return lines


async def run(config: Config, storage: Storage, stop: asyncio.Event) -> None:
    """The worker's backup task: a round every ``backup.interval`` until ``stop`` is set."""
    cfg = backup_config(config)
    if not cfg.devices:
        return
    store = config_store_for(storage)
    await store.open()
    runner = BackupRunner(cfg, storage, store)
    log.info("backups: %d device(s) every %s", len(cfg.devices), cfg.interval)
    try:
        while not stop.is_set():
            await runner.run_once()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), cfg.interval_s)
    finally:
        await store.close()
