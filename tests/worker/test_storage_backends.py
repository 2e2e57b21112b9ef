"""The scrape loop on the real stores: samples, report series and bit-exact staleness markers round-trip."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from sotp.model import METRIC_NAME, Labels, Matcher, MatchOp, is_stale
from sotp.storage import Storage, open_storage
from tests.conftest import storage_location
from tests.worker.conftest import Stub
from tests.worker.test_scrape_loop import make_loop


@pytest.fixture(params=["sqlite", "postgres", "timescaledb"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    with storage_location(request.param, tmp_path) as url:
        st = open_storage(url)
        await st.open()
        try:
            yield st
        finally:
            await st.close()


async def test_scrapes_round_trip_with_staleness(stub: Stub, store: Storage) -> None:
    stub.set("/metrics", 'a{x="1"} 1\nb 2\n')
    async with aiohttp.ClientSession() as session:
        loop = make_loop(stub, store, session)
        await loop.scrape_once()
        stub.set("/metrics", 'a{x="1"} 3\n')
        await loop.scrape_once()
    q = store.querier(0, 2**62)
    found = {s.labels: s for s in await q.select([Matcher(METRIC_NAME, MatchOp.RE, "a|b|up")])}
    await q.close()
    inst = stub.address
    a = found[Labels({METRIC_NAME: "a", "x": "1", "job": "j", "instance": inst})]
    b = found[Labels({METRIC_NAME: "b", "job": "j", "instance": inst})]
    up = found[Labels({METRIC_NAME: "up", "job": "j", "instance": inst})]
    assert a.values.tolist() == [1.0, 3.0] and up.values.tolist() == [1.0, 1.0]
    assert b.values[0] == 2.0 and is_stale(float(b.values[1]))  # the marker's exact bits survive the store
    assert b.timestamps[1] == a.timestamps[1] == up.timestamps[1]  # written in the scrape's transaction
