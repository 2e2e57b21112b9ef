"""The scrape manager: turns a :class:`WorkerConfig` into running scrape loops and keeps them in sync.

* Each job's target groups (static + file SD) are relabeled into targets; with a shard ``i/n`` only the
  targets whose ``hashmod(address, n) == i`` are kept, so N replicas split the targets with no
  coordinator (the same hash Prometheus's ``hashmod`` relabel action uses). The address is the one
  discovered, before relabeling: in the multi-target pattern every target is rewritten to the same
  exporter address, and hashing that would put all devices on one shard.
* A target that disappears (file SD change, reload) is stopped and its series are marked stale.
* :meth:`ScrapeManager.apply` installs a new config: loops for targets whose identity (job, labels, URL)
  and job settings are unchanged keep running; others restart and inherit the staleness state of the
  target they replace, so no series is left dangling and none is marked stale needlessly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

import aiohttp

from sotp.storage import Storage
from worker.scrape.config import JobSettings, WorkerConfig
from worker.scrape.discovery import POLL_INTERVAL_S, JobDiscovery
from worker.scrape.loop import ScrapeLoop
from worker.scrape.metrics import WorkerMetrics
from worker.scrape.relabel import Step, compile_steps, hashmod
from worker.scrape.targets import Target, build_targets

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Shard:
    """``--shard i/n``: this replica keeps targets with ``hashmod(discovered address, n) == i``."""

    index: int = 0
    total: int = 1

    @classmethod
    def parse(cls, text: str) -> Shard:
        try:
            i_s, n_s = text.split("/")
            i, n = int(i_s), int(n_s)
        except ValueError:
            raise ValueError(f"invalid --shard {text!r}: use i/n, e.g. 0/3") from None
        if n < 1 or not 0 <= i < n:
            raise ValueError(f"invalid --shard {text!r}: need 0 <= i < n")
        return cls(i, n)

    def owns(self, target: Target) -> bool:
        return self.total == 1 or hashmod(target.source_address or target.address, self.total) == self.index


@dataclass(eq=False)
class _Job:
    settings: JobSettings
    steps: tuple[Step, ...]
    metric_steps: tuple[Step, ...]
    discovery: JobDiscovery
    loops: dict[tuple[str, object, str], ScrapeLoop] = field(default_factory=dict)


class ScrapeManager:
    """Owns the HTTP session and every scrape loop; call :meth:`apply`, then :meth:`close`."""

    def __init__(self, storage: Storage, metrics: WorkerMetrics | None = None, shard: Shard | None = None) -> None:
        self.storage = storage
        self.metrics = metrics or WorkerMetrics()
        self.shard = shard or Shard()
        self._jobs: dict[str, _Job] = {}
        self._session: aiohttp.ClientSession | None = None
        self._watch: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            # No pool limit: each target keeps its own keep-alive connection, as Prometheus does.
            connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, enable_cleanup_closed=True)
            self._session = aiohttp.ClientSession(connector=connector, auto_decompress=True, trust_env=False)
        return self._session

    def loops(self) -> list[ScrapeLoop]:
        """Every running loop (tests and the status page)."""
        return [lp for job in self._jobs.values() for lp in job.loops.values()]

    async def apply(self, config: WorkerConfig) -> None:
        """Install ``config`` (already validated) and start, keep, restart or stop loops accordingly."""
        async with self._lock:
            old_jobs = self._jobs
            new_jobs: dict[str, _Job] = {}
            for js in config.jobs:
                prev = old_jobs.get(js.cfg.job_name)
                if prev is not None and prev.settings == js:
                    new_jobs[js.cfg.job_name] = prev
                    continue
                job = _Job(js, compile_steps(js.cfg.relabel_configs), compile_steps(js.cfg.metric_relabel_configs),
                           JobDiscovery.for_job(js.cfg))
                job.discovery.refresh()
                if prev is not None:
                    # Settings changed: hand the old loops over so targets that survive keep their state.
                    job.loops = prev.loops
                    prev.loops = {}
                new_jobs[js.cfg.job_name] = job
            for name, job in old_jobs.items():
                if name not in new_jobs:
                    await self._stop_all(job, stale=True)
                    self.metrics.targets.remove(name)
            self._jobs = new_jobs
            kept = {id(j) for j in old_jobs.values()}
            for job in new_jobs.values():
                await self._sync(job, restart=id(job) not in kept)
            if self._watch is None:
                self._watch = asyncio.create_task(self._watch_files(), name="file_sd watcher")

    async def _sync(self, job: _Job, restart: bool) -> None:
        """Make the job's loops match its current targets."""
        targets = [t for t in build_targets(job.discovery.groups(), job.settings, job.steps) if self.shard.owns(t)]
        wanted = {t.key: t for t in targets}
        old = job.loops
        new: dict[tuple[str, object, str], ScrapeLoop] = {}
        replaced = [old[k] for k in wanted if k in old and (restart or old[k].target != wanted[k])]
        await asyncio.gather(*(lp.stop(stale=False) for lp in replaced))  # in-flight scrapes finish first
        for key, target in wanted.items():
            loop = old.get(key)
            if loop is not None and not restart and loop.target == target:
                new[key] = loop
                continue
            state = loop.state if loop is not None else None
            nl = ScrapeLoop(target, job.settings, job.metric_steps, self._http(), self.storage, self.metrics, state)
            nl.start()
            new[key] = nl
        gone = [lp for key, lp in old.items() if key not in wanted]
        job.loops = new
        await asyncio.gather(*(lp.stop(stale=True) for lp in gone))
        self.metrics.targets.labels(job.settings.cfg.job_name).set(len(new))
        if gone or len(new) != len(old):
            log.info("job %s: %d targets (%d removed)", job.settings.cfg.job_name, len(new), len(gone))

    async def _stop_all(self, job: _Job, stale: bool) -> None:
        loops = list(job.loops.values())
        job.loops = {}
        await asyncio.gather(*(lp.stop(stale=stale) for lp in loops))

    async def _watch_files(self) -> None:
        while True:
            await asyncio.sleep(POLL_INTERVAL_S)
            async with self._lock:
                for job in self._jobs.values():
                    if job.discovery.watchers and job.discovery.refresh():
                        await self._sync(job, restart=False)

    async def refresh_discovery(self) -> None:
        """Re-read file SD now (tests; the watcher does it every second)."""
        async with self._lock:
            for job in self._jobs.values():
                if job.discovery.refresh():
                    await self._sync(job, restart=False)

    async def close(self) -> None:
        """Stop every loop without staleness markers (a restart continues the series) and the session."""
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
            self._watch = None
        for job in self._jobs.values():
            await self._stop_all(job, stale=False)
        self._jobs = {}
        if self._session is not None:
            await self._session.close()
            self._session = None


__all__ = ["ScrapeManager", "Shard"]
