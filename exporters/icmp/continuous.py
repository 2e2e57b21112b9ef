"""Continuous ping (smokeping_prober's model): every target once per ``interval``, spread evenly over it.

Counting rule: a request is counted when its outcome is known (reply, timeout or send error), in the same
step as the response. So at every scrape ``sotp_icmp_requests_total - sotp_icmp_responses_total`` is
exactly the number of echoes lost, never echoes still in flight, and one slow reply is not a loss spike.
A reply that arrives after ``timeout`` counts as lost.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import time
from dataclasses import dataclass, field

from exporters.icmp.config import Continuous
from exporters.icmp.errors import IcmpError, SendFailed
from exporters.icmp.pinger import Pinger
from exporters.icmp.resolve import choose_address
from sotp.codec.exposition import format_labels, format_value

log = logging.getLogger(__name__)

#: Seconds between attempts to resolve a target that has no address yet.
RETRY_UNRESOLVED = 10.0


@dataclass
class Stats:
    """Counters of one (host, ip) pair; ``labels`` is its rendered ``{host="...",ip="..."}``."""

    labels: str
    buckets: list[int]
    requests: int = 0
    responses: int = 0
    send_errors: int = 0
    rtt_sum: float = 0.0
    hop_limit: int | None = None


@dataclass
class _Target:
    host: str
    ip: str | None = None
    resolve_errors: int = 0
    resolved_at: float = field(default=float("-inf"))


class ContinuousPinger:
    """Runs the background loop (:meth:`run`) and renders its state (:meth:`families`)."""

    def __init__(self, cfg: Continuous, pinger: Pinger) -> None:
        self.cfg = cfg
        self.pinger = pinger
        self.bounds = list(cfg.buckets)
        self.targets = [_Target(h) for h in cfg.targets]
        self.stats: dict[tuple[str, str], Stats] = {}
        self.cycles_skipped = 0
        self.pings_skipped = 0
        self._tasks: set[asyncio.Task[None]] = set()

    def _stats(self, host: str, ip: str) -> Stats:
        st = self.stats.get((host, ip))
        if st is None:
            labels = format_labels({"host": host, "ip": ip})
            st = self.stats[(host, ip)] = Stats(labels=labels, buckets=[0] * len(self.bounds))
        return st

    async def _resolve(self, t: _Target, now: float) -> None:
        try:
            r = await choose_address(t.host, self.cfg.preferred_ip_protocol, self.cfg.ip_protocol_fallback)
        except IcmpError as err:
            t.resolve_errors += 1
            if t.ip is None or t.resolve_errors == 1:
                log.warning("icmp continuous: %s (keeping %s)", err, t.ip or "no address")
            return
        if r.ip != t.ip:
            if t.ip is None:
                log.debug("icmp continuous: %s resolves to %s", t.host, r.ip)
            else:  # new (host, ip) series start; the old ones keep their last values
                log.info("icmp continuous: %s now resolves to %s (was %s)", t.host, r.ip, t.ip)
            t.ip = r.ip
        self._stats(t.host, r.ip)  # the series exist (at 0) from the first scrape on
        t.resolved_at = now

    async def resolve_due(self) -> None:
        """Resolve targets never resolved, and every target whose last resolution is older than
        ``resolve_interval``."""
        now = time.monotonic()
        due = [t for t in self.targets if t.ip is None or now - t.resolved_at >= self.cfg.resolve_interval_s]
        if due:
            await asyncio.gather(*(self._resolve(t, now) for t in due))

    async def _ping(self, t: _Target, ip: str) -> None:
        st = self._stats(t.host, ip)
        try:
            reply = await self.pinger.ping(
                ip, timeout=self.cfg.timeout_s, size=self.cfg.payload_size, ttl=self.cfg.ttl,
                dont_fragment=self.cfg.dont_fragment, source=self.cfg.source_ip_address or None,
            )
        except SendFailed as err:
            st.requests += 1
            st.send_errors += 1
            if st.send_errors == 1:
                log.warning("icmp continuous: %s", err)
            return
        st.requests += 1
        if reply is not None:
            st.responses += 1
            st.rtt_sum += reply.rtt
            i = bisect.bisect_left(self.bounds, reply.rtt)
            if i < len(st.buckets):
                st.buckets[i] += 1
            if reply.hop_limit is not None:
                st.hop_limit = reply.hop_limit

    async def _resolver(self) -> None:
        # Apart from the send loop, so a slow or failing DNS server never delays pings of resolved targets.
        # Unresolved targets are retried every RETRY_UNRESOLVED seconds (or resolve_interval if shorter).
        while True:
            await asyncio.sleep(min(self.cfg.resolve_interval_s, RETRY_UNRESOLVED))
            await self.resolve_due()

    async def run(self) -> None:
        """Ping forever (until cancelled). Target ``i`` of ``n`` is sent at offset ``i/n`` of each interval,
        so the load is even instead of one burst per interval."""
        if not self.targets:
            return
        interval = self.cfg.interval_s
        n = len(self.targets)
        loop = asyncio.get_running_loop()
        await self.resolve_due()
        resolver = asyncio.create_task(self._resolver())
        cycle_start = loop.time()
        try:
            while True:
                for i, t in enumerate(self.targets):
                    delay = cycle_start + interval * i / n - loop.time()
                    if delay > 0.001:
                        await asyncio.sleep(delay)
                    if t.ip is None:
                        continue
                    if self.pinger.waiting >= self.pinger.max_in_flight:
                        # The pinger is a whole window behind: queueing more would only grow memory and
                        # latency without bound. This ping is skipped (not counted as a request).
                        self.pings_skipped += 1
                        continue
                    task = asyncio.create_task(self._ping(t, t.ip))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
                cycle_start += interval
                behind = loop.time() - cycle_start
                if behind > interval:  # overloaded: skip whole cycles rather than bursting to catch up
                    skipped = int(behind // interval)
                    self.cycles_skipped += skipped
                    cycle_start += skipped * interval
                    log.warning("icmp continuous: %d cycle(s) skipped, %d targets do not fit in %ss",
                                skipped, n, self.cfg.interval)
        finally:
            resolver.cancel()
            for task in self._tasks:
                task.cancel()

    def snapshot(self) -> list[tuple[Stats, int, int, int, float, list[int], int | None]]:
        """All counters copied in one synchronous step, so a scrape never sees a response without its request."""
        return [
            (st, st.requests, st.responses, st.send_errors, st.rtt_sum, list(st.buckets), st.hop_limit)
            for _, st in sorted(self.stats.items())
        ]

    async def render(self, chunk: int = 2000) -> str:
        """The continuous families as exposition text.

        Written line by line rather than through :class:`MetricFamily` (one dict per sample): at 20,000
        targets that is ~540,000 samples, and the generic path took seconds and hundreds of MB. Numbers use
        :func:`sotp.codec.exposition.format_value` (Go's format) except small integers, where it is the
        same digits. Yields to the event loop every ``chunk`` series so replies keep being read."""
        snap = self.snapshot()
        out: list[str] = []

        def head(name: str, kind: str, help_: str) -> None:
            out.append(f"# HELP {name} {help_}\n# TYPE {name} {kind}\n")

        async def per_series(name: str, col: int) -> None:
            for i, row in enumerate(snap):
                out.append(f"{name}{row[0].labels} {_num(float(row[col]))}\n")  # type: ignore[arg-type]
                if i % chunk == chunk - 1:
                    await asyncio.sleep(0)

        if snap:
            head("sotp_icmp_requests_total", "counter",
                 "Echo requests whose outcome is known (replied, timed out or not sent)")
            await per_series("sotp_icmp_requests_total", 1)
            head("sotp_icmp_responses_total", "counter", "Echo replies received within the timeout")
            await per_series("sotp_icmp_responses_total", 2)
            head("sotp_icmp_rtt_seconds", "histogram", "Round-trip time of echo replies")
            les = [format_value(b) for b in self.bounds]
            for i, (st, _req, resp, _err, rtt_sum, buckets, _hop) in enumerate(snap):
                prefix = f"sotp_icmp_rtt_seconds_bucket{st.labels[:-1]},le=\""
                cum = 0
                for le, n in zip(les, buckets, strict=True):
                    cum += n
                    out.append(f'{prefix}{le}"}} {_num(float(cum))}\n')
                out.append(f'{prefix}+Inf"}} {_num(float(resp))}\n')
                out.append(f"sotp_icmp_rtt_seconds_sum{st.labels} {format_value(rtt_sum)}\n")
                out.append(f"sotp_icmp_rtt_seconds_count{st.labels} {_num(float(resp))}\n")
                if i % chunk == chunk - 1:
                    await asyncio.sleep(0)
            head("sotp_icmp_send_errors_total", "counter",
                 "Echo requests the kernel refused to send (counted as requests, not responses)")
            await per_series("sotp_icmp_send_errors_total", 3)
            hops = [(row[0].labels, row[6]) for row in snap if row[6] is not None]
            if hops:
                head("sotp_icmp_reply_hop_limit", "gauge", "Hop limit (TTL for IPv4) of the last reply")
                out.extend(f"sotp_icmp_reply_hop_limit{labels} {hop}\n" for labels, hop in hops)
        if self.targets:
            head("sotp_icmp_resolve_errors_total", "counter", "Failed resolutions of a target name")
            for t in sorted(self.targets, key=lambda t: t.host):
                out.append(f"sotp_icmp_resolve_errors_total{format_labels({'host': t.host})} "
                           f"{_num(float(t.resolve_errors))}\n")
            head("sotp_icmp_cycles_skipped_total", "counter",
                 "Continuous ping cycles skipped because the previous one overran the interval")
            out.append(f"sotp_icmp_cycles_skipped_total {_num(float(self.cycles_skipped))}\n")
            head("sotp_icmp_pings_skipped_total", "counter",
                 "Continuous pings not sent because max_in_flight echoes were already queued")
            out.append(f"sotp_icmp_pings_skipped_total {_num(float(self.pings_skipped))}\n")
        return "".join(out)


def _num(v: float) -> str:
    """Go's exposition format of ``v``; integers below 1e6 print as their digits in both, cheaply."""
    if 0 <= v < 1e6 and v.is_integer():
        return str(int(v))
    return format_value(v)
