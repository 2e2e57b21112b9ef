"""Embedded default backend: one SQLite file in WAL mode, a write-ahead log + in-memory head, and blocks.

Tables (DESIGN.md §4 as revised in docs/architecture.md): ``sotp_series`` holds each label set once;
``sotp_wal`` holds one row per committed request (:mod:`sotp.storage.wal`: the request's columns packed,
so a commit costs one row whatever its number of series); ``sotp_samples`` holds per-series blocks
``(series_id, t_min, t_max, n, ts, vals)`` with packed little-endian arrays (BLOBs keep NaN payloads
exactly; a REAL column would turn the staleness marker into NULL).

Recent samples live in the in-memory :class:`~sotp.storage.head.Head`, rebuilt from ``sotp_wal`` at open.
Every few minutes (:class:`~sotp.storage.head.FlushPolicy`) the head's older part is written as one block
per series and window, and the log rows it covered are deleted, in one transaction; ``head_min_ms`` in
``sotp_meta`` records the boundary. A sample older than that boundary (a sender catching up) is written
straight to a block. :meth:`SQLiteStorage.compact` later merges a series' blocks of a closed window.

sqlite3 is synchronous, so every database call runs in a worker thread; one writer connection (under an
asyncio lock, with group commit) and one reader connection. ``synchronous=FULL`` makes a returned commit
durable. Several processes may share the file (``sotp up`` runs the worker beside ``sotp serve``): each
reads the log rows of the others (``seq`` above what it has seen) before reads and inside each write
transaction, so ordering checks and queries see every commit.

URL: ``sqlite:///path/to.db?head_window=15m&head_grace=5m&head_max_samples=4000000``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from sotp.errors import SampleRejected, SotpError, StorageError, StorageUnavailable
from sotp.model import METRIC_NAME, Labels, Matcher, MatchOp, Series, intern_labels, matches_all
from sotp.storage import Appender, Querier, SelectHints
from sotp.storage import wal as walrec
from sotp.storage.assemble import assemble, blocks_for, merge_blocks
from sotp.storage.head import Chunk, FlushPolicy, Head, Runs
from sotp.storage.newest import EMPTY, NewestSamples, classify, verify_older
from sotp.storage.staging import Batch, Staging
from sotp.storage.state import TABLES as STATE_TABLES
from sotp.storage.state import StateChange, sqlite_conflict, write_sqlite

log = logging.getLogger(__name__)

SCHEMA_VERSION = 3  # 3: sotp_state, sotp_state_gen (sotp.storage.state)
_SCHEMA = """
CREATE TABLE IF NOT EXISTS sotp_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sotp_series (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    metric TEXT NOT NULL,
    labels TEXT NOT NULL UNIQUE   -- canonical JSON of the sorted label pairs
);
CREATE TABLE IF NOT EXISTS sotp_samples (
    series_id INTEGER NOT NULL,
    t_min INTEGER NOT NULL,
    t_max INTEGER NOT NULL,
    n INTEGER NOT NULL,
    ts BLOB NOT NULL,             -- n little-endian int64 milliseconds, strictly increasing
    vals BLOB NOT NULL            -- n little-endian float64 (exact bits)
);
CREATE INDEX IF NOT EXISTS sotp_samples_series_tmax ON sotp_samples (series_id, t_max);
CREATE INDEX IF NOT EXISTS sotp_samples_tmax ON sotp_samples (t_max);
CREATE TABLE IF NOT EXISTS sotp_wal (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    t_min INTEGER NOT NULL,
    t_max INTEGER NOT NULL,
    n INTEGER NOT NULL,
    sids BLOB NOT NULL,           -- int64 per series
    counts BLOB NOT NULL,         -- int32 per series
    ts BLOB NOT NULL,             -- int64 per sample
    vals BLOB NOT NULL            -- float64 per sample
);
"""

_I8 = np.dtype("<i8")
_F8 = np.dtype("<f8")
I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
#: Above this many candidate series a read scans the window's blocks and filters ids in numpy, rather
#: than asking SQLite for each id (an IN list of hundreds of ids per statement).
_SCAN_ABOVE = 1000
_HEAD_MIN_KEY = "head_min_ms"
#: Bumped by each series garbage collection: a process whose index predates it reloads its index inside
#: its next write transaction, so no process ever writes samples for a series row that was deleted.
_SERIES_GC_KEY = "series_gc"
_NO_TIME = np.iinfo(np.int64).min


def _labels_key(labels: Labels) -> str:
    return json.dumps(labels.items_tuple(), separators=(",", ":"), ensure_ascii=False)


class _Index:
    """In-process view of ``sotp_series``: id ↔ labels, and postings (label pair → series ids)."""

    def __init__(self) -> None:
        self.by_labels: dict[Labels, int] = {}
        self.by_id: dict[int, Labels] = {}
        self.postings: dict[tuple[str, str], list[int]] = {}
        self.max_id = 0
        self.hits = 0  # write-path lookups served from memory
        self.misses = 0  # series the write path had to insert or load

    def add(self, sid: int, labels: Labels) -> None:
        self.by_labels[labels] = sid
        self.by_id[sid] = labels
        for pair in labels.items_tuple():
            self.postings.setdefault(pair, []).append(sid)
        self.max_id = max(self.max_id, sid)

    def candidates(self, matchers: Sequence[Matcher]) -> list[int]:
        """Series ids matching ``matchers``: equality matchers on non-empty values intersect their
        postings (smallest first), the remaining matchers filter the survivors."""
        eq = [m for m in matchers if m.op is MatchOp.EQ and m.value != ""]
        if eq:
            lists = sorted((self.postings.get((m.name, m.value), []) for m in eq), key=len)
            ids = set(lists[0])
            for other in lists[1:]:
                ids.intersection_update(other)
                if not ids:
                    return []
            rest = [m for m in matchers if m not in eq]
            found = sorted(ids)
        else:
            rest = list(matchers)
            found = list(self.by_id)
        if not rest:
            return found
        return [sid for sid in found if matches_all(rest, self.by_id[sid])]


@dataclass(slots=True)
class _Written:
    """What one request of a group commit wrote, applied to memory once the transaction commits."""

    sid: I64  # per sample, the samples that went to the log
    ts: I64
    vs: F64
    seq: int


class SQLiteStorage:
    """The embedded default store (``sqlite:///path/to.db``)."""

    def __init__(
        self,
        path: str,
        compact_after_ms: int = 3_600_000,
        block_ms: int = 7_200_000,
        policy: FlushPolicy | None = None,
    ) -> None:
        self.path = Path(path)
        self.compact_after_ms = compact_after_ms
        self.block_ms = block_ms
        self.policy = policy or FlushPolicy()
        self.head = Head()
        self.newest = NewestSamples()
        self._wconn: sqlite3.Connection | None = None
        self._rconn: sqlite3.Connection | None = None
        self._wlock = asyncio.Lock()
        self._rlock = threading.Lock()
        self._index = _Index()
        self._index_lock = threading.Lock()
        #: Guards the log cursor and the head against applying one log row twice (reader vs writer).
        self._tail_lock = threading.Lock()
        self._seq = 0  # the largest log seq applied to the head
        self._gc_seen = "0"  # the series_gc generation this process's index reflects
        self._pending: list[tuple[Staging, StateChange | None, asyncio.Future[int]]] = []
        self._leading = False
        self._leader: asyncio.Task[None] | None = None
        self._flusher: asyncio.Task[None] | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA busy_timeout=30000")
        return conn

    async def open(self) -> None:
        def _open() -> None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._wconn = self._connect()
                self._rconn = self._connect()
            except (OSError, sqlite3.Error) as err:
                raise StorageUnavailable(f"cannot open SQLite store {self.path}: {err}") from err
            self._wconn.executescript(_SCHEMA)
            for stmt in STATE_TABLES:
                self._wconn.execute(stmt)
            self._wconn.execute(
                "INSERT OR REPLACE INTO sotp_meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
            )
            self._refresh_index(self._wconn)
            self._gc_seen = self._series_gc(self._wconn)
            self._tail(self._wconn)  # replay the log into the head

        await asyncio.to_thread(_open)
        self._flusher = asyncio.create_task(self._flush_loop())
        log.info("storage: SQLite at %s (WAL, synchronous=FULL; head of %d samples from the log)",
                 self.path, self.head.span()[2])

    async def close(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
            self._flusher = None
        async with self._wlock:
            for conn in (self._wconn, self._rconn):
                if conn is not None:
                    conn.close()
            self._wconn = self._rconn = None

    async def ping(self) -> None:
        if self._rconn is None:
            raise StorageUnavailable(f"SQLite store {self.path} is not open")
        try:
            await asyncio.to_thread(self._read, "SELECT 1", ())
        except sqlite3.Error as err:
            raise StorageUnavailable(f"SQLite store {self.path} does not answer: {err}") from err

    @property
    def index(self) -> _Index:
        """The in-process series index (its ``hits``/``misses`` feed ``/metrics``)."""
        return self._index

    def appender(self) -> Appender:
        return _SQLiteAppender(self)

    def querier(self, mint: int, maxt: int) -> Querier:
        return _SQLiteQuerier(self, mint, maxt)

    # -- helpers -----------------------------------------------------------------------------------

    def _read(self, sql: str, params: Sequence[object]) -> list[tuple[Any, ...]]:
        assert self._rconn is not None
        with self._rlock:
            return self._rconn.execute(sql, params).fetchall()

    def _refresh_index(self, conn: sqlite3.Connection) -> None:
        with self._index_lock:
            rows = conn.execute(
                "SELECT id, labels FROM sotp_series WHERE id > ? ORDER BY id", (self._index.max_id,)
            ).fetchall()
            for sid, key in rows:
                self._index.add(int(sid), intern_labels(Labels.from_sorted(tuple(tuple(p) for p in json.loads(key)))))

    def _tail(self, conn: sqlite3.Connection) -> None:
        """Apply the log rows committed since the last look (by any process) to the head and the newest
        samples, and follow a flush another process made. Single writer: seqs commit in order."""
        with self._tail_lock:
            row = conn.execute("SELECT value FROM sotp_meta WHERE key = ?", (_HEAD_MIN_KEY,)).fetchone()
            if row is not None and int(row[0]) > self.head.min_t:
                self.head.drop_before(int(row[0]))
            rows = conn.execute(
                "SELECT seq, sids, counts, ts, vals FROM sotp_wal WHERE seq > ? ORDER BY seq", (self._seq,)
            ).fetchall()
            if not rows:
                return
            sid, ts, vs = walrec.decode([r[1:] for r in rows])
            self.head.append(sid, ts, vs)
            self.newest.advance(sid, ts, vs)
            self._seq = int(rows[-1][0])

    def _blocks(self, conn_read: Any, ids: I64 | None, lo: int, hi: int) -> Runs:
        """Block rows overlapping ``[lo, hi]`` of the series ``ids`` (all series when None), as runs."""
        cols = "SELECT series_id, n, ts, vals FROM sotp_samples WHERE "
        rows: list[tuple[Any, ...]] = []
        if ids is None or len(ids) > _SCAN_ABOVE:
            rows = conn_read(cols + "t_max >= ? AND t_min <= ?", (lo, hi))
            if ids is not None and rows:
                keep = np.isin(np.fromiter((r[0] for r in rows), np.int64, len(rows)), ids)
                rows = [r for r, k in zip(rows, keep.tolist(), strict=True) if k]
        else:
            id_list = ids.tolist()
            for start in range(0, len(id_list), 500):
                chunk = id_list[start : start + 500]
                marks = ",".join("?" * len(chunk))
                rows += conn_read(cols + f"series_id IN ({marks}) AND t_max >= ? AND t_min <= ?", (*chunk, lo, hi))
        return _runs(rows)

    # -- write -----------------------------------------------------------------------------------

    def _load_newest(self, conn: sqlite3.Connection, sids: I64) -> None:
        """The newest stored sample of each unknown series in ``sids``: its newest block, then the head."""
        todo = self.newest.unknown(sids)  # a batch names each series once
        if not len(todo):
            return
        got_t = np.full(len(todo), EMPTY, np.int64)
        got_v = np.zeros(len(todo), np.float64)
        where = {sid: i for i, sid in enumerate(todo.tolist())}
        id_list = todo.tolist()
        for start in range(0, len(id_list), 500):
            chunk = id_list[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for sid, ts_b, vs_b in conn.execute(
                f"SELECT s.series_id, s.ts, s.vals FROM sotp_samples s JOIN (SELECT series_id, max(t_max) AS m "
                f"FROM sotp_samples WHERE series_id IN ({marks}) GROUP BY series_id) AS x "
                "ON s.series_id = x.series_id AND s.t_max = x.m",
                chunk,
            ):
                i = where[int(sid)]
                got_t[i] = int(np.frombuffer(ts_b, _I8)[-1])
                got_v[i] = float(np.frombuffer(vs_b, _F8)[-1])
        self.newest.set_loaded(todo, got_t, got_v)
        runs = self.head.select(todo, _NO_TIME + 2, np.iinfo(np.int64).max)
        if len(runs.sids):
            self.newest.advance(np.repeat(runs.sids, runs.counts), runs.ts, runs.vs)

    def _stored(
        self, conn: sqlite3.Connection, sid: I64, t: I64, earlier: list[_Written]
    ) -> tuple[npt.NDArray[np.bool_], F64]:
        """Whether storage holds each ``(sid[i], t[i])`` (head, log rows written earlier in this transaction,
        then blocks), and its value."""
        found, vals = self.head.lookup(sid, t)
        if earlier:
            chunk = Chunk.build(
                np.concatenate([w.sid for w in earlier]), np.concatenate([w.ts for w in earlier]),
                np.concatenate([w.vs for w in earlier]),
            )
            f, v = chunk.lookup(sid, t)
            vals = np.where(found, vals, v)
            found |= f
        rest = np.flatnonzero(~found)
        if len(rest):
            runs = self._blocks(
                lambda q, p: conn.execute(q, p).fetchall(), np.unique(sid[rest]), int(t[rest].min()),
                int(t[rest].max()),
            )
            if len(runs.sids):
                chunk = Chunk.build(np.repeat(runs.sids, runs.counts), runs.ts, runs.vs)
                f, v = chunk.lookup(sid[rest], t[rest])
                found[rest] = f
                vals[rest] = v
        return found, vals

    def _write_one(
        self, conn: sqlite3.Connection, batch: Batch, sids: I64, earlier: list[_Written]
    ) -> tuple[int, _Written | None]:
        """Check one request against the newest samples (loaded for ``sids``) and write it: the log row, and
        blocks for samples older than the head. Raises :class:`SampleRejected` before writing anything."""
        new, older = classify(batch, sids, self.newest)
        per_sample = np.repeat(sids, batch.counts)
        if older:
            ix = np.asarray(older, np.int64)
            found, stored = self._stored(conn, per_sample[ix], batch.ts[ix], earlier)
            verify_older(batch, older, found, stored, self.newest.t[per_sample[ix]])
        if not new.any():
            return 0, None
        sid_n, ts_n, vs_n = per_sample[new], batch.ts[new], batch.vs[new]
        late = ts_n < self.head.min_t
        written: _Written | None = None
        if not late.all():
            keep = ~late
            sid_w, ts_w, vs_w = sid_n[keep], ts_n[keep], vs_n[keep]
            runs = Runs.from_samples(sid_w, ts_w, vs_w)
            rec = walrec.encode(runs.sids, runs.counts, ts_w, vs_w)
            cur = conn.execute(
                "INSERT INTO sotp_wal (t_min, t_max, n, sids, counts, ts, vals) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (rec.t_min, rec.t_max, rec.n, rec.sids, rec.counts, rec.ts, rec.vals),
            )
            written = _Written(sid_w, ts_w, vs_w, int(cur.lastrowid or 0))
        if late.any():
            self._insert_blocks(conn, blocks_for(Runs.from_samples(sid_n[late], ts_n[late], vs_n[late]), self.block_ms))
        self.newest.advance(sid_n, ts_n, vs_n)
        return len(ts_n), written

    def _insert_blocks(self, conn: sqlite3.Connection, runs: Runs) -> None:
        ends = np.cumsum(runs.counts)
        starts = ends - runs.counts
        ts, vs = runs.ts.astype(_I8), runs.vs.astype(_F8)
        conn.executemany(
            "INSERT INTO sotp_samples (series_id, t_min, t_max, n, ts, vals) VALUES (?, ?, ?, ?, ?, ?)",
            [
                (sid, int(ts[a]), int(ts[b - 1]), b - a, ts[a:b].tobytes(), vs[a:b].tobytes())
                for sid, a, b in zip(runs.sids.tolist(), starts.tolist(), ends.tolist(), strict=True)
            ],
        )

    def _commit_group_sync(self, group: list[tuple[Staging, StateChange | None]]) -> list[int | SotpError]:
        """Commit several requests in one transaction (one fsync), each atomic on its own: a request whose
        samples are rejected, or whose stored-state change conflicts, writes nothing (neither samples nor
        state) and gets its error; the others commit, each with its state change.

        New series rows are inserted before any request is checked and never rolled back with a request,
        so the in-process index never names an id the table lost (an unused series row is harmless)."""
        conn = self._wconn
        if conn is None:
            raise StorageUnavailable(f"SQLite store {self.path} is not open")
        outcomes: list[int | SotpError] = []
        batches: list[Batch | None] = []
        for staging, _ in group:
            try:
                batches.append(staging.batch())
            except SampleRejected as err:
                batches.append(None)
                outcomes.append(err)
            else:
                outcomes.append(0)
        self._refresh_index(conn)
        conn.execute("BEGIN IMMEDIATE")
        undo: list[tuple[I64, tuple[I64, npt.NDArray[np.uint64]]]] = []
        written: list[_Written] = []
        try:
            self._tail(conn)
            self._follow_series_gc(conn)
            by_labels = self._index.by_labels
            wanted = [lb for b in batches if b is not None for lb in b.labels]
            got = [by_labels.get(lb) for lb in wanted]
            missing = list({lb: None for lb, sid in zip(wanted, got, strict=True) if sid is None})
            self._index.hits += len(wanted) - len(missing)
            self._index.misses += len(missing)
            if missing:
                before = self._index.max_id
                conn.executemany(
                    "INSERT OR IGNORE INTO sotp_series (metric, labels) VALUES (?, ?)",
                    [(labels.get(METRIC_NAME) or "", _labels_key(labels)) for labels in missing],
                )
                self._refresh_index(conn)
                by_labels = self._index.by_labels
                # Series created by this transaction have no samples yet: no need to ask for their newest.
                created = np.array([sid for lb in missing if (sid := by_labels[lb]) > before], np.int64)
                if len(created):
                    self.newest.set_loaded(created, np.full(len(created), EMPTY, np.int64),
                                           np.zeros(len(created), np.float64))
                got = [by_labels[lb] for lb in wanted]
            pos = 0
            for i, batch in enumerate(batches):
                state = group[i][1]
                if batch is None:
                    continue
                if state is not None and (conflict := sqlite_conflict(conn, state)) is not None:
                    outcomes[i] = conflict
                    continue
                if not len(batch):
                    if state is not None:
                        write_sqlite(conn, state)
                    continue
                sids = np.array(got[pos : pos + len(batch.labels)], np.int64)
                pos += len(batch.labels)
                self._load_newest(conn, sids)
                snapshot = self.newest.snapshot(sids)
                try:
                    outcomes[i], w = self._write_one(conn, batch, sids, written)
                except SampleRejected as err:
                    outcomes[i] = err
                    continue
                undo.append((sids, snapshot))
                if w is not None:
                    written.append(w)
                if state is not None:
                    write_sqlite(conn, state)  # checked above, in this transaction: cannot conflict now
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            for sids, snap in reversed(undo):
                self.newest.restore(sids, snap)
            self._reset_index()  # series rows of this transaction are gone
            raise
        with self._tail_lock:
            for w in written:
                if w.seq > self._seq:  # a reader may have applied the rows already
                    self.head.append(w.sid, w.ts, w.vs)
            if written:
                self._seq = max(self._seq, max(w.seq for w in written))
        return outcomes

    @staticmethod
    def _series_gc(conn: sqlite3.Connection) -> str:
        row = conn.execute("SELECT value FROM sotp_meta WHERE key = ?", (_SERIES_GC_KEY,)).fetchone()
        return "0" if row is None else str(row[0])

    def _follow_series_gc(self, conn: sqlite3.Connection) -> None:
        """Inside a write transaction: reload the index if some process collected series since it was built."""
        generation = self._series_gc(conn)
        if generation != self._gc_seen:
            self._reset_index()
            self._gc_seen = generation

    def _reset_index(self) -> None:
        with self._index_lock:
            hits, misses = self._index.hits, self._index.misses
            self._index = _Index()
            self._index.hits, self._index.misses = hits, misses
        if self._wconn is not None:
            self._refresh_index(self._wconn)

    async def _commit(self, staging: Staging, state: StateChange | None = None) -> int:
        """Group commit: requests arriving while a commit runs share the next transaction and fsync."""
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._pending.append((staging, state, fut))
        if not self._leading:
            self._leading = True
            # The commit loop runs in its own task: a requester that goes away cannot cancel a commit
            # that carries other requests.
            self._leader = asyncio.create_task(self._lead())
        return await asyncio.shield(fut)

    async def _lead(self) -> None:
        try:
            while self._pending:
                group, self._pending = self._pending, []
                async with self._wlock:
                    try:
                        outcomes = await asyncio.to_thread(self._commit_group_sync, [(g[0], g[1]) for g in group])
                    except Exception as err:
                        failure = (
                            StorageError(f"cannot commit to SQLite store {self.path}: {err}")
                            if isinstance(err, sqlite3.Error)
                            else err
                        )
                        for _, _, f in group:
                            f.set_exception(failure)
                        continue
                for (_, _, f), outcome in zip(group, outcomes, strict=True):
                    if isinstance(outcome, SotpError):
                        f.set_exception(outcome)
                    else:
                        f.set_result(outcome)
        finally:
            self._leading = False

    # -- head flush ------------------------------------------------------------------------------

    def _flush_sync(self, now_ms: int, before: int | None) -> int:
        """Write the head's samples older than the policy's cut (or ``before``) as blocks and drop the log
        rows they end, in one transaction. Returns how many samples moved."""
        conn = self._wconn
        if conn is None:
            raise StorageUnavailable(f"SQLite store {self.path} is not open")
        conn.execute("BEGIN IMMEDIATE")
        try:
            self._tail(conn)  # every committed row, including other processes', is in the head now
            oldest, newest, n = self.head.span()
            cut = before if before is not None else self.policy.cut(self.head.min_t, oldest, newest, n, now_ms)
            if cut is None or cut <= self.head.min_t:
                conn.execute("COMMIT")
                return 0
            runs = self.head.before(cut)
            if len(runs.ts):
                self._insert_blocks(conn, blocks_for(runs, self.block_ms))
            conn.execute("DELETE FROM sotp_wal WHERE t_max < ?", (cut,))
            conn.execute(
                "INSERT INTO sotp_meta (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (_HEAD_MIN_KEY, str(cut)),
            )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        self.head.drop_before(cut)
        return len(runs.ts)

    async def flush(self, now_ms: int | None = None, before: int | None = None) -> int:
        """Move the head's older part into blocks now (what the background task does every few seconds);
        ``before`` forces the boundary. Returns how many samples moved."""
        now = now_ms if now_ms is not None else int(time.time() * 1000)
        async with self._wlock:
            try:
                return await asyncio.to_thread(self._flush_sync, now, before)
            except sqlite3.Error as err:
                raise StorageError(f"cannot flush the head of SQLite store {self.path}: {err}") from err

    async def _flush_loop(self) -> None:
        period = max(1.0, min(30.0, self.policy.window_ms / 1000 / 10))
        while True:
            await asyncio.sleep(period)
            try:
                await self.flush()
            except StorageError as err:
                log.warning("storage: head flush failed (will retry): %s", err)

    # -- series counts and garbage collection ------------------------------------------------------

    def _read_index(self) -> _Index:
        """The index with every series row committed so far (by any process)."""
        assert self._rconn is not None
        with self._rlock:
            self._refresh_index(self._rconn)
        return self._index

    async def series_count(self, matchers: Sequence[Matcher] = ()) -> int:
        index = await asyncio.to_thread(self._read_index)
        return len(index.candidates(matchers)) if matchers else len(index.by_id)

    async def count_new_series(self, labels: Sequence[Labels]) -> int:
        by_labels = (await asyncio.to_thread(self._read_index)).by_labels
        return len({lb for lb in labels if lb not in by_labels})

    def _gc_sync(self) -> int:
        """Delete the series rows with no sample in a block or the log, in one write transaction (so no
        commit runs meanwhile) that also bumps the generation other processes follow."""
        conn = self._wconn
        if conn is None:
            raise StorageUnavailable(f"SQLite store {self.path} is not open")
        conn.execute("BEGIN IMMEDIATE")
        try:
            self._tail(conn)  # the head holds every log row of every process now
            self._follow_series_gc(conn)
            self._refresh_index(conn)
            # One index probe per series (sotp_samples_series_tmax), then those the head still holds.
            empty = np.fromiter(
                (r[0] for r in conn.execute(
                    "SELECT id FROM sotp_series s WHERE NOT EXISTS (SELECT 1 FROM sotp_samples WHERE series_id = s.id)"
                )),
                np.int64,
            )
            in_head = set(self.head.present(empty, _NO_TIME + 2, np.iinfo(np.int64).max).tolist())
            dead = [sid for sid in empty.tolist() if sid not in in_head]
            if not dead:
                conn.execute("COMMIT")
                return 0
            conn.executemany("DELETE FROM sotp_series WHERE id = ?", [(sid,) for sid in dead])
            generation = str(int(self._series_gc(conn)) + 1)
            conn.execute(
                "INSERT INTO sotp_meta (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (_SERIES_GC_KEY, generation),
            )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        self._gc_seen = generation
        self._reset_index()
        return len(dead)

    async def gc_series(self) -> int:
        async with self._wlock:
            try:
                return await asyncio.to_thread(self._gc_sync)
            except sqlite3.Error as err:
                raise StorageError(f"cannot collect series in SQLite store {self.path}: {err}") from err

    # -- maintenance -------------------------------------------------------------------------------

    async def delete_before(self, t_ms: int) -> int:
        def _delete() -> int:
            assert self._wconn is not None
            cur = self._wconn.execute("DELETE FROM sotp_samples WHERE t_max < ?", (t_ms,))
            self._wconn.execute("DELETE FROM sotp_wal WHERE t_max < ?", (t_ms,))
            return cur.rowcount

        async with self._wlock:
            removed = await asyncio.to_thread(_delete)
        self.head.discard_before(t_ms)
        return removed

    async def compact(self, now_ms: int) -> int:
        """Flush what the head owes by ``now_ms``, then merge each series' blocks inside closed ``block_ms``
        windows ending before ``now_ms - compact_after_ms`` into one block. Idempotent; one transaction.
        Returns blocks removed."""
        await self.flush(now_ms)
        horizon = now_ms - self.compact_after_ms

        def _compact() -> int:
            conn = self._wconn
            assert conn is not None
            groups = conn.execute(
                "SELECT series_id, t_min / ? AS w FROM sotp_samples WHERE t_max < ? "
                "GROUP BY series_id, w HAVING count(*) > 1",
                (self.block_ms, horizon),
            ).fetchall()
            removed = 0
            conn.execute("BEGIN IMMEDIATE")
            try:
                for sid, w in groups:
                    lo, hi = w * self.block_ms, (w + 1) * self.block_ms
                    parts = conn.execute(
                        "SELECT rowid, ts, vals FROM sotp_samples WHERE series_id = ? AND t_min >= ? "
                        "AND t_min < ? AND t_max < ? ORDER BY t_min",
                        (sid, lo, hi, horizon),
                    ).fetchall()
                    if len(parts) < 2:
                        continue
                    ts, vs = merge_blocks([(np.frombuffer(p[1], _I8), np.frombuffer(p[2], _F8)) for p in parts])
                    ts, vs = np.ascontiguousarray(ts, _I8), np.ascontiguousarray(vs, _F8)
                    conn.executemany("DELETE FROM sotp_samples WHERE rowid = ?", [(p[0],) for p in parts])
                    conn.execute(
                        "INSERT INTO sotp_samples (series_id, t_min, t_max, n, ts, vals) VALUES (?, ?, ?, ?, ?, ?)",
                        (sid, int(ts[0]), int(ts[-1]), len(ts), ts.tobytes(), vs.tobytes()),
                    )
                    removed += len(parts) - 1
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            return removed

        async with self._wlock:
            return await asyncio.to_thread(_compact)


def _runs(rows: list[tuple[Any, ...]]) -> Runs:
    """Block rows ``(series_id, n, ts, vals)`` as :class:`Runs` (one copy of all the blobs)."""
    if not rows:
        return Runs.empty()
    n = len(rows)
    sids = np.fromiter((r[0] for r in rows), np.int64, n)
    counts = np.fromiter((r[1] for r in rows), np.int64, n)
    ts = np.frombuffer(b"".join(r[2] for r in rows), _I8).astype(np.int64)
    vs = np.frombuffer(b"".join(r[3] for r in rows), _F8).astype(np.float64)
    return Runs(sids, counts, ts, vs)


class _SQLiteAppender:
    def __init__(self, store: SQLiteStorage) -> None:
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

    def append_columns(self, labels: list[Labels], counts: I64, ts: I64, vs: F64) -> None:
        """Stage ``counts[i]`` samples of ``labels[i]``, series after series (a decoded request's arrays)."""
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


class _SQLiteQuerier:
    def __init__(self, store: SQLiteStorage, mint: int, maxt: int) -> None:
        self._store = store
        self._mint = mint
        self._maxt = maxt

    def _ids(self, matchers: Sequence[Matcher] | None) -> I64:
        store = self._store
        assert store._rconn is not None
        with store._rlock:
            store._refresh_index(store._rconn)
            store._tail(store._rconn)
        return np.array(store._index.candidates(matchers or []), np.int64)

    def _fetch(self, matchers: Sequence[Matcher], hints: SelectHints | None = None) -> list[Series]:
        ids = self._ids(matchers)
        if not len(ids):
            return []
        store = self._store
        runs = Runs.concat([
            store._blocks(store._read, ids, self._mint, self._maxt),
            store.head.select(ids, self._mint, self._maxt),
        ])
        if hints is not None:  # before merging and assembling the series
            hints.check_budget(int(runs.counts.sum()))
        out = assemble(runs, self._mint, self._maxt, store._index.by_id)
        out.sort(key=lambda s: s.labels.items_tuple())
        return out

    async def select(self, matchers: list[Matcher], hints: SelectHints | None = None) -> list[Series]:
        return await asyncio.to_thread(self._fetch, matchers, hints)

    def _series_in_window(self, matchers: Sequence[Matcher] | None) -> list[Labels]:
        ids = self._ids(matchers)
        if not len(ids):
            return []
        store = self._store
        present = set(store.head.present(ids, self._mint, self._maxt).tolist())
        id_list = [i for i in ids.tolist() if i not in present]
        for chunk_start in range(0, len(id_list), 500):
            chunk = id_list[chunk_start : chunk_start + 500]
            marks = ",".join("?" * len(chunk))
            rows = store._read(
                f"SELECT DISTINCT series_id FROM sotp_samples WHERE series_id IN ({marks}) "
                "AND t_max >= ? AND t_min <= ?",
                (*chunk, self._mint, self._maxt),
            )
            present.update(int(r[0]) for r in rows)
        by_id = store._index.by_id
        return [by_id[sid] for sid in present]

    async def label_names(self, matchers: list[Matcher] | None = None) -> list[str]:
        series = await asyncio.to_thread(self._series_in_window, matchers)
        return sorted({name for labels in series for name in labels})

    async def label_values(self, name: str, matchers: list[Matcher] | None = None) -> list[str]:
        series = await asyncio.to_thread(self._series_in_window, matchers)
        return sorted({v for labels in series if (v := labels.get(name)) is not None})

    async def close(self) -> None:
        return None
