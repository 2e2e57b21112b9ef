"""PostgreSQL-specific behaviour on the real server: partitions, retention, compaction, concurrency,
binary round trips, migrations and failure handling. (The shared contract is in test_conformance.py.)"""

from __future__ import annotations

import asyncio
import logging
import struct
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import psycopg
import pytest

from sotp.errors import SampleRejected, StorageUnavailable
from sotp.model import STALE_NAN, STALE_NAN_BITS, Labels, Matcher, MatchOp
from sotp.storage.pg.schema import partition_name
from tests.conftest import PG_DSN, free_port, require_tcp

pytestmark = pytest.mark.integration

DAY = 86_400_000
HOUR = 3_600_000
D0 = 1_577_836_800_000  # 2020-01-01T00:00:00Z
A = Labels({"__name__": "m", "i": "a"})
B = Labels({"__name__": "m", "i": "b"})


def url(schema: str, extra: str = "") -> str:
    sep = "&" if "?" in PG_DSN else "?"
    return f"{PG_DSN}{sep}schema={schema}{extra}"


async def sql(query: str, *params: object) -> list[tuple[object, ...]]:
    async with await psycopg.AsyncConnection.connect(PG_DSN, autocommit=True) as conn:
        cur = await conn.execute(query, params or None)  # type: ignore[arg-type]
        return await cur.fetchall() if cur.description else []


Opener = Callable[..., Awaitable["PostgresStorage"]]  # type: ignore[name-defined]  # noqa: F821


@pytest.fixture
async def schema() -> AsyncIterator[str]:
    require_tcp("127.0.0.1", 5432, "PostgreSQL")
    name = f"sotp_pgtest_{uuid.uuid4().hex[:10]}"
    yield name
    await sql(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@pytest.fixture
async def open_pg(schema: str) -> AsyncIterator[Opener]:
    from sotp.storage.postgres import PostgresStorage

    opened: list[PostgresStorage] = []

    async def _open(extra: str = "") -> PostgresStorage:
        store = PostgresStorage(url(schema, extra))
        await store.open()
        opened.append(store)
        return store

    yield _open
    for s in opened:
        await s.close()


async def write(store, labels: Labels, ts: list[int], vs: list[float]) -> int:  # type: ignore[no-untyped-def]
    app = store.appender()
    app.append_series(labels, ts, vs)
    return int(await app.commit())


async def flush_all(store) -> None:  # type: ignore[no-untyped-def]
    """Turn the whole head into block rows (these tests look at the rows themselves)."""
    await store.flush(before=store.head.span()[1] + 1)


async def partitions(schema: str) -> set[str]:
    rows = await sql(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "JOIN pg_class p ON p.oid = i.inhparent JOIN pg_namespace n ON n.oid = p.relnamespace "
        "WHERE n.nspname = %s AND p.relname = 'sotp_samples'",
        schema,
    )
    return {str(r[0]) for r in rows}


async def test_open_logs_mode_and_creates_partitions_ahead(open_pg, schema, caplog) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.INFO, logger="sotp.storage.postgres")
    await open_pg("&partitions_ahead=3")
    assert "native partition mode" in caplog.text
    today = int(time.time() * 1000) // DAY * DAY
    expected = {partition_name(today + k * DAY, DAY) for k in range(-1, 4)}
    assert expected <= await partitions(schema)
    assert (await sql(f'SELECT value FROM "{schema}".sotp_meta WHERE key = %s', "mode")) == [("partitions",)]


async def test_old_block_goes_to_its_own_partition_created_on_demand(open_pg, schema) -> None:  # type: ignore[no-untyped-def]
    store = await open_pg()
    assert await write(store, A, [D0 + 1000, D0 + 2000], [1.0, 2.0]) == 2
    await flush_all(store)
    rows = await sql(f'SELECT tableoid::regclass::text, cardinality(ts) FROM "{schema}".sotp_samples')
    assert rows == [(f"{schema}.sotp_samples_p20200101", 2)]


async def test_block_rows_never_span_two_block_windows(open_pg, schema) -> None:  # type: ignore[no-untyped-def]
    store = await open_pg("&block=1h&partition=1d")
    ts = [D0 + 10 * 60_000 * k for k in range(13)]  # 0:00 .. 2:00 every 10 min: 3 windows
    assert await write(store, A, ts, [float(k) for k in range(13)]) == 13
    await flush_all(store)
    rows = await sql(f'SELECT ts FROM "{schema}".sotp_samples ORDER BY t_min')
    assert [len(r[0]) for r in rows] == [6, 6, 1]  # type: ignore[arg-type]
    got = await store.querier(D0, D0 + DAY).select([Matcher("i", MatchOp.EQ, "a")])
    assert got[0].timestamps.tolist() == ts


