"""The scrape scheduler: Prometheus's ``scrape_configs`` subset, writing through :mod:`sotp.storage`.

Modules, one job each: :mod:`~worker.scrape.config` (dataclasses, validation), :mod:`~worker.scrape.relabel`
(relabeling), :mod:`~worker.scrape.discovery` (static and file SD), :mod:`~worker.scrape.targets` (groups →
targets), :mod:`~worker.scrape.loop` (one target's scrapes), :mod:`~worker.scrape.manager` (all loops,
reload, sharding), :mod:`~worker.scrape.metrics` (self-metrics).
"""

from worker.scrape.config import WorkerConfig, worker_config
from worker.scrape.manager import ScrapeManager, Shard

__all__ = ["ScrapeManager", "Shard", "WorkerConfig", "worker_config"]
