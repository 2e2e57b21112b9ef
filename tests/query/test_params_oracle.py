"""Request parameters and their errors, compared with Debian's Prometheus 2.42 (status and errorType).

Covers what Grafana and hand-written URLs send: fractional and RFC 3339 times, duration steps, the
11,000-point limit (integer division), missing/negative steps, bad selectors in ``match[]``, and the
inputs on which promql-parser panics (``@ 1e20``, ``offset -1e20``).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from query.api import setup
from sotp.config import Config
from sotp.storage.memory import MemoryStorage
from sotp.web import CTX, ServerContext
from tests.query import oracle_support as osup

pytestmark = pytest.mark.integration

CASES: list[tuple[str, dict[str, str]]] = [
    ("/api/v1/query_range", {"query": "1", "start": "0", "end": "11000.9", "step": "1"}),
    ("/api/v1/query_range", {"query": "1", "start": "0", "end": "11001", "step": "1"}),
    ("/api/v1/query_range", {"query": "1", "start": "0", "end": "60", "step": "0.5m"}),
    ("/api/v1/query_range", {"query": "1", "start": "0", "end": "60", "step": "1m30s"}),
    ("/api/v1/query_range", {"query": "1", "start": "0", "end": "60", "step": "1.5"}),
    ("/api/v1/query_range", {"query": "1", "start": "1970-01-01T00:00:00Z", "end": "1970-01-01T00:01:00.5Z",
                             "step": "30"}),
    ("/api/v1/query_range", {"query": "1", "start": "10", "end": "0", "step": "1"}),
    ("/api/v1/query_range", {"query": "1", "start": "0", "end": "10"}),
    ("/api/v1/query_range", {"query": "1", "start": "0", "end": "10", "step": "-1"}),
    ("/api/v1/query_range", {"query": "time()", "start": "0.5", "end": "10.25", "step": "0.75"}),
    ("/api/v1/query", {"query": "1", "time": "1.0005"}),
    ("/api/v1/query", {"query": "1", "time": "-1.5"}),
    ("/api/v1/query", {"query": "time()", "time": "2015-07-01T20:10:51.781Z"}),
    ("/api/v1/query", {"query": "1", "time": "abc"}),
    ("/api/v1/query", {"query": "1", "time": "4", "timeout": "abc"}),
    ("/api/v1/query", {"query": "1", "time": "4", "timeout": "1m"}),
    ("/api/v1/query", {"query": ""}),
    ("/api/v1/query", {"time": "4"}),
    ("/api/v1/query", {"query": "x @ 1e20"}),
    ("/api/v1/query", {"query": "x offset -1e20"}),
    ("/api/v1/series", {"match[]": "up", "start": "x"}),
    ("/api/v1/series", {"match[]": "sum(up)"}),
    ("/api/v1/series", {"match[]": "up[5m]"}),
    ("/api/v1/series", {}),
    ("/api/v1/labels", {"match[]": "up{"}),
    ("/api/v1/labels", {"start": "1", "end": "2"}),
    ("/api/v1/label/__name__/values", {"match[]": '{job=~".*"}'}),
    ("/api/v1/label/0bad/values", {}),
]


async def _sotp() -> list[dict[str, Any]]:
    storage = MemoryStorage()
    ctx = ServerContext(config=Config(), storage=storage)
    app = web.Application()
    app[CTX] = ctx
    setup(app, ctx)
    out = []
    async with TestClient(TestServer(app)) as client:
        for path, params in CASES:
            r = await client.get(path, params=params)
            body = json.loads(await r.text())
            body["_http"] = r.status
            out.append(body)
    return out


@pytest.fixture(scope="module")
def answers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[list[dict[str, Any]], list[dict[str, Any]]]]:
    tmp: Path = tmp_path_factory.mktemp("params")
    proc, url = osup.start_prometheus(tmp)
    try:
        expected = [osup.http_query(url, path, params) for path, params in CASES]
    finally:
        proc.stop()
    yield expected, asyncio.run(_sotp())


@pytest.mark.parametrize("i", range(len(CASES)), ids=[f"{p.rsplit('/', 2)[-1]}:{q}" for p, q in CASES])
def test_same_status(answers: tuple[list[dict[str, Any]], list[dict[str, Any]]], i: int) -> None:
    expected, got = answers
    problem = osup.diff(expected[i], got[i])
    assert problem is None, f"{CASES[i]}: {problem}"
