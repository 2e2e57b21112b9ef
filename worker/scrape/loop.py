"""One target's scrape loop: fetch, parse, label, limit, stale-mark, report, commit: one transaction a scrape.

Per scrape, like Prometheus 2.42's ``scrapeLoop``:

* the request carries ``Accept`` (OpenMetrics preferred), ``X-Prometheus-Scrape-Timeout-Seconds`` and the
  job's credentials; a non-200 status, a timeout, a body over ``body_size_limit`` or a parse error fails
  the scrape;
* each exposed series is labelled with the target's labels (``honor_labels`` decides conflicts, else the
  exposed label is renamed ``exported_<name>``), then ``metric_relabel_configs`` runs; the result is
  cached by the series' raw text, so a steady target costs one dict lookup per sample;
* ``sample_limit`` / ``label_limit`` / label length limits fail the whole scrape (nothing is kept);
* series seen in the previous scrape but not in this one get a staleness marker (a failed scrape counts
  as empty, so every series goes stale), except series exposed with explicit timestamps;
* ``up``, ``scrape_duration_seconds``, ``scrape_samples_scraped``,
  ``scrape_samples_post_metric_relabeling`` and ``scrape_series_added`` are written with the samples.

Scrapes start at a fixed offset inside the interval derived from the target's hash, so a thousand
targets spread evenly, and one target's scrapes never overlap (the next one waits for the slot after).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import ssl
import time
from dataclasses import dataclass, field
from sys import intern
from typing import Final

import aiohttp

from sotp.codec.textparse import SCRAPE_ACCEPT, is_openmetrics, iter_samples, parse_series
from sotp.errors import DecodeError, SotpError, StorageError
from sotp.model import LABEL_NAME_RE, METRIC_NAME, METRIC_NAME_RE, STALE_NAN, Labels
from sotp.storage import Appender, Storage
from worker.scrape.config import JobSettings, TLSConfig
from worker.scrape.metrics import WorkerMetrics
from worker.scrape.relabel import Step, process
from worker.scrape.targets import Target

log = logging.getLogger(__name__)

USER_AGENT: Final = "SOTP-worker/0.1"
#: Pauses between attempts to commit a scrape when the store reports a retryable error.
STORAGE_RETRY_PAUSES_S: Final = (0.2, 0.5)
REPORT_NAMES: Final = (
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
)


@functools.lru_cache(maxsize=64)
def ssl_context(tls: TLSConfig) -> ssl.SSLContext:
    """One client SSL context per distinct ``tls_config`` (loading CA stores is slow and large)."""
    ctx = ssl.create_default_context(cafile=tls.ca_file or None)
    if tls.cert_file:
        ctx.load_cert_chain(tls.cert_file, tls.key_file)
    if tls.insecure_skip_verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


class ScrapeError(SotpError):
    """A scrape failed (HTTP, timeout, size, parse or limit); the message is what ``up == 0`` means."""


_DROPPED: Final = Labels.from_sorted(())  # cache value for a series dropped by metric relabeling


@dataclass
class LoopState:
    """What survives a loop restart for the same target (a reload): the series to mark stale next."""

    prev_series: set[Labels] = field(default_factory=set)
    #: Series of the last successful scrape, for ``scrape_series_added`` (a failed scrape keeps it).
    seen: set[Labels] = field(default_factory=set)
    last_explicit_ts: dict[Labels, int] = field(default_factory=dict)
    last_t_ms: int = 0


@dataclass
class ScrapeResult:
    """The outcome of one scrape, for tests and logs."""

    up: bool
    error: str | None
    scraped: int
    post_relabel: int
    series_added: int
    stale_markers: int
    duration_s: float


def mutate_labels(exposed: tuple[tuple[str, str], ...], name: str, target: Labels, honor: bool) -> dict[str, str]:
    """Merge a sample's exposed labels with the target's, as Prometheus's ``mutateSampleLabels``."""
    lset = dict(exposed)
    lset[METRIC_NAME] = name
    if honor:
        for k, v in target.items_tuple():
            if not lset.get(k):
                lset[k] = v
        return lset
    conflicts: list[tuple[str, str]] = []
    for k, v in target.items_tuple():
        existing = lset.get(k)
        if existing:
            conflicts.append((k, existing))
        lset[k] = v
    if conflicts:
        # Shortest names first, each renamed to the first exported_* name free in the exposed labels,
        # the target labels and the names already chosen.
        conflicts.sort(key=lambda c: len(c[0]))
        exposed_names = {n for n, _ in exposed}
        chosen: set[str] = set()
        for k, v in conflicts:
            new = "exported_" + k
            while new in exposed_names or new in target or new in chosen:
                new = "exported_" + new
            chosen.add(new)
            lset[new] = v
    return lset


