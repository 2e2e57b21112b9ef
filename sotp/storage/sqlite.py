"""Embedded default backend: one SQLite file in WAL mode, samples stored in per-series blocks.

Tables mirror the PostgreSQL schema (DESIGN.md §4): ``sotp_series`` holds each label set once;
``sotp_samples`` holds blocks ``(series_id, t_min, t_max, n, ts, vals)`` where ``ts``/``vals`` are packed
little-endian int64/float64 arrays (BLOBs keep NaN payloads exactly; a REAL column would turn the
staleness marker into NULL). A commit writes one block per series; :meth:`SQLiteStorage.compact` later
merges a series' small blocks of a closed window into one, as Prometheus compacts its head.

sqlite3 is synchronous, so every database call runs in a worker thread; one writer connection (under an
asyncio lock) and one reader connection. ``synchronous=FULL`` makes a returned commit durable.
Several processes may share the file (``sotp up`` runs the worker beside ``sotp serve``): the series index
is refreshed incrementally from the table before reads and writes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sotp.errors import SampleRejected, StorageError, StorageUnavailable, TooManySamples
from sotp.model import METRIC_NAME, Labels, Matcher, MatchOp, Series, matches_all
from sotp.storage import Appender, Querier, SelectHints
from sotp.storage.head import StagedSeries, classify, verify_older

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
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
"""

_I8 = np.dtype("<i8")
_F8 = np.dtype("<f8")


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