async def test_retention_drops_whole_partitions_and_trims_the_boundary(open_pg, schema) -> None:  # type: ignore[no-untyped-def]
    store = await open_pg("&block=1h")
    for day in range(3):
        await write(store, A, [D0 + day * DAY + 1000, D0 + day * DAY + 5 * HOUR], [float(day), float(day) + 0.5])
    await flush_all(store)
    names = [partition_name(D0 + d * DAY, DAY) for d in range(3)]
    assert set(names) <= await partitions(schema)
    removed = await store.delete_before(D0 + 2 * DAY + 2 * HOUR)
    left = await partitions(schema)
    assert names[0] not in left and names[1] not in left and names[2] in left
    assert removed == 5  # two partitions of two blocks each, plus the 00:00 block of day 3
    got = await store.querier(0, D0 + 10 * DAY).select([Matcher("i", MatchOp.EQ, "a")])
    assert got[0].timestamps.tolist() == [D0 + 2 * DAY + 5 * HOUR]


async def test_compaction_merges_closed_windows_once_and_keeps_bits(open_pg, schema) -> None:  # type: ignore[no-untyped-def]
    store = await open_pg("&block=1h")
    await store.flush(before=D0 + HOUR)  # samples of that hour go straight to block rows: one per write
    values = [STALE_NAN if k == 7 else float(k) for k in range(20)]
    for k in range(20):
        await write(store, A, [D0 + k * 60_000], [values[k]])
        await write(store, B, [D0 + k * 60_000], [float(-k)])
    now = int(time.time() * 1000)
    await write(store, A, [now - 1000], [99.0])  # in the open window: must stay as it is
    await flush_all(store)
    before = await sql(f'SELECT count(*) FROM "{schema}".sotp_samples')
    assert before == [(41,)]
    removed = await store.compact(now)
    assert removed == 38
    assert await store.compact(now) == 0  # idempotent
    rows = await sql(f'SELECT series_id, cardinality(ts) FROM "{schema}".sotp_samples ORDER BY t_min, series_id')
    assert sorted(r[1] for r in rows) == [1, 20, 20]  # type: ignore[type-var]
    got = await store.querier(D0, D0 + HOUR).select([Matcher("i", MatchOp.EQ, "a")])
    assert got[0].timestamps.tolist() == [D0 + k * 60_000 for k in range(20)]
    assert got[0].values.view("u8").tolist() == [struct.unpack("<Q", struct.pack("<d", v))[0] for v in values]


async def test_stale_nan_bits_stored_exactly(open_pg, schema) -> None:  # type: ignore[no-untyped-def]
    store = await open_pg()
    await write(store, A, [D0, D0 + 1], [STALE_NAN, float("nan")])
    await flush_all(store)
    rows = await sql(f'SELECT float8send(vals[1]), float8send(vals[2]) FROM "{schema}".sotp_samples')
    stale, nan = (int.from_bytes(b, "big") for b in rows[0])  # type: ignore[arg-type]
    assert stale == STALE_NAN_BITS and nan != STALE_NAN_BITS
    flat = await sql(f'SELECT count(*) FROM "{schema}".sotp_samples_flat WHERE series_id IS NOT NULL')
    assert flat == [(2,)]


async def test_rejected_batch_writes_no_sample(open_pg, schema) -> None:  # type: ignore[no-untyped-def]
    store = await open_pg()
    await write(store, A, [D0 + 1000, D0 + 2000], [1.0, 2.0])
    app = store.appender()
    app.append_series(B, [D0 + 5000], [1.0])  # new series, valid on its own
    app.append_series(A, [D0 + 1500], [1.0])  # out of order: the whole batch goes
    with pytest.raises(SampleRejected, match="out-of-order"):
        await app.commit()
    await flush_all(store)
    assert await sql(f'SELECT count(*), sum(cardinality(ts)) FROM "{schema}".sotp_samples') == [(1, 2)]