class ScrapeLoop:
    """Scrapes one target on its schedule until cancelled; see the module docstring."""

    def __init__(
        self,
        target: Target,
        job: JobSettings,
        metric_steps: tuple[Step, ...],
        session: aiohttp.ClientSession,
        storage: Storage,
        metrics: WorkerMetrics,
        state: LoopState | None = None,
    ) -> None:
        self.target = target
        self.job = job
        self.steps = metric_steps
        self.session = session
        self.storage = storage
        self.metrics = metrics
        self.state = state or LoopState()
        self._cache: dict[str, Labels] = {}
        self._report_labels = [target.labels.merged({METRIC_NAME: n}) for n in REPORT_NAMES]
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self.last_result: ScrapeResult | None = None
        self._explicit: set[Labels] = set()
        self._n_scraped = 0
        self._n_post = 0
        self.scrapes = 0

    # -- scheduling ---------------------------------------------------------------------------------

    def offset_s(self) -> float:
        """Where in each interval this target is scraped, from its hash (stable across restarts)."""
        interval_ms = max(1, round(self.target.interval_s * 1000))
        return (self.target.hash64() % interval_ms) / 1000.0

    def next_start(self, now: float) -> float:
        """The first wall-clock time after ``now`` that falls on this target's offset."""
        interval = self.target.interval_s
        base = now - (now % interval)
        t = base + self.offset_s()
        while t <= now:
            t += interval
        return t

    def start(self) -> None:
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name=f"scrape {self.target.url}")

    async def stop(self, stale: bool) -> None:
        """End the loop, letting a scrape in flight finish its transaction (it is never cut in the middle
        of a commit); ``stale``: then mark the target's series stale (the target went away)."""
        if self._task is not None:
            self._stop.set()
            try:
                await asyncio.wait_for(asyncio.shield(self._task), self.target.timeout_s + 30)
            except TimeoutError:  # a store that hangs: give up on that scrape
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
            self._task = None
        if stale:
            await self.write_end_of_run_staleness()

    async def _run(self) -> None:
        interval = self.target.interval_s
        when = self.next_start(time.time())
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), max(0.0, when - time.time()))
                return  # stop() was called while waiting for the slot
            try:
                await self.scrape_once()
            except Exception:  # a bug must not kill the schedule: log it and keep scraping
                log.exception("scrape loop for %s failed", self.target.url)
            now = time.time()
            when += interval
            if when <= now:  # fell behind (loop stalled): skip missed slots, never overlap
                when = self.next_start(now)

    # -- one scrape ---------------------------------------------------------------------------------

    async def fetch(self) -> tuple[str, str | None]:
        """GET the target; returns (body text, content type). Raises ScrapeError."""
        headers = {
            "Accept": SCRAPE_ACCEPT,
            "User-Agent": USER_AGENT,
            "X-Prometheus-Scrape-Timeout-Seconds": f"{self.target.timeout_s:g}",
        }
        if self.job.auth_header:
            headers["Authorization"] = self.job.auth_header
        limit = self.job.body_size_limit
        tls = self.job.cfg.tls_config
        try:
            async with self.session.get(
                self.target.url,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=self.target.timeout_s),
                allow_redirects=self.job.cfg.follow_redirects,
                ssl=ssl_context(tls) if self.target.url.startswith("https:") else True,
                server_hostname=tls.server_name or None,
            ) as resp:
                if resp.status != 200:
                    raise ScrapeError(f"server returned HTTP status {resp.status} {resp.reason or ''}".rstrip())
                if limit:
                    chunks: list[bytes] = []
                    size = 0
                    async for chunk in resp.content.iter_chunked(1 << 16):
                        size += len(chunk)
                        if size > limit:
                            raise ScrapeError(
                                f"body size limit exceeded (over {limit} bytes, scrape_configs body_size_limit)"
                            )
                        chunks.append(chunk)
                    body = b"".join(chunks)
                else:
                    body = await resp.read()
                ctype = resp.headers.get("Content-Type")
        except TimeoutError:
            raise ScrapeError(f"context deadline exceeded (scrape_timeout {self.target.timeout_s:g}s)") from None
        except aiohttp.ClientError as err:
            raise ScrapeError(f"cannot scrape {self.target.url}: {err}") from err
        return body.decode("utf-8", errors="replace"), ctype

    def _resolve(self, series: str) -> Labels:
        """Raw series text → final labels (or _DROPPED), checking label limits."""
        name, exposed = parse_series(series)
        lset = mutate_labels(exposed, name, self.target.labels, self.job.cfg.honor_labels)
        if self.steps:
            out = process(lset, self.steps)
            if out is None:
                return _DROPPED
            lset = out
        lset = {k: v for k, v in lset.items() if v}
        metric = lset.get(METRIC_NAME)
        if not metric:
            raise ScrapeError(f"series {series!r} has no __name__ after metric_relabel_configs")
        if not METRIC_NAME_RE.match(metric):
            raise ScrapeError(f"invalid metric name {metric!r} after metric_relabel_configs (from {series!r})")
        cfg = self.job.cfg
        if cfg.label_limit and len(lset) > cfg.label_limit:
            raise ScrapeError(f"label_limit exceeded (metric: {name}, number of labels: {len(lset)}, "
                              f"limit: {cfg.label_limit})")
        for k, v in lset.items():
            if not LABEL_NAME_RE.match(k):
                raise ScrapeError(f"invalid label name {k!r} after metric_relabel_configs in {series!r}")
            if cfg.label_name_length_limit and len(k) > cfg.label_name_length_limit:
                raise ScrapeError(f"label_name_length_limit exceeded (metric: {name}, label: {k}, "
                                  f"limit: {cfg.label_name_length_limit})")
            if cfg.label_value_length_limit and len(v) > cfg.label_value_length_limit:
                raise ScrapeError(f"label_value_length_limit exceeded (metric: {name}, label: {k}, "
                                  f"limit: {cfg.label_value_length_limit})")
        # Interned strings: the same names and values repeat across series and targets, and both the
        # scrape cache and the storage index keep these label sets for as long as the series lives.
        return Labels((intern(k), intern(v)) for k, v in lset.items())

    def _samples(self, text: str, openmetrics: bool, now_ms: int) -> dict[Labels, tuple[int, float]]:
        """Parse and label a body into final samples (first of repeated series wins).

        Counts go to ``self._n_scraped`` / ``self._n_post`` as parsing goes, so a scrape that fails half
        way reports what it had read, as Prometheus does; series with explicit timestamps to
        ``self._explicit``.
        """
        cache = self._cache
        resolve = self._resolve
        honor_ts = self.job.cfg.honor_timestamps
        out: dict[Labels, tuple[int, float]] = {}
        explicit = self._explicit = set()
        self._n_scraped = self._n_post = 0
        for series, value, t_ms in iter_samples(text, openmetrics=openmetrics):
            self._n_scraped += 1
            lbls = cache.get(series)
            if lbls is None:
                lbls = cache[series] = resolve(series)
            if lbls is _DROPPED:
                continue
            self._n_post += 1  # repeated series count too (Prometheus counts its duplicate appends)
            if lbls in out:
                continue
            if t_ms is not None and honor_ts:
                explicit.add(lbls)
                out[lbls] = (t_ms, value)
            else:
                out[lbls] = (now_ms, value)
        if len(cache) > 2 * self._n_scraped + 64:  # forget series that stopped being exposed
            seen = {s for s, _, _ in iter_samples(text, openmetrics=openmetrics)}
            self._cache = {k: v for k, v in cache.items() if k in seen}
        return out

    async def scrape_once(self) -> ScrapeResult:
        """One scrape and its transaction (called by the schedule; tests call it directly)."""
        state = self.state
        start = time.time()
        now_ms = max(int(start * 1000), state.last_t_ms + 1)
        error: str | None = None
        samples: dict[Labels, tuple[int, float]] = {}
        self._explicit = set()
        self._n_scraped = self._n_post = 0
        known = state.seen
        added = 0
        try:
            text, ctype = await self.fetch()
            duration = time.time() - start
            samples = self._samples(text, is_openmetrics(ctype), now_ms)
            limit = self.job.cfg.sample_limit
            if limit and len(samples) > limit:
                # Prometheus appends the first `limit` samples before its limit trips, so only those
                # count as added series; every series is remembered all the same.
                added = sum(1 for lbls in list(samples)[:limit] if lbls not in known)
                state.seen = set(samples)
                raise ScrapeError(f"sample_limit exceeded ({len(samples)} samples after relabeling, limit {limit})")
        except (ScrapeError, DecodeError) as err:
            duration = time.time() - start
            error = str(err)
            samples = {}
            self._explicit = set()
        explicit = self._explicit
        # Drop honoured timestamps that do not move forward (Prometheus counts them as out-of-order).
        for lbls in explicit:
            t = samples[lbls][0]
            last = state.last_explicit_ts.get(lbls)
            if last is not None and t <= last:
                del samples[lbls]
            else:
                state.last_explicit_ts[lbls] = t
        current = {lbls for lbls in samples if lbls not in explicit}
        stale = state.prev_series - current
        if error is None:
            added = len(samples.keys() - known)
            state.seen = set(samples) if explicit else current  # share the set: 200k series cost MBs
        up = error is None
        result = ScrapeResult(up, error, self._n_scraped, self._n_post, added, len(stale), duration)
        await self._commit(samples, stale, now_ms, result)
        state.prev_series = current
        state.last_t_ms = now_ms
        self.last_result = result
        self.scrapes += 1
        if error:
            log.debug("scrape of %s failed: %s", self.target.url, error)
        self.metrics.scrape_done(self.target.job, up, len(samples))
        return result

    def _report(self, app: Appender, now_ms: int, r: ScrapeResult) -> None:
        values = (1.0 if r.up else 0.0, r.duration_s, float(r.scraped), float(r.post_relabel), float(r.series_added))
        for lbls, v in zip(self._report_labels, values, strict=True):
            app.append(lbls, now_ms, v)

    async def _commit(self, samples: dict[Labels, tuple[int, float]], stale: set[Labels], now_ms: int,
                      r: ScrapeResult) -> None:
        """Write the scrape in one transaction; a busy or briefly unavailable store is retried."""
        for attempt, pause in enumerate((*STORAGE_RETRY_PAUSES_S, None)):
            app = self.storage.appender()
            for lbls, (t, v) in samples.items():
                app.append(lbls, t, v)
            for lbls in stale:
                app.append(lbls, now_ms, STALE_NAN)
            self._report(app, now_ms, r)
            try:
                await app.commit()
                return
            except StorageError as err:
                await app.rollback()
                if pause is not None:  # e.g. SQLite busy while `sotp serve` writes the same file
                    log.info("scrape of %s: storage busy (attempt %d), retrying: %s", self.target.url,
                             attempt + 1, err)
                    await asyncio.sleep(pause)
                    continue
                self.metrics.append_failed(self.target.job)
                log.warning("scrape of %s: cannot write %d samples (storage unavailable): %s", self.target.url,
                            len(samples), err)
                return
            except SotpError as err:
                await app.rollback()
                self.metrics.append_failed(self.target.job)
                log.warning("scrape of %s: cannot write %d samples (samples rejected): %s", self.target.url,
                            len(samples), err)
                break
        # Some sample was rejected (e.g. another writer owns the series): keep the report at least.
        r.up, r.error = False, "samples rejected by storage"
        app = self.storage.appender()
        self._report(app, now_ms, r)
        try:
            await app.commit()
        except SotpError as err:
            await app.rollback()
            log.warning("scrape of %s: cannot write the report series: %s", self.target.url, err)

    async def write_end_of_run_staleness(self) -> None:
        """The target went away: mark every series it last exposed, and its report series, stale."""
        state = self.state
        series = set(state.prev_series)
        if state.last_t_ms:
            series.update(self._report_labels)
        if not series:
            return
        t = max(int(time.time() * 1000), state.last_t_ms + 1)
        app = self.storage.appender()
        for lbls in series:
            app.append(lbls, t, STALE_NAN)
        try:
            await app.commit()
        except SotpError as err:
            await app.rollback()
            log.warning("cannot write staleness markers for %s: %s", self.target.url, err)
        state.prev_series = set()
