"""Versioned device configurations (SSH backups), kept in the same database as the samples.

A version is stored only when the config's digest (computed by the caller over the config with volatile
lines removed) differs from the device's newest version, so fetching an unchanged config twice keeps one
version. Content is stored as the caller hands it over: the backup runner masks secrets first
(:mod:`worker.backup.masking`). Each device also has a :class:`DeviceInfo` row: its labels (the tenant the
API checks) and the platform whose masking rules its content went through (``None``: stored unmasked on
purpose), so readers can re-mask versions stored before masking existed.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from sotp.errors import StorageError, StorageUnavailable
from sotp.storage import Storage


@dataclass(frozen=True, slots=True)
class ConfigVersion:
    """One stored version of a device's configuration."""

    device: str
    version: int
    fetched_ms: int
    digest: str
    size: int


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """What the store knows about a device besides its versions."""

    #: The device's labels from ``backup.devices[].labels`` (a tenant-bound token sees the device only
    #: when they carry its tenant label).
    labels: Mapping[str, str] = field(default_factory=dict)
    #: The device_type whose masking rules were applied before storing; ``None``: stored unmasked
    #: (``mask_secrets: false``).
    masked_as: str | None = None

    def to_json(self) -> str:
        return json.dumps({"labels": dict(self.labels), "masked_as": self.masked_as}, sort_keys=True)

    @staticmethod
    def from_json(text: str) -> DeviceInfo:
        data = json.loads(text)
        return DeviceInfo(dict(data.get("labels") or {}), data.get("masked_as"))


class ConfigStore(Protocol):
    """Store of config versions. ``save`` is atomic; versions count up from 1 per device."""

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def save(
        self, device: str, content: str, fetched_ms: int, digest: str, info: DeviceInfo | None = None
    ) -> ConfigVersion | None:
        """Store ``content`` as a new version unless ``digest`` equals the newest one's (then ``None``).

        ``info`` (when given) replaces the device's :class:`DeviceInfo` either way, in the same transaction.
        """
        ...

    async def infos(self) -> dict[str, DeviceInfo]:
        """Every device's info (devices stored before infos existed have none)."""
        ...

    async def latest(self) -> list[tuple[ConfigVersion, int]]:
        """Every device's newest version with its number of versions, sorted by device."""
        ...

    async def versions(self, device: str) -> list[ConfigVersion]:
        """A device's versions, oldest first (empty when the device is unknown)."""
        ...

    async def get(self, device: str, version: int) -> tuple[ConfigVersion, str] | None:
        """One version and its content."""
        ...


_SQL_CREATE = (
    "CREATE TABLE IF NOT EXISTS sotp_config_version ("
    " device TEXT NOT NULL, version INTEGER NOT NULL, fetched_ms BIGINT NOT NULL, digest TEXT NOT NULL,"
    " size INTEGER NOT NULL, content TEXT NOT NULL, PRIMARY KEY (device, version))"
)
_SQL_LATEST = (
    "SELECT v.device, v.version, v.fetched_ms, v.digest, v.size, c.n FROM sotp_config_version v"
    " JOIN (SELECT device, max(version) AS mv, count(*) AS n FROM sotp_config_version GROUP BY device) c"
    " ON c.device = v.device AND c.mv = v.version ORDER BY v.device"
)
_SQL_CREATE_DEVICE = "CREATE TABLE IF NOT EXISTS sotp_config_device (device TEXT PRIMARY KEY, info TEXT NOT NULL)"
_SQL_UPSERT_DEVICE = (
    "INSERT INTO sotp_config_device (device, info) VALUES (?, ?)"
    " ON CONFLICT (device) DO UPDATE SET info = excluded.info"
)
_COLS = "device, version, fetched_ms, digest, size"


def _row(r: tuple[Any, ...]) -> ConfigVersion:
    return ConfigVersion(str(r[0]), int(r[1]), int(r[2]), str(r[3]), int(r[4]))


