"""The storage seam: every write goes through an :class:`Appender`, every read through a :class:`Querier`.

Backends (``memory``, ``sqlite``, ``postgres``) implement :class:`Storage`; :func:`open_storage` picks one
from a URL. Nothing outside ``sotp.storage`` touches a database.

Units: timestamps are always int64 **milliseconds** since the Unix epoch (``t_ms``, ``mint``, ``maxt``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from sotp.model import Labels, Matcher, Series


@dataclass(frozen=True, slots=True)
class SelectHints:
    """Advisory information about a select; a backend may ignore every field.

    ``start_ms``/``end_ms`` narrow the window further than the querier's; ``step_ms`` and ``range_ms``
    describe how the engine will use the data; ``func`` names the function that wraps the selector.
    ``max_samples`` is the query's remaining sample budget: a backend that loads a selection in parts
    should raise :class:`sotp.errors.TooManySamples` as soon as it has loaded more than this (before
    decoding or merging the rest); the engine checks the total after each select either way.
    """

    start_ms: int | None = None
    end_ms: int | None = None
    step_ms: int | None = None
    range_ms: int | None = None
    func: str | None = None
    max_samples: int | None = None

    def check_budget(self, loaded: int) -> None:
        """Raise :class:`sotp.errors.TooManySamples` when ``loaded`` samples exceed ``max_samples``."""
        if self.max_samples is not None and loaded > self.max_samples:
            from sotp.errors import TooManySamples

            raise TooManySamples(f"select would load {loaded} samples, above the query's budget of {self.max_samples}")


class Appender(Protocol):
    """A single-use write transaction. Not task-safe: one coroutine uses it, then discards it.

    Call :meth:`append` any number of times, then exactly one of :meth:`commit` or :meth:`rollback`.

    Rules, checked at :meth:`append` or at the latest at :meth:`commit`:

    * Labels must be valid (:meth:`Labels.validate`); the appender does not re-validate them.
    * Per series, a sample with a timestamp at or before the newest committed one is a **duplicate**
      when time and value are equal (bit-equal for NaN), and is silently dropped so that retried
      requests are idempotent; otherwise it is **out-of-order** (different time) or a **conflict**
      (same time, different value) and raises :class:`sotp.errors.SampleRejected`.
    * Within one transaction, samples of a series must also arrive in non-decreasing time order.
    * :meth:`commit` is atomic: when it returns, every sample of the transaction is durable; when it
      raises, none is visible. :class:`sotp.errors.StorageError` means a retry may succeed.
    """

    def append(self, labels: Labels, t_ms: int, value: float) -> None:
        """Stage one sample."""
        ...

    def append_series(self, labels: Labels, ts: Sequence[int], vs: Sequence[float]) -> None:
        """Stage many samples of one series at once (same rules as :meth:`append`, faster)."""
        ...

    async def commit(self) -> int:
        """Make every staged sample durable at once; returns how many samples were newly written."""
        ...

    async def rollback(self) -> None:
        """Discard every staged sample."""
        ...


class Querier(Protocol):
    """Read access bounded to the inclusive window ``[mint, maxt]`` in milliseconds.

    Results see every commit that finished before the querier was opened. Close it with
    :meth:`close` (or ``async with``).
    """

    async def select(self, matchers: list[Matcher], hints: SelectHints | None = None) -> list[Series]:
        """Series matching every matcher, with their samples inside the window.

        Series are sorted by labels; samples by time, with duplicate timestamps removed. Series with
        no sample in the window are not returned. Staleness markers are returned as they were stored.
        """
        ...

    async def label_names(self, matchers: list[Matcher] | None = None) -> list[str]:
        """Sorted label names of the series (with samples in the window) matching ``matchers``."""
        ...

    async def label_values(self, name: str, matchers: list[Matcher] | None = None) -> list[str]:
        """Sorted distinct values of label ``name`` over the matching series in the window."""
        ...

    async def close(self) -> None:
        """Release the querier's resources."""
        ...


