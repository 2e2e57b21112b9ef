"""PostgreSQL backend (``postgresql://user@host:port/db?schema=...``): write-ahead log + head, block rows.

Layout (:mod:`sotp.storage.pg.schema`): ``sotp_wal`` holds one row per committed request (its columns
packed, :mod:`sotp.storage.wal`), so a commit costs one row whatever its number of series — the live-stream
shape is about one sample per series per request. Every process keeps the recent samples in an in-memory
:class:`~sotp.storage.head.Head`, built from the log (its own commits, and the other replicas' rows read by
:class:`~sotp.storage.pg.tail.LogTail` before each read). A flush (any replica; an exclusive advisory lock
makes writers wait for it) turns the head's older part into block rows ``sotp_samples(series_id, t_min,
t_max, ts int8[], vals float8[])`` and deletes the log rows it ends; ``head_min_ms`` in ``sotp_meta``
records the boundary, and a sample older than it goes straight to a block row. A block row never spans two
block windows (``block``, 2 h by default), and the compactor merges one window's rows of a series into one.

Write path (:meth:`PostgresStorage._commit`): series ids from the in-process cache (misses inserted in one
batch), ordering checked with numpy against the newest committed sample of each series
(:class:`~sotp.storage.newest.NewestSamples`, loaded lazily with one query), retries of older samples
checked against the head and then with one block query per request; then one transaction: a shared
advisory lock (a flush holds it exclusively), the log row, and binary COPY of any late blocks.
``synchronous_commit`` is forced on, so a returned commit is durable. Two appenders of one process that
touch the same series commit one after the other; others run in parallel on separate connections.

Several replicas may share a schema. Each keeps its own newest-sample state, refreshed from the log when a
request holds samples older than a series' newest (a retry through another replica is checked against the
rows that replica wrote). Reads sort runs and drop repeated timestamps, so a sample two replicas both
accepted never shows twice.

Partitions: with TimescaleDB ``sotp_samples`` is a hypertable with compression; otherwise it is
``PARTITION BY RANGE (t_min)`` with partitions created at start-up, ahead of time by
:meth:`compact`/:meth:`delete_before` (which ``sotp serve`` runs periodically) and on demand for any block
outside them. Retention drops whole partitions.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import struct
import time
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
from sotp.model import Labels, Matcher
from sotp.storage import Appender, Querier
from sotp.storage import wal as walrec
from sotp.storage.assemble import blocks_for
from sotp.storage.head import Chunk, Head, Runs
from sotp.storage.newest import EMPTY, NewestSamples, classify, verify_older
from sotp.storage.pg import schema, timescale
from sotp.storage.pg.binary import COPY_HEADER, COPY_TRAILER, copy_blocks
from sotp.storage.pg.options import PgOptions, parse_url
from sotp.storage.pg.postings import Postings
from sotp.storage.pg.query import MAX_MS, MIN_MS, PgQuerier
from sotp.storage.pg.schema import MODE_TIMESCALE
from sotp.storage.pg.series import SeriesIndex
from sotp.storage.pg.tail import HEAD_MIN_KEY, SERIES_GC_KEY, LogTail, TailRead
from sotp.storage.staging import Batch, Staging
from sotp.storage.state import StateChange, pg_args, pg_conflict, write_pg

log = logging.getLogger(__name__)

_DOUBLE = struct.Struct(">d")
_Conn = psycopg.AsyncConnection[Any]
I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
#: A block ready for COPY: series id, timestamps (ms), values.
Block = tuple[int, I64, F64]
_NO_TIME = int(np.iinfo(np.int64).min)
#: A pooled connection returned more recently than this is lent without a ping.
_CHECK_AFTER_S = 1.0
_MAX_TIME = int(np.iinfo(np.int64).max)


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
        self.head = Head()
        self.newest = NewestSamples()
        self._log = LogTail()
        self._tail_lock = asyncio.Lock()  # one log read at a time, so no row is applied twice
        self._flush_lock = asyncio.Lock()
        self._flusher: asyncio.Task[None] | None = None
        self._pool: AsyncConnectionPool[Any] | None = None
        self._returned_at: dict[int, float] = {}  # id(connection) -> when it was last returned healthy
        #: The series-collection generation this process's series ids belong to (sotp_meta).
        self._series_gen = 0
        self._partitions: set[int] = set()
        self._partition_lock = asyncio.Lock()
        self._locks = _SeriesLocks()
        self._where = f"{_redact(self.options.conninfo)} (schema {self.options.schema})"
        #: Writers hold this advisory lock shared for their transaction; a flush holds it exclusively.
        self._flush_key = f"sotp_head:{self.options.schema}"

    # -- lifecycle -------------------------------------------------------------------------------

    async def _configure(self, conn: _Conn) -> None:
        # SOTP's schema, then TimescaleDB's when the extension lives in another one (pg/timescale.py).
        await timescale.set_search_path(conn, self.options.schema)
        await conn.execute("SET synchronous_commit TO on")  # a returned commit must be durable
        # The querier concatenates arrays with several aggregates over one scan; they stay aligned only
        # when one process feeds them (and on 2 cores parallel plans gain little for these queries).
        await conn.execute("SET max_parallel_workers_per_gather TO 0")

    async def _check(self, conn: _Conn) -> None:
        """Ping a pooled connection before lending it, unless it was returned healthy within the last
        second: a ping per checkout is a round trip per write. A connection that died in between fails its
        next statement, and :meth:`_write` retries once on a fresh one."""
        returned = self._returned_at.get(id(conn))
        if returned is not None and time.monotonic() - returned < _CHECK_AFTER_S:
            return
        await AsyncConnectionPool.check_connection(conn)

    async def _returned(self, conn: _Conn) -> None:
        self._returned_at[id(conn)] = time.monotonic()

    async def open(self) -> None:
        opts = self.options
        pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            opts.conninfo,
            min_size=opts.pool_min,
            max_size=opts.pool_max,
            kwargs={"autocommit": True},
            configure=self._configure,
            check=self._check,
            reset=self._returned,
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
            await self.tail()  # replay the log into the head
        except BaseException:
            await self.close()
            raise
        self._flusher = asyncio.create_task(self._flush_loop())
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
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
            self._flusher = None
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

    # -- log tail and head -------------------------------------------------------------------------

    async def tail(self, conn: _Conn | None = None) -> None:
        """Apply the log rows committed by any process since the last look to the head (and follow a flush
        another replica made). ``conn``: a connection to use (inside the caller's transaction)."""
        async with self._tail_lock:
            if conn is None:
                async with self.connection() as own:
                    got = await self._log.read(own)
            else:
                got = await self._log.read(conn)
            self.apply_tail(got)

    def apply_tail(self, got: TailRead) -> None:
        """Apply one log read (:meth:`LogTail.parse` left out the rows applied since it was sent). Runs
        without an ``await``, so reads that sent their statements concurrently (the querier's) may apply
        in any order: the boundary and the generation only move forward."""
        if got.head_min is not None and got.head_min > self.head.min_t:
            self.head.drop_before(got.head_min)
        if got.series_gen > self._series_gen:
            self._forget_series(got.series_gen)
        if got.seqs:
            self.head.append(got.sid, got.ts, got.vs)
            self.newest.advance(got.sid, got.ts, got.vs)
            self._log.applied_now(got.seqs)

    @property
    def log_tail(self) -> LogTail:
        """Which log rows this process has applied (the querier reads the tail with its own statement)."""
        return self._log

    def _forget_series(self, generation: int) -> None:
        """A series collection ran (here or in another replica): drop every cached series id; they are read
        again from ``sotp_series`` (the collected ones are gone from it, the others keep their ids)."""
        hits, misses = self.index.hits, self.index.misses
        self.index = SeriesIndex()
        self.index.hits, self.index.misses = hits, misses
        self.postings = Postings(self.index)
        self._series_gen = generation

    async def _load_newest(self, sids: I64) -> None:
        """The newest stored sample of each unknown series in ``sids``: its newest block, then the head."""
        todo = self.newest.unknown(sids)  # a batch names each series once
        if not len(todo):
            return
        await self.tail()  # another replica's recent rows for these series are in the log, not in blocks
        todo = self.newest.unknown(todo)
        if not len(todo):
            return
        got_t = np.full(len(todo), EMPTY, np.int64)
        got_v = np.zeros(len(todo), np.float64)
        where = {sid: i for i, sid in enumerate(todo.tolist())}
        async with self.connection() as conn:
            cur = conn.cursor(binary=True)
            await cur.execute(
                "SELECT u.sid, l.t, float8send(l.v) FROM unnest(%b::int8[]) AS u(sid) CROSS JOIN LATERAL ("
                "  SELECT ts[cardinality(ts)] AS t, vals[cardinality(vals)] AS v FROM sotp_samples"
                "  WHERE series_id = u.sid ORDER BY t_max DESC LIMIT 1) AS l",
                (todo.tolist(),),
            )
            for sid, t, v in await cur.fetchall():
                i = where[int(sid)]
                got_t[i] = int(t)
                got_v[i] = _DOUBLE.unpack(v)[0]
        self.newest.set_loaded(todo, got_t, got_v)
        runs = self.head.select(todo, _NO_TIME + 2, _MAX_TIME)
        if len(runs.sids):
            self.newest.advance(np.repeat(runs.sids, runs.counts), runs.ts, runs.vs)

    async def _stored(self, sid: I64, t: I64) -> tuple[npt.NDArray[np.bool_], F64]:
        """Whether storage holds each ``(sid[i], t[i])`` (head first, then one block query), and its value."""
        found, vals = self.head.lookup(sid, t)
        rest = np.flatnonzero(~found)
        if len(rest):
            q = PgQuerier(self, int(t[rest].min()), int(t[rest].max()))
            async with self.connection() as conn:
                runs = await q.fetch_runs(conn, np.unique(sid[rest]).tolist())
            if len(runs.sids):
                f, v = Chunk.build(np.repeat(runs.sids, runs.counts), runs.ts, runs.vs).lookup(sid[rest], t[rest])
                found[rest] = f
                vals[rest] = v
        return found, vals

    def _block_rows(self, runs: Runs) -> dict[int, list[bytes]]:
        """COPY rows of ``runs`` (already cut at block windows) filed by partition start."""
        rows: dict[int, list[bytes]] = {}
        if not len(runs.sids):
            return rows
        part = self.partition_ms
        ends = np.cumsum(runs.counts)
        starts = ends - runs.counts
        blocks: dict[int, list[Block]] = {}
        ts, vs = runs.ts, runs.vs
        for sid, a, b in zip(runs.sids.tolist(), starts.tolist(), ends.tolist(), strict=True):
            blocks.setdefault(int(ts[a]) // part * part, []).append((sid, ts[a:b], vs[a:b]))
        for start, part_blocks in blocks.items():
            rows[start] = [copy_blocks(part_blocks)]
        return rows

    async def _commit(self, staging: Staging, state: StateChange | None = None) -> int:
        batch = staging.batch()
        if not len(batch):
            if state is not None:
                await self._write_state(state)
            return 0
        _check_range(batch.ts)
        for _ in range(3):
            try:
                return await self._commit_batch(batch, state)
            except _SeriesCollected:
                await self.tail()  # follows the new generation: ids are resolved again
        raise StorageError(f"cannot write to PostgreSQL store {self._where}: series collections kept "
                           "running under the write; retry")

    async def _write_state(self, state: StateChange) -> None:
        """A stored-state change with no new sample to go with it: one statement of its own."""
        try:
            async with self.connection() as conn:
                await write_pg(conn, state)
        except StorageError as err:
            conflict = pg_conflict(err, state)
            if conflict is not None:
                raise conflict from err
            raise

    async def _commit_batch(self, batch: Batch, state: StateChange | None = None) -> int:
        got, missing = self.index.lookup(batch.labels)
        if missing:
            first = batch.ts[batch.starts]
            first_ms = {lb: int(t) for lb, t in zip(batch.labels, first.tolist(), strict=True)}
            async with self.connection() as conn:
                created = await self.index.resolve(conn, missing, first_ms)
            if created:
                ids = np.array(sorted(created), np.int64)
                self.newest.set_loaded(ids, np.full(len(ids), EMPTY, np.int64), np.zeros(len(ids), np.float64))
            got, missing = self.index.lookup(batch.labels, count=False)
        sids = np.array(got, np.int64)
        async with self._locks.hold(sids.tolist()):
            await self._load_newest(sids)
            new, older = classify(batch, sids, self.newest)
            if older:
                # A retry may hold samples another replica committed: read its log rows first.
                await self.tail()
                new, older = classify(batch, sids, self.newest)
            per_sample = np.repeat(sids, batch.counts)
            if older:
                ix = np.asarray(older, np.int64)
                found, stored = await self._stored(per_sample[ix], batch.ts[ix])
                verify_older(batch, older, found, stored, self.newest.t[per_sample[ix]])
            if not new.any():
                if state is not None:
                    await self._write_state(state)
                return 0
            sid_n, ts_n, vs_n = per_sample[new], batch.ts[new], batch.vs[new]
            seq, logged = await self._write(sid_n, ts_n, vs_n, state)
            async with self._tail_lock:
                if seq is not None and self._log.wants(seq):
                    self.head.append(sid_n[logged], ts_n[logged], vs_n[logged])
                    self._log.applied_now([seq])
                self.newest.advance(sid_n, ts_n, vs_n)
            return len(ts_n)

    async def _write(
        self, sid: I64, ts: I64, vs: F64, state: StateChange | None = None
    ) -> tuple[int | None, npt.NDArray[np.bool_]]:
        """One transaction: the log row for samples the head takes, block rows for older ones, and ``state``
        (:mod:`sotp.storage.state`). Returns the log row's seq (None: every sample was late) and which
        samples it holds."""
        boundary = self.head.min_t
        retried = False
        for _ in range(5):
            late = ts < boundary
            block_rows = self._block_rows(blocks_for(Runs.from_samples(sid[late], ts[late], vs[late]), self.block_ms))
            await self.ensure_partitions(block_rows)
            try:
                seq, moved = await self._write_once(sid, ts, vs, late, boundary, block_rows, state)
            except StorageUnavailable:
                # A connection that died while idle in the pool (not pinged: see _check) fails here; the
                # pool drops it, and one retry on another connection tells a dead server from a dead link.
                # If the commit itself was lost in flight, the retry logs the samples twice: reads and
                # flushes drop repeated (series, time) pairs. A stored-state change committed that way makes
                # the retry fail its compare-and-set (StateConflict, 503): the caller reloads the state.
                if retried:
                    raise
                retried = True
                self._returned_at.clear()  # its siblings may be dead too: ping each before lending it
                continue
            except StorageError as err:
                conflict = pg_conflict(err, state) if state is not None else None
                if conflict is not None:
                    raise conflict from err
                if not isinstance(err.__cause__, psycopg.errors.UndefinedTable):
                    raise
                # Another process's retention dropped a partition this one still believed in.
                self._partitions -= set(block_rows)
                continue
            if moved is not None:  # a flush moved the boundary since: split again
                boundary = moved
                continue
            return seq, ~late
        raise StorageError(f"cannot write to PostgreSQL store {self._where}: partitions or the head boundary "
                           "kept changing under the write; retry")

    async def _write_once(
        self, sid: I64, ts: I64, vs: F64, late: npt.NDArray[np.bool_], boundary: int,
        block_rows: dict[int, list[bytes]], state: StateChange | None = None,
    ) -> tuple[int | None, int | None]:
        """The write transaction; returns ``(log seq, None)``, or ``(None, new boundary)`` without writing
        when a flush has moved the head boundary past ``boundary``.

        The shared advisory lock comes first (a flush holds it exclusively), then statements that read the
        boundary: in READ COMMITTED each takes its snapshot after the lock was granted, so a flush that
        finished while this write waited is seen. The log row is inserted only if the boundary is still
        ``boundary``; without block rows (the usual case) the whole transaction is one statement
        (``sotp_wal_append``, migration 2, or ``sotp_wal_append_state`` with a stored-state change), one
        round trip.
        """
        seq: int | None = None
        async with self.connection() as conn:
            if not block_rows:
                runs = Runs.from_samples(sid, ts, vs)
                rec = walrec.encode(runs.sids, runs.counts, ts, vs)
                args = (self._flush_key, boundary, self._series_gen, rec.t_min, rec.t_max, rec.n, rec.sids,
                        rec.counts, rec.ts, rec.vals)
                if state is None:
                    cur = await conn.execute("SELECT sotp_wal_append(%s, %s, %s, %s, %s, %s, %b, %b, %b, %b)", args)
                else:  # the log row and the state change in one statement (migration 5)
                    cur = await conn.execute(
                        "SELECT sotp_wal_append_state(%s, %s, %s, %s, %s, %s, %b, %b, %b, %b, %s, %s, %s, %s)",
                        (*args, *pg_args(state)),
                    )
                got = await cur.fetchone()
                if got is not None and got[0] is not None:
                    return int(got[0]), None
                now_min, gen = await self._head_state(conn)
                if gen != self._series_gen:
                    raise _SeriesCollected
                return None, now_min
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock_shared(hashtext(%s))", (self._flush_key,))
                now_min, gen = await self._head_state(conn)
                if gen != self._series_gen:
                    raise _SeriesCollected
                if now_min > boundary:
                    return None, now_min
                if not late.all():
                    keep = ~late
                    runs = Runs.from_samples(sid[keep], ts[keep], vs[keep])
                    rec = walrec.encode(runs.sids, runs.counts, ts[keep], vs[keep])
                    cur = await conn.execute(
                        "INSERT INTO sotp_wal (t_min, t_max, n, sids, counts, ts, vals) "
                        "VALUES (%s, %s, %s, %b, %b, %b, %b) RETURNING seq",
                        (rec.t_min, rec.t_max, rec.n, rec.sids, rec.counts, rec.ts, rec.vals),
                    )
                    got = await cur.fetchone()
                    seq = int(got[0]) if got else None
                await self._copy_rows(conn, block_rows)
                if state is not None:
                    await write_pg(conn, state)
        return seq, None

    async def _head_state(self, conn: _Conn) -> tuple[int, int]:
        """The head boundary and the series-collection generation, as the store has them now."""
        cur = await conn.execute(
            f"SELECT (SELECT value FROM sotp_meta WHERE key = '{HEAD_MIN_KEY}'), "
            f"(SELECT value FROM sotp_meta WHERE key = '{SERIES_GC_KEY}')"
        )
        row = await cur.fetchone()
        head_min = int(row[0]) if row and row[0] is not None else _NO_TIME
        return head_min, int(row[1]) if row and row[1] is not None else 0

    async def _copy_rows(self, conn: _Conn, rows: dict[int, list[bytes]]) -> None:
        """One binary COPY per partition (straight into it: skips row routing), inside the caller's
        transaction."""
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

    # -- head flush ------------------------------------------------------------------------------

    async def flush(self, now_ms: int | None = None, before: int | None = None) -> int:
        """Move the head's older part into block rows now (what the background task does every few
        seconds); ``before`` forces the boundary. Returns how many samples moved."""
        now = now_ms if now_ms is not None else _now_ms()
        async with self._flush_lock:
            oldest, newest, n = self.head.span()
            cut = before if before is not None else self.options.policy.cut(self.head.min_t, oldest, newest, n, now)
            if cut is None or cut <= self.head.min_t:
                return 0
            for _ in range(3):  # a partition missing inside the transaction: create it, then again
                runs = blocks_for(self.head.before(cut), self.block_ms)
                await self.ensure_partitions(self._block_rows(runs))
                async with self.connection() as conn, conn.transaction():
                    cur = await conn.execute(
                        "SELECT pg_advisory_xact_lock(hashtext(%s)), "
                        f"(SELECT value FROM sotp_meta WHERE key = '{HEAD_MIN_KEY}')",
                        (self._flush_key,),
                    )
                    row = await cur.fetchone()
                    if row and row[1] is not None and int(row[1]) >= cut:
                        return 0  # another replica flushed this far already
                    await self.tail(conn)  # writers wait on the lock: every committed row is here now
                    runs = blocks_for(self.head.before(cut), self.block_ms)
                    rows = self._block_rows(runs)
                    if self.mode != MODE_TIMESCALE and not set(rows) <= self._partitions:
                        continue
                    await self._copy_rows(conn, rows)
                    await conn.execute("DELETE FROM sotp_wal WHERE t_max < %s", (cut,))
                    await conn.execute(
                        "INSERT INTO sotp_meta (key, value) VALUES (%s, %s) "
                        "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                        (HEAD_MIN_KEY, str(cut)),
                    )
                self.head.drop_before(cut)
                return len(runs.ts)
            raise StorageError(f"cannot flush the head of PostgreSQL store {self._where}: partitions keep vanishing")

    async def _flush_loop(self) -> None:
        period = max(1.0, min(30.0, self.options.policy.window_ms / 1000 / 10))
        while True:
            await asyncio.sleep(period)
            try:
                await self.flush()
            except StorageError as err:
                log.warning("storage: head flush failed (will retry): %s", err)

    # -- maintenance -----------------------------------------------------------------------------

    # -- series counts ------------------------------------------------------------------------------

    async def series_count(self, matchers: Sequence[Matcher] = ()) -> int:
        """From the in-process postings (refreshed with the rows other replicas created)."""
        async with self.connection() as conn:
            await self.postings.refresh(conn)
        return len(self.postings.candidates(matchers)) if matchers else len(self.postings)

    async def count_new_series(self, labels: Sequence[Labels]) -> int:
        """Cached ids first; the rest with one query on the unique ``label_ids`` key (a label pair missing
        from ``sotp_label`` makes a shorter id array, which no series has: the series is new)."""
        distinct = list(dict.fromkeys(labels))
        _, missing = self.index.lookup(distinct, count=False)
        if not missing:
            return 0
        async with self.connection() as conn:
            cur = await conn.execute(
                "SELECT count(*) FROM unnest(%s::text[]) AS u(j) WHERE NOT EXISTS ("
                " SELECT 1 FROM sotp_series s WHERE s.label_ids = (SELECT array_agg(l.id ORDER BY l.id)"
                "  FROM jsonb_each_text(u.j::jsonb) AS p(name, value)"
                "  JOIN sotp_label l ON l.name = p.name AND l.value = p.value))",
                ([json.dumps(dict(lb.items_tuple()), ensure_ascii=False) for lb in missing],),
            )
            row = await cur.fetchone()
        return int(row[0]) if row else len(missing)

    async def gc_series(self) -> int:
        """Delete the series rows left without samples (no block row, nothing in the log or the head), so
        they stop holding index memory and counting against the series limits. Runs under the exclusive
        advisory lock (no write is in flight), after reading every log row; bumps the generation that writes
        check, so a replica that cached a collected id resolves its series again instead of writing to it.
        Returns how many series went."""
        async with self._flush_lock:
            async with self.connection() as conn, conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (self._flush_key,))
                await self.tail(conn)
                cur = await conn.execute(
                    "SELECT id FROM sotp_series s WHERE NOT EXISTS (SELECT 1 FROM sotp_samples WHERE series_id = s.id)"
                )
                empty = np.array([int(r[0]) for r in await cur.fetchall()], np.int64)
                in_head = set(self.head.present(empty, _NO_TIME + 2, _MAX_TIME).tolist())
                dead = [sid for sid in empty.tolist() if sid not in in_head]
                if not dead:
                    return 0
                await conn.execute("DELETE FROM sotp_series WHERE id = ANY(%s)", (dead,))
                generation = self._series_gen + 1
                await conn.execute(
                    "INSERT INTO sotp_meta (key, value) VALUES (%s, %s) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (SERIES_GC_KEY, str(generation)),
                )
            async with self._tail_lock:
                self._forget_series(generation)
            log.info("storage: collected %d series without samples in %s", len(dead), self._where)
            return len(dead)

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
            await conn.execute("DELETE FROM sotp_wal WHERE t_max < %s", (t_ms,))
        self.head.discard_before(t_ms)
        # The newest-sample cache stays valid: retention removes only the oldest data of a series, and a
        # series whose data all went keeps rejecting samples older than what it had, as Prometheus does.
        return removed

    async def compact(self, now_ms: int) -> int:
        """Merge each series' rows of every closed block window (ending before ``now_ms - block``) into one
        row. Each window is one statement (insert the merged rows and delete the parts together), so it is
        crash-safe; running it again finds nothing to merge. The head's part due by ``now_ms`` is flushed
        first. Returns how many rows went."""
        await self.flush(now_ms)
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


class _SeriesCollected(Exception):
    """A series collection ran since this process resolved its series ids: resolve them again."""


def _check_range(ts: I64) -> None:
    """Reject timestamps outside years 1-9999 (partition bounds and timestamptz conversions need them)."""
    lo, hi = int(ts.min()), int(ts.max())
    if lo < MIN_MS or hi > MAX_MS:
        bad = lo if lo < MIN_MS else hi
        raise SampleRejected(f"sample timestamp {bad} ms is outside the storable range (years 1 to 9999)")


class _PgAppender:
    def __init__(self, store: PostgresStorage) -> None:
        self._store = store
        self._staging = Staging()
        self._state: StateChange | None = None

    def attach_state(self, change: StateChange) -> None:
        """Write ``change`` in this commit's transaction (:mod:`sotp.storage.state`)."""
        self._state = change

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
        state, self._state = self._state, None
        if not staging and state is None:
            return 0
        return await self._store._commit(staging, state)

    async def rollback(self) -> None:
        self._staging = Staging()
        self._state = None


async def migrate(url: str, convert_to: str | None = None) -> tuple[str, list[int]]:
    """``sotp db migrate``: apply pending migrations to the store at ``url``; returns ``(mode, versions
    applied)`` where mode is ``timescaledb`` or ``partitions``. Idempotent.

    ``convert_to`` (``sotp db migrate --convert-to``) then rebuilds the samples table in that mode
    (:func:`schema.convert`); the URL's ``timescaledb`` option is not checked against the recorded mode then,
    since changing it is the point."""
    if not url.startswith(("postgresql:", "postgres:")):
        raise ConfigError(f"sotp db migrate needs a postgresql:// storage URL, got {url!r}")
    store = PostgresStorage(url)
    opts = store.options
    if convert_to is not None:
        opts = dataclasses.replace(opts, timescaledb="auto")
    try:
        conn = await psycopg.AsyncConnection.connect(opts.conninfo, autocommit=True)
    except psycopg.OperationalError as err:
        raise StorageUnavailable(f"cannot connect to PostgreSQL at {store._where}: {err}") from err
    async with conn:
        mode, applied = await schema.migrate(conn, opts)
        if convert_to is not None:
            await schema.convert(conn, opts, convert_to)
            mode = convert_to
        return mode, applied


__all__ = ["PostgresStorage", "migrate"]
