"""TimescaleDB: whether the extension is usable, where it lives, and the hypertable's set-up and policies.

The extension exists once per database, in one schema (``public`` when SOTP creates it, as the
``timescale/timescaledb`` image does); SOTP's tables live in the schema of the storage URL. Every SOTP
connection therefore searches ``<sotp schema>, <extension schema>`` (:data:`SEARCH_PATH_SQL`), and the
calls SOTP makes itself name the extension's schema explicitly.

Usable means: the server has the package (``pg_available_extensions``) **and** loads it at start
(``shared_preload_libraries``) — creating it without the preload kills the session with a FATAL error,
so it is checked first — **and** the extension exists or the user may create it (a superuser).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

log = logging.getLogger(__name__)

#: Where SOTP creates the extension when the database has none (the timescale/timescaledb image's choice).
EXTENSION_SCHEMA = "public"

#: ``search_path`` = SOTP's schema, then the extension's (when it exists elsewhere); one round trip.
SEARCH_PATH_SQL = (
    "SELECT set_config('search_path', array_to_string(ARRAY[quote_ident(%(schema)s)] || ARRAY("
    "  SELECT quote_ident(n.nspname) FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace"
    "  WHERE e.extname = 'timescaledb' AND n.nspname <> %(schema)s), ', '), %(local)s)"
)

_PROBE_SQL = (
    "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'),"
    " current_setting('shared_preload_libraries') ~ '(^|[,/ \"])timescaledb($|[,\" ])',"
    " (SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace"
    "  WHERE e.extname = 'timescaledb'),"
    " (SELECT rolsuper FROM pg_roles WHERE rolname = current_user),"
    " current_setting('server_version_num')::int / 10000,"
    " current_setting('config_file', true)"
)


@dataclass(frozen=True, slots=True)
class Availability:
    """What the server offers; :attr:`problem` says why TimescaleDB cannot be used, and the fix."""

    packaged: bool
    preloaded: bool
    #: The schema holding the extension in this database, or ``None`` when it is not created.
    schema: str | None
    superuser: bool
    pg_major: int
    config_file: str | None

    @property
    def usable(self) -> bool:
        return not self.problem

    @property
    def problem(self) -> str:
        where = self.config_file or "postgresql.conf"
        if not self.packaged:
            return (
                "the timescaledb extension is not installed on the PostgreSQL server (pg_available_extensions "
                f"lacks it): install the TimescaleDB package for PostgreSQL {self.pg_major} (or run the "
                "timescale/timescaledb image) and add shared_preload_libraries = 'timescaledb' to "
                f"{where}, then restart PostgreSQL"
            )
        if not self.preloaded:
            return (
                "the timescaledb extension is installed but not preloaded: add shared_preload_libraries = "
                f"'timescaledb' to {where} and restart PostgreSQL"
            )
        if self.schema is None and not self.superuser:
            return (
                "the timescaledb extension is not created in this database and creating it needs a superuser: "
                f"run CREATE EXTENSION timescaledb SCHEMA {EXTENSION_SCHEMA} once as one"
            )
        return ""


async def probe(conn: psycopg.AsyncConnection[Any]) -> Availability:
    cur = await conn.execute(_PROBE_SQL)
    row = await cur.fetchone()
    assert row is not None
    return Availability(bool(row[0]), bool(row[1]), row[2], bool(row[3]), int(row[4]), row[5])


async def ensure_extension(conn: psycopg.AsyncConnection[Any], found: Availability) -> str:
    """Create the extension when the database has none (in :data:`EXTENSION_SCHEMA`); return its schema.

    Runs inside the caller's transaction. Deployments in other schemas of the same database create it
    at the same moment, so creation is serialised on a database-wide advisory lock."""
    if found.schema is not None:
        return found.schema
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext('sotp_create_extension_timescaledb'))")
    cur = await conn.execute(
        "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace "
        "WHERE e.extname = 'timescaledb'"
    )
    row = await cur.fetchone()
    if row is not None:
        return str(row[0])
    await conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(EXTENSION_SCHEMA)))
    await conn.execute(
        sql.SQL("CREATE EXTENSION IF NOT EXISTS timescaledb SCHEMA {}").format(sql.Identifier(EXTENSION_SCHEMA))
    )
    log.info("storage: created the timescaledb extension in schema %s", EXTENSION_SCHEMA)
    return EXTENSION_SCHEMA


async def set_search_path(conn: psycopg.AsyncConnection[Any], schema: str, local: bool = False) -> None:
    """Search SOTP's ``schema`` then the extension's (``local``: for the current transaction only)."""
    await conn.execute(SEARCH_PATH_SQL, {"schema": schema, "local": local})


def hypertable_statements(chunk_ms: int, compress_after_ms: int) -> list[str]:
    """TimescaleDB set-up for ``sotp_samples`` (run right after the plain table is created, with the
    extension's schema on the search path).

    The time dimension is ``t_min`` in Unix milliseconds (the unit of the samples' ``ts``), so policies
    need ``sotp_now_ms()`` as the hypertable's notion of now.

    Compression has no ``segmentby`` and orders by ``(series_id, t_min)``: a compressed batch then holds
    up to 1,000 block rows of neighbouring series, whose ``ts`` arrays are mostly the same (series scraped
    or sent together share timestamps), so the compressor stores them nearly once. Measured on
    bench/loadgen.py's data (10,000 series × 2 h, blocks of 240 samples): 3.7 bytes/sample, against 10.9
    with ``segmentby = 'series_id'`` (each segment one series' few rows: nothing repeats) and 10.6
    uncompressed. Reads (:mod:`sotp.storage.pg.query`: ``series_id = ANY(...)`` and ``t_min`` bounds) use
    the batches' min/max of both orderby columns, so one series costs one batch per chunk; wide reads
    decompress fewer, larger batches (5,000 series: 2.1 s vs 3.2 s with segmentby on compressed chunks).
    """
    return [
        "CREATE OR REPLACE FUNCTION sotp_now_ms() RETURNS bigint LANGUAGE sql STABLE "
        "AS 'SELECT (extract(epoch FROM now()) * 1000)::bigint'",
        f"SELECT create_hypertable('sotp_samples', by_range('t_min', {chunk_ms}::bigint))",
        "SELECT set_integer_now_func('sotp_samples', 'sotp_now_ms')",
        "ALTER TABLE sotp_samples SET (timescaledb.compress, timescaledb.compress_segmentby = '', "
        "timescaledb.compress_orderby = 'series_id, t_min')",
        f"SELECT add_compression_policy('sotp_samples', compress_after => {compress_after_ms}::bigint)",
    ]


def drop_statement(ext_schema: str, before_ms: int) -> sql.Composed:
    """Retention: drop whole chunks that end at or before ``before_ms``."""
    return sql.SQL("SELECT {}.drop_chunks('sotp_samples', older_than => {}::bigint)").format(
        sql.Identifier(ext_schema), sql.Literal(before_ms)
    )


#: How far the retention policy's age is rounded up, so it is not rewritten at every maintenance run.
RETENTION_STEP_MS = 60_000


async def policy_jobs(conn: psycopg.AsyncConnection[Any], schema: str) -> dict[str, tuple[int, dict[str, Any]]]:
    """The TimescaleDB jobs of ``schema.sotp_samples``: ``{"compression"|"retention": (job id, config)}``."""
    cur = await conn.execute(
        "SELECT job_id, proc_name, config FROM timescaledb_information.jobs "
        "WHERE hypertable_schema = %s AND hypertable_name = 'sotp_samples' "
        "AND proc_name IN ('policy_compression', 'policy_retention')",
        (schema,),
    )
    return {str(name).removeprefix("policy_"): (int(jid), dict(cfg or {})) for jid, name, cfg in await cur.fetchall()}


async def set_retention(conn: psycopg.AsyncConnection[Any], ext_schema: str, schema: str, keep_ms: int) -> None:
    """Keep a TimescaleDB retention policy that drops chunks older than ``keep_ms`` (rounded up to a
    minute: never more than SOTP's own retention drops), so chunks go even while no SOTP service runs
    its maintenance. Adds the policy, or rewrites its ``drop_after`` when the retention changed."""
    keep = -(-max(keep_ms, 1) // RETENTION_STEP_MS) * RETENTION_STEP_MS
    jobs = await policy_jobs(conn, schema)
    ext = sql.Identifier(ext_schema)
    if "retention" not in jobs:
        await conn.execute(
            sql.SQL("SELECT {}.add_retention_policy('sotp_samples', drop_after => {}::bigint)").format(
                ext, sql.Literal(keep)
            )
        )
        log.info("storage: TimescaleDB retention policy on %s.sotp_samples drops chunks older than %d ms",
                 schema, keep)
        return
    job_id, config = jobs["retention"]
    if config.get("drop_after") != keep:
        config["drop_after"] = keep
        await conn.execute(
            sql.SQL("SELECT {}.alter_job(%s, config => %s::jsonb)").format(ext),
            (job_id, Jsonb(config)),
        )
