"""The PostgreSQL querier: matchers -> series ids (in-memory postings) -> block rows + head -> numpy arrays.

Candidates come from :class:`~sotp.storage.pg.postings.Postings`, refreshed from ``sotp_series`` at
each select. Matchers that cannot match an empty value (``job="x"``, ``job=~"a.+"``, ``job!=""``) select
the union of the postings of the label values they accept, and a series must be in every such set. Values
are matched in Python with :class:`Matcher` itself, so regex semantics are exactly Prometheus's
(anchored, RE2-like) rather than PostgreSQL's. Matchers that do match an empty value are applied in
Python to the candidates' label sets. Large selections are fetched in parts over several connections.
Before anything, the querier applies the log rows other processes committed (:meth:`PostgresStorage.tail`),
then merges the block rows with the head's runs (:func:`sotp.storage.assemble.assemble`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from sotp.model import Labels, Matcher, Series
from sotp.storage import SelectHints
from sotp.storage.assemble import assemble
from sotp.storage.head import Runs
from sotp.storage.pg.binary import concat_elements, int8_array

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

    def _window_params(self) -> tuple[int, int, int]:
        """``(t_max >= mint, t_min <= maxt, t_min >= window start)``: a block never spans two block
        windows, so the third bound is exact and lets PostgreSQL prune older partitions."""
        block = self._store.block_ms
        lo = clamp_ms(self._mint)
        return lo, clamp_ms(self._maxt), clamp_ms(lo // block * block)

    async def _candidates(self, conn: Any, matchers: Sequence[Matcher]) -> tuple[list[int], dict[int, Labels]]:
        """Matching series ids and their labels, from one posting index (a series collection elsewhere may
        replace the store's index meanwhile; these two stay consistent)."""
        postings = self._store.postings
        await postings.refresh(conn)
        return postings.candidates(matchers), postings.labels

    async def select(self, matchers: list[Matcher], hints: SelectHints | None = None) -> list[Series]:
        store = self._store
        async with store.connection() as conn:
            await store.tail(conn)
            sids, by_id = await self._candidates(conn, matchers)
            chunks = _chunks(sids, store.options.pool_max)
            if len(chunks) == 1:  # small selections stay on this connection: no second pool round trip
                parts = [await self.fetch_runs(conn, chunks[0])]
        if len(chunks) > 1:
            # Large selections are cut in parts fetched over several pooled connections at once: PostgreSQL
            # builds the parts in parallel backends while Python decodes the ones already here. Each part
            # takes its own connection (none is held while waiting for another, so parts cannot deadlock),
            # and one connection is left to writers when the pool has more than one.
            gate = asyncio.Semaphore(max(1, store.options.pool_max - 1))

            async def part(chunk: list[int]) -> Runs:
                async with gate, store.connection() as conn:
                    return await self.fetch_runs(conn, chunk)

            parts = list(await asyncio.gather(*(part(c) for c in chunks)))
        if sids:
            parts.append(store.head.select(np.array(sids, np.int64), self._mint, self._maxt))
        runs = Runs.concat(parts)
        if hints is not None:  # before merging and assembling the series
            hints.check_budget(int(runs.counts.sum()))
        out = assemble(runs, self._mint, self._maxt, by_id)
        out.sort(key=lambda s: s.labels.items_tuple())
        return out

    async def fetch_runs(self, conn: Any, chunk: list[int]) -> Runs:
        """The block rows overlapping the window of the series ids ``chunk``, as runs."""
        if not chunk:
            return Runs.empty()
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
            return Runs.empty()
        counts = int8_array(row[1])
        ts = concat_elements(row[2], counts, ">i8").astype(np.int64, copy=False)
        vs = concat_elements(row[3], counts, ">u8").astype(np.uint64, copy=False).view(np.float64)
        return Runs(int8_array(row[0]), counts, ts, vs)

    async def _present(self, matchers: Sequence[Matcher] | None) -> list[Labels]:
        """Label sets of the matching series with at least one block overlapping the window."""
        t_lo, t_hi, t_floor = self._window_params()
        store = self._store
        async with store.connection() as conn:
            await store.tail(conn)
            sids, by_id = await self._candidates(conn, matchers or [])
            if not sids:
                return []
            present = set(store.head.present(np.array(sids, np.int64), self._mint, self._maxt).tolist())
            rest = [s for s in sids if s not in present]
            if rest:
                cur = await conn.execute(
                    "SELECT DISTINCT series_id FROM sotp_samples "
                    "WHERE series_id = ANY(%b::int8[]) AND t_max >= %s AND t_min <= %s AND t_min >= %s",
                    (rest, t_lo, t_hi, t_floor),
                )
                present.update(int(r[0]) for r in await cur.fetchall())  # type: ignore[call-overload]
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