async def test_two_processes_share_a_schema(open_pg, schema) -> None:  # type: ignore[no-untyped-def]
    first, second = await open_pg(), await open_pg()  # separate caches, as two receiver processes

    async def writer(store, name: str) -> None:  # type: ignore[no-untyped-def]
        for k in range(10):
            app = store.appender()
            for i in range(50):  # the same 50 series from both: concurrent creation of the same rows
                app.append_series(Labels({"__name__": "shared", "i": str(i), "w": name}), [D0 + k], [float(k)])
                # The same samples from both: each is new or an exact duplicate, whatever the interleaving.
                app.append_series(Labels({"__name__": "common", "i": str(i)}), [D0 + 1000 * k], [1.0])
            await app.commit()

    await asyncio.gather(writer(first, "x"), writer(second, "y"))
    assert await sql(f'SELECT count(*) FROM "{schema}".sotp_series') == [(150,)]
    got = await second.querier(0, D0 + DAY).select([Matcher("__name__", MatchOp.EQ, "shared")])
    assert len(got) == 100 and all(len(s.timestamps) == 10 for s in got)
    common = await first.querier(0, D0 + DAY).select([Matcher("__name__", MatchOp.EQ, "common")])
    assert len(common) == 50 and all(s.timestamps.tolist() == [D0 + 1000 * k for k in range(10)] for s in common)


async def test_a_retry_through_another_process_reads_once(open_pg) -> None:  # type: ignore[no-untyped-def]
    first, second = await open_pg(), await open_pg()
    await write(first, A, [D0, D0 + 1000], [1.0, 2.0])
    await second.querier(0, 1).select([])  # nothing cached about A's newest sample yet in `second`
    await write(second, A, [D0 + 1000, D0 + 2000], [2.0, 3.0])
    await write(first, A, [D0 + 2000], [3.0])  # `first` still believes 1000 is newest: accepted again
    got = await first.querier(0, D0 + DAY).select([Matcher("i", MatchOp.EQ, "a")])
    assert got[0].timestamps.tolist() == [D0, D0 + 1000, D0 + 2000]


async def test_migrate_is_versioned_and_idempotent(schema) -> None:  # type: ignore[no-untyped-def]
    from sotp.storage.pg.schema import MIGRATIONS
    from sotp.storage.postgres import migrate

    versions = [m.version for m in MIGRATIONS]
    results = await asyncio.gather(migrate(url(schema)), migrate(url(schema)))
    assert sorted(r[1] for r in results) == [[], versions]
    assert {r[0] for r in results} == {"partitions"}
    assert await migrate(url(schema)) == ("partitions", [])
    assert [r[0] for r in await sql(f'SELECT version FROM "{schema}".sotp_migrations ORDER BY 1')] == versions


async def test_unreachable_server_is_storage_unavailable() -> None:
    from sotp.storage.postgres import PostgresStorage

    store = PostgresStorage(f"postgresql://postgres@127.0.0.1:{free_port()}/test?schema=nowhere")
    with pytest.raises(StorageUnavailable, match="cannot connect to PostgreSQL"):
        await store.open()
    with pytest.raises(StorageUnavailable, match="not open"):
        await store.ping()


async def test_killed_connections_are_replaced(open_pg, schema) -> None:  # type: ignore[no-untyped-def]
    app_name = f"sotp-test-{schema}"
    store = await open_pg(f"&pool_max=2&application_name={app_name}")
    await write(store, A, [D0], [1.0])
    killed = await sql(
        "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = %s",
        app_name,
    )
    assert killed[0][0] >= 1  # type: ignore[operator]
    # The pool checks a connection before lending it, so the dead ones are replaced, not handed out.
    await write(store, A, [D0 + 1000], [2.0])
    got = await store.querier(0, D0 + DAY).select([Matcher("i", MatchOp.EQ, "a")])
    assert got[0].values.tolist() == [1.0, 2.0]


async def test_partition_dropped_by_another_process_is_recreated(open_pg, schema) -> None:  # type: ignore[no-untyped-def]
    first, second = await open_pg(), await open_pg()
    await write(first, A, [D0], [1.0])
    await write(second, B, [D0], [1.0])
    await first.flush(before=D0 + DAY)  # from now on, 2020-01-01 samples go straight to block rows
    await write(second, B, [D0 + 1000], [1.5])  # `second` now believes the 2020-01-01 partition exists
    await first.delete_before(D0 + DAY)
    assert partition_name(D0, DAY) not in await partitions(schema)
    assert await write(second, B, [D0 + 5000], [2.0]) == 1
    assert partition_name(D0, DAY) in await partitions(schema)


