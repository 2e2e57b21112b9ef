"""TimescaleDB on a real server: mode selection (auto/on/off on a preloaded and a not-preloaded cluster),
the hypertable and its policies, compressed chunks read back bit for bit, late samples into compressed
chunks, retention, schemas, and the integer-time migration. (The shared contract runs on TimescaleDB in
test_conformance.py.)"""

from __future__ import annotations

import logging
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import numpy as np
import psycopg
import pytest

from sotp.errors import ConfigError, SampleRejected
from sotp.model import STALE_NAN, Labels, Matcher, MatchOp
from sotp.storage.pg import timescale
from sotp.storage.postgres import PostgresStorage
from tests.conftest import (
    REPO,
    backend_dsn,
    backend_url,
    drop_schema,
    new_schema,
    require_postgres,
    require_timescaledb,
    require_timescaledb_not_preloaded,
    sotp_cmd,
    with_schema,
)
from tests.sotp.storage.test_postgres import flush_all

pytestmark = pytest.mark.integration

DAY = 86_400_000
HOUR = 3_600_000
STEP = 15_000
CPU = Matcher("__name__", MatchOp.EQ, "cpu")


def sql(dsn: str, query: str, *params: object) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        cur = conn.execute(query, params or None)  # type: ignore[arg-type]
        return cur.fetchall() if cur.description else []


Opener = Callable[..., Awaitable[PostgresStorage]]


@pytest.fixture
def schemas() -> Iterator[list[tuple[str, str]]]:
    """(dsn, schema) pairs a test created; dropped at teardown."""
    made: list[tuple[str, str]] = []
    yield made
    for dsn, schema in made:
        drop_schema(dsn, schema)


@pytest.fixture
async def open_store(schemas: list[tuple[str, str]]) -> AsyncIterator[Opener]:
    """``await open_store(dsn, options="", schema=None)``: a PostgresStorage on a fresh (or given) schema."""
    opened: list[PostgresStorage] = []

    async def _open(dsn: str, options: str = "", schema: str | None = None) -> PostgresStorage:
        if schema is None:
            schema = new_schema("sotp_ts")
            schemas.append((dsn, schema))
        store = PostgresStorage(with_schema(dsn, schema, options))
        await store.open()
        opened.append(store)
        return store

    yield _open
    for s in opened:
        await s.close()


async def write(store: PostgresStorage, series: dict[Labels, tuple[np.ndarray, np.ndarray]]) -> int:
    app = store.appender()
    for labels, (ts, vs) in series.items():
        app.append_series(labels, ts.tolist(), vs.tolist())
    return await app.commit()


def dataset(start: int, end: int, n_series: int = 4) -> dict[Labels, tuple[np.ndarray, np.ndarray]]:
    """Every 15 s from ``start`` to ``end`` for a few series: counters, gauges with -0.0, inf, NaN and a
    staleness marker, so a lossy or reordering decode shows."""
    ts = np.arange(start, end, STEP, dtype=np.int64)
    out = {}
    for k in range(n_series):
        vs = np.cumsum(np.full(len(ts), 1.5 + k)) if k % 2 == 0 else np.sin(np.arange(len(ts)) / 7.0) * 100
        vs[3], vs[5], vs[7], vs[11] = -0.0, np.inf, np.nan, STALE_NAN
        out[Labels({"__name__": "cpu", "i": str(k)})] = (ts, vs.astype(np.float64))
    return out


async def read(store: PostgresStorage, mint: int, maxt: int) -> dict[Labels, tuple[list[int], list[int]]]:
    got = await store.querier(mint, maxt).select([CPU])
    return {s.labels: (s.timestamps.tolist(), s.values.view(np.uint64).tolist()) for s in got}


def expected(data: dict[Labels, tuple[np.ndarray, np.ndarray]], mint: int, maxt: int) -> dict[Labels, Any]:
    out = {}
    for labels, (ts, vs) in data.items():
        keep = (ts >= mint) & (ts <= maxt)
        if keep.any():
            out[labels] = (ts[keep].tolist(), vs[keep].view(np.uint64).tolist())
    return out


def chunks(dsn: str, schema: str) -> list[tuple[int, int, bool]]:
    """(range start ms, range end ms, compressed) of the hypertable's chunks, oldest first."""
    rows = sql(
        dsn,
        "SELECT range_start_integer, range_end_integer, is_compressed FROM timescaledb_information.chunks "
        "WHERE hypertable_schema = %s AND hypertable_name = 'sotp_samples' ORDER BY 1",
        schema,
    )
    return [(int(a), int(b), bool(c)) for a, b, c in rows]


