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
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from sotp.model import Labels, Matcher, Series
from sotp.storage import SelectHints
from sotp.storage.assemble import assemble
from sotp.storage.head import Runs
from sotp.storage.pg.binary import concat_elements, int8_array
from sotp.storage.pg.postings import REFRESH_COLUMNS
from sotp.storage.pg.tail import TAIL_COLUMNS, TAIL_FROM
from sotp.storage.pg.watermark import SNAPSHOT_COLUMNS

if TYPE_CHECKING:
    from sotp.storage.postgres import PostgresStorage

#: Series per fetch query at most: the bound keeps the id array and the aggregated row reasonable.
_SERIES_PER_FETCH = 20_000
#: Below this many series per part, splitting a selection over connections costs more than it saves.
_MIN_PART = 300
MIN_MS = -62_135_596_800_000  # 0001-01-01, the smallest datetime
MAX_MS = 253_402_300_799_999  # 9999-12-31


#: The blocks of some series overlapping a window, as one row of four columns. Placeholders: the series ids
#: (binary int8[]) and :meth:`PgQuerier._window_params`.
BLOCKS_COLUMNS = (
    "array_send(array_agg(series_id)), array_send(array_agg(cardinality(ts)::int8)), "
    "string_agg(array_send(ts), ''::bytea), string_agg(array_send(vals), ''::bytea)"
)
BLOCKS_FROM = (
    "FROM sotp_samples "
    "WHERE series_id = ANY(%b::int8[]) AND t_max >= %s AND t_min <= %s AND t_min >= %s"
)
BLOCKS_SQL = f"SELECT {BLOCKS_COLUMNS} {BLOCKS_FROM}"
#: A select's one round trip: the snapshot bounds, the log tail (:mod:`sotp.storage.pg.tail`), the posting
#: refresh (:mod:`sotp.storage.pg.postings`) and the blocks, all in one snapshot.
READ_SQL = (
    f"SELECT {SNAPSHOT_COLUMNS}, {TAIL_COLUMNS}, {REFRESH_COLUMNS}, b.* "
    f"FROM {TAIL_FROM}, (SELECT {BLOCKS_COLUMNS} {BLOCKS_FROM}) AS b"
)
_NO_TIME = int(np.iinfo(np.int64).min)


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
        postings = store.postings
        guess = postings.candidates(matchers)
        boundary = store.head.min_t
        chunks = _chunks(guess, store.options.pool_max)
        # One round trip in the steady state: the log tail, the posting refresh and the blocks of the series
        # the index already knows, in one statement; the other parts of a large selection at the same time
        # over other connections (each task holds one connection and waits for no other: no deadlock), one
        # connection left to writers.
        gate = asyncio.Semaphore(max(1, store.options.pool_max - 2))
        first = asyncio.ensure_future(self._first(chunks[0]))
        rest = [asyncio.ensure_future(self._part(gate, c)) for c in chunks[1:]]
        try:
            runs0, seen_min = await first
            parts = [runs0, *[await r for r in rest]]
        finally:
            for task in (first, *rest):
                task.cancel()
        # ``boundary``: the blocks read hold every sample the head has dropped up to here. A statement's
        # snapshot is younger than the head's boundary when it was sent (the head drops samples only after
        # the flush that wrote them committed), and the first one's is the boundary it read.
        if len(chunks) == 1:
            boundary = max(boundary, seen_min)
        by_id = store.postings.labels
        sids = store.postings.candidates(matchers)
        known = set(guess)
        if store.postings is not postings or not known.issubset(sids):
            # A series collection replaced the index meanwhile: read everything again.
            async with store.connection() as conn:
                await store.tail(conn)
                sids, by_id = await self._candidates(conn, matchers)
            boundary = store.head.min_t
            parts = [await self._fetch(sids)]
        elif len(sids) > len(known):  # series the index learnt in this statement
            issued_at = store.head.min_t
            parts.append(await self._fetch([sid for sid in sids if sid not in known]))
            boundary = min(boundary, issued_at)
        while store.head.min_t > boundary:
            # A flush moved samples from the head into blocks after the blocks were read: read them again.
            boundary = store.head.min_t
            parts = [await self._fetch(sids)]
        # No await from the check above to here: the head cannot lose samples in between.
        if sids:
            parts.append(store.head.select(np.array(sids, np.int64), self._mint, self._maxt))
        runs = Runs.concat(parts)
        if hints is not None:  # before merging and assembling the series
            hints.check_budget(int(runs.counts.sum()))
        out = assemble(runs, self._mint, self._maxt, by_id)
        out.sort(key=lambda s: s.labels.items_tuple())
        return out

    async def _first(self, chunk: list[int]) -> tuple[Runs, int]:
        """The combined statement (:data:`READ_SQL`), applied: the block runs of ``chunk`` and the flush
        boundary its snapshot had."""
        store = self._store
        log, postings = store.log_tail, store.postings
        async with store.connection() as conn:
            cur = conn.cursor(binary=True)
            refresh, tail = postings.params(), log.params()
            issued = time.monotonic()
            await cur.execute(READ_SQL, (*refresh, *tail, chunk, *self._window_params()))
            row = await cur.fetchone()
            assert row is not None  # aggregates without GROUP BY return one row
            xmin, xmax = row[0], row[1]
            got = log.parse(xmin, xmax, row[2:9], issued)
            store.apply_tail(got)  # before any await: see PostgresStorage.apply_tail
            await postings.apply(conn, refresh, xmin, xmax, row[9], row[10], issued)
        return _decode_blocks(row[11:15]), _NO_TIME if got.head_min is None else got.head_min

    async def _part(self, gate: asyncio.Semaphore, chunk: list[int]) -> Runs:
        async with gate, self._store.connection() as conn:
            return await self.fetch_runs(conn, chunk)

    async def _fetch(self, sids: list[int]) -> Runs:
        """The block rows of ``sids``, in parts over several connections at once when there are many."""
        pool_max = self._store.options.pool_max
        gate = asyncio.Semaphore(max(1, pool_max - 1))
        return Runs.concat(list(await asyncio.gather(*(self._part(gate, c) for c in _chunks(sids, pool_max)))))

    async def fetch_runs(self, conn: Any, chunk: list[int]) -> Runs:
        """The block rows overlapping the window of the series ids ``chunk``, as runs."""
        if not chunk:
            return Runs.empty()
        # One row for the whole chunk: the blocks' arrays concatenated by PostgreSQL (a memcpy), so
        # Python does no per-row work. The four aggregates read their input in one order (the pool's
        # connections run without parallel plans, whose partial states could combine differently).
        cur = conn.cursor(binary=True)
        await cur.execute(BLOCKS_SQL, (chunk, *self._window_params()))
        return _decode_blocks(await cur.fetchone())

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


def _decode_blocks(row: Sequence[Any] | None) -> Runs:
    """The four columns of :data:`BLOCKS_COLUMNS` as runs."""
    if row is None or row[0] is None:
        return Runs.empty()
    counts = int8_array(row[1])
    ts = concat_elements(row[2], counts, ">i8").astype(np.int64, copy=False)
    vs = concat_elements(row[3], counts, ">u8").astype(np.uint64, copy=False).view(np.float64)
    return Runs(int8_array(row[0]), counts, ts, vs)


def _chunks(sids: list[int], pool_max: int) -> list[list[int]]:
    """``sids`` cut into parts for concurrent fetches: about one per usable connection (``pool_max - 1``),
    each of at least ``_MIN_PART`` and at most ``_SERIES_PER_FETCH`` series."""
    lanes = max(1, pool_max - 1)
    size = min(_SERIES_PER_FETCH, max(_MIN_PART, -(-len(sids) // lanes)))
    return [sids[i : i + size] for i in range(0, len(sids), size)] or [[]]