async def test_compaction_picks_up_late_rows_of_a_compacted_window(open_pg, schema) -> None:  # type: ignore[no-untyped-def]
    store = await open_pg("&block=1h")
    now = int(time.time() * 1000)
    w = (now - 3 * HOUR) // HOUR * HOUR  # a closed window
    await store.flush(before=w + HOUR)  # samples of the window go straight to block rows: one per write
    for k in range(3):
        await write(store, A, [w + k * 1000], [float(k)])
    assert await store.compact(now) == 2
    for k in range(3):  # late arrivals for another series in the same, already compacted window
        await write(store, B, [w + k * 1000], [float(k)])
    assert await store.compact(now) == 2
    rows = await sql(f'SELECT cardinality(ts) FROM "{schema}".sotp_samples')
    assert sorted(r[0] for r in rows) == [3, 3]  # type: ignore[type-var]


def _columns(series: list[tuple[Labels, list[int], list[float]]]):  # type: ignore[no-untyped-def]
    import numpy as np

    return (
        [s[0] for s in series],
        np.array([len(s[1]) for s in series], dtype=np.int64),
        np.array([t for s in series for t in s[1]], dtype=np.int64),
        np.array([v for s in series for v in s[2]], dtype=np.float64),
    )


async def test_append_columns_matches_append_series(open_pg) -> None:  # type: ignore[no-untyped-def]
    store = await open_pg()
    series = [(Labels({"__name__": "c", "i": str(i)}), [D0 + k * 1000 for k in range(i % 3 + 1)],
               [float(k) for k in range(i % 3 + 1)]) for i in range(30)]
    app = store.appender()
    app.append_columns(*_columns(series))
    assert await app.commit() == sum(len(s[1]) for s in series)
    got = await store.querier(0, D0 + DAY).select([Matcher("__name__", MatchOp.EQ, "c")])
    assert sorted((s.labels, s.timestamps.tolist(), s.values.tolist()) for s in got) == sorted(series)
    app = store.appender()
    app.append_columns(*_columns(series))  # a retried request: every sample a duplicate
    assert await app.commit() == 0


async def test_append_columns_mixed_with_append_series_keeps_request_rules(open_pg) -> None:  # type: ignore[no-untyped-def]
    store = await open_pg()
    app = store.appender()
    app.append_columns(*_columns([(A, [D0 + 1000, D0 + 2000], [1.0, 2.0]), (B, [D0], [5.0])]))
    with pytest.raises(SampleRejected, match="out-of-order"):  # raised at append or at commit
        app.append_series(A, [D0 + 1500], [9.0])  # earlier than A's staged samples: out of order
        await app.commit()
    await app.rollback()
    app = store.appender()
    app.append_columns(*_columns([(A, [D0 + 2000, D0 + 1000], [1.0, 2.0])]))  # unsorted inside a series
    with pytest.raises(SampleRejected):
        await app.commit()
    assert await store.querier(0, D0 + DAY).select([Matcher("__name__", MatchOp.EQ, "m")]) == []


