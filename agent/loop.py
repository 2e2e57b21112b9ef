"""The agent's schedule: collect every interval, queue the batches, send them in order with backoff.

Single-threaded on purpose: one loop decides when to collect and when to retry, so ordering needs no
locks. Collection never waits for the network; a slow or absent receiver only grows the buffer.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from agent import selfmetrics
from agent.buffer import Buffer
from agent.sender import Outcome, Result, Sender
from agent.series import BatchEncoder
from sotp.codec.exposition import MetricFamily
from sotp.codec.remote_write_encoder import encode_metadata, snappy_block

log = logging.getLogger("agent")


@dataclass(frozen=True, slots=True)
class Settings:
    interval: float
    target: Mapping[str, str]  # instance, job and extra labels
    max_samples_per_send: int = 2000
    min_backoff: float = 0.5
    max_backoff: float = 30.0
    max_retry_after: float = 300.0  # a Retry-After longer than this is capped, so we keep probing
    shutdown_timeout: float = 5.0
    metadata_interval: float = 600.0  # how often TYPE/HELP go out (Prometheus: every minute by default)


class Agent:
    def __init__(
        self,
        settings: Settings,
        collect: Callable[[], list[MetricFamily]],
        sender: Sender,
        buffer: Buffer,
    ) -> None:
        self.s = settings
        self._collect = collect
        self.sender = sender
        self.buffer = buffer
        self.counters = selfmetrics.Counters()
        self._failures = 0  # consecutive retryable failures, for the backoff exponent
        self._retry_at = 0.0  # monotonic time before which no request is sent
        self._outage_logged = False
        self._encoder = BatchEncoder(settings.target, settings.max_samples_per_send)
        self._metadata: list[tuple[str, str, str, str]] = []
        self._metadata_at = 0.0  # monotonic time the metadata is next due

    # -- one collection ------------------------------------------------------------------------------
    def collect_once(self) -> None:
        start = time.perf_counter()
        t_ms = int(time.time() * 1000)
        fams = self._collect()
        self.counters.collections += 1
        self.counters.last_collect_seconds = time.perf_counter() - start
        fams += selfmetrics.families(
            self.counters, self.buffer.samples, self.buffer.disk_bytes, self.buffer.dropped_samples
        )
        for body, n in self._encoder.encode(fams, t_ms):
            self.buffer.push(body, n)
        self._metadata = [(f.name, f.type, f.help, "") for f in fams if f.samples]

    def send_metadata(self) -> None:
        """Send TYPE/HELP of the collected families in a request of their own, as Prometheus does, once
        the data queue is empty. Not buffered: it is resent every ``metadata_interval`` anyway."""
        if not self._metadata or len(self.buffer) or time.monotonic() < self._metadata_at:
            return
        out = self.sender.send(snappy_block(encode_metadata(self._metadata)))
        if out.result is Result.RETRY:
            self._metadata_at = time.monotonic() + self.s.interval
            return
        if out.result is Result.REJECTED:
            log.info("receiver refused metric metadata (HTTP %s: %s); data is unaffected", out.status, out.reason)
        self._metadata_at = time.monotonic() + self.s.metadata_interval

    # -- sending ---------------------------------------------------------------------------------------
    def drain(self, deadline: float) -> None:
        """Send queued batches oldest first until the queue is empty, a retryable failure sets a backoff,
        or ``deadline`` (monotonic) passes."""
        while time.monotonic() < deadline and time.monotonic() >= self._retry_at:
            batch = self.buffer.peek()
            if batch is None:
                return
            out = self.sender.send(batch.body)
            if out.result is Result.RETRY:
                self._on_retry(out)
                self.buffer.spill()
                return
            self.buffer.pop(batch)
            self._failures = 0
            if self._outage_logged:
                log.info("receiver %s answers again; replaying %d buffered batches", self.sender.url,
                         len(self.buffer))
                self._outage_logged = False
                self._metadata_at = 0.0  # it may have restarted and lost the metadata it held in memory
            if out.result is Result.SENT:
                self.counters.samples_sent += batch.samples
            else:
                self.counters.samples_failed += batch.samples
                log.error("receiver rejected a batch of %d samples with HTTP %s, dropping it (not retried): %s",
                          batch.samples, out.status, out.reason)

    def _on_retry(self, out: Outcome) -> None:
        self.counters.requests_retried += 1
        self._failures += 1
        backoff = min(self.s.max_backoff, self.s.min_backoff * 2 ** min(self._failures - 1, 30))
        delay = backoff * random.uniform(0.5, 1.0)  # jitter: many agents must not retry in lockstep
        if out.retry_after is not None:
            # floor at min_backoff: "Retry-After: 0" on every answer must not turn into a busy loop
            delay = min(max(out.retry_after, self.s.min_backoff), self.s.max_retry_after)
        self._retry_at = time.monotonic() + delay
        what = f"HTTP {out.status}" if out.status is not None else "no answer"
        if not self._outage_logged:
            log.warning("cannot send to %s (%s: %s); buffering in %s and retrying", self.sender.url, what,
                        out.reason, self.buffer.dir)
            self._outage_logged = True
        else:
            log.debug("send failed again (%s: %s); next attempt in %.1fs", what, out.reason, delay)

    # -- the loop --------------------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        next_collect = time.monotonic()
        while not stop.is_set():
            now = time.monotonic()
            if now >= next_collect:
                try:
                    self.collect_once()
                except Exception:  # a broken collection must not stop the agent; the next one may work
                    log.exception("collection failed")
                next_collect += self.s.interval
                if next_collect <= now:  # we fell behind (suspend, slow disk): skip, do not burst
                    next_collect = now + self.s.interval
            self.drain(deadline=next_collect)
            self.send_metadata()
            wake = next_collect if not len(self.buffer) else min(next_collect, max(self._retry_at, now))
            stop.wait(max(0.0, wake - time.monotonic()))
        self.shutdown()

    def shutdown(self) -> None:
        """Flush: try to send what is queued within ``shutdown_timeout``; keep the rest on disk."""
        self._retry_at = min(self._retry_at, time.monotonic())
        self.drain(deadline=time.monotonic() + self.s.shutdown_timeout)
        left = len(self.buffer)
        self.buffer.spill()
        c = self.counters
        log.info("agent stopped: %d samples sent, %d rejected, %d dropped, %d left in %s", c.samples_sent,
                 c.samples_failed, self.buffer.dropped_samples, self.buffer.samples if left else 0, self.buffer.dir)
