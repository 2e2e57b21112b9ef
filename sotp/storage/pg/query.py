"""The PostgreSQL querier: matchers -> series ids (in-memory postings) -> block rows -> numpy arrays.

Candidates come from :class:`~sotp.storage.pg.postings.Postings`, refreshed from ``sotp_series`` at
each select. Matchers that cannot match an empty value (``job="x"``, ``job=~"a.+"``, ``job!=""``) select
the union of the postings of the label values they accept, and a series must be in every such set. Values
are matched in Python with :class:`Matcher` itself, so regex semantics are exactly Prometheus's
(anchored, RE2-like) rather than PostgreSQL's. Matchers that do match an empty value are applied in
Python to the candidates' label sets. Large selections are fetched in parts over several connections.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from sotp.errors import TooManySamples
from sotp.model import Labels, Matcher, Series
from sotp.storage import SelectHints
from sotp.storage.pg.binary import concat_elements, int8_array, merge_blocks
from sotp.storage.pg.schema import ms_to_dt

if TYPE_CHECKING:
    from sotp.storage.postgres import PostgresStorage

#: Series per fetch query at most: the bound keeps the id array and the aggregated row reasonable.
_SERIES_PER_FETCH = 20_000
#: Below this many series per part, splitting a selection over connections costs more than it saves.
_MIN_PART = 300
MIN_MS = -62_135_596_800_000  # 0001-01-01, the smallest datetime
MAX_MS = 253_402_300_799_999  # 9999-12-31


def clamp_ms(ms: int) -> int:
    return min(max(ms, MIN_MS), MAX_MS)


class PgQuerier:
    def __init__(self, store: PostgresStorage, mint: int, maxt: int) -> None:
        self._store = store
        self._mint = mint
        self._maxt = maxt

    def _window_params(self) -> tuple[object, object, object]:
        """``(t_max >= mint, t_min <= maxt, t_min >= window start)``: a block never spans two block
        windows, so the third bound is exact and lets PostgreSQL prune older partitions."""
        block = self._store.block_ms
        lo = clamp_ms(self._mint)
        return ms_to_dt(lo), ms_to_dt(clamp_ms(self._maxt)), ms_to_dt(clamp_ms(lo // block * block))

    async def _candidates(self, conn: Any, matchers: Sequence[Matcher]) -> list[int]:
        postings = self._store.postings
        await postings.refresh(conn)
        return postings.candidates(matchers)

    async def select(self, matchers: list[Matcher], hints: SelectHints | None = None) -> list[Series]:
        async with self._store.connection() as conn:
            sids = await self._candidates(conn, matchers)
            chunks = _chunks(sids, self._store.options.pool_max)
            budget = [hints.max_samples if hints is not None and hints.max_samples is not None else -1]
            if len(chunks) == 1:  # small selections stay on this connection: no second pool round trip
                out = await self._fetch(conn, chunks[0], budget)
                out.sort(key=lambda s: s.labels.items_tuple())
                return out
        # Large selections are cut in parts fetched over several pooled connections at once: PostgreSQL
        # builds the parts in parallel backends while Python decodes the ones already here. Each part
        # takes its own connection (none is held while waiting for another, so parts cannot deadlock),
        # and one connection is left to writers when the pool has more than one.
        gate = asyncio.Semaphore(max(1, self._store.options.pool_max - 1))

        async def part(chunk: list[int]) -> list[Series]:
            async with gate, self._store.connection() as conn:
                return await self._fetch(conn, chunk, budget)

        out = [s for got in await asyncio.gather(*(part(c) for c in chunks)) for s in got]
        out.sort(key=lambda s: s.labels.items_tuple())
        return out

    async def _fetch(self, conn: Any, chunk: list[int], budget: list[int]) -> list[Series]:
        """The samples in the window of the series ids ``chunk``, one Series each (unsorted).

        ``budget[0]`` is the samples the select may still load (-1: no limit), shared by parallel parts.
        """
        if not chunk:
            return []
        t_lo, t_hi, t_floor = self._window_params()
        # One row for the whole chunk: the blocks' arrays concatenated by PostgreSQL (a memcpy), so
        # Python does no per-row work. The four aggregates read their input in one order (the pool's
        # connections run without parallel plans, whose partial states could combine differently).
        cur = conn.cursor(binary=True)
        await cur.execute(
            "SELECT array_send(array_agg(series_id)), array_send(array_agg(cardinality(ts)::int8)), "
            "string_agg(array_send(ts), ''::bytea), string_agg(array_send(vals), ''::bytea) "
            "FROM sotp_samples "
            "WHERE series_id = ANY(%b::int8[]) AND t_max >= %s AND t_min <= %s AND t_min >= %s",
            (chunk, t_lo, t_hi, t_floor),
        )
        row = await cur.fetchone()
        if row is None or row[0] is None:
            return []
        counts = int8_array(row[1])
        if budget[0] >= 0:  # before decoding: the part's sample count is known from the block sizes
            budget[0] -= int(counts.sum())
            if budget[0] < 0:
                raise TooManySamples("select loaded more samples than the query's limit allows")
        return self._series(int8_array(row[0]), counts, row[2], row[3])

    def _series(self, block_sids: np.ndarray, counts: np.ndarray, ts_blob: bytes, vs_blob: bytes) -> list[Series]:
        """Blocks (in any order) -> one time-sorted, de-duplicated, window-trimmed Series per series id."""
        ts = concat_elements(ts_blob, counts, ">i8").astype(np.int64, copy=False)
        vs = concat_elements(vs_blob, counts, ">u8").astype(np.uint64, copy=False).view(np.float64)
        first = np.cumsum(counts) - counts
        order = np.lexsort((ts[first], block_sids))  # by series, then by block start time
        if not bool(np.all(order[1:] > order[:-1])):
            c = counts[order]
            perm = np.repeat(first[order], c) + (np.arange(len(ts)) - np.repeat(np.cumsum(c) - c, c))
            ts, vs, block_sids, counts = ts[perm], vs[perm], block_sids[order], c
            first = np.cumsum(counts) - counts
        # Each series' samples are now one run; its start is the first block of a new id.
        new = np.concatenate(([True], block_sids[1:] != block_sids[:-1]))
        starts = first[new]
        # Time must increase within a run; a series whose blocks overlap (a raced retry) is sorted and
        # de-duplicated on its own, first (rare; the check costs one pass, no per-sample id array).
        down = np.flatnonzero(ts[1:] <= ts[:-1]) + 1
        if len(down) and not bool(np.isin(down, starts).all()):
            sid_of = np.repeat(block_sids, counts)
            ts, vs, sid_of = _repair(ts, vs, sid_of, down[~np.isin(down, starts)])
            bounds = np.flatnonzero(np.diff(sid_of)) + 1
            starts = np.concatenate(([0], bounds))
            ids = sid_of[starts]
        else:
            ids = block_sids[new]
        ends = np.append(starts[1:], len(ts))
        # Trim each run to the window by binary search: the runs are sorted, so no mask over all samples.
        mint, maxt = self._mint, self._maxt
        by_id = self._store.index.by_id
        out: list[Series] = []
        for sid, a, b in zip(ids.tolist(), starts.tolist(), ends.tolist(), strict=True):
            run = ts[a:b]
            lo = a if run[0] >= mint else a + int(run.searchsorted(mint))
            hi = b if run[-1] <= maxt else a + int(run.searchsorted(maxt, "right"))
            if hi > lo:
                out.append(Series(by_id[sid], ts[lo:hi], vs[lo:hi]))
        return out

    async def _present(self, matchers: Sequence[Matcher] | None) -> list[Labels]:
        """Label sets of the matching series with at least one block overlapping the window."""
        t_lo, t_hi, t_floor = self._window_params()
        async with self._store.connection() as conn:
            sids = await self._candidates(conn, matchers or [])
            if not sids:
                return []
            cur = await conn.execute(
                "SELECT DISTINCT series_id FROM sotp_samples "
                "WHERE series_id = ANY(%b::int8[]) AND t_max >= %s AND t_min <= %s AND t_min >= %s",
                (sids, t_lo, t_hi, t_floor),
            )
            present = [int(r[0]) for r in await cur.fetchall()]  # type: ignore[call-overload]
        by_id = self._store.index.by_id
        return [by_id[sid] for sid in present]

    async def label_names(self, matchers: list[Matcher] | None = None) -> list[str]:
        return sorted({name for labels in await self._present(matchers) for name in labels})

    async def label_values(self, name: str, matchers: list[Matcher] | None = None) -> list[str]:
        return sorted({v for labels in await self._present(matchers) if (v := labels.get(name)) is not None})

    async def close(self) -> None:
        return None


def _chunks(sids: list[int], pool_max: int) -> list[list[int]]:
    """``sids`` cut into parts for concurrent fetches: about one per usable connection (``pool_max - 1``),
    each of at least ``_MIN_PART`` and at most ``_SERIES_PER_FETCH`` series."""
    lanes = max(1, pool_max - 1)
    size = min(_SERIES_PER_FETCH, max(_MIN_PART, -(-len(sids) // lanes)))
    return [sids[i : i + size] for i in range(0, len(sids), size)] or [[]]


def _repair(
    ts: np.ndarray, vs: np.ndarray, sid_of: np.ndarray, bad_at: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sort and de-duplicate the series that contain the positions ``bad_at`` (rare: raced retries)."""
    bounds = np.flatnonzero(np.diff(sid_of)) + 1
    starts = np.concatenate(([0], bounds))
    ends = np.concatenate((bounds, [len(ts)]))
    which = set(np.searchsorted(starts, bad_at, "right").tolist())
    parts_t: list[np.ndarray] = []
    parts_v: list[np.ndarray] = []
    parts_s: list[np.ndarray] = []
    for i, (a, b) in enumerate(zip(starts.tolist(), ends.tolist(), strict=True)):
        t, v = (ts[a:b], vs[a:b]) if i + 1 not in which else merge_blocks([(ts[a:b], vs[a:b])])
        parts_t.append(t)
        parts_v.append(v)
        parts_s.append(np.full(len(t), sid_of[a], dtype=np.int64))
    return np.concatenate(parts_t), np.concatenate(parts_v), np.concatenate(parts_s)