class SQLiteStorage:
    """The embedded default store (``sqlite:///path/to.db``)."""

    def __init__(self, path: str, compact_after_ms: int = 3_600_000, block_ms: int = 7_200_000) -> None:
        self.path = Path(path)
        self.compact_after_ms = compact_after_ms
        self.block_ms = block_ms
        self._wconn: sqlite3.Connection | None = None
        self._rconn: sqlite3.Connection | None = None
        self._wlock = asyncio.Lock()
        self._rlock = threading.Lock()
        self._index = _Index()
        self._index_lock = threading.Lock()
        self._last: dict[int, tuple[int, float]] = {}
        self._pending: list[tuple[dict[Labels, StagedSeries], asyncio.Future[int]]] = []
        self._leading = False
        self._leader: asyncio.Task[None] | None = None

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
            self._wconn.execute(
                "INSERT OR IGNORE INTO sotp_meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
            )
            self._refresh_index(self._wconn)

        await asyncio.to_thread(_open)
        log.info("storage: SQLite at %s (WAL, synchronous=FULL)", self.path)

    async def close(self) -> None:
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
                self._index.add(int(sid), Labels.from_sorted(tuple(tuple(p) for p in json.loads(key))))

    def _last_sample(self, conn: sqlite3.Connection, sid: int) -> tuple[int, float] | None:
        cached = self._last.get(sid)
        if cached is not None:
            return cached
        row = conn.execute(
            "SELECT ts, vals FROM sotp_samples WHERE series_id = ? ORDER BY t_max DESC LIMIT 1", (sid,)
        ).fetchone()
        if row is None:
            return None
        ts = np.frombuffer(row[0], _I8)
        vs = np.frombuffer(row[1], _F8)
        last = (int(ts[-1]), float(vs[-1]))
        self._last[sid] = last
        return last

    def _stored_value(self, conn: sqlite3.Connection, sid: int, t: int) -> float | None:
        for ts_b, vs_b in conn.execute(
            "SELECT ts, vals FROM sotp_samples WHERE series_id = ? AND t_min <= ? AND t_max >= ?", (sid, t, t)
        ):
            ts = np.frombuffer(ts_b, _I8)
            i = int(np.searchsorted(ts, t))
            if i < len(ts) and ts[i] == t:
                return float(np.frombuffer(vs_b, _F8)[i])
        return None

    def _write_one(
        self,
        conn: sqlite3.Connection,
        staged: dict[Labels, StagedSeries],
        created: set[int],
        overlay: dict[int, tuple[int, float]],
    ) -> tuple[int, dict[int, tuple[int, float]]]:
        """Check one request's samples against the newest stored ones and insert its blocks.

        ``overlay`` holds the newest samples written earlier in the same transaction (group commit)."""
        rows: list[tuple[int, int, int, int, bytes, bytes]] = []
        new_last: dict[int, tuple[int, float]] = {}
        for labels, st in staged.items():
            sid = self._index.by_labels[labels]
            last = overlay.get(sid)
            if last is None and sid not in created:
                last = self._last_sample(conn, sid)
            c = classify(st, last)
            for t, v in c.older:
                assert last is not None
                verify_older(labels, t, v, self._stored_value(conn, sid, t), last[0])
            ts = st.ts[c.first_new :]
            if not ts:
                continue
            vs = st.vs[c.first_new :]
            rows.append((sid, ts[0], ts[-1], len(ts), np.asarray(ts, _I8).tobytes(), np.asarray(vs, _F8).tobytes()))
            new_last[sid] = (ts[-1], vs[-1])
        conn.executemany(
            "INSERT INTO sotp_samples (series_id, t_min, t_max, n, ts, vals) VALUES (?, ?, ?, ?, ?, ?)", rows
        )
        return sum(r[3] for r in rows), new_last

    def _commit_group_sync(self, group: list[dict[Labels, StagedSeries]]) -> list[int | SampleRejected]:
        """Commit several requests in one transaction (one fsync), each atomic on its own: a request whose
        samples are rejected is rolled back to its savepoint and gets its error; the others commit.

        New series rows are inserted before any savepoint and never rolled back with a request, so the
        in-process index never names an id the table lost (an unused series row is harmless)."""
        conn = self._wconn
        if conn is None:
            raise StorageUnavailable(f"SQLite store {self.path} is not open")
        self._refresh_index(conn)
        conn.execute("BEGIN IMMEDIATE")
        outcomes: list[int | SampleRejected] = []
        overlay: dict[int, tuple[int, float]] = {}
        try:
            wanted = {lb for staged in group for lb in staged}
            missing = [lb for lb in wanted if lb not in self._index.by_labels]
            self._index.hits += len(wanted) - len(missing)
            self._index.misses += len(missing)
            created: set[int] = set()
            if missing:
                before = self._index.max_id
                conn.executemany(
                    "INSERT OR IGNORE INTO sotp_series (metric, labels) VALUES (?, ?)",
                    [(labels.get(METRIC_NAME) or "", _labels_key(labels)) for labels in missing],
                )
                self._refresh_index(conn)
                # Series created by this transaction have no samples yet: no need to ask for their newest.
                created = {self._index.by_labels[lb] for lb in missing if self._index.by_labels[lb] > before}
            for staged in group:
                conn.execute("SAVEPOINT request")
                try:
                    written, new_last = self._write_one(conn, staged, created, overlay)
                except SampleRejected as err:
                    conn.execute("ROLLBACK TO request")
                    conn.execute("RELEASE request")
                    outcomes.append(err)
                    continue
                conn.execute("RELEASE request")
                overlay.update(new_last)
                outcomes.append(written)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            self._reset_index()  # series rows of this transaction are gone
            raise
        self._last.update(overlay)
        return outcomes

    def _reset_index(self) -> None:
        with self._index_lock:
            hits, misses = self._index.hits, self._index.misses
            self._index = _Index()
            self._index.hits, self._index.misses = hits, misses
        if self._wconn is not None:
            self._refresh_index(self._wconn)

    async def _commit(self, staged: dict[Labels, StagedSeries]) -> int:
        """Group commit: requests arriving while a commit runs share the next transaction and fsync."""
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._pending.append((staged, fut))
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
                        outcomes = await asyncio.to_thread(self._commit_group_sync, [g[0] for g in group])
                    except Exception as err:
                        failure = (
                            StorageError(f"cannot commit to SQLite store {self.path}: {err}")
                            if isinstance(err, sqlite3.Error)
                            else err
                        )
                        for _, f in group:
                            f.set_exception(failure)
                        continue
                for (_, f), outcome in zip(group, outcomes, strict=True):
                    if isinstance(outcome, SampleRejected):
                        f.set_exception(outcome)
                    else:
                        f.set_result(outcome)
        finally:
            self._leading = False

    # -- maintenance -------------------------------------------------------------------------------

    async def delete_before(self, t_ms: int) -> int:
        def _delete() -> int:
            assert self._wconn is not None
            cur = self._wconn.execute("DELETE FROM sotp_samples WHERE t_max < ?", (t_ms,))
            return cur.rowcount

        async with self._wlock:
            return await asyncio.to_thread(_delete)

    async def compact(self, now_ms: int) -> int:
        """Merge each series' blocks inside closed ``block_ms`` windows ending before
        ``now_ms - compact_after_ms`` into one block. Idempotent; one transaction. Returns blocks removed."""
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
                    ts, vs = _merge_blocks([(p[1], p[2]) for p in parts])
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


