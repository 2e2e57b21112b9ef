"""Versioned migrations, storage mode (TimescaleDB or native partitions) and partition management.

Tables (DESIGN.md §4), all in the schema named by the storage URL:

* ``sotp_migrations(version, description, applied_at)`` — which migrations ran.
* ``sotp_meta(key, value)`` — ``mode`` (``timescaledb``/``partitions``), ``partition_ms``, compaction state.
* ``sotp_label(id, name, value)`` — each label pair once.
* ``sotp_series(id, metric, label_ids, labels, first_ms)`` — unique on the sorted ``label_ids``; GIN on it.
* ``sotp_samples(series_id, t_min, t_max, ts int8[], vals float8[])`` — block rows, partitioned on ``t_min``;
  times are Unix milliseconds (``bigint``) since migration 3.
* ``sotp_samples_flat(time, series_id, value)`` — a view that unnests the blocks for SQL users.
* ``sotp_wal(seq, t_min, t_max, n, sids, counts, ts, vals)`` — the write-ahead log: one row per committed
  request (its columns packed, :mod:`sotp.storage.wal`), until a head flush turns its samples into blocks.
* ``sotp_state(ns, key, gen, value)``, ``sotp_state_gen(ns, gen, purged)`` — component state committed with
  the samples (:mod:`sotp.storage.state`), since migration 5.

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

from sotp.errors import ConfigError
from sotp.storage.pg import timescale
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


_FLAT_VIEW = (
    "CREATE VIEW sotp_samples_flat AS SELECT to_timestamp(u.t / 1000.0) AS time, s.series_id, u.v AS value "
    "FROM sotp_samples s CROSS JOIN LATERAL unnest(s.ts, s.vals) AS u(t, v)"
)


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
        _FLAT_VIEW,
    ]
    # TimescaleDB mode made sotp_samples a hypertable here until migration 3 replaced the table; a new
    # schema now gets its hypertable from migration 3 only.
    stmts += [
        f"INSERT INTO sotp_meta (key, value) VALUES ('mode', '{mode}')",
        f"INSERT INTO sotp_meta (key, value) VALUES ('partition_ms', '{opts.partition_ms}')",
        f"INSERT INTO sotp_meta (key, value) VALUES ('block_ms', '{opts.block_ms}')",
    ]
    return stmts


def _v2(mode: str, opts: PgOptions) -> list[str]:
    # The write-ahead log of the live stream: one row per committed request (sotp.storage.wal), read back
    # into every process's head and deleted once a flush has turned its samples into block rows. A plain
    # table in every mode: it is small and short-lived. Its arrays come LZ4-compressed: EXTERNAL storage
    # keeps PostgreSQL from trying to compress them again.
    return [
        "CREATE TABLE sotp_wal (seq bigserial PRIMARY KEY, t_min bigint NOT NULL, t_max bigint NOT NULL, "
        "n int NOT NULL, sids bytea NOT NULL, counts bytea NOT NULL, ts bytea NOT NULL, vals bytea NOT NULL)",
        "CREATE INDEX sotp_wal_tmax ON sotp_wal (t_max)",
        *(f"ALTER TABLE sotp_wal ALTER COLUMN {c} SET STORAGE EXTERNAL" for c in ("sids", "counts", "ts", "vals")),
        # One statement per write: in a VOLATILE PL/pgSQL function each statement takes its own snapshot, so
        # the boundary is read after the shared advisory lock is granted (a flush holds it exclusively; the
        # lock lasts until the caller's implicit transaction commits). NULL: a flush moved the boundary past
        # the caller's, nothing was written.
        "CREATE FUNCTION sotp_wal_append(lock_key text, boundary bigint, t_min bigint, t_max bigint, n int, "
        "sids bytea, counts bytea, ts bytea, vals bytea) RETURNS bigint LANGUAGE plpgsql VOLATILE AS $fn$ "
        "DECLARE head_min bigint; seq bigint; "
        "BEGIN "
        "  PERFORM pg_advisory_xact_lock_shared(hashtext(lock_key)); "
        "  SELECT value::bigint INTO head_min FROM sotp_meta WHERE key = 'head_min_ms'; "
        "  IF head_min IS NOT NULL AND head_min > boundary THEN RETURN NULL; END IF; "
        "  INSERT INTO sotp_wal (t_min, t_max, n, sids, counts, ts, vals) "
        "    VALUES (t_min, t_max, n, sids, counts, ts, vals) RETURNING sotp_wal.seq INTO seq; "
        "  RETURN seq; "
        "END $fn$",
    ]


#: Renames every native partition of sotp_samples_v1 out of the way and creates its twin, with the same
#: name and range in Unix ms, in the new sotp_samples.
_TWIN_PARTITIONS = r"""
DO $$
DECLARE r record;
BEGIN
  FOR r IN SELECT c.relname AS name, regexp_match(pg_get_expr(c.relpartbound, c.oid),
                  'FROM \(''([^'']+)''\) TO \(''([^'']+)''\)') AS b
           FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
           WHERE i.inhparent = 'sotp_samples_v1'::regclass
  LOOP
    EXECUTE format('ALTER TABLE %I RENAME TO %I', r.name, r.name || '_v1');
    EXECUTE format('CREATE TABLE %I PARTITION OF sotp_samples FOR VALUES FROM (%s) TO (%s)', r.name,
                   (extract(epoch FROM r.b[1]::timestamptz) * 1000)::bigint,
                   (extract(epoch FROM r.b[2]::timestamptz) * 1000)::bigint);
  END LOOP;