@runtime_checkable
class Storage(Protocol):
    """A backend: hands out appenders and queriers. Safe to share between tasks."""

    async def open(self) -> None:
        """Connect and migrate the schema; called once before use."""
        ...

    async def close(self) -> None:
        """Flush and release every resource."""
        ...

    def appender(self) -> Appender:
        """A new write transaction."""
        ...

    def querier(self, mint: int, maxt: int) -> Querier:
        """A reader bounded to ``[mint, maxt]`` (ms, inclusive)."""
        ...

    async def ping(self) -> None:
        """Raise :class:`sotp.errors.StorageUnavailable` unless the store answers."""
        ...

    async def delete_before(self, t_ms: int) -> int:
        """Retention: remove samples older than ``t_ms``; returns how many rows or blocks went."""
        ...

    async def series_count(self, matchers: Sequence[Matcher] = ()) -> int:
        """How many stored series match every matcher (all series for none), samples in any window.
        Counts what the series index holds: series whose samples all expired count until
        :meth:`gc_series` removes them. Cheap: answered from memory."""
        ...

    async def count_new_series(self, labels: Sequence[Labels]) -> int:
        """How many of the distinct label sets in ``labels`` the store does not hold yet (what a write of
        them would create); for series limits, checked before a commit."""
        ...

    async def gc_series(self) -> int:
        """Remove the series that have no sample left (after retention) from the store and its indexes;
        returns how many went. Run by the retention job. A backend that cannot do it safely returns 0
        (and says so in its docstring)."""
        ...


def sqlite_file(url: str) -> Path | None:
    """The file of a ``sqlite:`` URL (``sqlite:///abs/path.db``, ``sqlite:///./relative.db``), else None."""
    if not url.startswith("sqlite:"):
        return None
    path = url.removeprefix("sqlite://").partition("?")[0]
    if path.startswith("/./") or path.startswith("/../"):
        path = path[1:]
    return Path(path or "./data/sotp.db")


def require_existing_store(url: str) -> None:
    """For commands that only read a store: refuse a SQLite file that does not exist instead of creating it."""
    from sotp.errors import ConfigError

    path = sqlite_file(url)
    if path is not None and not path.exists():
        raise ConfigError(
            f"no store at {path.resolve()}: start SOTP with it first (sotp up / sotp serve), or point at the right "
            "one with --data-dir, --config or --storage"
        )


def open_storage(url: str) -> Storage:
    """Build (not open) a backend from a storage URL.

    ``memory://`` (tests), ``sqlite:///path/to.db`` (embedded default; ``sqlite:///./data/sotp.db``
    is relative), ``postgresql://user@host:port/db`` (psycopg 3; TimescaleDB used when present).
    """
    from sotp.errors import ConfigError

    if url.startswith("memory:"):
        from sotp.storage.memory import MemoryStorage

        return MemoryStorage()
    sqlite = sqlite_file(url)
    if sqlite is not None:
        from urllib.parse import parse_qsl

        from sotp.storage.head import HEAD_KEYS, policy_from_params
        from sotp.storage.sqlite import SQLiteStorage

        query = url.partition("?")[2]
        params = dict(parse_qsl(query, keep_blank_values=True))
        unknown = sorted(set(params) - set(HEAD_KEYS))
        if unknown:
            raise ConfigError(
                f"storage URL {url!r}: unknown parameter {unknown[0]!r} (SQLite takes {', '.join(HEAD_KEYS)})"
            )
        return SQLiteStorage(str(sqlite), policy=policy_from_params(params, url))
    if url.startswith(("postgresql:", "postgres:")):
        try:
            from sotp.storage.postgres import PostgresStorage
        except ImportError as err:
            raise ConfigError(
                f"storage {url!r} needs psycopg: pip install 'sotp[server]' ({err})"
            ) from err
        pg: Storage = PostgresStorage(url)
        return pg
    raise ConfigError(
        f"unknown storage URL {url!r}: use sqlite:///path/to.db, postgresql://user@host:port/db or memory://"
    )


__all__ = ["Appender", "Querier", "SelectHints", "Storage", "open_storage"]
