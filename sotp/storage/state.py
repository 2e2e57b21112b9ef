"""Component state stored beside the samples and committed in the same transaction as them.

A component (the push gateway) keeps keyed rows in a *namespace*: ``sotp_state(ns, key, gen, value)``, with
``value`` NULL for a deleted key (a tombstone), and one generation per namespace in
``sotp_state_gen(ns, gen, purged)``. Every change bumps the generation by one and stamps the rows it writes
with it, so a process that mirrors the namespace in memory catches up by reading the rows stamped after the
generation it last saw (:meth:`StateStore.load`); tombstones tell it which keys went. Tombstones older than
``purged`` were removed: a mirror that old reloads the whole namespace.

A change is attached to an appender (:func:`attach_state`) and written by its :meth:`Appender.commit`, in the
samples' transaction: both are committed or neither is. The change names the generation it was planned
against; the commit is a compare-and-set on it, so a change planned from a stale mirror (another replica
changed the namespace in between) raises :class:`StateConflict` and writes nothing, samples included. The
caller reloads and plans again. :meth:`StateStore.lock` serialises the planners of one namespace across
processes (PostgreSQL: a session advisory lock), so the compare-and-set normally never fails; it is what
keeps the state right when a lock was lost with its connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from sotp.errors import StorageError, StorageUnavailable


class StateConflict(StorageError):
    """The namespace changed since the change was planned (another process wrote it): reload, plan again."""


@dataclass(slots=True)
class StateChange:
    """Rows of one namespace to write with an appender's samples, planned against generation ``expect``."""

    namespace: str
    expect: int
    #: Key → new value.
    puts: dict[str, str] = field(default_factory=dict)
    #: Keys to delete (left as tombstones so mirrors learn of it).
    deletes: list[str] = field(default_factory=list)

    @property
    def generation(self) -> int:
        """The namespace's generation once this change is committed."""
        return self.expect + 1


@dataclass(slots=True)
class StateSnapshot:
    """What :meth:`StateStore.load` found: the rows changed after ``since`` (or all rows when ``full``)."""

    generation: int
    full: bool
    #: Key → value for keys written; key → None for keys deleted (never in a full snapshot).
    rows: dict[str, str | None]