END $$
"""


def _v3(mode: str, opts: PgOptions) -> list[str]:
    # Block times as integer Unix milliseconds, the unit of the samples themselves: TimescaleDB's time
    # dimension is then the same integer (policies in ms through sotp_now_ms()), and no timestamptz
    # conversion remains on the write or read path. The blocks are copied into the new table whole
    # (t_min/t_max taken from the arrays, so exact); one transaction, so a failure changes nothing.
    partition_clause = " PARTITION BY RANGE (t_min)" if mode == MODE_PARTITIONS else ""
    stmts = [
        "DROP VIEW sotp_samples_flat",
        "ALTER TABLE sotp_samples RENAME TO sotp_samples_v1",
        "ALTER INDEX sotp_samples_series_tmax RENAME TO sotp_samples_v1_series_tmax",
        "CREATE TABLE sotp_samples (series_id bigint NOT NULL, t_min bigint NOT NULL, t_max bigint NOT NULL, "
        "ts bigint[] NOT NULL, vals float8[] NOT NULL)" + partition_clause,
        "CREATE INDEX sotp_samples_series_tmax ON sotp_samples (series_id, t_max)",
    ]
    if mode == MODE_TIMESCALE:
        stmts += timescale.hypertable_statements(opts.partition_ms, opts.compress_after_ms)
    else:
        stmts.append(_TWIN_PARTITIONS)
    return [
        *stmts,
        "INSERT INTO sotp_samples (series_id, t_min, t_max, ts, vals) "
        "SELECT series_id, ts[1], ts[cardinality(ts)], ts, vals FROM sotp_samples_v1",
        "DROP TABLE sotp_samples_v1",
        _FLAT_VIEW,
    ]


def _v4(mode: str, opts: PgOptions) -> list[str]:
    # Series collection (retention of series rows left without samples) bumps a generation in sotp_meta; a
    # write checks it under the shared lock, so no replica writes samples for a series id it cached before
    # a collection removed that series (it re-resolves its ids and writes again).
    return [
        "DROP FUNCTION sotp_wal_append(text, bigint, bigint, bigint, int, bytea, bytea, bytea, bytea)",
        "CREATE FUNCTION sotp_wal_append(lock_key text, boundary bigint, generation bigint, t_min bigint, "
        "t_max bigint, n int, sids bytea, counts bytea, ts bytea, vals bytea) RETURNS bigint LANGUAGE plpgsql "
        "VOLATILE AS $fn$ "
        "DECLARE head_min bigint; gen bigint; seq bigint; "
        "BEGIN "
        "  PERFORM pg_advisory_xact_lock_shared(hashtext(lock_key)); "
        "  SELECT value::bigint INTO head_min FROM sotp_meta WHERE key = 'head_min_ms'; "
        "  IF head_min IS NOT NULL AND head_min > boundary THEN RETURN NULL; END IF; "
        "  SELECT value::bigint INTO gen FROM sotp_meta WHERE key = 'series_gc_generation'; "
        "  IF coalesce(gen, 0) <> generation THEN RETURN NULL; END IF; "
        "  INSERT INTO sotp_wal (t_min, t_max, n, sids, counts, ts, vals) "
        "    VALUES (t_min, t_max, n, sids, counts, ts, vals) RETURNING sotp_wal.seq INTO seq; "
        "  RETURN seq; "
        "END $fn$",
    ]


def _v5(mode: str, opts: PgOptions) -> list[str]:
    # Component state committed in the samples' transactions (sotp.storage.state: the push gateway's
    # groups), so replicas share it and a restart keeps it.
    from sotp.storage.state import PG_FUNCTIONS, TABLES

    return [*TABLES, *PG_FUNCTIONS]


MIGRATIONS: list[Migration] = [
    Migration(1, "labels, series and block samples", _v1),
    Migration(2, "write-ahead log of the live stream", _v2),
    Migration(3, "block times as integer milliseconds", _v3),
    Migration(4, "series collection generation checked by writes", _v4),
    Migration(5, "stored component state (push gateway groups)", _v5),
]


async def migrate(conn: psycopg.AsyncConnection[Any], opts: PgOptions) -> tuple[str, list[int]]:
    """Apply pending migrations in ``opts.schema``; returns ``(mode, versions applied now)``.

    ``conn`` must be in autocommit mode; each migration runs in its own transaction. The mode is chosen
    by the first migration (:func:`choose_mode`) and kept: a schema never changes mode on its own
    (:func:`check_mode` refuses a URL that asks for the other one).
    """
    schema = sql.Identifier(opts.schema)
    applied: list[int] = []
    async with conn.transaction():
        # One lock per schema name: concurrent starters wait here, then see the migrations done.
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('sotp_migrate:' || %s))", (opts.schema,))
        await conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(schema))
        await timescale.set_search_path(conn, opts.schema, local=True)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS sotp_migrations (version int PRIMARY KEY, description text NOT NULL, "
            "applied_at timestamptz NOT NULL DEFAULT now())"
        )
        cur = await conn.execute("SELECT version FROM sotp_migrations")
        done = {int(r[0]) for r in await cur.fetchall()}
        found = await timescale.probe(conn)
        if 1 in done:
            cur = await conn.execute("SELECT value FROM sotp_meta WHERE key = 'mode'")
            row = await cur.fetchone()
            mode = str(row[0]) if row else MODE_PARTITIONS
            check_mode(mode, opts, found)
        else:
            mode = choose_mode(opts, found)
            if mode == MODE_TIMESCALE:
                await timescale.ensure_extension(conn, found)
                await timescale.set_search_path(conn, opts.schema, local=True)
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


def choose_mode(opts: PgOptions, found: timescale.Availability) -> str:
    """The mode of a new schema: TimescaleDB when asked for (``on``) or usable (``auto``)."""
    if opts.timescaledb == "off":
        return MODE_PARTITIONS
    if found.usable:
        return MODE_TIMESCALE
    if opts.timescaledb == "on":
        raise ConfigError(
            f"storage URL asks for timescaledb=on but TimescaleDB cannot be used: {found.problem} "
            "(or use timescaledb=auto to fall back to native partitions)"
        )
    log.warning(
        "storage: TimescaleDB not used for schema %s, native partitions instead: %s. A schema keeps the "
        "mode it starts with: once fixed, convert it with sotp db migrate --storage URL --convert-to timescaledb",
        opts.schema, found.problem,
    )
    return MODE_PARTITIONS


def check_mode(mode: str, opts: PgOptions, found: timescale.Availability) -> None:
    """Refuse to open a schema whose recorded mode contradicts the URL or the server."""
    if mode == MODE_TIMESCALE and opts.timescaledb == "off":
        raise ConfigError(
            f"schema {opts.schema} holds a TimescaleDB hypertable (it was initialised with TimescaleDB) but "
            "the storage URL says timescaledb=off; a schema keeps its mode: use timescaledb=auto, or convert it "
            "with sotp db migrate --storage URL --convert-to partitions (services stopped)"
        )
    if mode == MODE_TIMESCALE and not found.usable:
        raise ConfigError(f"schema {opts.schema} holds a TimescaleDB hypertable but {found.problem}")
    if mode == MODE_PARTITIONS and opts.timescaledb == "on":
        raise ConfigError(
            f"schema {opts.schema} was initialised with native partitions (no TimescaleDB) and a schema "
            "keeps its mode: the storage URL's timescaledb=on does not convert it; convert it with sotp db "
            "migrate --storage URL --convert-to timescaledb (services stopped), or use timescaledb=auto"
        )


#: Renames every native partition of sotp_samples_old out of the way (its name gets ``_old``), so the new
#: table's partitions can take the usual names.
_RENAME_OLD_PARTITIONS = r"""
DO $$
DECLARE r record;
BEGIN
  FOR r IN SELECT c.relname AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
           WHERE i.inhparent = 'sotp_samples_old'::regclass
  LOOP
    EXECUTE format('ALTER TABLE %I RENAME TO %I', r.name, r.name || '_old');
  END LOOP;
