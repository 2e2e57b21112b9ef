"""The scrape manager and the worker process: file SD, removed targets and jobs, sharding, reloads, the hook."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp.test_utils import TestClient, TestServer

from sotp.config import Config
from sotp.errors import ConfigError
from sotp.model import METRIC_NAME, Labels, Matcher, MatchOp, is_stale
from sotp.storage import Storage, open_storage
from tests.conftest import REPO, free_port, sotp_cmd
from tests.worker.conftest import Stub
from worker.cli import Worker
from worker.scrape.config import worker_config
from worker.scrape.manager import ScrapeManager, Shard
from worker.scrape.metrics import WorkerMetrics


@pytest.fixture
async def storage() -> AsyncIterator[Storage]:
    st = open_storage("memory://")
    await st.open()
    yield st
    await st.close()


async def newest(storage: Storage, **match: str) -> dict[Labels, float]:
    q = storage.querier(0, 2**62)
    ms = [Matcher(k, MatchOp.EQ, v) for k, v in match.items()] or [Matcher(METRIC_NAME, MatchOp.RE, ".+")]
    found = await q.select(ms)
    await q.close()
    return {s.labels: float(s.values[-1]) for s in found}


async def until(pred: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not await pred():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


def wc(jobs: list[dict[str, Any]], interval: str = "200ms") -> Any:
    return worker_config(Config(global_={"scrape_interval": interval, "scrape_timeout": interval},
                                scrape_configs=jobs))


async def test_file_sd_follows_file_changes_and_marks_removed_targets_stale(
    tmp_path: Path, stub: Stub, stub2: Stub, storage: Storage
) -> None:
    stub.set("/metrics", "a 1\n")
    stub2.set("/metrics", "b 2\n")
    sd = tmp_path / "targets.json"
    sd.write_text(json.dumps([{"targets": [stub.address], "labels": {"team": "x"}}]))
    mgr = ScrapeManager(storage)
    await mgr.apply(wc([{"job_name": "f", "file_sd_configs": [{"files": [str(tmp_path / "*.json")]}]}]))
    try:
        async def a_scraped() -> bool:
            return any(lb.name == "a" for lb in await newest(storage, team="x"))
        await until(a_scraped)
        # Swap the target in the file; the watcher notices within a second.
        sd.write_text(json.dumps([{"targets": [stub2.address], "labels": {"team": "x"}}]))

        async def swapped() -> bool:
            vals = await newest(storage, team="x")
            a = [v for lb, v in vals.items() if lb.name == "a"]
            up_old = [v for lb, v in vals.items() if lb.name == "up" and lb["instance"] == stub.address]
            return any(lb.name == "b" for lb in vals) and bool(a) and is_stale(a[0]) and is_stale(up_old[0])
        await until(swapped, 5)
        # A broken file keeps the previous targets.
        sd.write_text("[{not json")
        await asyncio.sleep(1.3)
        assert [lp.target.address for lp in mgr.loops()] == [stub2.address]
    finally:
        await mgr.close()


async def test_removed_job_goes_stale_and_unchanged_job_keeps_its_loop(stub: Stub, storage: Storage) -> None:
    stub.set("/metrics", "a 1\n")
    jobs = [{"job_name": "one", "static_configs": [{"targets": [stub.address]}]},
            {"job_name": "two", "static_configs": [{"targets": [stub.address]}]}]
    mgr = ScrapeManager(storage)
    await mgr.apply(wc(jobs))
    try:
        async def both() -> bool:
            return {lb["job"] for lb in await newest(storage, __name__="a")} == {"one", "two"}
        await until(both)
        loop_one = next(lp for lp in mgr.loops() if lp.target.job == "one")
        await mgr.apply(wc(jobs[:1]))
        assert [lp.target.job for lp in mgr.loops()] == ["one"] and mgr.loops()[0] is loop_one
        vals = await newest(storage, job="two")
        assert vals and all(is_stale(v) for v in vals.values())  # a, up and the other report series
        # Changing a job's settings restarts its loops but keeps their staleness state.
        jobs[0]["metric_relabel_configs"] = [{"source_labels": ["__name__"], "regex": "a", "action": "drop"}]
        await mgr.apply(wc(jobs[:1]))
        new_loop = mgr.loops()[0]
        assert new_loop is not loop_one and new_loop.state is loop_one.state

        async def a_stale() -> bool:
            return all(is_stale(v) for v in (await newest(storage, __name__="a", job="one")).values())
        await until(a_stale)
    finally:
        await mgr.close()


async def test_shards_split_targets_without_overlap(storage: Storage) -> None:
    closed = free_port()
    jobs = [{"job_name": "many", "scrape_interval": "1h", "scrape_timeout": "1s",
             "static_configs": [{"targets": [f"127.0.0.{i}:{closed}" for i in range(1, 61)]}]}]
    owned: list[set[str]] = []
    for i in range(3):
        mgr = ScrapeManager(storage, shard=Shard(i, 3))
        await mgr.apply(wc(jobs, "1h"))
        owned.append({lp.target.address for lp in mgr.loops()})
        await mgr.close()
    assert set.union(*owned) == {f"127.0.0.{i}:{closed}" for i in range(1, 61)}
    assert sum(len(o) for o in owned) == 60 and all(10 <= len(o) <= 30 for o in owned)


async def test_shards_split_multi_target_devices(storage: Storage) -> None:
    """Every device is rewritten to one exporter address; the shard hash uses the device address."""
    jobs = [{"job_name": "snmp", "scrape_interval": "1h", "scrape_timeout": "1s", "metrics_path": "/snmp",
             "static_configs": [{"targets": [f"10.0.0.{i}" for i in range(1, 61)]}],
             "relabel_configs": [
                 {"source_labels": ["__address__"], "target_label": "__param_target"},
                 {"source_labels": ["__param_target"], "target_label": "instance"},
                 {"target_label": "__address__", "replacement": f"127.0.0.1:{free_port()}"}]}]
    owned: list[set[str]] = []
    for i in range(3):
        mgr = ScrapeManager(storage, shard=Shard(i, 3))
        await mgr.apply(wc(jobs, "1h"))
        owned.append({lp.target.labels["instance"] for lp in mgr.loops()})
        await mgr.close()
    assert set.union(*owned) == {f"10.0.0.{i}" for i in range(1, 61)}
    assert sum(len(o) for o in owned) == 60 and all(10 <= len(o) <= 30 for o in owned)
    # The same rule as Prometheus's hashmod on the discovered address (oracle: hashmod in relabeling).
    from worker.scrape.relabel import hashmod

    assert owned[1] == {f"10.0.0.{i}" for i in range(1, 61) if hashmod(f"10.0.0.{i}", 3) == 1}


def test_check_flag_prints_targets(tmp_path: Path) -> None:
    cfg = tmp_path / "sotp.yml"
    cfg.write_text(yaml.safe_dump({"scrape_configs": [
        {"job_name": "a", "static_configs": [{"targets": ["h1:9100", "h2:9100"]}]}]}))
    ok = subprocess.run(sotp_cmd("worker", "--config", str(cfg), "--check"), cwd=REPO, capture_output=True,
                        text=True, timeout=60)
    assert ok.returncode == 0 and "job a: 2 targets" in ok.stdout and "http://h2:9100/metrics" in ok.stdout
    cfg.write_text("scrape_configs: [{job_name: a, scrape_timeout: 2m}]\n")
    bad = subprocess.run(sotp_cmd("worker", "--config", str(cfg), "--check"), cwd=REPO, capture_output=True,
                         text=True, timeout=60)
    assert bad.returncode == 2 and "greater than scrape_interval" in bad.stderr


@pytest.mark.parametrize(
    ("text", "error"), [("1/3", None), ("3/3", "0 <= i < n"), ("x", "use i/n"), ("0/0", "0 <= i < n")]
)
def test_shard_parse(text: str, error: str | None) -> None:
    if error is None:
        assert Shard.parse(text) == Shard(1, 3)
    else:
        with pytest.raises(ValueError, match=error):
            Shard.parse(text)


@pytest.mark.parametrize(
    ("jobs", "glob", "error"),
    [
        ([{"job_name": "a"}, {"job_name": "a"}], {}, "scrape_configs[1].job_name: 'a' is used by an earlier"),
        ([{"job_name": "a", "scrape_interval": "5s", "scrape_timeout": "10s"}], {}, "greater than scrape_interval"),
        ([{"job_name": "a", "static_configs": [{"targetz": []}]}], {}, "scrape_configs[0].static_configs[0].targetz"),
        ([{"job_name": "a", "scrape_interval": "soon"}], {}, "scrape_configs[0].scrape_interval: invalid duration"),
        ([{"job_name": "a", "basic_auth": {"username": "u", "password": "env:NOPE_NOT_SET"}}], {},
         "NOPE_NOT_SET is not set"),
        ([{"job_name": "a", "file_sd_configs": [{"files": ["x.txt"]}]}], {}, "must end in .json"),
        ([], {"scrape_interval": "1m", "scrape_timeout": "2m"}, "global.scrape_timeout"),
        ([], {"scrape_intervals": "1m"}, "global.scrape_intervals: unknown key"),
        ([{"job_name": "a", "tls_config": {"cert_file": "/etc/hostname"}}], {}, "set both cert_file and key_file"),
        ([{"job_name": "a", "tls_config": {"ca_file": "/nonexistent/ca.pem"}}], {}, "tls_config.ca_file: no such"),
    ],
    ids=["duplicate-job", "timeout-over-interval", "unknown-nested-key", "bad-duration", "missing-secret",
         "file-sd-extension", "global-timeout", "global-unknown", "tls-cert-without-key", "tls-missing-ca"],
)
def test_bad_configs(jobs: list[dict[str, Any]], glob: dict[str, Any], error: str) -> None:
    with pytest.raises(ConfigError) as info:
        worker_config(Config(global_=glob, scrape_configs=jobs))
    assert error in str(info.value)


def test_inherited_timeout_is_capped_at_the_interval() -> None:
    (job,) = worker_config(Config(global_={}, scrape_configs=[{"job_name": "a", "scrape_interval": "5s"}])).jobs
    assert (job.interval_s, job.timeout_s) == (5.0, 5.0)  # global default 10s, capped like Prometheus


async def test_reload_keeps_old_config_on_error_and_serves_status(tmp_path: Path, stub: Stub,
                                                                 storage: Storage) -> None:
    stub.set("/metrics", "a 1\n")
    cfg = tmp_path / "sotp.yml"
    good = {"global": {"scrape_interval": "200ms", "scrape_timeout": "200ms"},
            "scrape_configs": [{"job_name": "one", "static_configs": [{"targets": [stub.address]}]}]}
    cfg.write_text(yaml.safe_dump(good))
    metrics = WorkerMetrics()
    worker = Worker(str(cfg), storage, ScrapeManager(storage, metrics), metrics, lifecycle=True)
    config, wc = Worker.load(str(cfg))
    config.auth = {"tokens_file": str(tmp_path / "no-tokens.json")}
    await worker.start(config, wc)
    client = TestClient(TestServer(worker.app(config, "127.0.0.1:9202")))
    await client.start_server()
    try:
        cfg.write_text("scrape_configs: [{job_name: two, static_configs: [{targets: oops}]}]\n")
        resp = await client.post("/-/reload")
        assert resp.status == 500
        assert "scrape_configs[0].static_configs[0].targets: expected a list" in await resp.text()
        assert [lp.target.job for lp in worker.manager.loops()] == ["one"]
        good["scrape_configs"][0]["job_name"] = "renamed"
        cfg.write_text(yaml.safe_dump(good))
        resp = await client.put("/-/reload")
        assert resp.status == 200
        assert [lp.target.job for lp in worker.manager.loops()] == ["renamed"]
        await asyncio.sleep(0.5)
        text = await (await client.get("/metrics")).text()
        assert 'sotp_worker_scrapes_total{job="renamed",result="ok"}' in text
        assert "sotp_worker_config_last_reload_successful 1.0" in text
        targets = await (await client.get("/-/targets")).json()
        assert targets["data"]["activeTargets"][0]["health"] == "up"
        assert (await client.get("/-/healthy")).status == 200
    finally:
        await client.close()
        await worker.close()


async def test_backup_hook_runs_with_config_storage_and_stop(tmp_path: Path, storage: Storage,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    # The real worker.backup.scheduler needs devices and SSH; this checks only the worker's side of the
    # hook contract (called with the config, the opened storage and a stop event; stopped on close).
    (tmp_path / "fake_backup_sched.py").write_text(
        "import asyncio\nCALLS = []\n"
        "async def run(config, storage, stop):\n"
        "    CALLS.append(('start', dict(config.backup), storage))\n"
        "    await stop.wait()\n"
        "    CALLS.append(('stop',))\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr("worker.cli.BACKUP_MODULE", "fake_backup_sched")
    import fake_backup_sched  # type: ignore[import-not-found]

    cfg = tmp_path / "sotp.yml"
    device = {"name": "r1", "host": "192.0.2.1", "device_type": "cisco_ios", "username": "u", "password": "env:P"}
    cfg.write_text(yaml.safe_dump({"backup": {"devices": [device]}}))
    metrics = WorkerMetrics()
    worker = Worker(str(cfg), storage, ScrapeManager(storage, metrics), metrics)
    await worker.start(*Worker.load(str(cfg)))
    await asyncio.sleep(0.05)
    assert [("start", {"devices": [device]}, storage)] == fake_backup_sched.CALLS
    await worker.close()
    assert fake_backup_sched.CALLS[-1] == ("stop",)


@pytest.mark.parametrize(
    ("args", "error"),
    [(["--shard", "3/2"], "invalid --shard"), (["--config", "{cfg}"], "scrape_configs[0]: missing required key"),
     (["--listen", "nohost"], "invalid listen address"), (["--listen", "127.0.0.1:{busy}"], "cannot listen on"),
     (["--storage", "mysql://x"], "unknown storage URL")],
    ids=["bad-shard", "bad-config", "bad-listen", "port-in-use", "bad-storage"],
)
def test_cli_rejects_bad_start(tmp_path: Path, args: list[str], error: str) -> None:
    import socket

    cfg = tmp_path / "bad.yml"
    cfg.write_text("scrape_configs: [{scrape_interval: 1s}]\n")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        extra = [a.format(cfg=cfg, busy=busy.getsockname()[1]) for a in args]
        argv = sotp_cmd("worker", "--storage", "memory://", "--listen", "", *extra)
        proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=60,
                              env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 2, proc.stderr
    assert error in proc.stderr
    assert sys.executable  # the CLI ran under this interpreter


@pytest.mark.parametrize(
    ("name", "text", "want"),
    [
        ("t.yml", "- targets: [a:1, b:2]\n  labels: {env: prod}\n", [(["a:1", "b:2"], {"env": "prod"})]),
        ("t.json", '[{"targets": ["a:1"]}, {"targets": [], "labels": {"x": "1"}}]', [(["a:1"], {}), ([], {"x": "1"})]),
        ("t.yaml", "", []),
        ("t.json", '{"targets": ["a:1"]}', "expected a list of target groups"),
        ("t.yml", "- targets: a:1\n", "expected a list of host:port strings"),
        ("t.yml", "- targets: [a:1]\n  lables: {}\n", "only 'targets' and 'labels'"),
        ("t.yml", "- targets: [a:1]\n  labels: {0bad: x}\n", "invalid label name"),
        ("t.json", "[{", "cannot parse"),
    ],
    ids=["yaml", "json", "empty", "not-a-list", "targets-not-list", "unknown-key", "bad-label", "bad-json"],
)
def test_file_sd_format(name: str, text: str, want: list[tuple[list[str], dict[str, str]]] | str) -> None:
    from worker.scrape.discovery import parse_file_groups

    if isinstance(want, str):
        with pytest.raises(ValueError, match=None) as info:
            parse_file_groups(f"/sd/{name}", text)
        assert want in str(info.value) and f"/sd/{name}" in str(info.value)
        return
    groups = parse_file_groups(f"/sd/{name}", text)
    assert [([t["__address__"] for t in g.targets], {k: v for k, v in g.labels.items() if k != "__meta_filepath"})
            for g in groups] == want
    assert all(g.labels["__meta_filepath"] == f"/sd/{name}" for g in groups)


async def test_issue17_10_worker_lifecycle_and_targets_need_enabling_and_tokens(tmp_path: Path, stub: Stub,
                                                                               storage: Storage) -> None:
    """Finding 10: the worker's /-/reload and /-/targets had no auth (compose binds it to 0.0.0.0)."""
    from sotp.auth import TokenStore

    stub.set("/metrics", "a 1\n")
    cfg = tmp_path / "sotp.yml"
    cfg.write_text(yaml.safe_dump({"global": {"scrape_interval": "1s", "scrape_timeout": "1s"}, "scrape_configs": [
        {"job_name": "one", "static_configs": [{"targets": [stub.address]}]}]}))
    tokens = TokenStore(tmp_path / "tokens.json")
    reader, _ = tokens.create("reader", ["read"])
    admin, _ = tokens.create("admin", ["admin"])
    for lifecycle in (False, True):
        metrics = WorkerMetrics()
        worker = Worker(str(cfg), storage, ScrapeManager(storage, metrics), metrics, lifecycle=lifecycle)
        config, wc = Worker.load(str(cfg))
        config.auth = {"tokens_file": str(tokens.path)}
        await worker.start(config, wc)
        client = TestClient(TestServer(worker.app(config, "0.0.0.0:9202")))
        await client.start_server()
        try:
            def bearer(token: str) -> dict[str, str]:
                return {"Authorization": f"Bearer {token}"}

            assert (await client.get("/-/targets")).status == 401
            assert (await client.get("/metrics")).status == 401
            assert (await client.get("/-/targets", headers=bearer(reader))).status == 200
            assert (await client.get("/-/healthy")).status == 200  # public, as on sotp serve
            assert (await client.post("/-/reload")).status == 401
            r = await client.post("/-/reload", headers=bearer(admin))
            if not lifecycle:
                assert r.status == 403 and "--enable-lifecycle" in await r.text()
            else:
                assert r.status == 200
                assert (await client.post("/-/reload", headers=bearer(reader))).status == 403
        finally:
            await client.close()
            await worker.close()
