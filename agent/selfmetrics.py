"""The agent's own metrics, pushed with every collection (and visible in the log at shutdown)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from sotp.codec.exposition import MetricFamily


@dataclass(slots=True)
class Counters:
    samples_sent: int = 0
    samples_failed: int = 0  # rejected by the receiver with a non-retryable 4xx
    requests_retried: int = 0
    collections: int = 0
    last_collect_seconds: float = 0.0


def _rss_bytes() -> float:
    try:
        with open("/proc/self/statm") as fh:
            return float(int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE"))
    except (OSError, ValueError, IndexError):
        try:
            import resource  # POSIX only; there is no /proc/self/statm on macOS or the BSDs
        except ImportError:  # Windows
            return float("nan")
        return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)


def families(c: Counters, buffered_samples: int, buffered_bytes: int, dropped: int) -> list[MetricFamily]:
    def one(name: str, typ: str, help_: str, value: float) -> MetricFamily:
        fam = MetricFamily(name, typ, help_)
        fam.add({}, value)
        return fam

    t = os.times()
    return [
        one("sotp_agent_samples_sent_total", "counter", "Samples the receiver accepted (2xx).", c.samples_sent),
        one("sotp_agent_samples_failed_total", "counter",
            "Samples the receiver rejected for good (4xx other than 429); logged with the reason.",
            c.samples_failed),
        one("sotp_agent_samples_dropped_total", "counter",
            "Samples dropped because the on-disk buffer was full (oldest first).", dropped),
        one("sotp_agent_samples_buffered", "gauge", "Samples waiting to be sent.", buffered_samples),
        one("sotp_agent_buffer_bytes", "gauge", "Bytes of batches waiting in the on-disk buffer.", buffered_bytes),
        one("sotp_agent_requests_retried_total", "counter",
            "Requests that failed with a retryable error (connection, 5xx, 429).", c.requests_retried),
        one("sotp_agent_collections_total", "counter", "Host collections made.", c.collections),
        one("sotp_agent_collect_duration_seconds", "gauge", "Duration of the last host collection.",
            c.last_collect_seconds),
        one("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.", _rss_bytes()),
        one("process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.",
            t.user + t.system),
    ]
