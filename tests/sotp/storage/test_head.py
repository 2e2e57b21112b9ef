"""The live-stream path of the persistent backends: write-ahead log, in-memory head, flush into blocks.

Every test runs on SQLite, PostgreSQL and TimescaleDB (memory keeps plain lists: it has no head). Data is written the
way real senders deliver it — about one sample per series per request — and read back through the
Querier, whose answer must not change when the head is flushed, compacted, replayed or shared.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from sotp.errors import SampleRejected
from sotp.model import STALE_NAN, Labels, Matcher, MatchOp
from sotp.storage import Storage, open_storage, wal
from tests.conftest import storage_location

Opener = Callable[[str], Awaitable[Storage]]
T0 = 1_700_000_000_000  # 2023-11-14, ms
STEP = 15_000
NAME = Matcher("__name__", MatchOp.EQ, "live")


def series(i: int) -> Labels:
    return Labels({"__name__": "live", "instance": f"h{i:03d}", "job": "j"})


@pytest.fixture(params=["sqlite", "postgres", "timescaledb"])
async def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Opener]:
    """``await open_store(params)`` opens a store at one location (every call: another process's view)."""
    opened: list[Storage] = []
    with storage_location(request.param, tmp_path) as base:

        async def _open(params: str = "") -> Storage:
            sep = "&" if "?" in base else "?"
            store = open_storage(base + (sep + params if params else ""))
            await store.open()
            opened.append(store)
            return store

        try:
            yield _open
        finally:
            for s in opened:
                await s.close()


async def send_rounds(store: Storage, n_series: int, rounds: range, value: Callable[[int, int], float]) -> None:
    """One request per scrape round, one sample per series (the live shape)."""
    for k in rounds:
        app = store.appender()
        for i in range(n_series):
            app.append(series(i), T0 + k * STEP, value(i, k))
        await app.commit()


def expected(n_series: int, rounds: range, value: Callable[[int, int], float]) -> dict[str, list[tuple[int, int]]]:
    """What a read must return: per instance, (time, value bits) of every round, computed from the inputs."""
    bits = lambda v: struct.unpack("<Q", struct.pack("<d", v))[0]  # noqa: E731
    return {f"h{i:03d}": [(T0 + k * STEP, bits(value(i, k))) for k in rounds] for i in range(n_series)}


async def read(store: Storage, lo: int = T0 - 1, hi: int = T0 + 10**9) -> dict[str, list[tuple[int, int]]]:
    got = await store.querier(lo, hi).select([NAME])
    return {s.labels["instance"]: list(zip(s.timestamps.tolist(), s.values.view("u8").tolist(), strict=True))
            for s in got}


def val(i: int, k: int) -> float:
    return STALE_NAN if (i + k) % 11 == 0 else float(i * 1000 + k) + 0.25


async def test_reads_are_identical_before_and_after_flush_and_compaction(open_store: Opener) -> None:
    store = await open_store("")
    rounds = range(40)  # 10 minutes at 15 s
    await send_rounds(store, 30, rounds, val)
    want = expected(30, rounds, val)
    assert await read(store) == want
    flushed = await store.flush(before=T0 + 20 * STEP)  # type: ignore[attr-defined]
    assert flushed == 30 * 20  # the older half became blocks
    assert await read(store) == want
    assert await read(store, T0 + 15 * STEP, T0 + 25 * STEP) == {
        k: [p for p in v if T0 + 15 * STEP <= p[0] <= T0 + 25 * STEP] for k, v in want.items()
    }
    await store.compact(T0 + 10**9)  # type: ignore[attr-defined]
    assert await read(store) == want


async def test_a_reopened_store_replays_the_log(open_store: Opener) -> None:
    store = await open_store("")
    await send_rounds(store, 5, range(10), val)
    await store.flush(before=T0 + 4 * STEP)  # type: ignore[attr-defined]
    await send_rounds(store, 5, range(10, 12), val)
    await store.close()
    again = await open_store("")
    assert await read(again) == expected(5, range(12), val)
    # The newest samples are known after the replay: a repeat is a no-op, an older new value a conflict.
    app = again.appender()
    app.append(series(0), T0 + 11 * STEP, val(0, 11))
    assert await app.commit() == 0
    app = again.appender()
    app.append(series(0), T0 + 11 * STEP, -1.0)
    with pytest.raises(SampleRejected, match="conflicting"):
        await app.commit()


async def test_retry_of_a_flushed_request_is_a_no_op_and_a_changed_one_is_refused(open_store: Opener) -> None:
    store = await open_store("")
    batch = [(series(i), [T0 + k * STEP for k in range(10)], [val(i, k) for k in range(10)]) for i in range(20)]

    async def send(rows: list[tuple[Labels, list[int], list[float]]]) -> int:
        app = store.appender()
        for lb, ts, vs in rows:
            app.append_series(lb, ts, vs)
        return await app.commit()

    assert await send(batch) == 200
    await store.flush(before=T0 + 5 * STEP)  # type: ignore[attr-defined]  # half in blocks, half in the head
    assert await send(batch) == 0
    changed = [(lb, ts, [*vs[:3], 42.0, *vs[4:]]) for lb, ts, vs in batch]
    with pytest.raises(SampleRejected, match="conflicting sample"):
        await send(changed)
    gap = [(batch[0][0], [T0 + 2 * STEP + 1], [1.0])]  # older than the newest, never stored
    with pytest.raises(SampleRejected, match="out-of-order"):
        await send(gap)
    assert await read(store) == expected(20, range(10), val)


async def test_sample_older_than_the_head_boundary_goes_to_blocks(open_store: Opener) -> None:
    """A sender catching up (an agent replaying its disk buffer) writes in order but behind the others."""
    store = await open_store("")
    await send_rounds(store, 3, range(100, 104), val)  # only series 0..2 are live
    await store.flush(before=T0 + 102 * STEP)  # type: ignore[attr-defined]
    laggard = Labels({"__name__": "live", "instance": "h999", "job": "j"})
    app = store.appender()
    app.append_series(laggard, [T0 + k * STEP for k in range(50, 60)], [float(k) for k in range(50, 60)])
    assert await app.commit() == 10
    app = store.appender()
    app.append(laggard, T0 + 60 * STEP, 60.0)
    assert await app.commit() == 1
    got = await read(store)
    assert [t for t, _ in got["h999"]] == [T0 + k * STEP for k in range(50, 61)]
    assert got["h000"] == expected(1, range(100, 104), val)["h000"]


async def test_two_processes_on_one_store_see_each_others_commits_at_once(open_store: Opener) -> None:
    a, b = await open_store(""), await open_store("")
    await send_rounds(a, 10, range(3), val)
    assert await read(b) == expected(10, range(3), val)  # b's head follows a's log
    # A retry of a's request through b is recognised as already stored.
    app = b.appender()
    for i in range(10):
        app.append_series(series(i), [T0 + k * STEP for k in range(3)], [val(i, k) for k in range(3)])
    assert await app.commit() == 0
    await send_rounds(b, 10, range(3, 5), val)
    await a.flush(before=T0 + 4 * STEP)  # type: ignore[attr-defined]  # a flushes; b follows the boundary
    assert await read(a) == await read(b) == expected(10, range(5), val)
    names = await b.querier(T0, T0 + 10 * STEP).label_values("instance", [NAME])
    assert names == [f"h{i:03d}" for i in range(10)]


async def test_head_over_its_sample_bound_is_flushed_by_the_policy(open_store: Opener) -> None:
    store = await open_store("head_max_samples=100&head_grace=30s")
    await send_rounds(store, 10, range(20), val)  # 200 samples > 100
    moved = await store.flush(now_ms=T0 + 10**9)  # type: ignore[attr-defined]
    assert 0 < moved < 200  # up to the grace behind the newest sample
    assert store.head.span()[2] == 200 - moved  # type: ignore[attr-defined]
    assert await read(store) == expected(10, range(20), val)


async def test_concurrent_live_senders_each_request_atomic(open_store: Opener) -> None:
    store = await open_store("")

    async def sender(shard: int) -> None:
        for k in range(10):
            app = store.appender()
            for i in range(shard * 25, shard * 25 + 25):
                app.append(series(i), T0 + k * STEP, val(i, k))
            await app.commit()

    await asyncio.gather(*(sender(s) for s in range(4)))
    assert await read(store) == expected(100, range(10), val)


def test_unknown_sqlite_url_parameter_is_refused(tmp_path: Path) -> None:
    from sotp.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown parameter 'head_windw'"):
        open_storage(f"sqlite:///{tmp_path}/x.db?head_windw=5m")
    with pytest.raises(ConfigError, match="head_window"):
        open_storage(f"sqlite:///{tmp_path}/x.db?head_window=-5m")


def test_live_shape_rows_per_commit_do_not_grow_with_series(tmp_path: Path) -> None:
    """One log row per request whatever its number of series (the point of the log)."""
    import sqlite3

    async def run() -> None:
        store = open_storage(f"sqlite:///{tmp_path}/rows.db")
        await store.open()
        try:
            await send_rounds(store, 500, range(3), val)
        finally:
            await store.close()

    asyncio.run(run())
    conn = sqlite3.connect(tmp_path / "rows.db")
    assert conn.execute("SELECT count(*), sum(n) FROM sotp_wal").fetchone() == (3, 1500)
    assert conn.execute("SELECT count(*) FROM sotp_samples").fetchone() == (0,)
    sid, ts, _ = wal.decode([conn.execute("SELECT sids, counts, ts, vals FROM sotp_wal LIMIT 1").fetchone()])
    assert sorted(set(sid.tolist())) == sorted(sid.tolist()) and len(sid) == 500  # each series once
    assert set(ts.tolist()) == {T0}
