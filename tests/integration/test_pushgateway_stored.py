"""Push groups are stored state: real ``sotp serve`` processes, killed with SIGKILL, restarted, and run as two
replicas on one PostgreSQL schema (issue 18). Groups are read back through Pushgateway's ``GET
/api/v1/metrics`` and the series through the query API."""

from __future__ import annotations

import json
import math
import signal
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from sotp.auth import TokenStore
from tests.conftest import Proc, free_port, sotp_cmd, storage_location, wait_for_port

pytestmark = pytest.mark.integration

Spawn = Callable[..., Proc]


@pytest.fixture(params=["sqlite", "postgres", "timescaledb"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with storage_location(request.param, tmp_path) as url:
        yield url


@pytest.fixture(params=["postgres", "timescaledb"])
def shared_pg(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with storage_location(request.param, tmp_path) as url:
        yield url


class Server:
    """One ``sotp serve`` and the HTTP calls the tests make to it."""

    def __init__(self, spawn: Spawn, tmp_path: Path, storage: str, name: str, **config: Any) -> None:
        self.port = free_port()
        cfg = tmp_path / f"{name}.yml"
        cfg.write_text(yaml.safe_dump({"pushgateway": {"refresh_interval": "0"}, **config}))
        self.proc = spawn(sotp_cmd("serve", "--config", str(cfg), "--listen", f"127.0.0.1:{self.port}",
                                   "--storage", storage), name=name)
        wait_for_port(self.port, timeout=60)

    def call(self, method: str, path: str, body: str | None = None, token: str | None = None) -> tuple[int, str]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", method=method, headers=headers,
                                     data=body.encode() if body is not None else None)
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode()

    def push(self, method: str, path: str, body: str = "", token: str | None = None) -> int:
        status, text = self.call(method, f"/metrics/job/{path}", body, token)
        assert status in (200, 202, 400), text
        return status

    def groups(self, token: str | None = None) -> list[dict[str, Any]]:
        status, text = self.call("GET", "/api/v1/metrics", token=token)
        assert status == 200, text
        doc = json.loads(text)
        assert doc["status"] == "success"
        data: list[dict[str, Any]] = doc["data"]
        return data

    def query(self, expr: str) -> dict[str, str]:
        """An instant query now: series (as their ``__name__`` and sorted labels) → value."""
        q = urllib.parse.urlencode({"query": expr, "time": f"{time.time():.3f}"})
        status, text = self.call("GET", f"/api/v1/query?{q}")
        assert status == 200, text
        return {json.dumps(r["metric"], sort_keys=True): r["value"][1] for r in json.loads(text)["data"]["result"]}


def values(group: dict[str, Any]) -> dict[str, str]:
    """A listed group's user metrics: ``name{labels}`` → value (the gateway's own families left out)."""
    out = {}
    for fam, body in group.items():
        if fam in ("labels", "last_push_successful", "push_time_seconds", "push_failure_time_seconds"):
            continue
        for m in body["metrics"]:
            out[fam + json.dumps(m["labels"], sort_keys=True)] = m["value"]
    return out


def test_restart_keeps_groups(storage: str, spawn: Spawn, tmp_path: Path) -> None:
    a = Server(spawn, tmp_path, storage, "serve-a")
    body = "# TYPE backup_ok gauge\nbackup_ok 1\n# TYPE backup_runs_total counter\nbackup_runs_total 7\n"
    assert a.push("PUT", "backup/instance/db1", body) == 200
    assert a.push("PUT", "other", "up 1\n") == 200
    # A refused push records push_failure_time_seconds (and the group keeps its series).
    assert a.push("POST", "backup/instance/db1", "backup_ok 2 1700000000000\n") == 400
    before = a.groups()
    assert len(before) == 2 and before[0]["last_push_successful"] is False
    assert float(before[0]["push_failure_time_seconds"]["metrics"][0]["value"]) > 0
    a.proc.stop(signal.SIGKILL)  # nothing runs at shutdown: only what was committed remains

    b = Server(spawn, tmp_path, storage, "serve-b")
    assert b.groups() == before  # every group, series, value, push and failure time, exactly
    # The group's state is back, not only its samples: a POST keeps the families it does not name ...
    assert b.push("POST", "backup/instance/db1", "# TYPE backup_size gauge\nbackup_size 5\n") == 200
    assert set(values(b.groups()[0])) == {
        'backup_ok{"instance": "db1", "job": "backup"}', 'backup_runs_total{"instance": "db1", "job": "backup"}',
        'backup_size{"instance": "db1", "job": "backup"}'}
    # ... and a PUT ends the series pushed before the restart with staleness markers.
    assert b.push("PUT", "backup/instance/db1", "backup_size 6\n") == 200
    assert b.query('backup_ok{job="backup"}') == {}
    assert b.query('backup_runs_total{job="backup"}') == {}
    assert list(b.query('backup_size{job="backup"}').values()) == ["6"]
    assert b.push("DELETE", "other") == 202
    after = b.groups()
    b.proc.stop(signal.SIGKILL)

    c = Server(spawn, tmp_path, storage, "serve-c")
    assert c.groups() == after  # the DELETE is stored too
    assert [g["labels"] for g in after] == [{"instance": "db1", "job": "backup"}]


def test_ttl_clock_survives_restart(storage: str, spawn: Spawn, tmp_path: Path) -> None:
    ttl = 3.0
    a = Server(spawn, tmp_path, storage, "serve-a", pushgateway={"ttl": f"{ttl:g}s", "refresh_interval": "0"})
    assert a.push("PUT", "nightly", "nightly_ok 1\n") == 200
    pushed = float(a.groups()[0]["push_time_seconds"]["metrics"][0]["value"])
    a.proc.stop(signal.SIGKILL)
    while time.time() < pushed + ttl + 0.5:  # the TTL runs out while no server runs
        time.sleep(0.1)

    b = Server(spawn, tmp_path, storage, "serve-b", pushgateway={"ttl": f"{ttl:g}s", "refresh_interval": "0"})
    deadline = time.monotonic() + 60
    while b.groups() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert b.groups() == []  # ended by the TTL counted from the push before the restart
    assert b.query('nightly_ok{job="nightly"}') == {}
    b.proc.stop()

    # The group ended with a staleness marker, written after the TTL (never before it).
    import asyncio

    from sotp.model import Matcher, MatchOp, is_stale
    from sotp.storage import open_storage

    async def series() -> list[tuple[int, float]]:
        s = open_storage(storage)
        await s.open()
        try:
            got = await s.querier(0, int(time.time() * 1000) + 60_000).select(
                [Matcher("__name__", MatchOp.EQ, "nightly_ok")])
            return list(zip(got[0].timestamps, got[0].values, strict=True))
        finally:
            await s.close()

    samples = asyncio.run(series())
    assert [v for _, v in samples[:-1]] == [1.0] and is_stale(samples[-1][1])
    assert samples[-1][0] >= (pushed + ttl) * 1000


def test_two_replicas_share_the_groups(shared_pg: str, spawn: Spawn, tmp_path: Path) -> None:
    a = Server(spawn, tmp_path, shared_pg, "serve-a")
    b = Server(spawn, tmp_path, shared_pg, "serve-b")
    assert a.push("PUT", "etl/instance/n1", "rows 10\nerrors 0\n") == 200
    listed_b = b.groups()
    assert listed_b == a.groups()
    assert values(listed_b[0]) == {'rows{"instance": "n1", "job": "etl"}': "10",
                                   'errors{"instance": "n1", "job": "etl"}': "0"}
    # A PUT on B replaces what A pushed: the series A wrote and B's body omits end on both.
    assert b.push("PUT", "etl/instance/n1", "rows 11\n") == 200
    assert values(a.groups()[0]) == {'rows{"instance": "n1", "job": "etl"}': "11"}
    assert a.query('errors{job="etl"}') == {}
    assert list(a.query('rows{job="etl"}').values()) == ["11"]
    # DELETE on B ends the group A sees.
    assert b.push("DELETE", "etl/instance/n1") == 202
    assert a.groups() == [] and a.query('{job="etl"}') == {}

    # Concurrent POSTs of different families to one group, alternating replicas: each adds its family, so a
    # lost update (a change planned from a state another replica had already replaced) would drop one.
    n, failures = 40, []

    def post(i: int) -> None:
        server = (a, b)[i % 2]
        status = server.push("POST", "batch/instance/x", f"# TYPE step_{i} gauge\nstep_{i} {i}\n")
        if status != 200:
            failures.append((i, status))

    threads = [threading.Thread(target=post, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    for server in (a, b):
        (group,) = server.groups()
        assert values(group) == {f'step_{i}{{"instance": "x", "job": "batch"}}': str(i) for i in range(n)}
    assert len(a.query('{job="batch", __name__=~"step_.*"}')) == n


def test_tenants_stay_separate_across_replicas(shared_pg: str, spawn: Spawn, tmp_path: Path) -> None:
    store = TokenStore(tmp_path / "tokens.json")
    ta, _ = store.create("team-a", ["read", "write"], ("team", "a"))
    tb, _ = store.create("team-b", ["read", "write"], ("team", "b"))
    admin, _ = store.create("admin", ["read", "write", "admin"])
    auth = {"auth": {"tokens_file": str(store.path)}}
    a = Server(spawn, tmp_path, shared_pg, "serve-a", **auth)
    b = Server(spawn, tmp_path, shared_pg, "serve-b", **auth)
    assert a.call("GET", "/api/v1/metrics")[0] == 401
    # The same job path from two tenants is two groups; a tenant's series carry its label.
    assert a.push("PUT", "shared", "jobs 1\n", ta) == 200
    assert b.push("PUT", "shared", "jobs 2\n", tb) == 200
    assert [(g["labels"], values(g)) for g in b.groups(ta)] == [
        ({"job": "shared", "team": "a"}, {'jobs{"job": "shared", "team": "a"}': "1"})]
    assert [(g["labels"], values(g)) for g in a.groups(tb)] == [
        ({"job": "shared", "team": "b"}, {'jobs{"job": "shared", "team": "b"}': "2"})]
    assert len(a.groups(admin)) == 2
    # Tenant b's DELETE on B ends its own group only.
    assert b.push("DELETE", "shared", token=tb) == 202
    assert a.groups(tb) == []
    assert [g["labels"] for g in a.groups(ta)] == [{"job": "shared", "team": "a"}]
    assert [g["labels"] for g in b.groups(admin)] == [{"job": "shared", "team": "a"}]


def test_values_are_formatted_as_pushgateway_does() -> None:
    from sotp.codec.exposition import format_value

    cases = {1.0: "1", 0.5: "0.5", 1796673901.7661686: "1.7966739017661686e+09", 123456.0: "123456",
             1234567.0: "1.234567e+06", 1e21: "1e+21", 1e-5: "1e-05", 0.0001: "0.0001", -2.5: "-2.5",
             math.inf: "+Inf", -math.inf: "-Inf",
             math.nan: "NaN", 100.0: "100"}
    assert {v: format_value(v) for v in cases} == cases
