"""Storage factories shared by the conformance suite: every backend must behave the same."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from sotp.storage import Storage, open_storage
from tests.conftest import PG_DSN, require_tcp

BACKENDS = ["memory", "sqlite", "postgres"]


def pg_url_for(schema: str) -> str:
    sep = "&" if "?" in PG_DSN else "?"
    return f"{PG_DSN}{sep}schema={schema}"


async def drop_pg_schema(schema: str) -> None:
    import psycopg

    async with await psycopg.AsyncConnection.connect(PG_DSN, autocommit=True) as conn:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def storage_url(backend: str, tmp_path: Path) -> str:
    if backend == "memory":
        return "memory://"
    if backend == "sqlite":
        return f"sqlite:///{tmp_path}/sotp.db"
    require_tcp("127.0.0.1", 5432, "PostgreSQL")
    try:
        import sotp.storage.postgres  # noqa: F401
    except ImportError as err:
        pytest.fail(f"PostgreSQL backend not importable: {err}")
    return pg_url_for(f"sotp_test_{uuid.uuid4().hex[:12]}")


StorageFactory = Callable[[], Awaitable[Storage]]


@pytest.fixture(params=BACKENDS)
async def make_storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StorageFactory]:
    """``await make_storage()`` opens a store on the same backend/location (call twice to reopen)."""
    url = storage_url(request.param, tmp_path)
    opened: list[Storage] = []
    shared: list[Storage] = []

    async def factory() -> Storage:
        if request.param == "memory":
            if not shared:
                shared.append(open_storage(url))
                await shared[0].open()
            return shared[0]
        s = open_storage(url)
        await s.open()
        opened.append(s)
        return s

    yield factory
    for s in opened:
        await s.close()
    if request.param == "postgres":
        await drop_pg_schema(url.rsplit("schema=", 1)[1])
