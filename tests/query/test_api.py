"""The HTTP API: Grafana's request sequence, parameters, the error table, limits, tenants, formatting."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import web

from sotp.config import Config
from sotp.errors import AuthError
from sotp.metadata import metadata_store
from sotp.web import CTX
from tests.query.api_support import Client, _client


@dataclass
class Principal:
    tenant: tuple[str, str] | None


@pytest.fixture
async def client() -> AsyncIterator[Client]:
    c = await _client()
    yield c
    await c.close()


FORM = {"Content-Type": "application/x-www-form-urlencoded"}


async def _json(resp: Any) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(await resp.text())
    return body


async def test_grafana_request_sequence(client: Client) -> None:
    # 1. "Save & test": the instant query 1+1 at time 4, form-encoded POST
    r = await client.post("/api/v1/query", data="query=1%2B1&time=4", headers=FORM)
    assert r.status == 200
    assert await r.text() == '{"status":"success","data":{"resultType":"scalar","result":[4,"2"]}}'
    # 2. buildinfo without "features" (else Grafana assumes Mimir)
    r = await client.get("/api/v1/status/buildinfo")
    info = (await _json(r))["data"]
    assert info["version"].startswith("2.42") and "features" not in info and "goVersion" in info
    # 3. label names via POST (Grafana falls back to GET only on 400/405)
    r = await client.post("/api/v1/labels", data="start=0&end=200", headers=FORM)
    assert (await _json(r))["data"] == ["__name__", "instance", "job", "team"]
    # 4. metric names and label values, GET only
    r = await client.get("/api/v1/label/__name__/values", params={"start": "0", "end": "200"})
    assert (await _json(r))["data"] == ["c_total", "up", "weird"]
    r = await client.get("/api/v1/label/job/values", params={"match[]": "up"})
    assert (await _json(r))["data"] == ["api", "db"]
    r = await client.post("/api/v1/label/job/values", data="", headers=FORM)
    assert r.status == 405
    # 5. series for the label browser, POST with repeated match[]
    r = await client.post("/api/v1/series", data="match[]=up&match[]=c_total%7Bjob%3D%22db%22%7D&start=0&end=200",
                          headers=FORM)
    series = (await _json(r))["data"]
    assert {"__name__": "c_total", "job": "db", "team": "blue"} in series and len(series) == 3
    # 6. a time-series panel: query_range via form POST, URL query merged with the body
    r = await client.post("/api/v1/query_range?step=15", data="query=rate(c_total%5B1m%5D)&start=60&end=90",
                          headers=FORM)
    body = await _json(r)
    assert body["data"]["resultType"] == "matrix"
    api = next(s for s in body["data"]["result"] if s["metric"]["job"] == "api")
    assert api["metric"] == {"job": "api", "team": "red"}
    assert [p[0] for p in api["values"]] == [60, 75, 90]
    assert all(isinstance(p[1], str) for p in api["values"])
    assert float(api["values"][0][1]) == pytest.approx(40 / 60)
    # 7. metadata, exemplars and rules probes
    r = await client.get("/api/v1/metadata", params={"metric": "up"})
    assert (await _json(r))["data"] == {"up": [{"type": "gauge", "help": "target is up", "unit": ""}]}
    r = await client.post("/api/v1/query_exemplars", data="query=test&start=0&end=100", headers=FORM)
    assert await _json(r) == {"status": "success", "data": []}
    r = await client.get("/api/v1/rules")
    assert await _json(r) == {"status": "success", "data": {"groups": []}}


@pytest.mark.parametrize(
    ("path", "params", "status", "kind", "text"),
    [
        ("/api/v1/query", {"query": "sum(", "time": "10"}, 400, "bad_data", 'invalid parameter "query"'),
        ("/api/v1/query", {"query": "up offset 1e20"}, 400, "bad_data", "parse error"),
        ("/api/v1/query", {"query": "up @ -10"}, 400, "bad_data", ""),
        ("/api/v1/query", {"query": "histogram_count(up)"}, 400, "bad_data", "native histograms"),
        ("/api/v1/query", {"query": "double_exponential_smoothing(up[1m], 0.5, 0.5)"}, 400, "bad_data", "unknown"),
        ("/api/v1/query", {"query": "limitk(1, up)"}, 400, "bad_data", "unknown aggregation"),
        ("/api/v1/query", {"query": "up", "time": "yesterday"}, 400, "bad_data", 'invalid parameter "time"'),
        ("/api/v1/query", {}, 400, "bad_data", "query"),
        ("/api/v1/query", {"query": "up + on(job) group_left c_total{job=~\".+\"} + on() up", "time": "30"},
         422, "execution", ""),
        ("/api/v1/query", {"query": 'up + on(team) {__name__=~"up|c_total"}', "time": "30"}, 422, "execution",
         "duplicate series"),
        ("/api/v1/query", {"query": "c_total + on(team) up", "time": "30"}, 200, "", ""),
        ("/api/v1/query", {"query": 'sum by (__name__, job) ({__name__=~"up|c_total"}) * 1', "time": "30"}, 422,
         "execution", "same labelset"),
        ("/api/v1/query", {"query": "up", "time": "30", "timeout": "0.0000001"}, 503, "timeout", "timed out"),
        ("/api/v1/query_range", {"query": "up", "start": "10", "end": "5", "step": "1"}, 400, "bad_data", "end"),
        ("/api/v1/query_range", {"query": "up", "start": "0", "end": "5", "step": "0"}, 400, "bad_data", "step"),
        ("/api/v1/query_range", {"query": "up", "start": "0", "end": "11001", "step": "1"}, 400, "bad_data",
         "11,000 points"),
        ("/api/v1/query_range", {"query": "up", "start": "0", "end": "11000", "step": "1"}, 200, "", ""),
        ("/api/v1/query_range", {"query": "up", "start": "0", "end": "11000.9", "step": "1"}, 200, "", ""),
        ("/api/v1/query_range", {"query": "up", "start": "0", "end": "60", "step": "0.5m"}, 400, "bad_data", "step"),
        ("/api/v1/query_range", {"query": "up[1m]", "start": "0", "end": "60", "step": "15"}, 400, "bad_data",
         "range vector"),
        ("/api/v1/series", {}, 400, "bad_data", "no match[] parameter provided"),
        ("/api/v1/series", {"match[]": "rate(up[1m])"}, 400, "bad_data", "match[]"),
        ("/api/v1/label/1bad/values", {}, 400, "bad_data", "invalid label name"),
    ],
)
async def test_errors(client: Client, path: str, params: dict[str, str], status: int, kind: str, text: str) -> None:
    r = await client.get(path, params=params)
    body = await _json(r)
    assert r.status == status, body
    if status != 200:
        assert body["status"] == "error" and body["errorType"] == kind and text in body["error"], body


async def test_max_samples_is_an_execution_error() -> None:
    config = Config()
    config.server.query_max_samples = 5
    c = await _client(config)
    try:
        r = await c.get("/api/v1/query", params={"query": "sum(c_total)", "time": "120"})
        body = await _json(r)
        assert r.status == 422 and body["errorType"] == "execution" and "query_max_samples" in body["error"]
    finally:
        await c.close()


async def test_series_times_steps_is_limited_too() -> None:
    config = Config()
    config.server.query_max_samples = 20  # the fetch (18 samples) fits; 2 series x 11 steps do not
    c = await _client(config)
    try:
        r = await c.get("/api/v1/query_range", params={"query": "c_total + 0", "start": "0", "end": "10",
                                                         "step": "1"})
        body = await _json(r)
        assert r.status == 422 and body["errorType"] == "execution" and "2 series x 11 steps" in body["error"]
        r = await c.get("/api/v1/query_range", params={"query": "c_total", "start": "0", "end": "5", "step": "1"})
        assert r.status == 200
    finally:
        await c.close()


async def test_value_and_timestamp_formatting(client: Client) -> None:
    r = await client.get("/api/v1/query", params={"query": "weird", "time": "1.5"})
    assert await r.text() == (
        '{"status":"success","data":{"resultType":"vector","result":'
        '[{"metric":{"__name__":"weird","job":"x"},"value":[1.500,"+Inf"]}]}}'
    )
    # the staleness marker at 15 s hides the series until the sample at 30 s
    r = await client.get("/api/v1/query", params={"query": "weird", "time": "20"})
    assert (await _json(r))["data"]["result"] == []
    r = await client.get("/api/v1/query", params={"query": "-weird / 0", "time": "2015-01-01T00:00:00Z"})
    assert (await _json(r))["data"]["result"] == []
    r = await client.get("/api/v1/query", params={"query": "(weird - weird) / 0", "time": "0"})
    assert (await _json(r))["data"]["result"][0]["value"] == [0, "NaN"]
    r = await client.get("/api/v1/query", params={"query": "vector(1e21) + vector(-3e-7)", "time": "0"})
    assert (await _json(r))["data"]["result"][0]["value"] == [0, "1e+21"]
    r = await client.get("/api/v1/query", params={"query": "-0.00000025", "time": "0"})
    assert (await _json(r))["data"]["result"] == [0, "-2.5e-07"]
    r = await client.get("/api/v1/query", params={"query": '"hello"', "time": "3"})
    assert (await _json(r))["data"] == {"resultType": "string", "result": [3, "hello"]}
    r = await client.get("/api/v1/query", params={"query": "up[30s]", "time": "30"})
    data = (await _json(r))["data"]
    assert data["resultType"] == "matrix" and data["result"][0]["values"] == [[0, "1"], [15, "1"], [30, "1"]]


async def test_limit_and_format_query(client: Client) -> None:
    r = await client.get("/api/v1/label/__name__/values", params={"limit": "2"})
    assert (await _json(r))["data"] == ["c_total", "up"]
    r = await client.get("/api/v1/series", params={"match[]": "up", "limit": "1"})
    assert len((await _json(r))["data"]) == 1
    r = await client.get("/api/v1/format_query", params={"query": "sum(rate(x[5m]))by(job)"})
    assert (await _json(r))["data"] == "sum by (job) (rate(x[5m]))"
    r = await client.get("/api/v1/format_query", params={"query": "holt_winters(x[5m], 0.5, 0.5)"})
    assert "holt_winters" in (await _json(r))["data"]


async def test_tenant_isolation() -> None:
    async def authenticate(request: web.Request, scope: str) -> Principal:
        assert scope == "read"
        token = request.headers.get("Authorization", "")
        if token == "Bearer red":
            return Principal(("team", "red"))
        if token == "Bearer admin":
            return Principal(None)
        raise AuthError("missing or invalid token", 401)

    c = await _client(authenticate=authenticate)
    red = {"Authorization": "Bearer red"}
    try:
        r = await c.get("/api/v1/query", params={"query": "up", "time": "30"})
        assert r.status == 401 and (await _json(r))["status"] == "error"
        r = await c.get("/api/v1/query", params={"query": "sum(up)", "time": "30"}, headers=red)
        assert (await _json(r))["data"]["result"][0]["value"][1] == "1"
        r = await c.get("/api/v1/query", params={"query": '{__name__=~"up|c_total"}', "time": "30"}, headers=red)
        assert {s["metric"]["team"] for s in (await _json(r))["data"]["result"]} == {"red"}
        r = await c.get("/api/v1/label/team/values", headers=red)
        assert (await _json(r))["data"] == ["red"]
        r = await c.get("/api/v1/labels", params={"match[]": "up"}, headers=red)
        assert "team" in (await _json(r))["data"]
        r = await c.get("/api/v1/series", params={"match[]": "up"}, headers=red)
        assert [s["job"] for s in (await _json(r))["data"]] == ["api"]
        r = await c.get("/api/v1/metadata", headers=red)
        assert set((await _json(r))["data"]) == {"up", "c_total"}
        ctx = c.server.app[CTX]
        metadata_store(ctx.extras, ctx.config.limits).put(None, "weird", "gauge", "only series without a team")
        r = await c.get("/api/v1/metadata", headers=red)
        assert "weird" not in (await _json(r))["data"]
        r = await c.get("/api/v1/metadata", headers={"Authorization": "Bearer admin"})
        assert "weird" in (await _json(r))["data"]
        r = await c.get("/api/v1/label/job/values", headers={"Authorization": "Bearer admin"})
        assert (await _json(r))["data"] == ["api", "db", "x"]
    finally:
        await c.close()
