"""`sotp worker` and a real Prometheus 2.42 scrape the same targets with the same config.

Checked: the same series (label sets) and the same ``up`` per target; then a series that stops being
exposed, and a target removed by a reload, vanish from an instant query within about one interval in both.
SOTP is read back through the storage Querier (SQLite file written by the worker process); "instant query"
on the SOTP side is Prometheus's selector rule (newest sample in [t - 5m, t], none when it is a staleness
marker), since the PromQL engine belongs to another package.
"""

from __future__ import annotations

import asyncio
import signal
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from sotp.model import METRIC_NAME, Labels, Matcher, MatchOp, is_stale
from sotp.storage import open_storage
from tests.conftest import free_port, sotp_cmd, storage_location, wait_for_port
from tests.worker.conftest import Prometheus, Stub

pytestmark = pytest.mark.integration

LOOKBACK_MS = 5 * 60 * 1000

TEXT = """# HELP http_requests_total Requests.
# TYPE http_requests_total counter
http_requests_total{code="200",path="/a \\"q\\""} 1027
http_requests_total{code="500",path="C:\\\\dir"} 3
# TYPE lat histogram
lat_bucket{le="0.1"} 1
lat_bucket{le="1"} 4
lat_bucket{le="+Inf"} 5
lat_sum 2.5
lat_count 5
# TYPE rpc summary
rpc{quantile="0.5"} 0.2
rpc{quantile="0.99"} NaN
rpc_sum 9
rpc_count 40
conflict{job="app",instance="other",exported_job="x"} 1
plain_untyped +Inf
empty_label{a="",b="1"} 2
drop_me_total 5
vanish_me 1
"""

OM_TEXT = """# TYPE jobs counter
jobs_total{kind="batch"} 17 # {trace_id="abc"} 1 1700000000.1
jobs_created{kind="batch"} 1700000000
# TYPE build info
build_info{version="1.2.3"} 1
# TYPE door stateset
door{door="open"} 1
door{door="closed"} 0
# EOF
"""


def _config(stub: Stub, down_port: int) -> dict[str, Any]:
    return {
        "global": {"scrape_interval": "1s", "scrape_timeout": "900ms"},
        "scrape_configs": [
            {"job_name": "app", "static_configs": [{"targets": [stub.address], "labels": {"env": "test"}}],
             "metric_relabel_configs": [
                 {"source_labels": ["__name__"], "regex": "drop_me_.*", "action": "drop"},
                 {"source_labels": ["code"], "regex": "5(..)", "target_label": "class", "replacement": "5xx$1"},
             ]},
            {"job_name": "honor", "honor_labels": True, "metrics_path": "/om",
             "static_configs": [{"targets": [stub.address]}]},
            {"job_name": "om", "metrics_path": "/om", "static_configs": [{"targets": [stub.address]}]},
            {"job_name": "probe", "metrics_path": "/probe", "params": {"module": ["icmp"]},
             "static_configs": [{"targets": ["10.9.0.1", "router.example"]}],
             "relabel_configs": [
                 {"source_labels": ["__address__"], "target_label": "__param_target"},
                 {"source_labels": ["__param_target"], "target_label": "instance"},
                 {"target_label": "__address__", "replacement": stub.address},
             ]},
            {"job_name": "down", "static_configs": [{"targets": [f"127.0.0.1:{down_port}"]}]},
            {"job_name": "missing", "metrics_path": "/nope", "static_configs": [{"targets": [stub.address]}]},
            {"job_name": "limited", "sample_limit": 3, "static_configs": [{"targets": [stub.address]}]},
        ],
    }


async def _sotp_series(url: str, until_ms: int | None = None) -> dict[Labels, tuple[int, float]]:
    """Every stored series with its newest sample at or before ``until_ms`` (default: any time). The
    worker keeps writing while this reads, so an instant comparison must bound the read to its instant."""
    st = open_storage(url)
    await st.open()
    try:
        q = st.querier(0, until_ms if until_ms is not None else int(time.time() * 1000) + 60_000)
        found = await q.select([Matcher(METRIC_NAME, MatchOp.RE, ".+")])
        await q.close()
    finally:
        await st.close()
    return {s.labels: (int(s.timestamps[-1]), float(s.values[-1])) for s in found}


def _present(newest: dict[Labels, tuple[int, float]], now_ms: int) -> dict[Labels, float]:
    """Prometheus's instant-selector rule over SOTP's newest samples: in the lookback, not stale."""
    return {lb: v for lb, (t, v) in newest.items() if now_ms - LOOKBACK_MS <= t <= now_ms and not is_stale(v)}


def _prom_present(prom: Prometheus, query: str = '{__name__=~".+"}') -> dict[Labels, float]:
    return {Labels(r["metric"]): float(r["value"][1]) for r in prom.instant(query)}


async def _wait(predicate: Callable[[], Any], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.25)