END $$
"""


async def convert(conn: psycopg.AsyncConnection[Any], opts: PgOptions, target: str) -> tuple[str, int]:
    """``sotp db migrate --convert-to``: rebuild ``sotp_samples`` of an up-to-date schema in mode ``target``
    with every block row, in one transaction (a failure changes nothing). Returns ``(mode before, rows
    moved)``; nothing happens when the schema already has ``target``.

    The table is locked for the copy; services using the schema must be stopped first and started after
    (they keep the mode and partitions they opened with)."""
    if target not in (MODE_TIMESCALE, MODE_PARTITIONS):
        raise ConfigError(f"cannot convert to {target!r}: use {MODE_TIMESCALE} or {MODE_PARTITIONS}")
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('sotp_migrate:' || %s))", (opts.schema,))
        await timescale.set_search_path(conn, opts.schema, local=True)
        cur = await conn.execute("SELECT value FROM sotp_meta WHERE key = 'mode'")
        row = await cur.fetchone()
        before = str(row[0]) if row else MODE_PARTITIONS
        if before == target:
            return before, 0
        if target == MODE_TIMESCALE:
            found = await timescale.probe(conn)
            if not found.usable:
                raise ConfigError(f"cannot convert schema {opts.schema} to TimescaleDB: {found.problem}")
            await timescale.ensure_extension(conn, found)
            await timescale.set_search_path(conn, opts.schema, local=True)
        stmts = [
            "DROP VIEW sotp_samples_flat",
            "ALTER TABLE sotp_samples RENAME TO sotp_samples_old",
            "ALTER INDEX sotp_samples_series_tmax RENAME TO sotp_samples_old_series_tmax",
        ]
        if before == MODE_PARTITIONS:
            stmts.append(_RENAME_OLD_PARTITIONS)
        partition_clause = " PARTITION BY RANGE (t_min)" if target == MODE_PARTITIONS else ""
        stmts += [
            "CREATE TABLE sotp_samples (series_id bigint NOT NULL, t_min bigint NOT NULL, t_max bigint NOT NULL, "
            "ts bigint[] NOT NULL, vals float8[] NOT NULL)" + partition_clause,
            "CREATE INDEX sotp_samples_series_tmax ON sotp_samples (series_id, t_max)",
        ]
        if target == MODE_TIMESCALE:
            stmts += timescale.hypertable_statements(opts.partition_ms, opts.compress_after_ms)
        for stmt in stmts:
            await conn.execute(stmt)  # type: ignore[arg-type]  # our own constant SQL
        if target == MODE_PARTITIONS:
            p = opts.partition_ms
            # Floored as Python's // (PostgreSQL's / truncates towards zero).
            cur = await conn.execute(
                "SELECT DISTINCT t_min - mod(mod(t_min, %(p)s) + %(p)s, %(p)s) FROM sotp_samples_old", {"p": p}
            )
            await create_partitions(conn, opts.schema, [int(r[0]) for r in await cur.fetchall()], p)
        cur = await conn.execute(
            "INSERT INTO sotp_samples (series_id, t_min, t_max, ts, vals) "
            "SELECT series_id, t_min, t_max, ts, vals FROM sotp_samples_old"
        )
        moved = max(cur.rowcount, 0)
        await conn.execute("DROP TABLE sotp_samples_old")
        await conn.execute(_FLAT_VIEW)  # type: ignore[arg-type]  # our own constant SQL
        await conn.execute("UPDATE sotp_meta SET value = %s WHERE key = 'mode'", (target,))
        log.info("storage: schema %s converted from %s to %s (%d block rows)", opts.schema, before, target, moved)
    return before, moved


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
        sql.Literal(start_ms),
        sql.Literal(start_ms + partition_ms),
    )


async def list_partitions(conn: psycopg.AsyncConnection[Any], schema: str) -> dict[int, str]:
    """Existing partitions of ``sotp_samples``: start (Unix ms) -> table name."""
    cur = await conn.execute(
        "SELECT c.relname, (regexp_match(pg_get_expr(c.relpartbound, c.oid), 'FROM \\(''(-?[0-9]+)''\\)'))[1]::bigint "
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