#: The schema both SQL backends share (PostgreSQL: migration 5; SQLite: created at open).
TABLES = (
    "CREATE TABLE IF NOT EXISTS sotp_state (ns text NOT NULL, key text NOT NULL, gen bigint NOT NULL, value text, "
    "PRIMARY KEY (ns, key))",
    "CREATE INDEX IF NOT EXISTS sotp_state_gen_idx ON sotp_state (ns, gen)",
    "CREATE TABLE IF NOT EXISTS sotp_state_gen (ns text PRIMARY KEY, gen bigint NOT NULL, purged bigint NOT NULL)",
)
_ENSURE_NS = "INSERT INTO sotp_state_gen (ns, gen, purged) VALUES (?, 0, 0) ON CONFLICT (ns) DO NOTHING"
# The compare-and-set: in PostgreSQL a concurrent transaction that bumped the row first makes this one wait
# for its commit and then re-check the WHERE clause against the new row, so exactly one of them wins.
_BUMP = "UPDATE sotp_state_gen SET gen = gen + 1 WHERE ns = ? AND gen = ? RETURNING gen"
_PUT = (
    "INSERT INTO sotp_state (ns, key, gen, value) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (ns, key) DO UPDATE SET gen = excluded.gen, value = excluded.value"
)
# One statement, so the generation and the rows come from one snapshot (READ COMMITTED takes one per
# statement); the generation row is repeated on every row, and alone (key NULL) when nothing changed. The
# second parameter says whether tombstones are wanted (a catch-up needs them, a full load does not).
_LOAD = (
    "SELECT g.gen, g.purged, s.key, s.value FROM sotp_state_gen g LEFT JOIN sotp_state s "
    "ON s.ns = g.ns AND s.gen > ? AND (? OR s.value IS NOT NULL) WHERE g.ns = ?"
)
#: PostgreSQL: the compare-and-set and the row writes as one function (migration 5), so a change costs one
#: statement; in the write path it runs inside ``sotp_wal_append_state`` with the samples' log row. A
#: conflict raises SQLSTATE :data:`CONFLICT_SQLSTATE`, which aborts the whole statement's transaction.
CONFLICT_SQLSTATE = "SOTPC"
PG_FUNCTIONS = (
    "CREATE FUNCTION sotp_state_write(state_ns text, expect bigint, keys text[], vals text[]) RETURNS bigint "
    "LANGUAGE plpgsql VOLATILE AS $fn$ "
    "DECLARE new_gen bigint; "
    "BEGIN "
    "  INSERT INTO sotp_state_gen (ns, gen, purged) VALUES (state_ns, 0, 0) ON CONFLICT (ns) DO NOTHING; "
    "  UPDATE sotp_state_gen SET gen = gen + 1 WHERE ns = state_ns AND gen = expect RETURNING gen INTO new_gen; "
    "  IF new_gen IS NULL THEN "
    "    RAISE EXCEPTION 'stored state % changed under this write (planned against generation %)', state_ns, expect "
    f"      USING ERRCODE = '{CONFLICT_SQLSTATE}'; "
    "  END IF; "
    "  INSERT INTO sotp_state (ns, key, gen, value) "
    "    SELECT state_ns, u.k, new_gen, u.v FROM unnest(keys, vals) AS u(k, v) "
    "    ON CONFLICT (ns, key) DO UPDATE SET gen = excluded.gen, value = excluded.value; "
    "  RETURN new_gen; "
    "END $fn$",
    "CREATE FUNCTION sotp_wal_append_state(lock_key text, boundary bigint, generation bigint, t_min bigint, "
    "t_max bigint, n int, sids bytea, counts bytea, ts bytea, vals bytea, state_ns text, expect bigint, "
    "keys text[], svals text[]) RETURNS bigint LANGUAGE plpgsql VOLATILE AS $fn$ "
    "DECLARE seq bigint; "
    "BEGIN "
    "  seq := sotp_wal_append(lock_key, boundary, generation, t_min, t_max, n, sids, counts, ts, vals); "
    "  IF seq IS NOT NULL THEN PERFORM sotp_state_write(state_ns, expect, keys, svals); END IF; "
    "  RETURN seq; "
    "END $fn$",
)
_PURGE = "DELETE FROM sotp_state WHERE ns = ? AND value IS NULL AND gen <= ?"
_SET_PURGED = "UPDATE sotp_state_gen SET purged = ? WHERE ns = ? AND purged < ?"


def _pg(sql: str) -> str:
    return sql.replace("?", "%s")


def _conflict(change: StateChange, found: object) -> StateConflict:
    return StateConflict(
        f"stored state {change.namespace!r} changed under this write (planned against generation {change.expect}, "
        f"store has {found}): another replica wrote it; retry"
    )


def sqlite_conflict(conn: sqlite3.Connection, change: StateChange) -> StateConflict | None:
    """Inside an open SQLite write transaction: the conflict ``change`` would meet, checked before the
    samples it goes with are written (a group commit then skips that request alone)."""
    row = conn.execute("SELECT gen FROM sotp_state_gen WHERE ns = ?", (change.namespace,)).fetchone()
    found = int(row[0]) if row else 0
    return None if found == change.expect else _conflict(change, found)


