"""In-memory backend for unit tests: the reference behaviour the other backends must match."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import numpy as np

from sotp.model import Labels, Matcher, Series, matches_all
from sotp.storage import Appender, Querier, SelectHints
from sotp.storage.ordering import StagedSeries, classify, verify_older
from sotp.storage.state import MemoryStateStore, StateChange


class _MemSeries:
    __slots__ = ("ts", "vs")

    def __init__(self) -> None:
        self.ts: list[int] = []
        self.vs: list[float] = []


class MemoryStorage:
    """Keeps every series in Python lists; commit is atomic under one lock."""

    def __init__(self) -> None:
        self._series: dict[Labels, _MemSeries] = {}
        self._lock = asyncio.Lock()
        #: Stored state (:mod:`sotp.storage.state`), written by commits under :attr:`_lock`.
        self.state = MemoryStateStore()

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def ping(self) -> None:
        return None

    def appender(self) -> Appender:
        return _MemAppender(self)

    def querier(self, mint: int, maxt: int) -> Querier:
        return _MemQuerier(self, mint, maxt)

    async def series_count(self, matchers: Sequence[Matcher] = ()) -> int:
        return sum(1 for labels in self._series if not matchers or matches_all(list(matchers), labels))

    async def count_new_series(self, labels: Sequence[Labels]) -> int:
        return len({lb for lb in labels if lb not in self._series})

    async def gc_series(self) -> int:
        async with self._lock:
            dead = [labels for labels, s in self._series.items() if not s.ts]
            for labels in dead:
                del self._series[labels]
        return len(dead)

    async def delete_before(self, t_ms: int) -> int:
        removed = 0
        async with self._lock:
            for s in self._series.values():
                keep = [i for i, t in enumerate(s.ts) if t >= t_ms]
                removed += len(s.ts) - len(keep)
                s.ts = [s.ts[i] for i in keep]
                s.vs = [s.vs[i] for i in keep]
        return removed


class _MemAppender:
    def __init__(self, store: MemoryStorage) -> None:
        self._store = store
        self._staged: dict[Labels, StagedSeries] = {}
        self._state: StateChange | None = None

    def attach_state(self, change: StateChange) -> None:
        """Write ``change`` with this commit's samples (:mod:`sotp.storage.state`)."""
        self._state = change

    def append(self, labels: Labels, t_ms: int, value: float) -> None:
        staged = self._staged.get(labels)
        if staged is None:
            staged = self._staged[labels] = StagedSeries(labels)
        staged.add(t_ms, float(value))

    def append_series(self, labels: Labels, ts: Sequence[int], vs: Sequence[float]) -> None:
        staged = self._staged.get(labels)
        if staged is None:
            staged = self._staged[labels] = StagedSeries(labels)
        staged.extend(list(ts), [float(v) for v in vs])

    async def commit(self) -> int:
        state, self._state = self._state, None
        async with self._store._lock:
            if state is not None:
                self._store.state.check(state)
            plan: list[tuple[Labels, StagedSeries, int]] = []
            for labels, staged in self._staged.items():
                existing = self._store._series.get(labels)
                last = (existing.ts[-1], existing.vs[-1]) if existing and existing.ts else None
                c = classify(staged, last)
                for t, v in c.older:
                    assert existing is not None and last is not None
                    idx = _find(existing.ts, t)
                    verify_older(labels, t, v, None if idx is None else existing.vs[idx], last[0])
                plan.append((labels, staged, c.first_new))
            written = 0
            for labels, staged, first in plan:
                if first >= len(staged.ts):
                    continue
                s = self._store._series.setdefault(labels, _MemSeries())
                s.ts.extend(staged.ts[first:])
                s.vs.extend(staged.vs[first:])
                written += len(staged.ts) - first
            if state is not None:
                self._store.state.write(state)
        self._staged = {}
        return written

    async def rollback(self) -> None:
        self._staged = {}
        self._state = None


def _find(ts: list[int], t: int) -> int | None:
    import bisect

    i = bisect.bisect_left(ts, t)
    return i if i < len(ts) and ts[i] == t else None


class _MemQuerier:
    def __init__(self, store: MemoryStorage, mint: int, maxt: int) -> None:
        self._store = store
        self._mint = mint
        self._maxt = maxt

    def _matching(self, matchers: list[Matcher] | None) -> list[tuple[Labels, np.ndarray, np.ndarray]]:
        out = []
        for labels, s in self._store._series.items():
            if matchers and not matches_all(matchers, labels):
                continue
            ts = np.asarray(s.ts, dtype=np.int64)
            lo = int(np.searchsorted(ts, self._mint, "left"))
            hi = int(np.searchsorted(ts, self._maxt, "right"))
            if hi > lo:
                out.append((labels, ts[lo:hi], np.asarray(s.vs[lo:hi], dtype=np.float64)))
        return out

    async def select(self, matchers: list[Matcher], hints: SelectHints | None = None) -> list[Series]:
        found = self._matching(matchers)
        if hints is not None:
            hints.check_budget(sum(len(ts) for _, ts, _ in found))
        found.sort(key=lambda x: x[0].items_tuple())
        return [Series(labels, ts, vs) for labels, ts, vs in found]

    async def label_names(self, matchers: list[Matcher] | None = None) -> list[str]:
        names: set[str] = set()
        for labels, _, _ in self._matching(matchers):
            names.update(labels)
        return sorted(names)

    async def label_values(self, name: str, matchers: list[Matcher] | None = None) -> list[str]:
        values: set[str] = set()
        for labels, _, _ in self._matching(matchers):
            v = labels.get(name)
            if v is not None:
                values.add(v)
        return sorted(values)

    async def close(self) -> None:
        return None