class MemoryConfigStore:
    """For the in-memory storage backend (tests)."""

    def __init__(self) -> None:
        self._v: dict[str, list[tuple[ConfigVersion, str]]] = {}
        self._info: dict[str, DeviceInfo] = {}

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def infos(self) -> dict[str, DeviceInfo]:
        return dict(self._info)

    async def save(
        self, device: str, content: str, fetched_ms: int, digest: str, info: DeviceInfo | None = None
    ) -> ConfigVersion | None:
        if info is not None:
            self._info[device] = info
        versions = self._v.setdefault(device, [])
        if versions and versions[-1][0].digest == digest:
            return None
        v = ConfigVersion(device, len(versions) + 1, fetched_ms, digest, len(content.encode()))
        versions.append((v, content))
        return v

    async def latest(self) -> list[tuple[ConfigVersion, int]]:
        return [(vs[-1][0], len(vs)) for _, vs in sorted(self._v.items()) if vs]

    async def versions(self, device: str) -> list[ConfigVersion]:
        return [v for v, _ in self._v.get(device, [])]

    async def get(self, device: str, version: int) -> tuple[ConfigVersion, str] | None:
        for v, content in self._v.get(device, []):
            if v.version == version:
                return v, content
        return None


class SQLiteConfigStore:
    """A table beside the samples in the SQLite file; calls run in a thread."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._conn: sqlite3.Connection | None = None
        self._lock = asyncio.Lock()

    async def open(self) -> None:
        def _open() -> sqlite3.Connection:
            conn = sqlite3.connect(self._path, timeout=30, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute(_SQL_CREATE)
            conn.execute(_SQL_CREATE_DEVICE)
            return conn

        try:
            self._conn = await asyncio.to_thread(_open)
        except sqlite3.Error as err:
            raise StorageUnavailable(f"cannot open config store in {self._path}: {err}") from err

    async def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    async def _run(self, fn: Any) -> Any:
        if self._conn is None:
            raise StorageUnavailable(f"config store {self._path} is not open")
        async with self._lock:
            try:
                return await asyncio.to_thread(fn, self._conn)
            except sqlite3.Error as err:
                raise StorageError(f"config store {self._path}: {err}") from err

    async def infos(self) -> dict[str, DeviceInfo]:
        rows = await self._run(lambda c: c.execute("SELECT device, info FROM sotp_config_device").fetchall())
        return {str(d): DeviceInfo.from_json(str(i)) for d, i in rows}

    async def save(
        self, device: str, content: str, fetched_ms: int, digest: str, info: DeviceInfo | None = None
    ) -> ConfigVersion | None:
        def _save(conn: sqlite3.Connection) -> ConfigVersion | None:
            conn.execute("BEGIN IMMEDIATE")
            try:
                if info is not None:
                    conn.execute(_SQL_UPSERT_DEVICE, (device, info.to_json()))
                row = conn.execute(
                    "SELECT version, digest FROM sotp_config_version WHERE device = ? ORDER BY version DESC LIMIT 1",
                    (device,),
                ).fetchone()
                if row is not None and row[1] == digest:
                    conn.execute("COMMIT")
                    return None
                v = ConfigVersion(device, (row[0] if row else 0) + 1, fetched_ms, digest, len(content.encode()))
                conn.execute(
                    f"INSERT INTO sotp_config_version ({_COLS}, content) VALUES (?, ?, ?, ?, ?, ?)",
                    (v.device, v.version, v.fetched_ms, v.digest, v.size, content),
                )
                conn.execute("COMMIT")
                return v
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

        result: ConfigVersion | None = await self._run(_save)
        return result

    async def latest(self) -> list[tuple[ConfigVersion, int]]:
        rows = await self._run(lambda c: c.execute(_SQL_LATEST).fetchall())
        return [(_row(r), int(r[5])) for r in rows]

    async def versions(self, device: str) -> list[ConfigVersion]:
        rows = await self._run(
            lambda c: c.execute(
                f"SELECT {_COLS} FROM sotp_config_version WHERE device = ? ORDER BY version", (device,)
            ).fetchall()
        )
        return [_row(r) for r in rows]

    async def get(self, device: str, version: int) -> tuple[ConfigVersion, str] | None:
        row = await self._run(
            lambda c: c.execute(
                f"SELECT {_COLS}, content FROM sotp_config_version WHERE device = ? AND version = ?",
                (device, version),
            ).fetchone()
        )
        return None if row is None else (_row(row), str(row[5]))


class PostgresConfigStore:
    """Tables in the storage's schema, reached through the storage's connection pool (``pool_max``)."""

    def __init__(self, storage: Any) -> None:
        #: A :class:`sotp.storage.postgres.PostgresStorage`: its ``connection()`` hands out pooled
        #: autocommit connections with the schema on the search path.
        self._storage = storage

    async def open(self) -> None:
        async with self._storage.connection() as conn, conn.transaction():
            await conn.execute(_SQL_CREATE)
            await conn.execute(_SQL_CREATE_DEVICE)

    async def close(self) -> None:
        return None  # the pool belongs to the storage

    async def _fetch(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        async with self._storage.connection() as conn:
            cur = await conn.execute(sql.replace("?", "%s"), params)
            rows: list[tuple[Any, ...]] = await cur.fetchall()
            return rows

    async def infos(self) -> dict[str, DeviceInfo]:
        return {str(d): DeviceInfo.from_json(str(i)) for d, i in await self._fetch(
            "SELECT device, info FROM sotp_config_device")}

    async def save(
        self, device: str, content: str, fetched_ms: int, digest: str, info: DeviceInfo | None = None
    ) -> ConfigVersion | None:
        async with self._storage.connection() as conn, conn.transaction():
            # One writer per device at a time: the advisory lock makes "read newest, insert next" atomic.
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", ("sotp_config:" + device,))
            if info is not None:
                await conn.execute(_SQL_UPSERT_DEVICE.replace("?", "%s"), (device, info.to_json()))
            cur = await conn.execute(
                "SELECT version, digest FROM sotp_config_version WHERE device = %s ORDER BY version DESC LIMIT 1",
                (device,),
            )
            row = await cur.fetchone()
            if row is not None and row[1] == digest:
                return None
            v = ConfigVersion(device, (row[0] if row else 0) + 1, fetched_ms, digest, len(content.encode()))
            await conn.execute(
                f"INSERT INTO sotp_config_version ({_COLS}, content) VALUES (%s, %s, %s, %s, %s, %s)",
                (v.device, v.version, v.fetched_ms, v.digest, v.size, content),
            )
            return v

    async def latest(self) -> list[tuple[ConfigVersion, int]]:
        return [(_row(r), int(r[5])) for r in await self._fetch(_SQL_LATEST)]

    async def versions(self, device: str) -> list[ConfigVersion]:
        rows = await self._fetch(
            f"SELECT {_COLS} FROM sotp_config_version WHERE device = ? ORDER BY version", (device,)
        )
        return [_row(r) for r in rows]

    async def get(self, device: str, version: int) -> tuple[ConfigVersion, str] | None:
        rows = await self._fetch(
            f"SELECT {_COLS}, content FROM sotp_config_version WHERE device = ? AND version = ?", (device, version)
        )
        return None if not rows else (_row(rows[0]), str(rows[0][5]))


def config_store_for(storage: Storage) -> ConfigStore:
    """The config store that lives beside ``storage`` (same file or database and schema)."""
    from sotp.storage.memory import MemoryStorage
    from sotp.storage.sqlite import SQLiteStorage

    if isinstance(storage, MemoryStorage):
        store: MemoryConfigStore | None = getattr(storage, "_config_store", None)
        if store is None:
            store = MemoryConfigStore()
            storage._config_store = store  # type: ignore[attr-defined]  # shared by every user of this store
        return store
    if isinstance(storage, SQLiteStorage):
        return SQLiteConfigStore(str(storage.path))
    if hasattr(storage, "connection") and hasattr(getattr(storage, "options", None), "schema"):
        return PostgresConfigStore(storage)
    raise StorageError(f"no config store for storage backend {type(storage).__name__}")
