"""Push gateway: the real prometheus_client against ``sotp serve``'s app; samples land at push time; TTL ends groups."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import math
import time
from collections.abc import AsyncIterator, Callable
from functools import partial
from pathlib import Path
from typing import Any
from urllib.error import HTTPError

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import delete_from_gateway, push_to_gateway, pushadd_to_gateway

from remote_write.pushgateway import PushgatewayConfig, parse_grouping_path
from remote_write.pushgroups import Groups, prepare
from sotp.cli.serve import build_app
from sotp.config import Config, from_dict
from sotp.errors import ConfigError, DecodeError
from sotp.model import Labels, Matcher, MatchOp, Series, is_stale
from sotp.web import CTX
from tests.conftest import STORAGE_BACKENDS, storage_location

Factory = Callable[..., Any]


@pytest.fixture
async def make_client(tmp_path: Path) -> AsyncIterator[Factory]:
    clients: list[TestClient] = []
    locations = contextlib.ExitStack()

    async def make(storage: str = "memory", **pushgateway: str) -> TestClient:
        config = Config()
        config.server.storage = locations.enter_context(storage_location(storage, tmp_path))
        config.pushgateway = {"refresh_interval": "0", **pushgateway}
        config.limits.max_body_bytes = 32 * 1024
        config.limits.max_decompressed_bytes = 64 * 1024
        c = TestClient(TestServer(build_app(config)))
        await c.start_server()
        clients.append(c)
        return c

    with locations:
        yield make
        for c in clients:
            await c.close()


@pytest.fixture(params=STORAGE_BACKENDS)
async def client(request: pytest.FixtureRequest, make_client: Factory) -> TestClient:
    c: TestClient = await make_client(request.param)
    return c


def gw(client: TestClient) -> str:
    return f"127.0.0.1:{client.server.port}"


async def stored(client: TestClient, **labels: str) -> list[Series]:
    """Raw stored samples (staleness markers included) of the series matching ``labels``."""
    q = client.app[CTX].storage.querier(0, int(time.time() * 1000) + 60_000)
    ms = [Matcher(k, MatchOp.EQ, v) for k, v in labels.items()]
    return await q.select(ms or [Matcher("__name__", MatchOp.RE, ".+")])


async def current(client: TestClient, selector: str) -> dict[str, float]:
    """Instant query now: series (as text) → value; stale series are absent, as in PromQL."""
    r = await client.get("/api/v1/query", params={"query": selector, "time": str(time.time() + 0.001)})
    assert r.status == 200
    out = {}
    for s in (await r.json())["data"]["result"]:
        m = dict(s["metric"])
        name = m.pop("__name__")
        out[name + str(sorted(m.items()))] = float(s["value"][1])
    return out


def registry(**gauges: float) -> CollectorRegistry:
    reg = CollectorRegistry()
    for name, v in gauges.items():
        Gauge(name, f"{name} help", registry=reg).set(v)
    return reg


async def push(fn: Callable[..., None], client: TestClient, job: str, reg: CollectorRegistry | None = None,
               **kw: Any) -> None:
    if fn is delete_from_gateway:
        await asyncio.to_thread(partial(fn, gw(client), job=job, **kw))
    else:
        await asyncio.to_thread(partial(fn, gw(client), job=job, registry=reg, **kw))


async def test_push_to_gateway_lands_in_storage_at_push_time(client: TestClient) -> None:
    before = time.time()
    reg = registry(batch_last_success=1234.5)
    Counter("rows_processed", "rows", registry=reg).inc(42)
    await push(push_to_gateway, client, "nightly", reg, grouping_key={"instance": "db1"})
    got = await current(client, '{job="nightly"}')
    assert got["batch_last_success[('instance', 'db1'), ('job', 'nightly')]"] == 1234.5
    assert got["rows_processed_total[('instance', 'db1'), ('job', 'nightly')]"] == 42
    assert got["push_failure_time_seconds[('instance', 'db1'), ('job', 'nightly')]"] == 0
    pushed_at = got["push_time_seconds[('instance', 'db1'), ('job', 'nightly')]"]
    assert before <= pushed_at <= time.time()
    # Written once, at push time (no refresh in this fixture), one timestamp for the whole group.
    series = await stored(client, job="nightly")
    assert {int(s.timestamps[0]) for s in series} == {int(s.timestamps[-1]) for s in series}
    assert all(len(s.timestamps) == 1 for s in series)


async def test_semantics_put_post_delete(client: TestClient) -> None:
    await push(push_to_gateway, client, "j", registry(a=1, b=2))
    await push(pushadd_to_gateway, client, "j", registry(a=10, c=3))  # POST: a replaced, b kept, c added
    assert await current(client, '{job="j",__name__=~"[abc]"}') == {
        "a[('job', 'j')]": 10, "b[('job', 'j')]": 2, "c[('job', 'j')]": 3,
    }
    await push(push_to_gateway, client, "j", registry(c=4))  # PUT: a and b go stale at once
    assert await current(client, '{job="j",__name__=~"[abc]"}') == {"c[('job', 'j')]": 4}
    (a,) = await stored(client, __name__="a")
    assert [is_stale(v) for v in a.values] == [False, False, True]
    # DELETE of {job} does not touch {job, instance}.
    await push(push_to_gateway, client, "j", registry(d=5), grouping_key={"instance": "x"})
    await push(delete_from_gateway, client, "j")
    assert await current(client, '{job="j"}') == {
        "d[('instance', 'x'), ('job', 'j')]": 5,
        "push_failure_time_seconds[('instance', 'x'), ('job', 'j')]": 0,
        "push_time_seconds[('instance', 'x'), ('job', 'j')]": pytest.approx(time.time(), abs=5),
    }
    (pt,) = await stored(client, __name__="push_time_seconds", job="j", instance="")
    assert is_stale(pt.values[-1])
    await push(delete_from_gateway, client, "j")  # deleting a missing group is fine (202)


async def test_empty_put_empties_group_but_records_push(client: TestClient) -> None:
    await push(push_to_gateway, client, "e", registry(a=1))
    first = (await current(client, 'push_time_seconds{job="e"}'))["push_time_seconds[('job', 'e')]"]
    await asyncio.sleep(0.01)
    await push(push_to_gateway, client, "e", CollectorRegistry())
    got = await current(client, '{job="e"}')
    assert "a[('job', 'e')]" not in got
    assert got["push_time_seconds[('job', 'e')]"] > first


async def test_base64_grouping_values_and_gzip(client: TestClient) -> None:
    reg = registry(x=7)
    await push(push_to_gateway, client, "b64", reg, grouping_key={"path": "/var/log", "space": "a b", "empty": ""},
               compression="gzip")
    assert await current(client, "x") == {"x[('job', 'b64'), ('path', '/var/log'), ('space', 'a b')]": 7}
    # The job itself may be base64 too; padding is optional.
    r = await client.put("/metrics/job@base64/L3Zhci9sb2c/k@base64/YQ", data=b"y 1\n")
    assert r.status == 200, await r.text()
    assert await current(client, "y") == {"y[('job', '/var/log'), ('k', 'a')]": 1}


async def test_body_labels_are_overridden_by_path(client: TestClient) -> None:
    r = await client.put("/metrics/job/p/foo/path", data=b'z{job="other",foo="body",bar="b"} 1\n')
    assert r.status == 200
    assert await current(client, "z") == {"z[('bar', 'b'), ('foo', 'path'), ('job', 'p')]": 1}


async def test_histogram_post_replaces_whole_family(client: TestClient) -> None:
    reg = CollectorRegistry()
    Histogram("lat", "l", buckets=(1, 2), registry=reg).observe(1.5)
    Gauge("g", "g", registry=reg).set(1)
    await push(push_to_gateway, client, "h", reg)
    reg2 = CollectorRegistry()
    Histogram("lat", "l", buckets=(5,), registry=reg2).observe(3)
    await push(pushadd_to_gateway, client, "h", reg2)
    got = await current(client, '{job="h",__name__=~"lat.*|g"}')
    # The old le="1.0"/"2.0" buckets belonged to the replaced family, so they are gone; g stays.
    assert sorted(k for k in got if k.startswith("lat_bucket")) == [
        "lat_bucket[('job', 'h'), ('le', '+Inf')]", "lat_bucket[('job', 'h'), ('le', '5.0')]",
    ]
    assert got["g[('job', 'h')]"] == 1


REJECTED: list[tuple[str, str, bytes, str]] = [
    ("timestamp", "/metrics/job/t", b"x 1 1000\n", "must not have timestamps"),
    ("twice in body", "/metrics/job/t", b"w 1\nw 2\n", "pushed twice"),
    ("bad text", "/metrics/job/t", b"w{ 1\n", "line 2"),
    ("reserved metric", "/metrics/job/t", b"push_time_seconds 1\n", "reserved"),
    ("odd path", "/metrics/job/t/foo", b"y 1\n", "odd number of components"),
    ("bad path label", "/metrics/job/t/1foo/x", b"y 1\n", "invalid label name '1foo'"),
    ("reserved path label", "/metrics/job/t/__x/1", b"y 1\n", "reserved"),
    ("bad base64", "/metrics/job/t/x@base64/!!!", b"y 1\n", "invalid base64"),
    ("empty job", "/metrics/job@base64/=", b"y 1\n", "job label in the push path is empty"),
    ("bad label in body", "/metrics/job/t", b'y{__bad="1"} 1\n', "reserved"),
    ("not utf8", "/metrics/job/t", b"y{a=\"\xff\"} 1\n", "not UTF-8"),
]


@pytest.mark.parametrize(("path", "body", "message"), [r[1:] for r in REJECTED], ids=[r[0] for r in REJECTED])
async def test_rejected_pushes_are_400_and_write_no_body_series(
    client: TestClient, path: str, body: bytes, message: str
) -> None:
    r = await client.put(path, data=b"good 1\n" + body)
    assert r.status == 400
    assert message in await r.text()
    names = {s.labels.name for s in await stored(client)}
    assert names <= {"push_time_seconds", "push_failure_time_seconds"}


async def test_failure_time_recorded_and_prometheus_client_raises(client: TestClient) -> None:
    await push(push_to_gateway, client, "f", registry(a=1))
    r = await client.post("/metrics/job/f", data=b"a 2 1000\n")
    assert r.status == 400
    got = await current(client, '{job="f"}')
    assert got["push_failure_time_seconds[('job', 'f')]"] == pytest.approx(time.time(), abs=5)
    assert got["a[('job', 'f')]"] == 1  # the group's content is unchanged
    # A group that never pushed successfully is created empty with push_time_seconds 0 (as Pushgateway).
    r = await client.put("/metrics/job/never", data=b"x 1 1000\n")
    got = await current(client, '{job="never"}')
    assert got["push_time_seconds[('job', 'never')]"] == 0

    def refused() -> int:
        try:
            push_to_gateway(gw(client), job="f", registry=registry(push_time_seconds=1))
        except HTTPError as err:
            err.close()
            return err.code
        return 200

    assert await asyncio.to_thread(refused) == 400


async def test_conflicts_between_groups(client: TestClient) -> None:
    assert (await client.put("/metrics/job/a", data=b"# TYPE x counter\nx 1\n")).status == 200
    r = await client.put("/metrics/job/b", data=b"# TYPE x gauge\nx 1\n")
    assert (r.status, "types must agree" in await r.text()) == (400, True)
    r = await client.put("/metrics/job/c", data=b"x 1\n")  # untyped vs counter is a conflict too
    assert r.status == 400
    # The same series from two groups.
    assert (await client.put("/metrics/job/a/instance/i", data=b'# TYPE x counter\nx 1\n')).status == 200
    r = await client.put("/metrics/job/a", data=b'# TYPE x counter\nx{instance="i"} 1\n')
    assert (r.status, "already pushed by group" in await r.text()) == (400, True)
    # Once the other group is gone its series and types are free again.
    await client.delete("/metrics/job/a/instance/i")
    await client.delete("/metrics/job/a")
    assert (await client.put("/metrics/job/b", data=b"# TYPE x gauge\nx 1\n")).status == 200


async def test_protobuf_is_415_and_limits_are_413(client: TestClient) -> None:
    r = await client.put("/metrics/job/p", data=b"\x00",
                         headers={"Content-Type": "application/vnd.google.protobuf; proto=io.prometheus.client."
                                                 "MetricFamily; encoding=delimited"})
    assert r.status == 415
    r = await client.put("/metrics/job/p", data=b"a 1\n" * 10_000)
    assert r.status == 413
    r = await client.put("/metrics/job/p", data=gzip.compress(b"a 1\n" + b"#" * 100_000),
                         headers={"Content-Encoding": "gzip"})
    assert r.status == 413
    names = {s.labels.name for s in await stored(client)}
    assert "a" not in names


async def test_ttl_ends_silent_group_with_staleness_markers(make_client: Factory) -> None:
    client = await make_client(ttl="400ms")
    await push(push_to_gateway, client, "short", registry(a=1))
    await push(push_to_gateway, client, "short2", registry(b=1))
    assert len(await current(client, '{job=~"short.*"}')) == 6
    for _ in range(40):
        await asyncio.sleep(0.1)
        await push(push_to_gateway, client, "short2", registry(b=1))  # keeps pushing: stays alive
        if not await current(client, '{job="short"}'):
            break
    assert await current(client, '{job="short"}') == {}
    for s in await stored(client, job="short"):
        assert is_stale(s.values[-1]), s.labels
    assert len(await current(client, '{job="short2"}')) == 3
    # A push after expiry starts the group again.
    await push(push_to_gateway, client, "short", registry(a=2))
    assert (await current(client, 'a{job="short"}')) == {"a[('job', 'short')]": 2}


async def test_refresh_keeps_live_group_visible(make_client: Factory) -> None:
    client = await make_client(ttl="30s", refresh_interval="100ms")
    await push(push_to_gateway, client, "r", registry(a=3))
    await asyncio.sleep(0.6)
    (a,) = await stored(client, __name__="a")
    assert len(a.timestamps) >= 3 and set(a.values.tolist()) == {3.0}
    assert list(a.timestamps) == sorted(set(a.timestamps.tolist()))


PATHS = [
    ("/metrics/job/a", {"job": "a"}),
    ("/metrics/job/a/", {"job": "a"}),
    ("/metrics/job/a%2Fb/i/x%20y", {"job": "a/b", "i": "x y"}),
    ("/metrics/job/a/k@base64/=", {"job": "a", "k": ""}),
    ("/metrics/job/a/k/1/k/2", {"job": "a", "k": "2"}),
    ("/metrics/job@base64/L3Zhci9sb2c=", {"job": "/var/log"}),
]


@pytest.mark.parametrize(("path", "want"), PATHS, ids=[p for p, _ in PATHS])
def test_parse_grouping_path(path: str, want: dict[str, str]) -> None:
    assert parse_grouping_path(path) == want


def test_parse_grouping_path_errors() -> None:
    with pytest.raises(DecodeError, match="odd number"):
        parse_grouping_path("/metrics/job/a/b")


@pytest.mark.parametrize(
    ("section", "message"),
    [({"ttl": "0s"}, "pushgateway.ttl: must be positive"), ({"ttl": "soon"}, "pushgateway.ttl: invalid duration"),
     ({"refresh_interval": "10m"}, "below the 5m"), ({"tll": "1h"}, "pushgateway.tll: unknown key")],
)
def test_config_errors(section: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        from_dict(PushgatewayConfig, section, "pushgateway")
    assert not math.isnan(from_dict(PushgatewayConfig, {}, "pushgateway").ttl_s)


def test_series_moving_between_groups_in_one_millisecond_gets_later_timestamp() -> None:
    """DELETE of group {job=a,instance=i}, then a PUT of the same series through group {job=a} at the same
    wall-clock instant: the new sample must come after the staleness marker, or the store would see two
    values at one timestamp (a conflict, 400)."""
    groups = Groups()
    limits = Config().limits
    ai, a = Labels({"job": "a", "instance": "i"}), Labels({"job": "a"})
    series = Labels({"__name__": "x", "job": "a", "instance": "i"})
    groups.plan_push(ai, prepare(ai, "x 1\n", limits), replace_all=True, now=1000.0).apply()
    delete = groups.plan_delete(ai, now=1000.0)
    assert delete is not None and series in {bt.labels for bt in delete.batches}
    delete.apply()
    put = groups.plan_push(a, prepare(a, 'x{instance="i"} 2\n', limits), replace_all=True, now=1000.0)
    assert series in {bt.labels for bt in put.batches}
    assert put.t_ms > delete.t_ms