def policy_jobs(dsn: str, schema: str) -> dict[str, int]:
    """``{"compression"|"retention": job id}`` of the hypertable's TimescaleDB policies."""
    rows = sql(
        dsn,
        "SELECT proc_name, job_id FROM timescaledb_information.jobs WHERE hypertable_schema = %s "
        "AND hypertable_name = 'sotp_samples' AND proc_name IN ('policy_compression', 'policy_retention')",
        schema,
    )
    return {str(name).removeprefix("policy_"): int(job_id) for name, job_id in rows}


def run_job(dsn: str, schema: str, kind: str) -> None:
    """Run the hypertable's compression or retention policy now with ``CALL run_job``, in a database whose
    scheduler is stopped (:func:`quiet_database`), so no background run of the same policy races it."""
    assert sql(dsn, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND "
               "backend_type = 'TimescaleDB Background Worker Scheduler'") == [(0,)], (
        "TimescaleDB's scheduler runs in this database: open the store on the quiet_database fixture")
    jobs = policy_jobs(dsn, schema)
    assert kind in jobs, f"no {kind} policy on {schema}.sotp_samples: {jobs}"
    sql(dsn, "CALL run_job(%s)", jobs[kind])


def today() -> int:
    return int(time.time() * 1000) // DAY * DAY


# -- databases -------------------------------------------------------------------------------------------


