"""Storage factories shared by the conformance suite: every backend must behave the same."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from sotp.storage import Storage, open_storage
from tests.conftest import STORAGE_BACKENDS, drop_schema, require_postgres, storage_location, with_schema

BACKENDS = STORAGE_BACKENDS

StorageFactory = Callable[[], Awaitable[Storage]]


def pg_url_for(schema: str) -> str:
    """The plain PostgreSQL test server's storage URL for ``schema`` (see also ``storage_location``)."""
    return with_schema(require_postgres(), schema)


async def drop_pg_schema(schema: str) -> None:
    """Drop a schema of the plain PostgreSQL test server."""
    drop_schema(require_postgres(), schema)


@pytest.fixture(params=BACKENDS)
async def make_storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StorageFactory]:
    """``await make_storage()`` opens a store on the same backend/location (call twice to reopen)."""
    opened: list[Storage] = []
    with storage_location(request.param, tmp_path) as url:

        async def factory() -> Storage:
            if request.param == "memory" and opened:
                return opened[0]  # one memory store: a "reopen" sees the same data
            s = open_storage(url)
            await s.open()
            opened.append(s)
            return s

        try:
            yield factory
        finally:
            for s in {id(s): s for s in opened}.values():
                await s.close()