def write_sqlite(conn: sqlite3.Connection, change: StateChange) -> None:
    """Apply ``change`` inside the caller's open SQLite transaction; raises :class:`StateConflict`."""
    conn.execute(_ENSURE_NS, (change.namespace,))
    row = conn.execute(_BUMP, (change.namespace, change.expect)).fetchone()
    if row is None:
        now = conn.execute("SELECT gen FROM sotp_state_gen WHERE ns = ?", (change.namespace,)).fetchone()
        raise _conflict(change, now[0] if now else "none")
    gen = change.generation
    rows: list[tuple[str, str, int, str | None]] = [(change.namespace, k, gen, v) for k, v in change.puts.items()]
    rows += [(change.namespace, k, gen, None) for k in change.deletes]
    conn.executemany(_PUT, rows)


def pg_args(change: StateChange) -> tuple[str, int, list[str], list[str | None]]:
    """``(namespace, expect, keys, values)``: the arguments of ``sotp_state_write`` for ``change``."""
    keys = [*change.puts, *change.deletes]
    values: list[str | None] = [*change.puts.values(), *(None for _ in change.deletes)]
    return change.namespace, change.expect, keys, values


async def write_pg(conn: Any, change: StateChange) -> None:
    """Apply ``change`` on ``conn`` (in the caller's transaction, or as its own statement); a conflict raises
    a psycopg error with SQLSTATE :data:`CONFLICT_SQLSTATE` (see :func:`pg_conflict`)."""
    await conn.execute("SELECT sotp_state_write(%s, %s, %s, %s)", pg_args(change))


def pg_conflict(err: BaseException, change: StateChange) -> StateConflict | None:
    """The :class:`StateConflict` a PostgreSQL error (or the StorageError wrapping it) stands for, else None."""
    cause = err if getattr(err, "sqlstate", None) else err.__cause__
    if getattr(cause, "sqlstate", None) == CONFLICT_SQLSTATE:
        return _conflict(change, "a later one")
    return None


def _snapshot(rows: list[tuple[Any, ...]], since: int) -> StateSnapshot:
    if not rows:
        return StateSnapshot(0, True, {})
    gen, purged = int(rows[0][0]), int(rows[0][1])
    full = since < 0 or since < purged or since > gen  # gen going back: the namespace was recreated
    return StateSnapshot(gen, full, {str(r[2]): r[3] for r in rows if r[2] is not None})


class StateStore(Protocol):
    """Reads a namespace and serialises its writers; writes go through :func:`attach_state`."""

    async def load(self, namespace: str, since: int) -> StateSnapshot:
        """Rows changed after generation ``since`` (tombstones included), or every live row when ``since`` is
        -1 or older than the purge horizon (``full``)."""
        ...

    def locked(self, namespace: str, since: int) -> contextlib.AbstractAsyncContextManager[StateSnapshot]:
        """Hold the namespace's writer lock (every process's writers wait for it) and :meth:`load` what
        changed after ``since`` under it; held while the caller plans and commits."""
        ...

    async def purge(self, namespace: str, before: int) -> int:
        """Remove tombstones stamped at or before generation ``before``; returns how many went."""
        ...


class MemoryStateStore:
    """For the in-memory backend: one process, so no lock is needed beyond the caller's."""

    def __init__(self) -> None:
        self.gen: dict[str, int] = {}
        self.purged: dict[str, int] = {}
        self.rows: dict[str, dict[str, tuple[int, str | None]]] = {}

    def write(self, change: StateChange) -> None:
        """Apply ``change`` (called by the memory appender under its commit lock)."""
        now = self.gen.get(change.namespace, 0)
        if now != change.expect:
            raise _conflict(change, now)
        self.check(change)
        rows = self.rows.setdefault(change.namespace, {})
        gen = self.gen[change.namespace] = change.generation
        for k, v in change.puts.items():
            rows[k] = (gen, v)
        for k in change.deletes:
            rows[k] = (gen, None)

    def check(self, change: StateChange) -> None:
        now = self.gen.get(change.namespace, 0)
        if now != change.expect:
            raise _conflict(change, now)

    async def load(self, namespace: str, since: int) -> StateSnapshot:
        gen = self.gen.get(namespace, 0)
        full = since < 0 or since < self.purged.get(namespace, 0) or since > gen
        rows = self.rows.get(namespace, {})
        got = {k: v for k, (g, v) in rows.items() if (v is not None if full else g > since)}
        return StateSnapshot(gen, full, got)

    @contextlib.asynccontextmanager
    async def locked(self, namespace: str, since: int) -> AsyncIterator[StateSnapshot]:
        yield await self.load(namespace, since)  # one process: the caller's lock is the only one needed

    async def purge(self, namespace: str, before: int) -> int:
        rows = self.rows.get(namespace, {})
        dead = [k for k, (g, v) in rows.items() if v is None and g <= before]
        for k in dead:
            del rows[k]
        self.purged[namespace] = max(self.purged.get(namespace, 0), before)
        return len(dead)


