"""The write contract when PostgreSQL goes away: 503 + Retry-After (so senders retry), /-/ready fails,
nothing is half-written, and the same server recovers on its own when the database comes back."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from aiohttp.test_utils import TestClient, TestServer

from sotp.cli.serve import build_app
from sotp.codec.remote_write import encode_write_request
from sotp.config import Config
from sotp.model import Labels
from tests.conftest import free_port, require_tcp
from tests.sotp.storage.conftest import drop_pg_schema
from tests.sotp.storage.test_postgres import _Proxy  # the relay the storage tests cut and restore

pytestmark = pytest.mark.integration
HEADERS = {"Content-Type": "application/x-protobuf", "Content-Encoding": "snappy"}


async def test_database_down_answers_503_then_recovers() -> None:
    require_tcp("127.0.0.1", 5432, "PostgreSQL")
    schema = f"sotp_down_{uuid.uuid4().hex[:10]}"
    proxy = _Proxy(free_port())
    await proxy.start()
    config = Config()
    config.server.storage = f"postgresql://postgres@127.0.0.1:{proxy.port}/test?schema={schema}&pool_timeout=1s"
    now = int(time.time() * 1000)
    series = Labels({"__name__": "down_test", "job": "a"})
    try:
        async with TestClient(TestServer(build_app(config))) as client:
            first = encode_write_request([(series, [(now - 2000, 1.0)])])
            assert (await client.post("/api/v1/write", data=first, headers=HEADERS)).status == 204

            await proxy.cut()
            second = encode_write_request([(series, [(now - 1000, 2.0)])])
            r = await client.post("/api/v1/write", data=second, headers=HEADERS)
            assert r.status == 503, await r.text()
            assert r.headers["Retry-After"].isdigit()
            assert (await client.get("/-/ready")).status == 503
            assert (await client.get("/-/healthy")).status == 200

            await proxy.start()
            deadline = time.monotonic() + 30
            while True:  # the sender retries the same request until it is accepted
                r = await client.post("/api/v1/write", data=second, headers=HEADERS)
                if r.status == 204 or time.monotonic() > deadline:
                    break
                assert r.status == 503
                await asyncio.sleep(0.5)
            assert r.status == 204
            assert (await client.get("/-/ready")).status == 200
            q = await client.get("/api/v1/query", params={"query": "count_over_time(down_test[1m])",
                                                          "time": str(now / 1000)})
            result = (await q.json())["data"]["result"]
            assert [x["value"][1] for x in result] == ["2"]  # both samples, once each
    finally:
        await proxy.cut()
        await drop_pg_schema(schema)