@pytest.fixture(params=["sqlite", "postgres", "timescaledb"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The store the worker process writes into."""
    with storage_location(request.param, tmp_path) as url:
        yield url


async def test_same_series_and_up_as_prometheus(
    stub: Stub, prometheus: Callable[[dict[str, Any]], Prometheus], spawn: Any, tmp_path: Path, db: str
) -> None:
    stub.set("/metrics", TEXT)
    stub.set("/probe", "probe_success 1\nprobe_duration_seconds 0.002\n")
    stub.set("/om", OM_TEXT, "application/openmetrics-text; version=1.0.0; charset=utf-8")
    config = _config(stub, free_port())
    cfg_file = tmp_path / "sotp.yml"
    cfg_file.write_text(yaml.safe_dump(config, sort_keys=False))
    listen = free_port()
    worker = spawn(sotp_cmd("worker", "--config", str(cfg_file), "--storage", db, "--listen", f"127.0.0.1:{listen}",
                            "--enable-lifecycle"),
                   name="sotp-worker")
    prom = await asyncio.to_thread(prometheus, config)
    await asyncio.to_thread(wait_for_port, listen, "127.0.0.1", 30)

    n_targets = 8

    async def both_scraped_twice() -> bool:
        sotp = await _sotp_series(db)
        ups = [lb for lb in sotp if lb.name == "scrape_samples_scraped"]
        theirs = await asyncio.to_thread(prom.api, "/api/v1/query", query="count(count_over_time(up[10s]) >= 2)")
        return len(ups) >= n_targets and bool(theirs["result"]) and float(theirs["result"][0]["value"][1]) >= n_targets

    await _wait(both_scraped_twice, 20, f"both scrapers to scrape {n_targets} targets twice\n{worker.output()}")
    await asyncio.sleep(1.2)  # one more round, so both have seen every series at least once more

    now_ms = int(time.time() * 1000)
    ours = _present(await _sotp_series(db, now_ms), now_ms)
    theirs = await asyncio.to_thread(_prom_present, prom)
    assert sorted(map(str, ours)) == sorted(map(str, theirs))
    up_ours = {str(lb): v for lb, v in ours.items() if lb.name == "up"}
    up_theirs = {str(lb): v for lb, v in theirs.items() if lb.name == "up"}
    assert up_ours == up_theirs
    assert sorted(up_ours.values()) == [0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0]  # down, 404, sample_limit
    # Same samples-scraped counts (the values are deterministic; durations are not).
    for name in ("scrape_samples_scraped", "scrape_samples_post_metric_relabeling", "scrape_series_added"):
        assert {str(lb): v for lb, v in ours.items() if lb.name == name} == {
            str(lb): v for lb, v in theirs.items() if lb.name == name}

    # Staleness: the series stops being exposed; within one interval (+ scrape slack) it is gone in both.
    stub.set("/metrics", TEXT.replace("vanish_me 1\n", ""))

    async def vanished() -> bool:
        now = int(time.time() * 1000)
        gone_ours = not any(lb.name == "vanish_me" for lb in _present(await _sotp_series(db, now), now))
        gone_theirs = not await asyncio.to_thread(_prom_present, prom, "vanish_me")
        return gone_ours and gone_theirs

    # Staleness markers end the series at the next scrape; without them it would last the whole 5 min
    # lookback. The deadline is far below that and leaves room for a loaded machine.
    await _wait(vanished, 60, "vanish_me to go stale in both")

    # A target removed by a reload goes stale with its report series, in both. (Prometheus writes these
    # end-of-run markers only for targets removed from a job that stays; SOTP also for removed jobs.)
    probe = next(j for j in config["scrape_configs"] if j["job_name"] == "probe")
    probe["static_configs"][0]["targets"] = ["10.9.0.1"]
    cfg_file.write_text(yaml.safe_dump(config, sort_keys=False))
    prom.config_file.write_text(yaml.safe_dump(config, sort_keys=False))
    worker.popen.send_signal(signal.SIGHUP)
    prom.proc.popen.send_signal(signal.SIGHUP)

    async def router_gone() -> tuple[bool, bool]:
        now = int(time.time() * 1000)
        ours_now = _present(await _sotp_series(db, now), now)
        theirs_now = await asyncio.to_thread(_prom_present, prom, '{instance="router.example"}')
        return not any(lb.get("instance") == "router.example" for lb in ours_now), not theirs_now

    async def both_gone() -> bool:
        return all(await router_gone())

    await _wait(both_gone, 8, f"target router.example to go stale after the reload (ours, theirs): "
                f"{await router_gone()}")
    # Everything else is still there, identical.
    now_ms = int(time.time() * 1000)
    ours = _present(await _sotp_series(db, now_ms), now_ms)
    theirs = await asyncio.to_thread(_prom_present, prom)
    assert sorted(map(str, ours)) == sorted(map(str, theirs))

    # Reload endpoint: a bad config is rejected with its reason and the old one keeps running.
    cfg_file.write_text(yaml.safe_dump({"scrape_configs": [{"job_name": "x", "scrape_intervl": "1s"}]}))

    def post_reload() -> tuple[int, str]:
        req = urllib.request.Request(f"http://127.0.0.1:{listen}/-/reload", method="POST")
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode()

    status, body = await asyncio.to_thread(post_reload)
    assert status == 500 and "scrape_configs[0].scrape_intervl: unknown key" in body
    await asyncio.sleep(1.5)
    now_ms = int(time.time() * 1000)
    assert any(lb.get("job") == "app" for lb in _present(await _sotp_series(db, now_ms), now_ms))