class SQLiteStateStore:
    """The tables in the SQLite file. Writers are one ``sotp serve`` per file; the compare-and-set covers more."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._conn: sqlite3.Connection | None = None
        self._lock = asyncio.Lock()

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = sqlite3.connect(self._path, timeout=30, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA busy_timeout=30000")
            for stmt in TABLES:
                conn.execute(stmt)
            self._conn = conn
        return self._conn

    async def _run(self, fn: Any) -> Any:
        async with self._lock:
            try:
                return await asyncio.to_thread(lambda: fn(self._connection()))
            except sqlite3.Error as err:
                raise StorageError(f"stored state in {self._path}: {err}") from err

    async def load(self, namespace: str, since: int) -> StateSnapshot:
        def _load(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
            full = since < 0
            conn.execute("BEGIN")  # one snapshot for both statements
            try:
                rows = conn.execute(_LOAD, (since if not full else -1, not full, namespace)).fetchall()
                if rows and not full and (since < int(rows[0][1]) or since > int(rows[0][0])):
                    rows = conn.execute(_LOAD, (-1, False, namespace)).fetchall()
            finally:
                conn.execute("COMMIT")
            return list(rows)

        if since >= 0:
            # The usual case, nothing changed since the caller looked: one lookup in a table of a few rows,
            # made on the event loop (a WAL reader never waits for a writer), instead of a thread hop.
            async with self._lock:
                try:
                    row = self._connection().execute(
                        "SELECT gen, purged FROM sotp_state_gen WHERE ns = ?", (namespace,)).fetchone()
                except sqlite3.Error as err:
                    raise StorageError(f"stored state in {self._path}: {err}") from err
            if row is not None and int(row[0]) == since and since >= int(row[1]):
                return StateSnapshot(since, False, {})
        snap = _snapshot(await self._run(_load), since)
        if snap.full:
            snap.rows = {k: v for k, v in snap.rows.items() if v is not None}
        return snap

    @contextlib.asynccontextmanager
    async def locked(self, namespace: str, since: int) -> AsyncIterator[StateSnapshot]:
        # One writing process per file (sotp serve); the commit's compare-and-set catches any other.
        yield await self.load(namespace, since)

    async def purge(self, namespace: str, before: int) -> int:
        def _purge(conn: sqlite3.Connection) -> int:
            conn.execute("BEGIN IMMEDIATE")
            try:
                n = conn.execute(_PURGE, (namespace, before)).rowcount
                conn.execute(_SET_PURGED, (before, namespace, before))
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            return int(n)

        n: int = await self._run(_purge)
        return n

    async def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class PostgresStateStore:
    """The tables in the storage's schema, through the storage's pool."""

    def __init__(self, storage: Any) -> None:
        #: A :class:`sotp.storage.postgres.PostgresStorage`.
        self._storage = storage
        self._lock_key = f"sotp_state:{storage.options.schema}:"
        #: Tasks holding a lock connection (referenced until they finish).
        self._holders: set[asyncio.Task[None]] = set()

    async def _load(self, conn: Any, namespace: str, since: int, lock: str | None = None) -> StateSnapshot:
        full = since < 0
        if lock is None:
            cur = await conn.execute(_pg(_LOAD), (since if not full else -1, not full, namespace))
        else:
            # The lock and the load in one round trip: the server runs them in order, so the load's snapshot
            # is taken once the lock is granted and sees every commit of the previous holder.
            async with conn.pipeline():
                await conn.execute("SELECT pg_advisory_lock(hashtext(%s))", (lock,))
                cur = await conn.execute(_pg(_LOAD), (since if not full else -1, not full, namespace))
        rows = await cur.fetchall()
        if rows and not full and (since < int(rows[0][1]) or since > int(rows[0][0])):
            cur = await conn.execute(_pg(_LOAD), (-1, False, namespace))
            rows = await cur.fetchall()
        snap = _snapshot(rows, since)
        if snap.full:
            snap.rows = {k: v for k, v in snap.rows.items() if v is not None}
        return snap

    async def load(self, namespace: str, since: int) -> StateSnapshot:
        async with self._storage.connection() as conn:
            return await self._load(conn, namespace, since)

    @contextlib.asynccontextmanager
    async def locked(self, namespace: str, since: int) -> AsyncIterator[StateSnapshot]:
        # A session-level advisory lock on a connection of its own, held while the caller plans and commits
        # on other connections. If this connection dies the lock goes with it; the commit's compare-and-set
        # still refuses a change planned from a stale view.
        # The connection is held by a task of its own, which unlocks and returns it once the caller is done
        # without making the caller wait for that round trip (its answer goes out meanwhile); the connection
        # is back in the pool only after the unlock, so no other user inherits the lock.
        key = self._lock_key + namespace
        got: asyncio.Future[StateSnapshot] = asyncio.get_running_loop().create_future()
        done = asyncio.Event()

        async def hold() -> None:
            try:
                async with self._storage.connection() as conn:
                    try:
                        got.set_result(await self._load(conn, namespace, since, lock=key))
                        await done.wait()
                    finally:
                        with contextlib.suppress(Exception):  # a dead connection released it already
                            await conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", (key,))
            except BaseException as err:
                if not got.done():
                    got.set_exception(err)
                if not isinstance(err, Exception):
                    raise

        task = asyncio.create_task(hold())
        self._holders.add(task)
        task.add_done_callback(self._holders.discard)
        try:
            snap = await asyncio.shield(got)
        except BaseException:
            done.set()
            raise
        try:
            yield snap
        finally:
            done.set()

    async def purge(self, namespace: str, before: int) -> int:
        async with self._storage.connection() as conn, conn.transaction():
            cur = await conn.execute(_pg(_PURGE), (namespace, before))
            await conn.execute(_pg(_SET_PURGED), (before, namespace, before))
            return int(cur.rowcount)


def state_store_for(storage: Any) -> StateStore:
    """The state store that lives beside ``storage`` (same file, or database and schema)."""
    from sotp.storage.memory import MemoryStorage
    from sotp.storage.sqlite import SQLiteStorage

    if isinstance(storage, MemoryStorage):
        return storage.state
    if isinstance(storage, SQLiteStorage):
        return SQLiteStateStore(str(storage.path))
    if hasattr(storage, "connection") and hasattr(getattr(storage, "options", None), "schema"):
        return PostgresStateStore(storage)
    raise StorageUnavailable(f"storage backend {type(storage).__name__} cannot store state")


def attach_state(appender: Any, change: StateChange) -> None:
    """Make ``appender``'s commit write ``change`` in the same transaction as its samples."""
    attach = getattr(appender, "attach_state", None)
    if attach is None:
        raise StorageError(f"appender {type(appender).__name__} cannot commit stored state with samples")
    attach(change)


__all__ = [
    "StateChange", "StateConflict", "StateSnapshot", "StateStore", "attach_state", "pg_args", "pg_conflict",
    "sqlite_conflict", "state_store_for", "write_pg", "write_sqlite",
]