class _Proxy:
    """A TCP relay to PostgreSQL that the test can cut and restore (the database "goes down")."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._server: asyncio.AbstractServer | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", 5432)
        self._writers += [writer, up_writer]

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def cut(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()
        for w in self._writers:
            w.close()
        self._writers = []


async def test_database_down_is_unavailable_and_recovery_needs_no_restart(schema) -> None:  # type: ignore[no-untyped-def]
    from sotp.storage.postgres import PostgresStorage

    proxy = _Proxy(free_port())
    await proxy.start()
    store = PostgresStorage(f"postgresql://postgres@127.0.0.1:{proxy.port}/test?schema={schema}&pool_timeout=1s")
    await store.open()
    try:
        await write(store, A, [D0], [1.0])
        await proxy.cut()
        with pytest.raises(StorageUnavailable):
            await store.ping()
        with pytest.raises(StorageUnavailable):  # a write: 503 + Retry-After upstream, nothing half-done
            await write(store, A, [D0 + 1000], [2.0])
        await proxy.start()
        deadline = time.monotonic() + 30
        while True:  # the pool reconnects in the background; the sender's retry then succeeds
            try:
                assert await write(store, A, [D0 + 1000], [2.0]) == 1
                break
            except StorageUnavailable:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.5)
        got = await store.querier(0, D0 + DAY).select([Matcher("i", MatchOp.EQ, "a")])
        assert got[0].values.tolist() == [1.0, 2.0]
    finally:
        await store.close()
        await proxy.cut()


@pytest.mark.parametrize("t", [-62_135_596_800_001, 253_402_300_800_000], ids=["before-year-1", "after-9999"])
async def test_unstorable_timestamps_are_rejected(open_pg, t: int) -> None:  # type: ignore[no-untyped-def]
    store = await open_pg()
    app = store.appender()
    app.append_series(A, [t], [1.0])
    with pytest.raises(SampleRejected, match="outside the storable range"):
        await app.commit()


async def test_large_selection_fetched_in_parts_is_exact(open_pg) -> None:  # type: ignore[no-untyped-def]
    """1,000 series are read in parts over several pooled connections at once (the querier splits above
    300 series per part); every series must come back whole, once, in label order, stale bits kept, also
    when several such selects share the pool."""
    store = await open_pg("&pool_max=4")
    n = 1000
    app = store.appender()
    for i in range(n):
        vs = [float(i), float(i) + 0.5, STALE_NAN if i % 7 == 0 else float(-i)]
        app.append_series(Labels({"__name__": "big", "i": f"{i:04d}"}), [D0, D0 + 15_000, D0 + 30_000], vs)
    await app.commit()
    got = await asyncio.gather(*(store.querier(D0, D0 + 60_000).select([Matcher("__name__", MatchOp.EQ, "big")])
                                 for _ in range(3)))
    for series in got:
        assert [s.labels["i"] for s in series] == [f"{i:04d}" for i in range(n)]
        for i, s in enumerate(series):
            assert s.timestamps.tolist() == [D0, D0 + 15_000, D0 + 30_000]
            assert s.values[:2].tolist() == [float(i), float(i) + 0.5]
            last = struct.unpack("<Q", s.values[2:].tobytes())[0]
            assert (last == STALE_NAN_BITS) if i % 7 == 0 else s.values[2] == float(-i)


async def test_series_committed_after_a_larger_id_is_still_found(open_pg, schema, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The querier's in-memory postings read new series by id; a writer whose id is smaller than one
    already seen (it committed later) must still show up once it commits."""
    from sotp.storage.pg import watermark

    monkeypatch.setattr(watermark, "SETTLE_S", 0.0)  # settle as early as the snapshots allow
    reader, writer = await open_pg(), await open_pg()
    await write(writer, A, [D0], [1.0])
    await flush_all(writer)  # creates the 2020-01-01 partition the hand-made row below goes to
    late = Matcher("__name__", MatchOp.EQ, "late")
    async with await psycopg.AsyncConnection.connect(PG_DSN) as slow:  # a transaction left open
        cur = await slow.execute(
            f'INSERT INTO "{schema}".sotp_series (metric, label_ids, labels, first_ms) '
            "VALUES ('late', '{999999}', '{\"__name__\": \"late\"}', 0) RETURNING id"
        )
        late_id = int((await cur.fetchall())[0][0])
        await cur.execute(
            f'INSERT INTO "{schema}".sotp_samples VALUES (%s, {D0}, {D0}, '
            f"'{{{D0}}}', '{{5.0}}')",
            (late_id,),
        )
        await write(writer, B, [D0], [2.0])  # a larger id, committed first
        for _ in range(3):  # refreshes that would move a naive "largest id seen" watermark past late_id
            got = await reader.querier(0, D0 + 1).select([Matcher("__name__", MatchOp.EQ, "m")])
            assert [s.labels for s in got] == [A, B]
            assert await reader.querier(0, D0 + 1).select([late]) == []
            await asyncio.sleep(0.01)
        await slow.commit()
    got = await reader.querier(0, D0 + 1).select([late])
    assert [(s.labels, s.values.tolist()) for s in got] == [(Labels({"__name__": "late"}), [5.0])]


