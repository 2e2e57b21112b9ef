"""Versioned migrations, storage mode (TimescaleDB or native partitions) and partition management.

Tables (DESIGN.md §4), all in the schema named by the storage URL:

* ``sotp_migrations(version, description, applied_at)`` — which migrations ran.
* ``sotp_meta(key, value)`` — ``mode`` (``timescaledb``/``partitions``), ``partition_ms``, compaction state.
* ``sotp_label(id, name, value)`` — each label pair once.
* ``sotp_series(id, metric, label_ids, labels, first_ms)`` — unique on the sorted ``label_ids``; GIN on it.
* ``sotp_samples(series_id, t_min, t_max, ts int8[], vals float8[])`` — block rows, partitioned on ``t_min``.
* ``sotp_samples_flat(time, series_id, value)`` — a view that unnests the blocks for SQL users.
* ``sotp_wal(seq, t_min, t_max, n, sids, counts, ts, vals)`` — the write-ahead log: one row per committed
  request (its columns packed, :mod:`sotp.storage.wal`), until a head flush turns its samples into blocks.

A migration is SQL run in one transaction under an advisory lock, so two services starting at once do not
both apply it. The mode is chosen once, by migration 1, and recorded: later starts read it back.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql

from sotp.storage.pg.options import PgOptions

log = logging.getLogger(__name__)

MODE_TIMESCALE = "timescaledb"
MODE_PARTITIONS = "partitions"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    description: str
    #: Statements for the given mode and options.
    statements: Callable[[str, PgOptions], list[str]]


def _v1(mode: str, opts: PgOptions) -> list[str]:
    partition_clause = " PARTITION BY RANGE (t_min)" if mode == MODE_PARTITIONS else ""
    stmts = [
        "CREATE TABLE sotp_meta (key text PRIMARY KEY, value text NOT NULL)",
        "CREATE TABLE sotp_label (id serial PRIMARY KEY, name text NOT NULL, value text NOT NULL, "
        "UNIQUE (name, value))",
        "CREATE TABLE sotp_series (id bigserial PRIMARY KEY, metric text NOT NULL, label_ids int[] NOT NULL, "
        "labels jsonb NOT NULL, first_ms bigint NOT NULL)",
        # label_ids is sorted, so equal label sets have equal arrays: the unique index is the series key.
        "CREATE UNIQUE INDEX sotp_series_label_ids_key ON sotp_series (label_ids)",
        "CREATE INDEX sotp_series_label_ids_gin ON sotp_series USING gin (label_ids)",
        "CREATE INDEX sotp_series_metric ON sotp_series (metric)",
        "CREATE TABLE sotp_samples (series_id bigint NOT NULL, t_min timestamptz NOT NULL, "
        "t_max timestamptz NOT NULL, ts bigint[] NOT NULL, vals float8[] NOT NULL)" + partition_clause,
        "CREATE INDEX sotp_samples_series_tmax ON sotp_samples (series_id, t_max)",
        "CREATE VIEW sotp_samples_flat AS SELECT to_timestamp(u.t / 1000.0) AS time, s.series_id, u.v AS value "
        "FROM sotp_samples s CROSS JOIN LATERAL unnest(s.ts, s.vals) AS u(t, v)",
    ]
    if mode == MODE_TIMESCALE:
        stmts += timescale_statements(opts.partition_ms, opts.compress_after_ms)
    stmts += [
        f"INSERT INTO sotp_meta (key, value) VALUES ('mode', '{mode}')",
        f"INSERT INTO sotp_meta (key, value) VALUES ('partition_ms', '{opts.partition_ms}')",
        f"INSERT INTO sotp_meta (key, value) VALUES ('block_ms', '{opts.block_ms}')",
    ]
    return stmts


def _v2(mode: str, opts: PgOptions) -> list[str]:
    # The write-ahead log of the live stream: one row per committed request (sotp.storage.wal), read back
    # into every process's head and deleted once a flush has turned its samples into block rows. A plain
    # table in every mode: it is small and short-lived.
    return [
        "CREATE TABLE sotp_wal (seq bigserial PRIMARY KEY, t_min bigint NOT NULL, t_max bigint NOT NULL, "
        "n int NOT NULL, sids bytea NOT NULL, counts bytea NOT NULL, ts bytea NOT NULL, vals bytea NOT NULL)",
        "CREATE INDEX sotp_wal_tmax ON sotp_wal (t_max)",
    ]


MIGRATIONS: list[Migration] = [
    Migration(1, "labels, series and block samples", _v1),
    Migration(2, "write-ahead log of the live stream", _v2),
]


def timescale_statements(chunk_ms: int, compress_after_ms: int) -> list[str]:
    """TimescaleDB set-up for ``sotp_samples`` (run right after the plain table is created).

    Retention is not a TimescaleDB policy: :meth:`PostgresStorage.delete_before` drops chunks with
    ``drop_chunks`` so that one retention setting (``server.retention``) rules every backend.
    """
    return [
        "CREATE EXTENSION IF NOT EXISTS timescaledb",
        "SELECT create_hypertable('sotp_samples', 't_min', "
        f"chunk_time_interval => interval '{chunk_ms} milliseconds', migrate_data => true)",
        "ALTER TABLE sotp_samples SET (timescaledb.compress, timescaledb.compress_segmentby = 'series_id', "
        "timescaledb.compress_orderby = 't_min')",
        f"SELECT add_compression_policy('sotp_samples', interval '{compress_after_ms} milliseconds')",
    ]


def timescale_drop_statement(before_ms: int) -> str:
    """Retention in TimescaleDB mode: drop whole chunks whose data ends before ``before_ms``."""
    return f"SELECT drop_chunks('sotp_samples', older_than => to_timestamp({before_ms} / 1000.0))"


async def timescale_available(conn: psycopg.AsyncConnection[Any]) -> bool:
    cur = await conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'")
    return await cur.fetchone() is not None


async def migrate(conn: psycopg.AsyncConnection[Any], opts: PgOptions) -> tuple[str, list[int]]:
    """Apply pending migrations in ``opts.schema``; returns ``(mode, versions applied now)``.

    ``conn`` must be in autocommit mode; each migration runs in its own transaction.
    """
    schema = sql.Identifier(opts.schema)
    applied: list[int] = []
    async with conn.transaction():
        # One lock per schema name: concurrent starters wait here, then see the migrations done.
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('sotp_migrate:' || %s))", (opts.schema,))
        await conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(schema))
        await conn.execute(sql.SQL("SET LOCAL search_path TO {}").format(schema))
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS sotp_migrations (version int PRIMARY KEY, description text NOT NULL, "
            "applied_at timestamptz NOT NULL DEFAULT now())"
        )
        cur = await conn.execute("SELECT version FROM sotp_migrations")
        done = {int(r[0]) for r in await cur.fetchall()}
        if 1 in done:
            cur = await conn.execute("SELECT value FROM sotp_meta WHERE key = 'mode'")
            row = await cur.fetchone()
            mode = str(row[0]) if row else MODE_PARTITIONS
        else:
            mode = await choose_mode(conn, opts)
        for m in MIGRATIONS:
            if m.version in done:
                continue
            for stmt in m.statements(mode, opts):
                await conn.execute(stmt)  # type: ignore[arg-type]  # our own constant SQL
            await conn.execute(
                "INSERT INTO sotp_migrations (version, description) VALUES (%s, %s)", (m.version, m.description)
            )
            applied.append(m.version)
            log.info("storage: applied PostgreSQL migration %d (%s) in schema %s", m.version, m.description,
                     opts.schema)
    return mode, applied


async def choose_mode(conn: psycopg.AsyncConnection[Any], opts: PgOptions) -> str:
    if opts.timescaledb == "off":
        return MODE_PARTITIONS
    if await timescale_available(conn):
        return MODE_TIMESCALE
    if opts.timescaledb == "on":
        from sotp.errors import ConfigError

        raise ConfigError(
            "storage URL asks for timescaledb=on but the extension is not in pg_available_extensions: "
            "install TimescaleDB or use timescaledb=auto"
        )
    return MODE_PARTITIONS


# -- native partitions -------------------------------------------------------------------------------


def ms_to_dt(ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=ms)


def partition_name(start_ms: int, partition_ms: int) -> str:
    """``sotp_samples_p20261127`` (whole days) or ``sotp_samples_p20261127_0200``."""
    start = ms_to_dt(start_ms)
    if partition_ms % 86_400_000 == 0:
        return f"sotp_samples_p{start:%Y%m%d}"
    return f"sotp_samples_p{start:%Y%m%d_%H%M%S}"


def partition_statement(schema: str, start_ms: int, partition_ms: int) -> sql.Composed:
    name = partition_name(start_ms, partition_ms)
    return sql.SQL("CREATE TABLE IF NOT EXISTS {}.{} PARTITION OF {}.sotp_samples FOR VALUES FROM ({}) TO ({})").format(
        sql.Identifier(schema),
        sql.Identifier(name),
        sql.Identifier(schema),
        sql.Literal(ms_to_dt(start_ms)),
        sql.Literal(ms_to_dt(start_ms + partition_ms)),
    )


async def list_partitions(conn: psycopg.AsyncConnection[Any], schema: str) -> dict[int, str]:
    """Existing partitions of ``sotp_samples``: start (Unix ms) -> table name."""
    cur = await conn.execute(
        "SELECT c.relname, (extract(epoch FROM "
        "  (regexp_match(pg_get_expr(c.relpartbound, c.oid), 'FROM \\(''([^'']+)''\\)'))[1]::timestamptz"
        ") * 1000)::bigint "
        "FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "JOIN pg_class p ON p.oid = i.inhparent JOIN pg_namespace n ON n.oid = p.relnamespace "
        "WHERE n.nspname = %s AND p.relname = 'sotp_samples'",
        (schema,),
    )
    return {int(r[1]): str(r[0]) for r in await cur.fetchall()}


async def create_partitions(
    conn: psycopg.AsyncConnection[Any], schema: str, starts: Sequence[int], partition_ms: int
) -> None:
    """Create the partitions starting at ``starts`` (idempotent; safe against a concurrent creator)."""
    for start in sorted(starts):
        # A concurrent creator may win between IF NOT EXISTS's check and the creation itself.
        with contextlib.suppress(psycopg.errors.DuplicateTable, psycopg.errors.UniqueViolation):
            await conn.execute(partition_statement(schema, start, partition_ms))
        log.debug("storage: partition %s ready", partition_name(start, partition_ms))
