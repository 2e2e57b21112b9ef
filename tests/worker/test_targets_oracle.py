"""Target relabeling against Prometheus 2.42: the same scrape_configs give the same targets, labels and URLs.

Prometheus reports its targets (``/api/v1/targets``: ``labels``, ``scrapeUrl``, dropped targets) without
needing them to answer, so the targets point at a closed port.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from sotp.config import Config
from tests.conftest import free_port
from worker.scrape.config import worker_config
from worker.scrape.discovery import static_groups
from worker.scrape.relabel import compile_steps
from worker.scrape.targets import build_targets


def _jobs(port: int) -> list[dict[str, Any]]:
    exporter = f"127.0.0.1:{port}"
    return [
        {"job_name": "plain", "static_configs": [
            {"targets": [exporter, "localhost", "[::1]"], "labels": {"env": "prod"}},
            {"targets": ["127.0.0.2:1234"]},
        ]},
        {"job_name": "snmp", "metrics_path": "/snmp", "params": {"module": ["if_mib"], "auth": ["public_v2"]},
         "static_configs": [{"targets": ["10.0.0.1", "switch-2.example:161"]}],
         "relabel_configs": [
             {"source_labels": ["__address__"], "target_label": "__param_target"},
             {"source_labels": ["__param_target"], "target_label": "instance"},
             {"target_label": "__address__", "replacement": exporter},
         ]},
        {"job_name": "sharded", "static_configs": [{"targets": [f"10.1.0.{i}:9100" for i in range(8)]}],
         "relabel_configs": [
             {"source_labels": ["__address__"], "modulus": 3, "target_label": "__tmp_hash", "action": "hashmod"},
             {"source_labels": ["__tmp_hash"], "regex": "1", "action": "keep"},
         ]},
        {"job_name": "mixed", "scheme": "https", "metrics_path": "/x/metrics", "scrape_interval": "30s",
         "scrape_timeout": "7s", "honor_labels": True,
         "static_configs": [{"targets": ["host-a", "HOST-B:8443"], "labels": {"rack": "R1", "Team": "Core Ops"}}],
         "relabel_configs": [
             {"source_labels": ["rack"], "target_label": "rack", "action": "lowercase"},
             {"source_labels": ["job", "Team"], "separator": "/", "target_label": "who", "action": "uppercase"},
             {"regex": "(rack|Team)", "replacement": "site_${1}", "action": "labelmap"},
             {"regex": "Team", "action": "labeldrop"},
             {"source_labels": ["__scrape_interval__", "__scrape_timeout__", "__scheme__", "__metrics_path__"],
              "target_label": "settings"},
             {"source_labels": ["__address__"], "regex": "([^:]+)(?::\\d+)?", "target_label": "${1}_seen",
              "replacement": "yes"},
             {"source_labels": ["__address__"], "regex": "host-a", "target_label": "__param_x",
              "replacement": "a b&c"},
             {"source_labels": ["rack"], "regex": "nomatch", "target_label": "rack", "replacement": "z"},
         ]},
        {"job_name": "dropping", "static_configs": [{"targets": ["a:1", "b:2", "c:3"], "labels": {"k": ""}}],
         "relabel_configs": [
             {"source_labels": ["__address__"], "regex": "b:2", "action": "drop"},
             {"source_labels": ["__address__"], "regex": "(.):.*", "target_label": "short", "replacement": "$1x"},
             {"source_labels": ["__address__"], "regex": "(.):.*", "target_label": "short2",
              "replacement": "${1}x"},
         ]},
    ]


def test_targets_match_prometheus(prometheus: Callable[[dict[str, Any]], Any]) -> None:
    port = free_port()  # nothing listens: targets exist but are down
    jobs = _jobs(port)
    prom = prometheus({"global": {"scrape_interval": "1h", "scrape_timeout": "10s"}, "scrape_configs": jobs})

    expected_active = 0
    wc = worker_config(Config(global_={"scrape_interval": "1h", "scrape_timeout": "10s"}, scrape_configs=jobs))
    ours: dict[str, list[tuple[dict[str, str], str]]] = {}
    for job in wc.jobs:
        targets = build_targets(static_groups(job.cfg.job_name, job.cfg.static_configs), job,
                                compile_steps(job.cfg.relabel_configs))
        ours[job.cfg.job_name] = sorted(((dict(t.labels.items_tuple()), t.url) for t in targets),
                                        key=lambda x: x[1] + str(sorted(x[0].items())))
        expected_active += len(targets)

    deadline = time.monotonic() + 20
    while True:  # Prometheus's discovery manager batches updates every 5 s
        data = prom.api("/api/v1/targets", state="any")
        if len(data["activeTargets"]) >= expected_active or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    theirs: dict[str, list[tuple[dict[str, str], str]]] = {}
    for t in data["activeTargets"]:
        theirs.setdefault(t["scrapePool"], []).append((t["labels"], t["scrapeUrl"]))
    for name in theirs:
        theirs[name].sort(key=lambda x: x[1] + str(sorted(x[0].items())))
    assert ours == {k: theirs.get(k, []) for k in ours}
    # The sharded job keeps only its third; everything else was relabeled away as Prometheus did.
    total = sum(len(sc["targets"]) for j in jobs for sc in j["static_configs"])
    assert len(data["droppedTargets"]) == total - expected_active