@pytest.fixture
def database() -> Iterator[str]:
    """A fresh database on the TimescaleDB server (dropped afterwards): its DSN."""
    dsn = require_timescaledb()
    name = f"sotp_db_{uuid.uuid4().hex[:10]}"
    sql(dsn, f'CREATE DATABASE "{name}"')
    try:
        yield dsn.rsplit("/", 1)[0] + f"/{name}"
    finally:
        sql(dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def quiet_database(database: str) -> str:
    """A fresh database with the extension created and TimescaleDB's scheduler stopped for it
    (``stop_background_workers`` is per database), for tests that run the policies themselves
    (:func:`run_job`): a scheduler's run of the same policy at the same moment fights over the same chunks
    (one compression fails, compression and retention deadlock), which made those tests flaky. Request it
    before ``open_store`` so the stores close before the database is dropped."""
    sql(database, "CREATE EXTENSION timescaledb SCHEMA public")
    assert sql(database, "SELECT _timescaledb_functions.stop_background_workers()") == [(True,)]
    return database


# -- mode selection ------------------------------------------------------------------------------------


async def test_auto_on_preloaded_server_makes_a_compressed_integer_hypertable(open_store: Opener) -> None:
    dsn = require_timescaledb()
    store = await open_store(dsn, "partition=12h&compress_after=2d")
    assert store.mode == "timescaledb"
    schema = store.options.schema
    dims = sql(
        dsn,
        "SELECT column_name, column_type::text, integer_interval, integer_now_func "
        "FROM timescaledb_information.dimensions WHERE hypertable_schema = %s AND hypertable_name = 'sotp_samples'",
        schema,
    )
    assert dims == [("t_min", "bigint", 12 * HOUR, "sotp_now_ms")]
    settings = sql(
        dsn,
        "SELECT segmentby, orderby FROM timescaledb_information.hypertable_compression_settings "
        "WHERE hypertable = %s::regclass",
        f"{schema}.sotp_samples",
    )
    assert settings == [("", "series_id,t_min")]  # no segmentby: see timescale.hypertable_statements
    jobs = sql(
        dsn,
        "SELECT proc_name, config->>'compress_after' FROM timescaledb_information.jobs "
        "WHERE hypertable_schema = %s AND hypertable_name = 'sotp_samples'",
        schema,
    )
    assert jobs == [("policy_compression", str(2 * DAY))]
    # The hypertable's idea of now is the wall clock in ms (what the policies compare chunk ends with).
    now_ms = sql(dsn, f'SELECT "{schema}".sotp_now_ms()')[0][0]
    assert abs(now_ms - time.time() * 1000) < 60_000


async def test_auto_on_a_server_without_preload_falls_back_with_one_warning(
    open_store: Opener, caplog: pytest.LogCaptureFixture
) -> None:
    dsn = require_timescaledb_not_preloaded()
    with caplog.at_level(logging.WARNING):
        store = await open_store(dsn)
    assert store.mode == "partitions"
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, warnings
    assert "shared_preload_libraries = 'timescaledb'" in warnings[0] and "restart PostgreSQL" in warnings[0]
    # The fallback works: a round trip through native partitions.
    data = dataset(today() - DAY, today() - DAY + HOUR, 1)
    await write(store, data)
    assert await read(store, 0, today()) == expected(data, 0, today())
    # Nothing tried to create the extension (doing so without preload kills the session).
    assert sql(dsn, "SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'") == [(0,)]


@pytest.mark.parametrize("server", ["not-preloaded", "absent"])
async def test_on_refuses_to_start_without_a_usable_extension(server: str, open_store: Opener) -> None:
    dsn = require_timescaledb_not_preloaded() if server == "not-preloaded" else require_postgres()
    fix = "add shared_preload_libraries = 'timescaledb'" if server == "not-preloaded" else "install the TimescaleDB"
    schema = new_schema("sotp_ts")
    with pytest.raises(ConfigError, match="timescaledb=on") as err:
        await open_store(dsn, "timescaledb=on", schema=schema)
    assert fix in str(err.value)
    # The refused migration left nothing behind.
    assert sql(dsn, "SELECT count(*) FROM pg_namespace WHERE nspname = %s", schema) == [(0,)]


async def test_sotp_refuses_on_with_the_fix_and_db_migrate_reports_the_mode(
    spawn: Any, schemas: list[tuple[str, str]]
) -> None:
    nopre = require_timescaledb_not_preloaded()
    dsn = require_timescaledb()
    refused = spawn(sotp_cmd("db", "migrate", "--storage", with_schema(nopre, new_schema(), "timescaledb=on")))
    assert refused.popen.wait(60) == 2
    assert "add shared_preload_libraries = 'timescaledb'" in refused.output()
    assert "Traceback" not in refused.output()
    schema = new_schema("sotp_ts")
    schemas.append((dsn, schema))
    for _ in range(2):  # idempotent
        done = spawn(sotp_cmd("db", "migrate", "--storage", with_schema(dsn, schema)))
        assert done.popen.wait(60) == 0, done.output()
        assert "(TimescaleDB hypertable)" in done.output()
    assert sql(dsn, "SELECT count(*) FROM timescaledb_information.hypertables WHERE hypertable_schema = %s",
               schema) == [(1,)]


async def test_off_on_a_preloaded_server_uses_native_partitions(open_store: Opener) -> None:
    dsn = require_timescaledb()
    store = await open_store(dsn, "timescaledb=off")
    assert store.mode == "partitions"
    schema = store.options.schema
    assert sql(dsn, "SELECT count(*) FROM timescaledb_information.hypertables WHERE hypertable_schema = %s",
               schema) == [(0,)]
    assert sql(dsn, "SELECT relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
               "WHERE n.nspname = %s AND c.relname = 'sotp_samples'", schema) == [("p",)]


async def test_a_schema_keeps_its_mode_and_refuses_a_contrary_url(open_store: Opener) -> None:
    dsn = require_timescaledb()
    native = await open_store(dsn, "timescaledb=off")
    await native.close()
    # auto on a usable server does not convert a native schema behind the user's back...
    again = await open_store(dsn, "", schema=native.options.schema)
    assert again.mode == "partitions"
    await again.close()
    # ...and on refuses, saying why.
    with pytest.raises(ConfigError, match="initialised with native partitions"):
        await open_store(dsn, "timescaledb=on", schema=native.options.schema)
    hyper = await open_store(dsn)
    await hyper.close()
    with pytest.raises(ConfigError, match=r"holds a TimescaleDB hypertable.*timescaledb=off"):
        await open_store(dsn, "timescaledb=off", schema=hyper.options.schema)
    assert (await open_store(dsn, "timescaledb=on", schema=hyper.options.schema)).mode == "timescaledb"


# -- compression, late samples, retention ----------------------------------------------------------------


async def test_compressed_chunks_read_back_every_sample_identically(quiet_database: str, open_store: Opener) -> None:
    dsn = quiet_database
    store = await open_store(dsn, "compress_after=1d")
    schema = store.options.schema
    start, end = today() - 3 * DAY, today() - DAY  # two whole chunks, both older than compress_after
    data = dataset(start, end)
    assert await write(store, data) == sum(len(ts) for ts, _ in data.values())
    await flush_all(store)  # the head's samples into block rows, as the service does minutes after arrival
    await store.compact(int(time.time() * 1000))  # merge block rows as the service does before compression
    want = expected(data, start, end)
    assert await read(store, start, end) == want
    run_job(dsn, schema, "compression")
    assert [c[2] for c in chunks(dsn, schema)] == [True, True]
    assert await read(store, start, end) == want
    # Windows inside a chunk and across the chunk edge select through the compressed batches' t_min range.
    for mint, maxt in ((start + 5 * HOUR + 1, start + 7 * HOUR), (start + DAY - HOUR, start + DAY + HOUR - 1)):
        assert await read(store, mint, maxt) == expected(data, mint, maxt)
    # A store opened afterwards (another process) reads the same.
    other = await open_store(dsn, "", schema=schema)
    assert await read(other, start, end) == want


async def test_late_samples_into_a_compressed_chunk(quiet_database: str, open_store: Opener) -> None:
    dsn = quiet_database
    store = await open_store(dsn, "compress_after=1d")
    schema = store.options.schema
    start = today() - 3 * DAY
    data = dataset(start, start + 6 * HOUR, 2)
    await write(store, data)
    await flush_all(store)
    run_job(dsn, schema, "compression")
    assert [c[2] for c in chunks(dsn, schema)] == [True]
    first = next(iter(data))
    ts0, vs0 = data[first]
    # A new series whose first sample lands in the compressed chunk is stored (inside the accepted window).
    late = Labels({"__name__": "cpu", "i": "late"})
    late_data = {late: (np.array([start + HOUR, start + HOUR + STEP]), np.array([1.0, 2.0]))}
    assert await write(store, late_data) == 2
    # A sender's retry of samples already compressed is accepted silently and stored once.
    assert await write(store, {first: (ts0[10:20], vs0[10:20])}) == 0
    # An out-of-order sample is the usual 400-class rejection, whatever the chunk's state.
    with pytest.raises(SampleRejected):
        await write(store, {first: (np.array([start + 30]), np.array([5.0]))})
    want = expected({**data, **late_data}, start, start + DAY)
    assert await read(store, start, start + DAY) == want
    # Compression runs again over the now partly compressed chunk; nothing changes for readers.
    run_job(dsn, schema, "compression")
    assert await read(store, start, start + DAY) == want
    await store.compact(int(time.time() * 1000))
    assert await read(store, start, start + DAY) == want


async def test_retention_policy_drops_whole_chunks(quiet_database: str, open_store: Opener) -> None:
    dsn = quiet_database
    store = await open_store(dsn, "compress_after=1d")
    schema = store.options.schema
    days = [today() - k * DAY for k in (10, 5, 1)]
    data: dict[Labels, tuple[np.ndarray, np.ndarray]] = {}
    for k, d in enumerate(days):
        data |= {Labels({**lb, "day": str(k)}): v for lb, v in dataset(d, d + 2 * HOUR, 2).items()}
    await write(store, data)
    await flush_all(store)
    assert [c[0] for c in chunks(dsn, schema)] == days
    async with store.connection() as conn:
        await timescale.set_retention(conn, store.ext_schema, schema, 3 * DAY)
    run_job(dsn, schema, "retention")
    # Whole chunks older than 3 days went; the recent one is untouched.
    assert [c[0] for c in chunks(dsn, schema)] == [days[2]]
    assert await read(store, 0, days[2] - 1) == {}
    assert await read(store, 0, today()) == expected({k: v for k, v in data.items() if k["day"] == "2"}, 0, today())


def scheduler_run(dsn: str, job_id: int) -> tuple[str, str]:
    """Have TimescaleDB's scheduler run a job now (``alter_job(next_start => now())``) and wait for that
    run to end: ``(last_run_status, error message or "")``. The wait is bounded only to fail a hung run."""

    def state() -> tuple[int, str | None]:
        rows = sql(dsn, "SELECT coalesce(total_runs, 0), last_run_status FROM timescaledb_information.job_stats "
                   "WHERE job_id = %s", job_id)
        return (int(rows[0][0]), rows[0][1]) if rows else (0, None)

    def wait(done: Callable[[int, str | None], bool], what: str) -> tuple[int, str | None]:
        deadline = time.monotonic() + 300
        while not done(*(now := state())):
            assert time.monotonic() < deadline, f"job {job_id}: {what} within 300 s ({now})"
            time.sleep(0.2)
        return now

    # A run the scheduler started by itself (a new policy runs within seconds of its creation) ends first.
    before, _ = wait(lambda runs, status: runs == 0 or status is not None, "a running run did not end")
    sql(dsn, "SELECT alter_job(%s, next_start => now())", job_id)
    _, status = wait(lambda runs, status: runs > before and status is not None, "no scheduled run ended")
    errors = sql(dsn, "SELECT err_message FROM timescaledb_information.job_errors WHERE job_id = %s "
                 "ORDER BY finish_time DESC LIMIT 1", job_id)
    return str(status), str(errors[0][0]) if status == "Failed" and errors else ""


#: The error TimescaleDB 2.28.3 raises on PostgreSQL 15.20 at the end of *every* background job, after the
#: job's work was committed (docs/storage.md, "TimescaleDB's own scheduler").
PORTAL_DEFECT = 'cannot drop portal "" while it is being set up'


def assert_scheduler_success(dsn: str, job: str, status: str, error: str) -> None:
    """A scheduler run of SOTP's policy succeeded — or failed only with :data:`PORTAL_DEFECT`, and a no-op job
    of no SOTP code fails the same way on this server (the defect is TimescaleDB's, not SOTP's policies')."""
    if status == "Success":
        return
    assert (status, error) == ("Failed", PORTAL_DEFECT), f"the scheduler's {job} run: {status} {error}"
    sql(dsn, "CREATE OR REPLACE PROCEDURE public.sotp_test_noop(job_id int, config jsonb) "
        "LANGUAGE plpgsql AS $$ BEGIN END $$")
    noop = sql(dsn, "SELECT add_job('public.sotp_test_noop', '1 day', initial_start => now() + interval '1 day')")
    assert scheduler_run(dsn, int(noop[0][0])) == ("Failed", PORTAL_DEFECT), (
        f"the scheduler's {job} run failed with {error!r} but a no-op job succeeds: SOTP's policy is at fault")


async def test_timescaledb_scheduler_runs_the_policies(database: str, open_store: Opener) -> None:
    """TimescaleDB's own background scheduler (not only ``CALL run_job``) compresses and drops SOTP's chunks,
    and records each run a success (on this machine's TimescaleDB 2.28.3 + PostgreSQL 15.20: the documented
    defect every background job hits, checked by :func:`assert_scheduler_success`)."""
    dsn = database  # a database of its own: its scheduler runs only this test's policies
    store = await open_store(dsn, "compress_after=1d")
    schema = store.options.schema
    days = [today() - k * DAY for k in (10, 3, 2)]
    data = {}
    for k, d in enumerate(days):
        data |= {Labels({**lb, "day": str(k)}): v for lb, v in dataset(d, d + 2 * HOUR, 2).items()}
    await write(store, data)
    await flush_all(store)
    status, error = scheduler_run(dsn, policy_jobs(dsn, schema)["compression"])
    assert chunks(dsn, schema) == [(d, d + DAY, True) for d in days]  # every chunk older than a day
    assert await read(store, 0, today()) == expected(data, 0, today())
    assert_scheduler_success(dsn, "compression", status, error)
    async with store.connection() as conn:
        await timescale.set_retention(conn, store.ext_schema, schema, 5 * DAY)
    status, error = scheduler_run(dsn, policy_jobs(dsn, schema)["retention"])
    assert [c[0] for c in chunks(dsn, schema)] == days[1:]
    assert await read(store, 0, today()) == expected({k: v for k, v in data.items() if k["day"] != "0"}, 0, today())
    assert_scheduler_success(dsn, "retention", status, error)


async def test_delete_before_keeps_a_matching_retention_policy(open_store: Opener) -> None:
    dsn = require_timescaledb()
    store = await open_store(dsn)
    schema = store.options.schema
    now = int(time.time() * 1000)
    for keep in (15 * DAY, 15 * DAY, 30 * DAY):
        await store.delete_before(now - keep)
        rows = sql(
            dsn,
            "SELECT (config->>'drop_after')::bigint FROM timescaledb_information.jobs "
            "WHERE hypertable_schema = %s AND proc_name = 'policy_retention'",
            schema,
        )
        assert len(rows) == 1
        # Rounded up to a minute: the policy never drops more than SOTP's own retention would.
        assert keep <= rows[0][0] < keep + 2 * timescale.RETENTION_STEP_MS


# -- schemas -------------------------------------------------------------------------------------------


async def test_two_deployments_in_two_schemas_are_independent(open_store: Opener) -> None:
    dsn = require_timescaledb()
    a = await open_store(dsn)
    b = await open_store(dsn)
    assert (a.mode, b.mode) == ("timescaledb", "timescaledb")
    start = today() - 2 * DAY
    data_a = dataset(start, start + HOUR, 2)
    data_b = dataset(start + DAY, start + DAY + 2 * HOUR, 3)
    await write(a, data_a)
    await write(b, data_b)
    await flush_all(a)  # into each deployment's hypertable, not only its head
    await flush_all(b)
    assert await read(a, 0, today()) == expected(data_a, 0, today())
    assert await read(b, 0, today()) == expected(data_b, 0, today())
    # Retention in one leaves the other alone.
    await a.delete_before(today())
    assert await read(a, 0, today()) == {}
    assert await read(b, 0, today()) == expected(data_b, 0, today())
    # Dropping one deployment's schema leaves the extension, and the other deployment, working.
    await a.close()
    drop_schema(dsn, a.options.schema)
    await write(b, {lb: (ts + 2 * HOUR, vs) for lb, (ts, vs) in data_b.items()})
    reopened = await open_store(dsn, "", schema=b.options.schema)
    assert len((await reopened.querier(0, today()).select([CPU]))[0].timestamps) == 2 * len(
        next(iter(data_b.values()))[0]
    )


async def test_extension_created_beforehand_in_another_schema(database: str, open_store: Opener) -> None:
    """The report of issue 16: the extension exists (here in schema tsdb), SOTP's tables go elsewhere."""
    sql(database, "CREATE SCHEMA tsdb")
    sql(database, "CREATE EXTENSION timescaledb SCHEMA tsdb")
    store = await open_store(database, "", schema="bars")
    assert (store.mode, store.ext_schema) == ("timescaledb", "tsdb")
    async with store.connection() as conn:
        cur = await conn.execute("SHOW search_path")
        assert (await cur.fetchone()) == ("bars, tsdb",)
    data = dataset(today() - 2 * DAY, today() - 2 * DAY + HOUR, 1)
    await write(store, data)
    assert await read(store, 0, today()) == expected(data, 0, today())
    await store.delete_before(today() - DAY)  # drop_chunks and the retention policy named through tsdb
    assert await read(store, 0, today()) == {}


async def test_extension_is_created_in_public_not_in_sotp_schema(database: str, open_store: Opener) -> None:
    store = await open_store(database, "", schema="first")
    assert store.ext_schema == "public"
    # Dropping SOTP's schema must not take the extension (and every other deployment's tables) with it.
    await store.close()
    sql(database, "DROP SCHEMA first CASCADE")
    assert sql(database, "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace "
               "WHERE e.extname = 'timescaledb'") == [("public",)]
    second = await open_store(database, "", schema="second")
    assert second.mode == "timescaledb"


# -- migration 3: block times as integer milliseconds ---------------------------------------------------


V1_HYPERTABLE = [
    "CREATE EXTENSION IF NOT EXISTS timescaledb",
    "SELECT create_hypertable('sotp_samples', 't_min', chunk_time_interval => interval '1 day', "
    "migrate_data => true)",
    "ALTER TABLE sotp_samples SET (timescaledb.compress, timescaledb.compress_segmentby = 'series_id', "
    "timescaledb.compress_orderby = 't_min')",
    # (version 1 also added a compression policy; left out here so that TimescaleDB's scheduler does not
    # compress these chunks while the test does)
]


@pytest.mark.parametrize("backend", ["postgres", "timescaledb"])
async def test_migration_3_converts_a_version_1_schema(backend: str, open_store: Opener,
                                                       schemas: list[tuple[str, str]]) -> None:
    """A schema as version 1 left it (timestamptz block times; a compressed hypertable with TimescaleDB)
    opens with every block intact, now in integer milliseconds."""
    from sotp.storage.pg.options import parse_url
    from sotp.storage.pg.schema import MIGRATIONS, partition_name

    dsn = backend_dsn(backend)
    schema = new_schema("sotp_v1")
    schemas.append((dsn, schema))
    mode = "timescaledb" if backend == "timescaledb" else "partitions"
    v1 = [s for s in MIGRATIONS[0].statements(mode, parse_url(with_schema(dsn, schema)))]
    day = today() - 2 * DAY
    with psycopg.connect(dsn, autocommit=True) as conn, conn.transaction():
        conn.execute(f'CREATE SCHEMA "{schema}"')  # type: ignore[arg-type]
        conn.execute(f'SET LOCAL search_path TO "{schema}", public')  # type: ignore[arg-type]
        conn.execute("CREATE TABLE sotp_migrations (version int PRIMARY KEY, description text NOT NULL, "
                     "applied_at timestamptz NOT NULL DEFAULT now())")
        for stmt in v1:
            conn.execute(stmt)  # type: ignore[arg-type]
        if mode == "timescaledb":
            for stmt in V1_HYPERTABLE:
                conn.execute(stmt)  # type: ignore[arg-type]
        else:
            for k in (0, 1):
                conn.execute(
                    f"CREATE TABLE {partition_name(day + k * DAY, DAY)} PARTITION OF sotp_samples FOR VALUES FROM "
                    f"(to_timestamp({(day + k * DAY) / 1000})) TO (to_timestamp({(day + (k + 1) * DAY) / 1000}))"
                )  # type: ignore[arg-type]
        conn.execute("INSERT INTO sotp_migrations (version, description) VALUES (1, 'v1')")
        conn.execute("INSERT INTO sotp_label (name, value) VALUES ('__name__', 'cpu'), ('i', '0')")
        conn.execute("INSERT INTO sotp_series (metric, label_ids, labels, first_ms) VALUES "
                     "('cpu', '{1,2}', '{\"__name__\": \"cpu\", \"i\": \"0\"}', 0)")
        rows = [(day + 10 * STEP * j, [day + 10 * STEP * j + STEP * i for i in range(10)]) for j in range(3)]
        rows.append((day + DAY, [day + DAY, day + DAY + STEP]))
        for t0, ts in rows:
            conn.execute(
                "INSERT INTO sotp_samples VALUES (1, to_timestamp(%s / 1000.0), to_timestamp(%s / 1000.0), %s, %s)",
                (t0, ts[-1], ts, [float(t) for t in ts]),
            )
    if mode == "timescaledb":
        sql(dsn, f"SELECT compress_chunk(c) FROM show_chunks('\"{schema}\".sotp_samples') c")
    store = await open_store(dsn, "", schema=schema)
    assert store.mode == mode
    assert [r[0] for r in sql(dsn, f'SELECT version FROM "{schema}".sotp_migrations ORDER BY 1')] == [
        m.version for m in MIGRATIONS
    ]
    got = await store.querier(0, today()).select([CPU])
    all_ts = [t for _, ts in rows for t in ts]
    assert got[0].timestamps.tolist() == all_ts and got[0].values.tolist() == [float(t) for t in all_ts]
    assert sql(dsn, f'SELECT min(t_min), max(t_max) FROM "{schema}".sotp_samples') == [(rows[0][0], all_ts[-1])]
    if mode == "partitions":
        assert {r[0] for r in sql(dsn, "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                                  "JOIN pg_class p ON p.oid = i.inhparent JOIN pg_namespace n ON "
                                  "n.oid = p.relnamespace WHERE n.nspname = %s AND p.relname = 'sotp_samples'",
                                  schema)} >= {partition_name(day, DAY), partition_name(day + DAY, DAY)}
    else:
        assert [c[0] for c in chunks(dsn, schema)] == [day, day + DAY]
    # Writes continue after the last migrated sample.
    await write(store, {Labels({"__name__": "cpu", "i": "0"}): (np.array([all_ts[-1] + STEP]), np.array([1.0]))})


# -- switching modes: sotp db migrate --convert-to -------------------------------------------------------


def migrate_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(sotp_cmd("db", "migrate", *args), cwd=REPO, capture_output=True, text=True, timeout=300)


async def test_convert_between_modes_keeps_every_sample(quiet_database: str, open_store: Opener) -> None:
    dsn = quiet_database
    native = await open_store(dsn, "timescaledb=off")
    schema = native.options.schema
    old = dataset(today() - 3 * DAY, today() - DAY, 2)  # two partitions of block rows...
    recent = dataset(today() - HOUR, today() - HOUR + 20 * STEP, 2)  # ...and samples still in the head (log)
    recent = {Labels({**lb, "when": "recent"}): v for lb, v in recent.items()}
    await write(native, old)
    await flush_all(native)
    await write(native, recent)
    want = expected({**old, **recent}, 0, today())
    await native.close()
    url = with_schema(dsn, schema)
    done = migrate_cli("--storage", url, "--convert-to", "timescaledb")
    assert done.returncode == 0, done.stderr
    assert "(TimescaleDB hypertable)" in done.stdout
    hyper = await open_store(dsn, "timescaledb=on", schema=schema)
    assert hyper.mode == "timescaledb"
    assert [c[0] for c in chunks(dsn, schema)] == [today() - 3 * DAY, today() - 2 * DAY]
    assert await read(hyper, 0, today()) == want
    await flush_all(hyper)  # the head's samples land in the hypertable now
    run_job(dsn, schema, "compression")
    await hyper.close()
    back = migrate_cli("--storage", url, "--convert-to", "partitions")
    assert back.returncode == 0, back.stderr
    assert "(native partitions)" in back.stdout
    again = await open_store(dsn, "timescaledb=off", schema=schema)
    assert again.mode == "partitions"
    assert await read(again, 0, today()) == want
    assert sql(dsn, "SELECT count(*) FROM timescaledb_information.hypertables WHERE hypertable_schema = %s",
               schema) == [(0,)]


async def test_convert_to_timescaledb_refuses_without_a_usable_extension(schemas: list[tuple[str, str]]) -> None:
    dsn = require_timescaledb_not_preloaded()
    schema = new_schema("sotp_ts")
    schemas.append((dsn, schema))
    refused = migrate_cli("--storage", with_schema(dsn, schema, "timescaledb=off"), "--convert-to", "timescaledb")
    assert refused.returncode == 2
    assert "cannot convert schema" in refused.stderr and "shared_preload_libraries" in refused.stderr
    # The schema stays as it was, usable in its own mode.
    assert sql(dsn, f'SELECT value FROM "{schema}".sotp_meta WHERE key = %s', "mode") == [("partitions",)]


async def test_remote_write_of_late_samples_into_a_compressed_chunk_is_204_or_400(
    quiet_database: str, schemas: list[tuple[str, str]]
) -> None:
    """Through the real receiver: a late sample landing in a compressed chunk is stored (204), a sender's
    retry of compressed samples is a no-op (204), an out-of-order one is the documented 400; never a 5xx."""
    from aiohttp.test_utils import TestClient, TestServer

    from sotp.cli.serve import build_app
    from sotp.codec.remote_write import encode_write_request
    from sotp.config import Config
    from sotp.web import CTX

    headers = {"Content-Type": "application/x-protobuf", "Content-Encoding": "snappy",
               "X-Prometheus-Remote-Write-Version": "0.1.0"}
    dsn = quiet_database
    start = today() - 3 * DAY
    old = Labels({"__name__": "cpu", "i": "old"})
    late = Labels({"__name__": "cpu", "i": "late"})
    samples = [(start + k * STEP, float(k)) for k in range(240)]
    config = Config()
    schemas.append((dsn, new_schema("sotp_ts")))
    config.server.storage = backend_url("timescaledb", dsn, schemas[-1][1], "compress_after=1d")
    async with TestClient(TestServer(build_app(config))) as client:

        async def post(series: list[tuple[Labels, list[tuple[int, float]]]]) -> tuple[int, str]:
            r = await client.post("/api/v1/write", data=encode_write_request(series), headers=headers)
            return r.status, await r.text()

        store = client.app[CTX].storage
        schema = store.options.schema
        assert await post([(old, samples)]) == (204, "")
        await flush_all(store)
        run_job(dsn, schema, "compression")
        assert [c[2] for c in chunks(dsn, schema)] == [True]
        assert await post([(late, [(start + HOUR, 7.0)])]) == (204, "")
        assert await post([(old, samples[100:140])]) == (204, "")  # a retry of compressed samples
        status, reason = await post([(old, [(start + 30, 5.0)])])
        assert status == 400 and "out-of-order" in reason, (status, reason)
        r = await client.get("/api/v1/query_range", params={
            "query": 'count_over_time(cpu[1d])', "start": str((start + DAY - STEP) / 1000),
            "end": str((start + DAY - STEP) / 1000), "step": "60"})
        body = await r.json()
        counts = {m["metric"]["i"]: m["values"][0][1] for m in body["data"]["result"]}
        assert counts == {"old": "240", "late": "1"}, body
