"""Alerts reach a real Alertmanager (Debian's 0.25) and its webhook; they resolve; HA replicas de-duplicate.

The rule manager runs in-process on the memory backend and is stepped by hand at the current time, so the
test waits only for Alertmanager (with deadlines), never for a schedule.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from aiohttp import web

from query.engine import Engine
from rules.config import AlertmanagerConfig, RulerConfig, StaticConfig
from rules.manager import Manager
from rules.notifier import Notifier
from sotp.model import Labels
from sotp.storage.memory import MemoryStorage
from tests.conftest import free_port
from tests.rules.conftest_helpers import Webhook, alertmanager, am_alerts, wait_until

RULES = """
groups:
  - name: hosts
    interval: 15s
    rules:
      - record: instance:up:copy
        expr: up
      - alert: HostDown
        expr: up == 0
        labels:
          severity: page
        annotations:
          summary: "{{ $labels.instance }} is down"
          value: "{{ $value }}"
"""


def _config(tmp: Path, am_url: str) -> RulerConfig:
    rules = tmp / "hosts.yml"
    rules.write_text(RULES)
    host_port = am_url.removeprefix("http://")
    return RulerConfig(
        files=[str(rules)], tenant_files={}, evaluation_interval_ms=60_000, external_labels={"site": "lab"},
        external_url="http://sotp.example:9201", resend_delay_ms=60_000, outage_tolerance_ms=3_600_000,
        for_grace_period_ms=600_000,
        alertmanagers=[AlertmanagerConfig(static_configs=[StaticConfig(targets=[host_port])])],
        listen="127.0.0.1:0", urls=[],
    )


async def _write(storage: MemoryStorage, t_ms: int, value: float) -> None:
    app = storage.appender()
    app.append(Labels({"__name__": "up", "instance": "router1:161", "job": "snmp"}), t_ms, value)
    await app.commit()


async def _start_webhook(hook: Webhook) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(hook.app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, port


@pytest.mark.integration
async def test_alert_fires_in_alertmanager_and_resolves(tmp_path: Path) -> None:
    hook = Webhook()
    runner, port = await _start_webhook(hook)
    try:
        with alertmanager(tmp_path, f"http://127.0.0.1:{port}/hook") as am:
            storage = MemoryStorage()
            cfg = _config(tmp_path, am)
            notifier = Notifier(cfg.alertmanagers, cfg.external_labels, cfg.external_url)
            manager = Manager(storage, cfg, Engine(storage), notifier)
            assert await manager.update() == []
            (key, group), = manager.groups.items()
            for r in group.alerting_rules():
                r.restored = True
            now = int(time.time() * 1000)
            await _write(storage, now - 1000, 0)
            await manager.eval_group(key, group, now)
            await notifier.flush()
            alerts = await asyncio.to_thread(wait_until, lambda: am_alerts(am), 30, "the alert in Alertmanager")
            assert len(alerts) == 1
            a = alerts[0]
            assert a["labels"] == {"alertname": "HostDown", "instance": "router1:161", "job": "snmp",
                                   "severity": "page", "site": "lab"}
            assert a["annotations"] == {"summary": "router1:161 is down", "value": "0"}
            assert a["status"]["state"] == "active"
            assert a["generatorURL"] == "http://sotp.example:9201/graph?g0.expr=up+%3D%3D+0&g0.tab=1"
            fired = await asyncio.to_thread(
                wait_until, lambda: [p for p in hook.posts if p["status"] == "firing"], 30, "a firing webhook")
            assert fired[0]["alerts"][0]["labels"]["alertname"] == "HostDown"

            # the condition clears: the next evaluation resolves the alert and Alertmanager tells the webhook
            later = max(int(time.time() * 1000), now + 1)  # resolved "now": Alertmanager honours endsAt
            await _write(storage, later - 1, 1)
            await manager.eval_group(key, group, later)
            await notifier.flush()
            resolved = await asyncio.to_thread(
                wait_until, lambda: [p for p in hook.posts if p["status"] == "resolved"], 30, "a resolved webhook")
            assert resolved[0]["alerts"][0]["labels"]["instance"] == "router1:161"
            assert await asyncio.to_thread(wait_until, lambda: am_alerts(am) == [], 30, "no active alert") is True
    finally:
        await runner.cleanup()


@pytest.mark.integration
async def test_two_replicas_record_once_and_alertmanager_deduplicates(tmp_path: Path) -> None:
    """HA: two rulers evaluate the same groups over one storage; samples land once, alerts merge."""
    hook = Webhook()
    runner, port = await _start_webhook(hook)
    try:
        with alertmanager(tmp_path, f"http://127.0.0.1:{port}/hook") as am:
            storage = MemoryStorage()
            cfg = _config(tmp_path, am)
            replicas = []
            for _ in range(2):
                n = Notifier(cfg.alertmanagers, cfg.external_labels, cfg.external_url)
                m = Manager(storage, cfg, Engine(storage), n)
                assert await m.update() == []
                for g in m.groups.values():
                    for r in g.alerting_rules():
                        r.restored = True
                replicas.append((m, n))
            now = int(time.time() * 1000)
            await _write(storage, now - 1000, 0)
            for m, n in replicas:
                (key, group), = m.groups.items()
                await m.eval_group(key, group, now)
                await n.flush()
            for m, _ in replicas:
                for g in m.groups.values():
                    assert [r.status.health for r in g.rules] == ["ok", "ok"], [r.status.last_error for r in g.rules]
            q = storage.querier(0, now + 1)
            series = await q.select([])
            counts = {str(s.labels): len(s.timestamps) for s in series if s.labels.name != "up"}
            assert counts == {
                'instance:up:copy{instance="router1:161", job="snmp"}': 1,
                'ALERTS{alertname="HostDown", alertstate="firing", instance="router1:161", job="snmp", '
                'severity="page"}': 1,
                'ALERTS_FOR_STATE{alertname="HostDown", instance="router1:161", job="snmp", severity="page"}': 1,
            }
            alerts = await asyncio.to_thread(wait_until, lambda: am_alerts(am), 30, "the alert in Alertmanager")
            assert len(alerts) == 1
            posts = await asyncio.to_thread(wait_until, lambda: hook.posts, 30, "a webhook")
            assert len(posts[0]["alerts"]) == 1
    finally:
        await runner.cleanup()
