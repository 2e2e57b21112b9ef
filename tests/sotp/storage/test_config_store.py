"""The configuration-backup store on PostgreSQL (issue 17, from reading: a connection per API call)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import psycopg
import pytest

from sotp.storage import open_storage
from sotp.storage.configs import DeviceInfo, config_store_for
from tests.conftest import storage_location


@pytest.mark.parametrize("backend", ["postgres", "timescaledb"])
async def test_issue17_postgres_config_store_uses_the_storage_pool(backend: str, monkeypatch: pytest.MonkeyPatch,
                                                                    tmp_path: Path) -> None:
    """A spy on psycopg's connect counts new connections: the store used to open one per call."""
    with storage_location(backend, tmp_path, "pool_max=2") as url:
        storage = open_storage(url)
        await storage.open()
        store = config_store_for(storage)
        await store.open()
        connects = 0
        real = psycopg.AsyncConnection.connect

        async def counting(*args: object, **kwargs: object) -> psycopg.AsyncConnection:  # type: ignore[type-arg]
            nonlocal connects
            connects += 1
            return await real(*args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(psycopg.AsyncConnection, "connect", counting)
        try:
            info = DeviceInfo({"team": "a"}, "cisco_ios")
            await asyncio.gather(*(store.save(f"d{i}", f"hostname d{i}\n", i, f"h{i}", info) for i in range(20)))
            for i in range(20):
                assert (await store.get(f"d{i}", 1)) is not None
            assert len(await store.latest()) == 20
            assert (await store.infos())["d7"] == info
            assert connects <= 2, f"{connects} new connections for 42 calls (the pool holds at most 2)"
        finally:
            monkeypatch.undo()
            await store.close()
            await storage.close()
