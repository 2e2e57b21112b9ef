"""PostgreSQL backend (``postgresql://user@host:port/db?schema=...``): block rows, binary COPY, partitions.

Layout (DESIGN.md §4, :mod:`sotp.storage.pg.schema`): one ``sotp_samples`` row holds many samples of one
series (``ts int8[]``, ``vals float8[]``), so the remote-write shape (10 samples per series per request)
writes 10× fewer rows than one row per sample. A row never spans two block windows (``block``, 2 h by
default), which bounds ``t_min`` from below for any read window and lets the compactor merge one window's
rows of a series into one.

Write path (:meth:`_PgAppender.commit`): series ids from the in-process cache (misses inserted in one
batch), ordering checked against the newest committed sample of each series, kept in memory as
Prometheus's head does (loaded lazily with one query), then one binary COPY per partition in one
transaction. ``synchronous_commit`` is forced on, so a returned commit is durable. Two appenders of one
process that touch the same series commit one after the other; others run in parallel on separate
connections of the pool.

Several processes may share a schema (receivers behind SO_REUSEPORT). Each keeps its own newest-sample
cache, so a sample that is out of order only relative to *another* process's write is accepted; reads
sort blocks and drop repeated timestamps, so this never shows as a duplicate or an unsorted series.

Partitions: with TimescaleDB (when ``pg_available_extensions`` lists it) ``sotp_samples`` is a hypertable
with compression; otherwise it is ``PARTITION BY RANGE (t_min)`` with partitions created at start-up,
ahead of time by :meth:`compact`/:meth:`delete_before` (which ``sotp serve`` runs periodically) and on
demand for any block outside them. Retention drops whole partitions.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt
import psycopg
from psycopg import sql
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from sotp.errors import ConfigError, SampleRejected, StorageError, StorageUnavailable
from sotp.model import Labels
from sotp.storage import Appender, Querier
from sotp.storage.head import StagedSeries, classify, verify_older
from sotp.storage.pg import schema, timescale
from sotp.storage.pg.batch import Group, Staging
from sotp.storage.pg.binary import COPY_HEADER, COPY_TRAILER, copy_blocks, copy_rows
from sotp.storage.pg.options import PgOptions, parse_url
from sotp.storage.pg.postings import Postings
from sotp.storage.pg.query import MAX_MS, MIN_MS, PgQuerier
from sotp.storage.pg.schema import MODE_TIMESCALE
from sotp.storage.pg.series import SeriesIndex

log = logging.getLogger(__name__)

_DOUBLE = struct.Struct(">d")
_Conn = psycopg.AsyncConnection[Any]
#: A block ready for COPY: series id, timestamps (ms), values.
Block = tuple[int, list[int], list[float]]


def _now_ms() -> int:
    return int(datetime.now(UTC).timestamp() * 1000)


def _redact(conninfo: str) -> str:
    """The conninfo without its password, for messages and logs."""
    try:
        params = psycopg.conninfo.conninfo_to_dict(conninfo)
    except psycopg.ProgrammingError:
        return "<unparsable conninfo>"
    params.pop("password", None)
    return psycopg.conninfo.make_conninfo("", **params)


class _SeriesLocks:
    """Serialises commits of one process that share a series, so each checks order against the other."""

    def __init__(self) -> None:
        self._held: list[tuple[frozenset[int], asyncio.Future[None]]] = []

    @asynccontextmanager
    async def hold(self, sids: Iterable[int]) -> AsyncIterator[None]:
        wanted = frozenset(sids)
        while True:
            busy = [f for held, f in self._held if not wanted.isdisjoint(held)]
            if not busy:
                break
            await asyncio.gather(*busy)
        entry = (wanted, asyncio.get_running_loop().create_future())
        self._held.append(entry)
        try:
            yield
        finally:
            # By identity: comparing the frozensets of two large commits would cost a scan each.
            self._held = [e for e in self._held if e is not entry]
            entry[1].set_result(None)


class PostgresStorage:
    """The PostgreSQL/TimescaleDB store. See the module docstring for the layout and guarantees."""

    def __init__(self, url: str) -> None:
        self.options: PgOptions = parse_url(url)
        self.block_ms = self.options.block_ms
        self.partition_ms = self.options.partition_ms
        self.mode = ""
        #: The schema holding the timescaledb extension (TimescaleDB mode only).
        self.ext_schema = ""
        self.index = SeriesIndex()
        self.postings = Postings(self.index)  # the querier's candidate selection
        self._pool: AsyncConnectionPool[Any] | None = None
        self._last: dict[int, tuple[int, float] | None] = {}
        self._partitions: set[int] = set()
        self._partition_lock = asyncio.Lock()
        self._locks = _SeriesLocks()
        self._where = f"{_redact(self.options.conninfo)} (schema {self.options.schema})"

    # -- lifecycle -------------------------------------------------------------------------------

    async def _configure(self, conn: _Conn) -> None:
        # SOTP's schema, then TimescaleDB's when the extension lives in another one (pg/timescale.py).
        await timescale.set_search_path(conn, self.options.schema)
        await conn.execute("SET synchronous_commit TO on")  # a returned commit must be durable
        # The querier concatenates arrays with several aggregates over one scan; they stay aligned only
        # when one process feeds them (and on 2 cores parallel plans gain little for these queries).
        await conn.execute("SET max_parallel_workers_per_gather TO 0")

    async def open(self) -> None:
        opts = self.options
        pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            opts.conninfo,
            min_size=opts.pool_min,
            max_size=opts.pool_max,
            kwargs={"autocommit": True},
            configure=self._configure,
            check=AsyncConnectionPool.check_connection,
            open=False,
            timeout=opts.pool_timeout_s,  # a write waits this long for a connection before answering 503
            name=f"sotp-{opts.schema}",
        )
        try:
            await pool.open(wait=True, timeout=max(opts.pool_timeout_s, 1.0))
        except (PoolTimeout, psycopg.OperationalError) as err:
            await pool.close()
            raise StorageUnavailable(
                f"cannot connect to PostgreSQL at {self._where}: {err}; check that the server runs and the "
                "storage URL (--storage) is right"
            ) from err
        self._pool = pool
        try:
            async with self.connection() as conn:
                self.mode, _ = await schema.migrate(conn, opts)
                await self._load_meta(conn)
                if self.mode != MODE_TIMESCALE:
                    self._partitions = set(await schema.list_partitions(conn, opts.schema))
                else:
                    found = await timescale.probe(conn)
                    assert found.schema is not None  # the migration created it or refused to start
                    self.ext_schema = found.schema
            if self.mode == MODE_TIMESCALE:
                # Connections opened before the extension existed lack its schema on their search path.
                await pool.drain()
            await self.ensure_partitions_ahead()
        except BaseException:
            await self.close()
            raise
        if self.mode == MODE_TIMESCALE:
            log.info("storage: PostgreSQL at %s, TimescaleDB hypertable mode (chunks of %d ms)",
                     self._where, self.partition_ms)
        else:
            log.info("storage: PostgreSQL at %s, native partition mode (partitions of %d ms, retention drops "
                     "partitions)", self._where, self.partition_ms)

    async def _load_meta(self, conn: _Conn) -> None:
        cur = await conn.execute("SELECT key, value FROM sotp_meta WHERE key IN ('partition_ms', 'block_ms')")
        meta = {str(k): int(v) for k, v in await cur.fetchall()}
        # The layout is fixed when the schema is created; a different URL setting later cannot change it.
        for key, attr in (("partition_ms", "partition_ms"), ("block_ms", "block_ms")):
            if key in meta and meta[key] != getattr(self, attr):
                log.warning("storage: schema %s was created with %s=%d; ignoring the URL's %d",
                            self.options.schema, key, meta[key], getattr(self, attr))
                setattr(self, attr, meta[key])

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[_Conn]:
        """A pooled autocommit connection; connection failures become :class:`StorageUnavailable`."""
        if self._pool is None:
            raise StorageUnavailable(f"PostgreSQL store {self._where} is not open")
        try:
            async with self._pool.connection() as conn:
                yield conn
        except PoolTimeout as err:
            raise StorageUnavailable(f"no PostgreSQL connection available for {self._where}: {err}") from err
        except psycopg.OperationalError as err:
            raise StorageUnavailable(f"PostgreSQL at {self._where} failed: {err}") from err
        except psycopg.Error as err:
            raise StorageError(f"PostgreSQL at {self._where}: {err}") from err

    async def ping(self) -> None:
        async with self.connection() as conn:
            await conn.execute("SELECT 1")

    def appender(self) -> Appender:
        return _PgAppender(self)

    def querier(self, mint: int, maxt: int) -> Querier:
        return PgQuerier(self, mint, maxt)

    # -- partitions ------------------------------------------------------------------------------

    async def ensure_partitions(self, starts: Iterable[int]) -> None:
        """Create missing native partitions (no-op in TimescaleDB mode, which makes chunks itself)."""
        if self.mode == MODE_TIMESCALE:
            return
        todo = set(starts) - self._partitions
        if not todo:
            return
        async with self._partition_lock, self.connection() as conn:
            todo -= self._partitions
            await schema.create_partitions(conn, self.options.schema, sorted(todo), self.partition_ms)
            self._partitions |= todo

    async def ensure_partitions_ahead(self, now_ms: int | None = None) -> None:
        p = self.partition_ms
        now = (now_ms if now_ms is not None else _now_ms()) // p * p
        await self.ensure_partitions(now + k * p for k in range(-1, self.options.partitions_ahead + 1))

    # -- write -----------------------------------------------------------------------------------

    async def _load_last(self, conn: _Conn, sids: list[int]) -> None:
        """The newest stored sample of each series in ``sids`` into the cache (``None``: no sample)."""
        if not sids:
            return
        cur = conn.cursor(binary=True)
        await cur.execute(
            "SELECT u.sid, l.t, float8send(l.v) FROM unnest(%b::int8[]) AS u(sid) CROSS JOIN LATERAL ("
            "  SELECT ts[cardinality(ts)] AS t, vals[cardinality(vals)] AS v FROM sotp_samples"
            "  WHERE series_id = u.sid ORDER BY t_max DESC LIMIT 1) AS l",
            (sids,),
        )
        for sid in sids:
            self._last[sid] = None
        for sid, t, v in await cur.fetchall():
            self._last[int(sid)] = (int(t), _DOUBLE.unpack(v)[0])

    async def _stored_value(self, conn: _Conn, sid: int, t: int) -> float | None:
        cur = conn.cursor(binary=True)
        await cur.execute(
            "SELECT float8send(u.v) FROM sotp_samples s CROSS JOIN LATERAL unnest(s.ts, s.vals) AS u(t, v) "
            "WHERE s.series_id = %s AND s.t_min <= %s AND s.t_max >= %s AND u.t = %s LIMIT 1",
            (sid, t, t, t),
        )
        row = await cur.fetchone()
        return None if row is None else float(_DOUBLE.unpack(row[0])[0])

    def _split(self, sid: int, ts: list[int], vs: list[float], out: dict[int, list[Block]]) -> None:
        """Cut a series' new samples at block-window edges and file the pieces by partition."""
        block, part = self.block_ms, self.partition_ms
        if ts[0] // block == ts[-1] // block:
            out.setdefault(ts[0] // part * part, []).append((sid, ts, vs))
            return
        arr = np.asarray(ts, dtype=np.int64)
        windows = arr // block
        cuts = np.flatnonzero(windows[1:] != windows[:-1]) + 1
        start = 0
        for end in [*cuts.tolist(), len(ts)]:
            out.setdefault(ts[start] // part * part, []).append((sid, ts[start:end], vs[start:end]))
            start = end

    async def _commit(self, staging: Staging) -> int:
        groups = staging.groups()
        staged = {lb: st for lb, st in staging.staged.items() if st.ts}
        _check_range(groups, staged)
        wanted = [lb for g in groups for lb in g.labels]
        wanted += staged
        got, missing = self.index.lookup(wanted)
        if missing:
            first_ms = {lb: int(g.ts[i, 0]) for g in groups for i, lb in enumerate(g.labels)}
            first_ms.update((lb, st.ts[0]) for lb, st in staged.items())
            async with self.connection() as conn:
                created = await self.index.resolve(conn, missing, first_ms)
            for sid in created:
                self._last[sid] = None
            got, missing = self.index.lookup(wanted, count=False)
        all_sids: list[int] = got  # type: ignore[assignment]  # every label set is known now
        group_sids: list[npt.NDArray[np.int64]] = []
        pos = 0
        for g in groups:
            group_sids.append(np.array(all_sids[pos : pos + len(g.labels)], dtype=np.int64))
            pos += len(g.labels)
        staged_sids = dict(zip(staged, all_sids[pos:], strict=True))
        async with self._locks.hold(all_sids):
            async with self.connection() as conn:
                await self._load_last(conn, [s for s in all_sids if s not in self._last])
            rows: dict[int, list[bytes]] = {}
            new_last: dict[int, tuple[int, float]] = {}
            written = 0
            for g, sids in zip(groups, group_sids, strict=True):
                written += self._fast_rows(g, sids, rows, new_last, staged, staged_sids)
            blocks: dict[int, list[Block]] = {}
            if staged:
                async with self.connection() as conn:
                    for labels, st in staged.items():
                        sid = staged_sids[labels]
                        last = self._last[sid]
                        c = classify(st, last)
                        for t, v in c.older:
                            assert last is not None
                            verify_older(labels, t, v, await self._stored_value(conn, sid, t), last[0])
                        if c.first_new >= len(st.ts):
                            continue
                        ts, vs = st.ts[c.first_new :], st.vs[c.first_new :]
                        self._split(sid, ts, vs, blocks)
                        new_last[sid] = (ts[-1], vs[-1])
                        written += len(ts)
            for start, part_blocks in blocks.items():
                rows.setdefault(start, []).append(copy_blocks(part_blocks))
            if not rows:
                return 0
            await self.ensure_partitions(rows)
            try:
                await self._copy(rows)
            except StorageError as err:
                if not isinstance(err.__cause__, psycopg.errors.UndefinedTable):
                    raise
                # Another process's retention dropped a partition this one still believed in.
                self._partitions -= set(rows)
                await self.ensure_partitions(rows)
                await self._copy(rows)
            self._last.update(new_last)
            return written

    def _fast_rows(
        self,
        g: Group,
        sids: npt.NDArray[np.int64],
        rows: dict[int, list[bytes]],
        new_last: dict[int, tuple[int, float]],
        staged: dict[Labels, StagedSeries],
        staged_sids: dict[Labels, int],
    ) -> int:
        """Encode the rows of ``g`` that are entirely new and inside one block window; hand the others
        (retries, overlaps, window crossings) to the sample-wise path in ``staged``."""
        lasts = self._last
        floor = np.iinfo(np.int64).min
        last_t = np.fromiter(
            ((x[0] if (x := lasts[s]) is not None else floor) for s in sids.tolist()), np.int64, len(sids)
        )
        first, final = g.ts[:, 0], g.ts[:, -1]
        ok = (first > last_t) & (first // self.block_ms == final // self.block_ms)
        if not ok.all():
            for i in np.flatnonzero(~ok).tolist():
                lb = g.labels[i]
                staged[lb] = StagedSeries(lb, g.ts[i].tolist(), g.vs[i].tolist())
                staged_sids[lb] = int(sids[i])
            sids, ts, vs, first = sids[ok], g.ts[ok], g.vs[ok], first[ok]
        else:
            ts, vs = g.ts, g.vs
        if not len(sids):
            return 0
        part = first // self.partition_ms * self.partition_ms
        for start in np.unique(part).tolist():
            m = part == start
            rows.setdefault(int(start), []).append(copy_rows(sids[m], ts[m], vs[m]))
        new_last.update(zip(sids.tolist(), zip(ts[:, -1].tolist(), vs[:, -1].tolist(), strict=True), strict=True))
        return int(ts.size)

    async def _copy(self, rows: dict[int, list[bytes]]) -> None:
        """One transaction; one binary COPY per partition (straight into it: skips row routing)."""
        async with self.connection() as conn, conn.transaction():
            cur = conn.cursor()
            for start, parts in rows.items():
                if self.mode == MODE_TIMESCALE:
                    table: sql.Composable = sql.Identifier("sotp_samples")
                else:
                    table = sql.Identifier(schema.partition_name(start, self.partition_ms))
                stmt = sql.SQL("COPY {} (series_id, t_min, t_max, ts, vals) FROM STDIN (FORMAT BINARY)")
                async with cur.copy(stmt.format(table)) as copy:
                    await copy.write(COPY_HEADER)
                    for part in parts:
                        await copy.write(part)
                    await copy.write(COPY_TRAILER)

    # -- maintenance -----------------------------------------------------------------------------

    async def delete_before(self, t_ms: int) -> int:
        """Retention: drop every partition that ends at or before ``t_ms`` whole, then delete the blocks
        of the partition holding ``t_ms`` that end before it. Returns how many blocks went."""
        await self.ensure_partitions_ahead()
        removed = 0
        async with self.connection() as conn:
            if self.mode == MODE_TIMESCALE:
                # The policy keeps dropping chunks while no SOTP maintenance runs; this call drops exactly.
                await timescale.set_retention(conn, self.ext_schema, self.options.schema, _now_ms() - t_ms)
                await conn.execute(timescale.drop_statement(self.ext_schema, t_ms))
            else:
                parts = await schema.list_partitions(conn, self.options.schema)
                for start, name in sorted(parts.items()):
                    if start + self.partition_ms > t_ms:
                        continue
                    async with conn.transaction():
                        cur = await conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(name)))
                        row = await cur.fetchone()
                        removed += int(row[0]) if row else 0
                        await conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(name)))
                    self._partitions.discard(start)
                    log.info("storage: retention dropped partition %s", name)
            cur = await conn.execute(
                "DELETE FROM sotp_samples WHERE t_max < %s AND t_min >= %s",
                (t_ms, (t_ms - self.partition_ms) // self.block_ms * self.block_ms),
            )
            removed += max(cur.rowcount, 0)
        # The newest-sample cache stays valid: retention removes only the oldest data of a series, and a
        # series whose data all went keeps rejecting samples older than what it had, as Prometheus does.
        return removed

    async def compact(self, now_ms: int) -> int:
        """Merge each series' rows of every closed block window (ending before ``now_ms - block``) into one
        row. Each window is one statement (insert the merged rows and delete the parts together), so it is
        crash-safe; running it again finds nothing to merge. Returns how many rows went."""
        await self.ensure_partitions_ahead(None)
        horizon = (now_ms - self.block_ms) // self.block_ms * self.block_ms
        removed = 0
        async with self.connection() as conn:
            # Windows before the previous run's horizon were merged then; looking one partition further
            # back still picks up late arrivals (retries, short backfills) without rescanning all history.
            cur = await conn.execute("SELECT value FROM sotp_meta WHERE key = 'compacted_until'")
            row = await cur.fetchone()
            since = int(row[0]) - self.partition_ms if row else -(2**62)
            cur = await conn.execute(
                # The window start, floored as Python's // (PostgreSQL's / truncates towards zero).
                "SELECT DISTINCT t_min - mod(mod(t_min, %(block)s) + %(block)s, %(block)s) FROM sotp_samples "
                "WHERE t_max < %(horizon)s AND t_min >= %(since)s GROUP BY series_id, 1 HAVING count(*) > 1",
                {"block": self.block_ms, "horizon": horizon, "since": max(since, MIN_MS)},
            )
            windows = sorted(int(r[0]) for r in await cur.fetchall())
            for w in windows:
                cur = await conn.execute(
                    "WITH parts AS ("
                    "  DELETE FROM sotp_samples WHERE t_min >= %(lo)s AND t_min < %(hi)s AND series_id IN ("
                    "    SELECT series_id FROM sotp_samples WHERE t_min >= %(lo)s AND t_min < %(hi)s"
                    "    GROUP BY series_id HAVING count(*) > 1)"
                    "  RETURNING series_id, ts, vals),"
                    " points AS ("
                    "  SELECT DISTINCT ON (p.series_id, u.t) p.series_id, u.t, u.v"
                    "  FROM parts p CROSS JOIN LATERAL unnest(p.ts, p.vals) AS u(t, v) ORDER BY p.series_id, u.t),"
                    " merged AS ("
                    "  INSERT INTO sotp_samples (series_id, t_min, t_max, ts, vals)"
                    "  SELECT series_id, min(t), max(t), array_agg(t ORDER BY t), array_agg(v ORDER BY t)"
                    "  FROM points GROUP BY series_id RETURNING 1)"
                    " SELECT (SELECT count(*) FROM parts) - (SELECT count(*) FROM merged)",
                    {"lo": w, "hi": w + self.block_ms},
                )
                row = await cur.fetchone()
                removed += int(row[0]) if row else 0
            await conn.execute(
                "INSERT INTO sotp_meta (key, value) VALUES ('compacted_until', %s) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value "
                "WHERE sotp_meta.value::bigint < excluded.value::bigint",
                # Never beyond the real clock: a call with a future now_ms must not hide windows not yet full.
                (str(min(horizon, _now_ms() - self.block_ms)),),
            )
        return removed


def _check_range(groups: list[Group], staged: dict[Labels, StagedSeries]) -> None:
    """Reject timestamps outside years 1-9999 (partition bounds and timestamptz conversions need them)."""
    lo = min([int(g.ts[:, 0].min()) for g in groups] + [st.ts[0] for st in staged.values()], default=0)
    hi = max([int(g.ts[:, -1].max()) for g in groups] + [st.ts[-1] for st in staged.values()], default=0)
    if lo < MIN_MS or hi > MAX_MS:
        bad = lo if lo < MIN_MS else hi
        raise SampleRejected(f"sample timestamp {bad} ms is outside the storable range (years 1 to 9999)")


class _PgAppender:
    def __init__(self, store: PostgresStorage) -> None:
        self._store = store
        self._staging = Staging()

    def append(self, labels: Labels, t_ms: int, value: float) -> None:
        self._staging.add(labels, t_ms, value)

    def append_series(self, labels: Labels, ts: Sequence[int], vs: Sequence[float]) -> None:
        self._staging.add_series(labels, ts, vs)

    def append_columns(
        self,
        labels: list[Labels],
        counts: npt.NDArray[np.int64],
        ts: npt.NDArray[np.int64],
        vs: npt.NDArray[np.float64],
    ) -> None:
        """Stage ``counts[i]`` samples of ``labels[i]``, series after series in ``ts``/``vs`` (the arrays
        of :class:`sotp.codec.remote_write.Columns`). Same rules as :meth:`append_series`; no Python object
        per series or sample is made."""
        self._staging.add_columns(labels, counts, ts, vs)

    async def commit(self) -> int:
        staging, self._staging = self._staging, Staging()
        if not staging:
            return 0
        return await self._store._commit(staging)

    async def rollback(self) -> None:
        self._staging = Staging()


async def migrate(url: str) -> tuple[str, list[int]]:
    """``sotp db migrate``: apply pending migrations to the store at ``url``; returns ``(mode, versions
    applied)`` where mode is ``timescaledb`` or ``partitions``. Idempotent."""
    if not url.startswith(("postgresql:", "postgres:")):
        raise ConfigError(f"sotp db migrate needs a postgresql:// storage URL, got {url!r}")
    store = PostgresStorage(url)
    opts = store.options
    try:
        conn = await psycopg.AsyncConnection.connect(opts.conninfo, autocommit=True)
    except psycopg.OperationalError as err:
        raise StorageUnavailable(f"cannot connect to PostgreSQL at {store._where}: {err}") from err
    async with conn:
        return await schema.migrate(conn, opts)


__all__ = ["PostgresStorage", "migrate"]
