"""Hostile input to the query API (issue 17): one regression test per finding, named after it.

Each test failed on the code before its fix: a crash (#1), a request that never finished (#2, pytest's
timeout), an allocation past the limit (#4), a 500 with Python's exception text (#12).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from sotp.config import Config
from tests.conftest import STORAGE_BACKENDS, storage_location
from tests.query.api_support import Client, _client

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


async def _json(resp: Any) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(await resp.text())
    return body


@pytest.fixture
async def client() -> AsyncIterator[Client]:
    c = await _client()
    yield c
    await c.close()


# ---- finding 2: ReDoS (Python's backtracking re) -----------------------------------------------------
@pytest.mark.timeout(60)
async def test_finding_2_label_replace_regex_is_linear_time(client: Client) -> None:
    # 2^40 backtracking steps with Python's re: the request never finished (and blocked the event loop)
    q = 'label_replace(label_replace(vector(1),"src","' + "a" * 40 + '","",""),"dst","$1","src","(a+)+b")'
    r = await client.post("/api/v1/query", data={"query": q, "time": "60"}, headers=FORM)
    body = await _json(r)
    assert r.status == 200, body
    assert body["data"]["result"] == [{"metric": {"src": "a" * 40}, "value": [60, "1"]}]


@pytest.mark.timeout(60)
async def test_finding_2_series_match_regex_is_linear_time(client: Client) -> None:
    # doubles per character with backtracking; the metric names here are up, c_total, weird
    rx = "(" + "[a-z_]*" * 30 + ")+x"
    r = await client.post("/api/v1/series", data={"match[]": f'{{__name__=~"{rx}"}}', "start": "0", "end": "200"},
                          headers=FORM)
    body = await _json(r)
    assert r.status == 200 and body["data"] == [], body
    r = await client.get("/api/v1/query", params={"query": '{__name__=~"(u+)+p", job="api"}', "time": "60"})
    assert [x["metric"]["__name__"] for x in (await _json(r))["data"]["result"]] == ["up"]


async def test_finding_2_case_insensitive_flag_inside_a_group(client: Client) -> None:
    # Python's re refused a global flag that is not at the start: 400 "global flags not at the start"
    r = await client.get("/api/v1/query", params={"query": 'up{job=~"(?i)API"}', "time": "60"})
    body = await _json(r)
    assert r.status == 200 and [x["metric"]["job"] for x in body["data"]["result"]] == ["api"], body


async def test_finding_2_invalid_regex_is_bad_data(client: Client) -> None:
    r = await client.get("/api/v1/query", params={"query": 'up{job=~"(?<=a)b"}', "time": "60"})
    body = await _json(r)
    assert r.status == 400 and body["errorType"] == "bad_data" and "regex" in body["error"], body
    r = await client.get("/api/v1/query", params={"query": 'label_replace(up, "a", "b", "job", "(")', "time": "60"})
    body = await _json(r)
    assert r.status == 422 and "invalid regular expression in label_replace()" in body["error"], body


def test_config_default_limits_are_documented() -> None:
    """docs/security.md lists every query limit with its default."""
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "security.md").read_text()
    cfg = Config().server
    assert "## Query limits" in doc
    assert f"{cfg.query_max_samples:,}" in doc.replace("_", ",") or str(cfg.query_max_samples) in doc


# ---- finding 1: deep nesting crashed the Rust parser (SIGSEGV) ------------------------------------------
DEEP = ["(" * 20_000 + "1" + ")" * 20_000, "1" + "+1" * 30_000, "sum(" * 5_000 + "up" + ")" * 5_000,
        "-" * 300 + "(" * 200 + "1" + ")" * 200]


@pytest.mark.parametrize("query", DEEP, ids=["parens", "binary-chain", "aggregations", "unary-and-parens"])
@pytest.mark.parametrize("path", ["/api/v1/query", "/api/v1/query_range", "/api/v1/format_query",
                                  "/api/v1/query_exemplars"])
async def test_finding_1_deep_nesting_is_refused_before_parsing(client: Client, path: str, query: str) -> None:
    data = {"query": query, "time": "60", "start": "0", "end": "60", "step": "15"}
    r = await client.post(path, data=data, headers=FORM)
    body = await _json(r)
    assert r.status == 400 and body["errorType"] == "bad_data", body
    assert body["error"].startswith('invalid parameter "query": ') and "server.query_max_depth" in body["error"]


async def test_finding_1_series_match_nesting_is_refused(client: Client) -> None:
    r = await client.post("/api/v1/series", data={"match[]": "(" * 20_000 + "up" + ")" * 20_000}, headers=FORM)
    body = await _json(r)
    assert r.status == 400 and "server.query_max_depth" in body["error"], body


async def test_finding_1_query_length_is_limited() -> None:
    config = Config()
    config.server.query_max_length = 1000
    c = await _client(config)
    try:
        q = 'up{job="' + "x" * 1000 + '"}'
        r = await c.post("/api/v1/query", data={"query": q, "time": "60"}, headers=FORM)
        body = await _json(r)
        assert r.status == 400 and "server.query_max_length" in body["error"] and "1010 bytes" in body["error"]
    finally:
        await c.close()


@pytest.mark.parametrize(("query", "want"), [
    ("1" + "+1" * 127, "128"),  # 127 operators: depth 127 + 0 brackets
    ("(" * 127 + "1" + ")" * 127, "1"),
    ("abs(" * 60 + "-(" * 30 + "vector(2)" + ")" * 90, "2"),  # 90 brackets + 30 operators
    ("max_over_time((" * 40 + "vector(3)" + ")[2m:1m])" * 40, "3"),
])
async def test_finding_1_queries_within_the_depth_limit_evaluate(client: Client, query: str, want: str) -> None:
    r = await client.post("/api/v1/query", data={"query": query, "time": "60"}, headers=FORM)
    body = await _json(r)
    assert r.status == 200, body
    result = body["data"]["result"]
    assert (result[1] if body["data"]["resultType"] == "scalar" else result[0]["value"][1]) == want


# ---- finding 4: query_max_samples bypassed (subquery steps, vector(), count_values) ----------------------
@pytest.fixture
async def small_limit() -> AsyncIterator[Client]:
    config = Config()
    config.server.query_max_samples = 1_000_000
    c = await _client(config)
    yield c
    await c.close()


@pytest.mark.parametrize("query", ["count_over_time(vector(1)[2h:1ms])", "vector(1)[100y:1ms]",
                                   "max_over_time(sum_over_time(up[5m:1ms])[1h:1ms])"])
async def test_finding_4_subquery_steps_are_counted_before_allocating(small_limit: Client, query: str) -> None:
    r = await small_limit.get("/api/v1/query", params={"query": query, "time": "7200"})
    body = await _json(r)
    assert r.status == 422 and body["errorType"] == "execution", body
    assert "would load too many samples" in body["error"], body


async def test_finding_4_count_values_groups_are_counted(small_limit: Client) -> None:
    # 3,001 distinct values x 3,001 steps = 9M cells
    r = await small_limit.get("/api/v1/query_range", params={
        "query": 'count_values("v", vector(time()))', "start": "0", "end": "3000", "step": "1"})
    body = await _json(r)
    assert r.status == 422 and "would load too many samples" in body["error"], body
    r = await small_limit.get("/api/v1/query_range", params={
        "query": 'count_values("v", vector(time()))', "start": "0", "end": "300", "step": "1"})
    assert r.status == 200  # 301 x 301 fits


@pytest.mark.parametrize("backend", STORAGE_BACKENDS)
async def test_finding_4_select_stops_at_the_budget(backend: str, tmp_path: Any) -> None:
    """The Querier contract: a select given ``max_samples`` raises TooManySamples once past it."""
    with storage_location(backend, tmp_path) as url:
        await _select_within_budget(url)


async def _select_within_budget(url: str) -> None:
    from sotp.errors import TooManySamples
    from sotp.model import Labels, Matcher, MatchOp
    from sotp.storage import SelectHints, open_storage

    store = open_storage(url)
    await store.open()
    try:
        app = store.appender()
        for i in range(4):
            app.append_series(Labels({"__name__": "m", "i": str(i)}), list(range(0, 100_000, 1000)), [1.0] * 100)
        await app.commit()
        q = store.querier(0, 100_000)
        try:
            sel = [Matcher("__name__", MatchOp.EQ, "m")]
            assert sum(len(s.timestamps) for s in await q.select(sel, SelectHints(max_samples=400))) == 400
            with pytest.raises(TooManySamples):
                await q.select(sel, SelectHints(max_samples=399))
        finally:
            await q.close()
    finally:
        await store.close()


# ---- finding 12: internals in errors ---------------------------------------------------------------------
@pytest.mark.parametrize(("path", "params", "name"), [
    ("/api/v1/query", {"query": "1", "time": "1e300"}, "time"),
    ("/api/v1/query", {"query": "1", "time": "-1e300"}, "time"),
    ("/api/v1/query_range", {"query": "1", "start": "1e300", "end": "1e300", "step": "1"}, "start"),
    ("/api/v1/query_range", {"query": "1", "start": "0", "end": "1e300", "step": "1"}, "end"),
    ("/api/v1/query_range", {"query": "1", "start": "0", "end": "1", "step": "99999999999999y"}, "step"),
    ("/api/v1/series", {"match[]": "up", "start": "1e300"}, "start"),
    ("/api/v1/labels", {"end": "-9e307"}, "end"),
    ("/api/v1/query", {"query": "1", "time": "1", "timeout": "9999999999999y"}, "timeout"),
])
async def test_finding_12_out_of_range_parameters_are_bad_data(client: Client, path: str, params: dict[str, str],
                                                                name: str) -> None:
    r = await client.get(path, params=params)
    body = await _json(r)
    assert r.status == 400 and body["errorType"] == "bad_data", body
    assert body["error"].startswith(f'invalid parameter "{name}": cannot parse'), body


async def test_finding_12_storage_errors_do_not_reach_the_client(client: Client) -> None:
    """A storage failure is logged with its details; the client sees a 500 without them.

    The failure is injected (a real database outage is covered by the storage tests)."""
    from sotp.errors import StorageError
    from sotp.web import CTX

    storage = client.server.app[CTX].storage

    def broken(mint: int, maxt: int) -> Any:
        raise StorageError("cannot open /var/lib/secret/sotp.db as user postgres@db.internal:5432")

    storage.querier = broken  # type: ignore[method-assign]
    for path, params in [("/api/v1/query", {"query": "up", "time": "60"}), ("/api/v1/series", {"match[]": "up"}),
                         ("/api/v1/labels", {})]:
        r = await client.get(path, params=params)
        body = await _json(r)
        assert r.status == 500 and body["errorType"] == "internal", body
        assert "secret" not in body["error"] and "postgres" not in body["error"], body


async def test_finding_12_unexpected_exceptions_do_not_echo(client: Client) -> None:
    from sotp.web import CTX

    storage = client.server.app[CTX].storage

    def broken(mint: int, maxt: int) -> Any:
        raise OverflowError("Python int too large to convert to C long")

    storage.querier = broken  # type: ignore[method-assign]
    r = await client.get("/api/v1/query", params={"query": "up", "time": "60"})
    body = await _json(r)
    assert r.status == 500 and "Python int" not in body["error"], body
