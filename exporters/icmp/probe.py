"""One ``/probe`` run: resolve, send ``count`` echoes, and report with blackbox_exporter's names and meaning.

Families are sorted by name, as Go's registry gathers them. With ``count: 1`` (the default) the output has
exactly blackbox's families; ``count > 1`` adds ``sotp_probe_icmp_*`` and reports the mean RTT as
``probe_icmp_duration_seconds{phase="rtt"}``.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import statistics
import time
from dataclasses import dataclass, field

from exporters.icmp.config import Module
from exporters.icmp.errors import IcmpError
from exporters.icmp.pinger import Pinger, Reply
from exporters.icmp.resolve import choose_address, ip_hash
from exporters.scrape_timeout import scrape_timeout_header
from sotp.codec.exposition import MetricFamily

log = logging.getLogger(__name__)

DEFAULT_PAYLOAD = 56


@dataclass
class ProbeResult:
    """What one probe measured; :meth:`families` turns it into exposition families."""

    success: bool = False
    duration: float = 0.0
    dns_lookup: float = 0.0
    ip_protocol: int = 0
    ip_hash: float = 0.0
    phases: dict[str, float] = field(default_factory=lambda: {"resolve": 0.0, "setup": 0.0, "rtt": 0.0})
    hop_limit: int | None = None
    sent: int = 0
    replies: list[Reply] = field(default_factory=list)
    count: int = 1
    #: What happened, in order, for ``/probe?debug=true`` (also sent to the log).
    notes: list[str] = field(default_factory=list)

    def note(self, level: int, msg: str, *args: object) -> None:
        text = msg % args if args else msg
        self.notes.append(f"{logging.getLevelName(level).lower()}: {text}")
        log.log(level, "icmp probe: %s", text)

    def families(self) -> list[MetricFamily]:
        fams: list[MetricFamily] = []

        def gauge(name: str, help_: str, value: float, labels: dict[str, str] | None = None) -> MetricFamily:
            fam = MetricFamily(name, "gauge", help_)
            fam.add(labels or {}, value)
            fams.append(fam)
            return fam

        gauge("probe_dns_lookup_time_seconds", "Returns the time taken for probe dns lookup in seconds",
              self.dns_lookup)
        gauge("probe_duration_seconds", "Returns how long the probe took to complete in seconds", self.duration)
        phases = MetricFamily("probe_icmp_duration_seconds", "gauge", "Duration of icmp request by phase")
        for phase in sorted(self.phases):  # Go's registry sorts series by label value
            phases.add({"phase": phase}, self.phases[phase])
        fams.append(phases)
        if self.hop_limit is not None:
            gauge("probe_icmp_reply_hop_limit", "Replied packet hop limit (TTL for ipv4)", float(self.hop_limit))
        gauge("probe_ip_addr_hash",
              "Specifies the hash of IP address. It's useful to detect if the IP address changes.", self.ip_hash)
        gauge("probe_ip_protocol", "Specifies whether probe ip protocol is IP4 or IP6", float(self.ip_protocol))
        gauge("probe_success", "Displays whether or not the probe was a success", 1.0 if self.success else 0.0)
        if self.count > 1:
            gauge("sotp_probe_icmp_replies", "Echo replies received by this probe", float(len(self.replies)))
            gauge("sotp_probe_icmp_requests", "Echo requests sent by this probe", float(self.sent))
            if self.replies:
                rtts = [r.rtt for r in self.replies]
                fam = MetricFamily("sotp_probe_icmp_rtt_seconds", "gauge", "Round-trip time of this probe's replies")
                fam.add({"stat": "avg"}, statistics.fmean(rtts))
                fam.add({"stat": "max"}, max(rtts))
                fam.add({"stat": "min"}, min(rtts))
                fams.append(fam)
        return sorted(fams, key=lambda f: f.name)


def probe_timeout(header: str | None, module: Module, offset: float) -> float:
    """blackbox's ``getTimeout``: the scrape timeout header (120 s when absent) minus ``offset``, or the
    module's own timeout when that is set and shorter (or when the header minus offset is negative).

    Raises ``ValueError`` for an unparsable header; ``nan``, ``inf`` and non-positive values count as absent."""
    timeout = scrape_timeout_header(header) or 120.0
    max_timeout = timeout - offset
    configured = module.timeout_s
    if 0 < configured < max_timeout or max_timeout < 0:
        return configured
    return max_timeout


async def run_probe(pinger: Pinger, target: str, module: Module, timeout: float) -> ProbeResult:
    """Probe ``target`` within ``timeout`` seconds; never raises for network failures (they are a failed probe)."""
    opts = module.icmp
    res = ProbeResult(count=opts.count)
    start = time.perf_counter()
    deadline = start + timeout
    res.note(logging.DEBUG, "resolving %s (preferred %s, fallback %s, timeout %.3fs)", target,
             opts.preferred_ip_protocol, opts.ip_protocol_fallback, timeout)
    try:
        try:
            resolved = await asyncio.wait_for(
                choose_address(target, opts.preferred_ip_protocol, opts.ip_protocol_fallback), timeout
            )
        finally:
            res.dns_lookup = time.perf_counter() - start
        res.phases["resolve"] = res.dns_lookup  # one measurement for both, as in blackbox
        res.ip_protocol = resolved.version
        res.ip_hash = ip_hash(resolved.ip)
        res.note(logging.DEBUG, "resolved %s to %s in %.6fs", target, resolved.ip, res.dns_lookup)

        setup_start = time.perf_counter()
        family = socket.AF_INET6 if resolved.version == 6 else socket.AF_INET
        sock = pinger.socket_for(family, opts.source_ip_address or None)
        size = opts.payload_size or DEFAULT_PAYLOAD
        res.phases["setup"] = time.perf_counter() - setup_start
        res.note(logging.DEBUG, "sending %d echo(s) of %d data bytes over the shared %s %s socket", opts.count,
                 size, sock.family_name, sock.mode)

        first_send = time.perf_counter()

        async def echo(i: int) -> Reply | None:
            if i:
                await asyncio.sleep(max(0.0, first_send + i * opts.interval_s - time.perf_counter()))
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                return None
            res.sent += 1
            try:
                # The outer timeout also covers waiting for a slot under max_in_flight.
                async with asyncio.timeout(remaining):
                    return await pinger.ping(
                        resolved.ip, timeout=remaining, size=size, ttl=opts.ttl,
                        dont_fragment=opts.dont_fragment, source=opts.source_ip_address or None,
                    )
            except TimeoutError:
                return None

        results = await asyncio.gather(*(echo(i) for i in range(opts.count)))
        res.replies = [r for r in results if r is not None]
        if res.replies:
            res.success = True
            # Kernel-timestamped RTT rather than wall time around the await (what blackbox measures, which
            # adds scheduling delay); the mean when count > 1.
            res.phases["rtt"] = statistics.fmean(r.rtt for r in res.replies)
            hops = [r.hop_limit for r in res.replies if r.hop_limit is not None]
            res.hop_limit = hops[-1] if hops else None
            res.note(logging.DEBUG, "%d of %d echo(s) answered, rtt %s s", len(res.replies), res.sent,
                     " ".join(f"{r.rtt:.6f}" for r in res.replies))
        else:
            res.note(logging.DEBUG, "no reply from %s (%s) within %.3fs", target, resolved.ip, timeout)
    except TimeoutError:
        res.note(logging.INFO, "resolving %s took longer than the timeout (%.3fs)", target, timeout)
    except IcmpError as err:
        res.note(logging.INFO, "probe of %s failed: %s", target, err)
    res.duration = time.perf_counter() - start
    res.note(logging.DEBUG, "probe %s after %.6fs", "succeeded" if res.success else "failed", res.duration)
    return res