async def test_overlapping_blocks_of_one_series_among_others_are_merged(open_pg, schema) -> None:  # type: ignore[no-untyped-def]
    """Raced retries can leave one series with overlapping block rows; the querier sorts and de-duplicates
    that series alone and trims every series to the window."""
    store = await open_pg()
    C = Labels({"__name__": "m", "i": "c"})
    for lb in (A, B, C):
        await write(store, lb, [D0, D0 + 1000, D0 + 2000], [1.0, 2.0, 3.0])
    await flush_all(store)
    sid_b = int((await sql(f'SELECT id FROM "{schema}".sotp_series WHERE labels->>\'i\' = \'b\''))[0][0])  # type: ignore[call-overload]
    await sql(
        f'INSERT INTO "{schema}".sotp_samples VALUES (%s, {D0 + 500}, {D0 + 3000}, '
        f"'{{{D0 + 500},{D0 + 1000},{D0 + 3000}}}', '{{9,8,7}}')",
        sid_b,
    )
    got = await store.querier(D0 + 500, D0 + 2500).select([Matcher("__name__", MatchOp.EQ, "m")])
    assert [(s.labels, s.timestamps.tolist(), s.values.tolist()) for s in got] == [
        (A, [D0 + 1000, D0 + 2000], [2.0, 3.0]),
        (B, [D0 + 500, D0 + 1000, D0 + 2000], [9.0, 2.0, 3.0]),  # the first stored block wins a tie
        (C, [D0 + 1000, D0 + 2000], [2.0, 3.0]),
    ]


async def test_issue17_9_a_replica_writing_a_collected_series_writes_it_again(open_pg) -> None:  # type: ignore[no-untyped-def]
    """One replica collects a series the other still has in its caches: the other's next write must create
    the series again (checked by the generation under the write's lock), never write under the deleted id."""
    collector, writer = await open_pg(), await open_pg()
    await write(writer, A, [D0], [1.0])
    await flush_all(writer)
    await collector.delete_before(D0 + 1000)
    assert await collector.gc_series() == 1
    assert await write(writer, A, [D0 + 5000], [2.0]) == 1  # writer's index still names the deleted id
    for store in (collector, writer):
        got = await store.querier(0, D0 + DAY).select([Matcher("i", MatchOp.EQ, "a")])
        assert [(s.labels, s.timestamps.tolist()) for s in got] == [(A, [D0 + 5000])]
    assert await collector.series_count() == 1
    ids = await sql(f'SELECT count(*) FROM "{collector.options.schema}".sotp_series')
    assert ids == [(1,)]


@pytest.mark.parametrize("n_series", [3, 700], ids=["one-statement", "in-parts"])
async def test_a_flush_committed_while_a_select_reads_loses_nothing(open_pg, monkeypatch, n_series: int) -> None:  # type: ignore[no-untyped-def]
    """A select reads the log tail, the postings and the blocks in one statement, then the head. When this
    process's flush commits after that statement's snapshot and drops the samples from the head before
    the head is read, the select must read the blocks again rather than miss them."""
    from sotp.storage.pg.query import PgQuerier

    store = await open_pg("&pool_max=4")
    app = store.appender()
    for i in range(n_series):
        app.append_series(Labels({"__name__": "f", "i": f"{i:04d}"}), [D0, D0 + 15_000, D0 + 30_000],
                          [1.0, 2.0, float(i)])
    await app.commit()
    matchers = [Matcher("__name__", MatchOp.EQ, "f")]
    await store.querier(D0, D0 + 60_000).select(matchers)  # the postings know every series now
    first = PgQuerier._first

    async def first_then_flush(self, chunk):  # type: ignore[no-untyped-def]
        got = await first(self, chunk)
        await store.flush(before=D0 + 20_000)  # commits, then drops D0 and D0 + 15 s from the head
        return got

    monkeypatch.setattr(PgQuerier, "_first", first_then_flush)
    got = await store.querier(D0, D0 + 60_000).select(matchers)
    assert store.head.min_t == D0 + 20_000
    assert len(got) == n_series
    assert all(s.timestamps.tolist() == [D0, D0 + 15_000, D0 + 30_000] for s in got)


async def test_concurrent_selects_apply_each_log_row_once(open_pg) -> None:  # type: ignore[no-untyped-def]
    """Selects send their log-tail reads concurrently and apply the results in any order; every row of
    another process reaches this process's head exactly once, and every acknowledged sample is read."""
    reader, writer = await open_pg(), await open_pg()
    matchers = [Matcher("__name__", MatchOp.EQ, "m")]
    for k in range(20):
        await write(writer, A, [D0 + 1000 * k], [float(k)])
        await write(writer, B, [D0 + 1000 * k], [float(-k)])
        got = await asyncio.gather(*(reader.querier(D0, D0 + DAY).select(matchers) for _ in range(4)))
        for series in got:
            assert [s.timestamps.tolist() for s in series] == [[D0 + 1000 * j for j in range(k + 1)]] * 2
    assert reader.head.span()[2] == 40
