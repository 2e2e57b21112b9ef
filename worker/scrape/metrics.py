"""The worker's self-metrics, in a private prometheus_client registry served on ``--listen``'s /metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class WorkerMetrics:
    """Counters and gauges about scraping and reloads (``sotp_worker_*``)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.targets = Gauge("sotp_worker_targets", "Targets this worker (shard) scrapes.", ["job"], registry=r)
        self.scrapes = Counter(
            "sotp_worker_scrapes_total", "Scrapes by job and result (ok, failed).", ["job", "result"], registry=r
        )
        self.samples = Counter(
            "sotp_worker_samples_scraped_total", "Samples kept after metric relabeling, by job.", ["job"], registry=r
        )
        self.append_failures = Counter(
            "sotp_worker_append_failures_total",
            "Scrapes whose samples storage rejected or could not write, by job.",
            ["job"],
            registry=r,
        )
        self.reload_ok = Gauge(
            "sotp_worker_config_last_reload_successful", "Whether the last configuration reload succeeded.",
            registry=r,
        )
        self.reload_time = Gauge(
            "sotp_worker_config_last_reload_success_timestamp_seconds",
            "Timestamp of the last successful configuration reload.",
            registry=r,
        )

    def scrape_done(self, job: str, up: bool, samples: int) -> None:
        self.scrapes.labels(job, "ok" if up else "failed").inc()
        if samples:
            self.samples.labels(job).inc(samples)

    def append_failed(self, job: str) -> None:
        self.append_failures.labels(job).inc()