def _merge_blocks(blocks: Sequence[tuple[bytes, bytes]]) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate blocks, sort by time and drop duplicate timestamps (a raced retry)."""
    ts = np.concatenate([np.frombuffer(b[0], _I8) for b in blocks])
    vs = np.concatenate([np.frombuffer(b[1], _F8) for b in blocks])
    if len(ts) > 1 and not np.all(ts[1:] > ts[:-1]):
        order = np.argsort(ts, kind="stable")
        ts, vs = ts[order], vs[order]
        keep = np.concatenate(([True], ts[1:] != ts[:-1]))
        ts, vs = ts[keep], vs[keep]
    return np.ascontiguousarray(ts, _I8), np.ascontiguousarray(vs, _F8)


class _SQLiteAppender:
    def __init__(self, store: SQLiteStorage) -> None:
        self._store = store
        self._staged: dict[Labels, StagedSeries] = {}

    def _series(self, labels: Labels) -> StagedSeries:
        st = self._staged.get(labels)
        if st is None:
            st = self._staged[labels] = StagedSeries(labels)
        return st

    def append(self, labels: Labels, t_ms: int, value: float) -> None:
        self._series(labels).add(int(t_ms), float(value))

    def append_series(self, labels: Labels, ts: Sequence[int], vs: Sequence[float]) -> None:
        self._series(labels).extend(list(ts), list(vs))

    async def commit(self) -> int:
        staged, self._staged = self._staged, {}
        if not staged:
            return 0
        return await self._store._commit(staged)

    async def rollback(self) -> None:
        self._staged = {}


class _SQLiteQuerier:
    def __init__(self, store: SQLiteStorage, mint: int, maxt: int) -> None:
        self._store = store
        self._mint = mint
        self._maxt = maxt

    def _fetch(self, matchers: Sequence[Matcher], budget: int | None = None) -> list[Series]:
        store = self._store
        assert store._rconn is not None
        store._refresh_index(store._rconn)
        ids = store._index.candidates(matchers)
        if not ids:
            return []
        blocks: dict[int, list[tuple[bytes, bytes]]] = {}
        loaded = 0
        for chunk_start in range(0, len(ids), 500):
            chunk = ids[chunk_start : chunk_start + 500]
            marks = ",".join("?" * len(chunk))
            for sid, ts_b, vs_b in store._read(
                f"SELECT series_id, ts, vals FROM sotp_samples WHERE series_id IN ({marks}) "
                "AND t_max >= ? AND t_min <= ? ORDER BY series_id, t_min",
                (*chunk, self._mint, self._maxt),
            ):
                blocks.setdefault(int(sid), []).append((ts_b, vs_b))
                loaded += len(ts_b) // 8
                if budget is not None and loaded > budget:
                    raise TooManySamples(f"select loaded more than {budget} samples")
        out: list[Series] = []
        for sid, parts in blocks.items():
            ts, vs = _merge_blocks(parts)
            lo = int(np.searchsorted(ts, self._mint, "left"))
            hi = int(np.searchsorted(ts, self._maxt, "right"))
            if hi > lo:
                out.append(Series(store._index.by_id[sid], ts[lo:hi], vs[lo:hi]))
        out.sort(key=lambda s: s.labels.items_tuple())
        return out

    async def select(self, matchers: list[Matcher], hints: SelectHints | None = None) -> list[Series]:
        return await asyncio.to_thread(self._fetch, matchers, hints.max_samples if hints else None)

    def _series_in_window(self, matchers: Sequence[Matcher] | None) -> list[Labels]:
        store = self._store
        assert store._rconn is not None
        store._refresh_index(store._rconn)
        ids = store._index.candidates(matchers or [])
        present: list[Labels] = []
        for chunk_start in range(0, len(ids), 500):
            chunk = ids[chunk_start : chunk_start + 500]
            marks = ",".join("?" * len(chunk))
            rows = store._read(
                f"SELECT DISTINCT series_id FROM sotp_samples WHERE series_id IN ({marks}) "
                "AND t_max >= ? AND t_min <= ?",
                (*chunk, self._mint, self._maxt),
            )
            present.extend(store._index.by_id[int(r[0])] for r in rows)
        return present

    async def label_names(self, matchers: list[Matcher] | None = None) -> list[str]:
        series = await asyncio.to_thread(self._series_in_window, matchers)
        return sorted({name for labels in series for name in labels})

    async def label_values(self, name: str, matchers: list[Matcher] | None = None) -> list[str]:
        series = await asyncio.to_thread(self._series_in_window, matchers)
        return sorted({v for labels in series if (v := labels.get(name)) is not None})

    async def close(self) -> None:
        return None
