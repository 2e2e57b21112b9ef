"""``sotp db migrate`` on every persistent backend: creates the schema, says which storage mode it has, is
idempotent, and the store it leaves opens and works."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest

from sotp.model import Labels, Matcher, MatchOp
from sotp.storage import open_storage
from tests.conftest import REPO, sotp_cmd, storage_location

MODE_SHOWN = {"sqlite": "", "postgres": "(native partitions)", "timescaledb": "(TimescaleDB hypertable)"}


@pytest.mark.parametrize("backend", ["sqlite", "postgres", "timescaledb"])
def test_db_migrate_creates_the_store_once(backend: str, tmp_path: Path) -> None:
    with storage_location(backend, tmp_path) as url:
        for _ in range(2):
            done = subprocess.run(sotp_cmd("db", "migrate", "--storage", url), cwd=REPO, capture_output=True,
                                  text=True, timeout=120)
            assert done.returncode == 0, done.stderr
            assert "is up to date" in done.stdout and MODE_SHOWN[backend] in done.stdout, done.stdout

        async def round_trip() -> list[float]:
            store = open_storage(url)
            await store.open()
            try:
                app = store.appender()
                app.append(Labels({"__name__": "m"}), 1_000, 1.5)
                await app.commit()
                got = await store.querier(0, 2_000).select([Matcher("__name__", MatchOp.EQ, "m")])
                return [float(v) for s in got for v in s.values]
            finally:
                await store.close()

        assert asyncio.run(round_trip()) == [1.5]
