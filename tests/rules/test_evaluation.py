"""Rule evaluation details not visible through promtool: ``for`` restore after a restart, tenants, the API
shapes, replica de-duplication bookkeeping, and the ruler's configuration."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from query.engine import Engine
from rules.api import alerts_data, ruler_routes, rules_data
from rules.config import ruler_config
from rules.evaluation import AlertingRule, AlertState, EngineQuery, Group, RecordingRule
from rules.manager import Manager, eval_offset_ms, eval_timestamp
from sotp.config import Config, from_dict
from sotp.errors import ConfigError
from sotp.model import Labels, Matcher, MatchOp
from sotp.storage.memory import MemoryStorage

MIN = 60_000
T0 = 1_700_000_000_000 - 1_700_000_000_000 % MIN  # a whole minute, so activeAt seconds are exact


async def _up(storage: MemoryStorage, t: int, v: float = 0.0, **labels: str) -> None:
    app = storage.appender()
    app.append(Labels({"__name__": "up", "instance": "a", **labels}), t, v)
    await app.commit()


def _alert_group(hold_ms: int) -> Group:
    rule = AlertingRule("Down", "up == 0", hold_ms, 0, {}, {}, restored=True)
    return Group("g", "f.yml", MIN, 0, [rule])


@pytest.mark.parametrize(
    ("hold_min", "want_active_min"),
    [
        # 30m for, pending 10m before a 10m outage: 20m remain (>= the 10m grace), shifted by the outage
        (30, 10),
        # 15m for, 10m spent: 5m remain (< grace): active so that it fires a grace period after restart
        (15, 20 + 10 - 15),
        # 5m for (< grace): nothing is restored, the alert starts again at the restart
        (5, 20),
    ],
)
async def test_for_state_is_restored_after_a_restart(hold_min: int, want_active_min: int) -> None:
    storage = MemoryStorage()
    query = EngineQuery(Engine(storage))
    first = _alert_group(hold_min * MIN)
    for m in range(11):  # the first ruler runs from T0 to T0+10m, then stops
        await _up(storage, T0 + m * MIN)
        await first.eval(T0 + m * MIN, query, storage)
    assert first.rules[0].active  # type: ignore[union-attr]
    for m in range(11, 21):  # data keeps coming during the outage
        await _up(storage, T0 + m * MIN)
    restarted = _alert_group(hold_min * MIN)
    restarted.rules[0].restored = False  # type: ignore[union-attr]
    now = T0 + 20 * MIN
    await restarted.eval(now, query, storage)
    await restarted.restore_for_state(now, storage, outage_tolerance_ms=60 * MIN, for_grace_period_ms=10 * MIN)
    rule = restarted.rules[0]
    assert isinstance(rule, AlertingRule) and rule.restored
    (alert,) = rule.active.values()
    assert alert.active_at == T0 + want_active_min * MIN


async def test_tenant_groups_read_and_write_only_their_tenant() -> None:
    storage = MemoryStorage()
    await _up(storage, T0, 0, team="a")
    await _up(storage, T0, 0, team="b")
    rec = RecordingRule("copy", "up", {})
    g = Group("g", "f.yml", MIN, 0, [rec], tenant=("team", "a"))
    query = EngineQuery(Engine(storage), [Matcher("team", MatchOp.EQ, "a")])
    assert await g.eval(T0, query, storage) == 1
    q = storage.querier(T0, T0)
    got = [s.labels for s in await q.select([Matcher("__name__", MatchOp.EQ, "copy")])]
    assert got == [Labels({"__name__": "copy", "instance": "a", "team": "a"})]


def _groups_with_alerts() -> list[Group]:
    a = AlertingRule("Down", "up == 0", 0, 0, {"severity": "page"}, {"summary": "s"}, restored=True)
    a.active[Labels({"alertname": "Down", "team": "a"})] = _alert(a, "a")
    b = AlertingRule("Down", "up == 0", 0, 0, {}, {}, restored=True)
    b.active[Labels({"alertname": "Down", "team": "b"})] = _alert(b, "b")
    return [Group("ga", "f.yml", MIN, 0, [a], tenant=("team", "a")),
            Group("gb", "f.yml", MIN, 0, [b, RecordingRule("r", "up", {})], tenant=("team", "b"))]


def _alert(rule: AlertingRule, team: str):  # type: ignore[no-untyped-def]
    from rules.evaluation import Alert

    return Alert(AlertState.FIRING, Labels({"alertname": rule.name, "team": team}), (("summary", "s"),), 0.5,
                 T0 + 1234)


def test_api_shapes_and_tenant_filter() -> None:
    groups = _groups_with_alerts()
    alerts = alerts_data(groups, ("team", "a"))["alerts"]
    assert alerts == [{"labels": {"alertname": "Down", "team": "a"}, "annotations": {"summary": "s"},
                       "state": "firing", "activeAt": "2023-11-14T22:13:01.234Z", "value": "5e-01"}]
    assert len(alerts_data(groups, None)["alerts"]) == 2
    data = rules_data(groups, "", ("team", "b"))["groups"]
    assert [g["name"] for g in data] == ["gb"]
    assert [r["type"] for r in data[0]["rules"]] == ["alerting", "recording"]
    assert set(data[0]["rules"][0]) == {"state", "name", "query", "duration", "keepFiringFor", "labels",
                                        "annotations", "alerts", "health", "evaluationTime", "lastEvaluation",
                                        "type"}
    assert data[0]["lastEvaluation"] == "0001-01-01T00:00:00Z" and data[0]["interval"] == 60
    only_records = rules_data(groups, "record", None)["groups"]
    assert [[r["type"] for r in g["rules"]] for g in only_records] == [[], ["recording"]]


async def test_ruler_api_rejects_a_bad_type() -> None:
    storage = MemoryStorage()
    cfg = ruler_config(Config())
    manager = Manager(storage, cfg, Engine(storage))
    app = web.Application()
    ruler_routes(app, manager)
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        r = await client.get("/api/v1/rules?type=bogus")
        assert r.status == 400
        body = json.loads(await r.text())
        assert body == {"status": "error", "errorType": "bad_data",
                        "error": 'invalid parameter "type": not supported value "bogus"'}
    finally:
        await client.close()


def test_schedule_offsets_are_stable_and_aligned() -> None:
    g = Group("g", "/etc/sotp/rules.yml", MIN, 0, [])
    off = eval_offset_ms(g)
    assert 0 <= off < MIN and off == eval_offset_ms(Group("g", "/etc/sotp/rules.yml", MIN, 0, []))
    for now in (T0, T0 + 1, T0 + 59_999, T0 + 123_456):
        ts = eval_timestamp(g, now)
        assert ts <= now < ts + MIN and (ts - off) % MIN == 0


@pytest.mark.parametrize(
    ("section", "error"),
    [
        ({"ruler": {"listn": "x"}}, "ruler.listn: unknown key"),
        ({"ruler": {"resend_delay": "soon"}}, "ruler.resend_delay: invalid duration"),
        ({"ruler": {"tenant_rule_files": {"nope": ["x.yml"]}}}, "ruler.tenant_rule_files"),
        ({"alerting": {"alertmanagers": [{"static_configs": [{"targets": ["http://am:9093"]}]}]}}, "host:port"),
        ({"alerting": {"alertmanagers": [{"timeout": "x"}]}}, "alerting.alertmanagers[0].timeout: invalid duration"),
        ({"global": {"evaluation_interval": "0s"}}, "global.evaluation_interval: must be positive"),
        ({"alerting": {"alertmanagers": [{"tls_config": {"ca_file": "x"}}]}}, "tls_config: client TLS settings"),
    ],
)
def test_ruler_config_errors_name_the_key(section: dict[str, object], error: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(error)):
        ruler_config(from_dict(Config, section))


def test_ruler_config_resolves_files_and_auth(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a.yml").write_text("groups: []\n")
    (tmp_path / "b.yml").write_text("groups: []\n")
    monkeypatch.setenv("AM_TOKEN", "s3cret")
    cfg = ruler_config(from_dict(Config, {
        "rule_files": ["*.yml"],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": ["am:9093"]}], "path_prefix": "/am/",
                                        "authorization": {"credentials": "env:AM_TOKEN"}}]},
    }), str(tmp_path))
    assert cfg.files == [str(tmp_path / "a.yml"), str(tmp_path / "b.yml")]
    (am,) = cfg.alertmanagers
    assert am.urls() == ["http://am:9093/am/api/v2/alerts"]
    assert am.headers("x") == {"Authorization": "Bearer s3cret"}


async def test_serve_answers_from_the_ruler_and_tenants_see_only_their_rules(tmp_path: Path) -> None:
    """``sotp serve`` with auth on asks the ruler; a tenant token gets only its tenant's groups and alerts."""
    from sotp.auth import TokenStore
    from sotp.cli.serve import build_app

    storage = MemoryStorage()
    manager = Manager(storage, ruler_config(Config()), Engine(storage))
    manager.groups = {g.name: g for g in _groups_with_alerts()}
    ruler_app = web.Application()
    ruler_routes(ruler_app, manager)
    ruler = TestServer(ruler_app)
    await ruler.start_server()
    store = TokenStore(tmp_path / "tokens.json")
    admin, _ = store.create("admin", ["read"])
    team_a, _ = store.create("a", ["read"], ("team", "a"))
    config = Config()
    config.server.storage = "memory://"
    config.server.listen = "0.0.0.0:9201"
    config.auth = {"tokens_file": str(store.path)}
    config.ruler = {"urls": [str(ruler.make_url("/"))]}
    try:
        async with TestClient(TestServer(build_app(config))) as client:
            async def get(path: str, token: str | None) -> tuple[int, dict[str, object]]:
                headers = {"Authorization": f"Bearer {token}"} if token else {}
                r = await client.get(path, headers=headers)
                return r.status, json.loads(await r.text())

            assert (await get("/api/v1/rules", None))[0] == 401
            status, body = await get("/api/v1/rules", admin)
            assert status == 200 and [g["name"] for g in body["data"]["groups"]] == ["ga", "gb"]  # type: ignore[index]
            status, body = await get("/api/v1/rules?type=alert", team_a)
            assert [g["name"] for g in body["data"]["groups"]] == ["ga"]  # type: ignore[index]
            status, body = await get("/api/v1/alerts", team_a)
            assert [a["labels"]["team"] for a in body["data"]["alerts"]] == ["a"]  # type: ignore[index]
            status, body = await get("/api/v1/alerts", admin)
            assert sorted(a["labels"]["team"] for a in body["data"]["alerts"]) == ["a", "b"]  # type: ignore[index]
            await ruler.close()
            status, body = await get("/api/v1/alerts", admin)
            assert status == 503 and body["errorType"] == "unavailable"
    finally:
        await ruler.close()
