"""The PostgreSQL querier: matchers -> series ids (GIN on ``label_ids``) -> block rows -> numpy arrays.

Matchers that cannot match an empty value (``job="x"``, ``job=~"a.+"``, ``job!=""``) narrow the
candidates in SQL: each becomes the set of label ids it accepts, and a series must overlap every set.
The values of a label name are matched in Python with :class:`Matcher` itself, so regex semantics are
exactly Prometheus's (anchored, RE2-like) rather than PostgreSQL's. Matchers that do match an empty value
are applied in Python to the candidates' label sets.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from sotp.model import Labels, Matcher, MatchOp, Series, matches_all
from sotp.storage import SelectHints
from sotp.storage.pg.binary import float8_array, int8_array, merge_blocks
from sotp.storage.pg.schema import ms_to_dt

if TYPE_CHECKING:
    from sotp.storage.postgres import PostgresStorage

_MIN_MS = -62_135_596_800_000  # 0001-01-01, the smallest datetime
_MAX_MS = 253_402_300_799_999  # 9999-12-31


def clamp_ms(ms: int) -> int:
    return min(max(ms, _MIN_MS), _MAX_MS)


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

    async def _candidates(self, matchers: Sequence[Matcher]) -> list[int]:
        store = self._store
        narrowing: list[list[int]] = []
        async with store.connection() as conn:
            for m in matchers:
                if m.matches(""):
                    continue
                if m.op is MatchOp.EQ:
                    cur = await conn.execute(
                        "SELECT id FROM sotp_label WHERE name = %s AND value = %s", (m.name, m.value)
                    )
                    ids = [int(r[0]) for r in await cur.fetchall()]  # type: ignore[call-overload]
                else:
                    cur = await conn.execute("SELECT id, value FROM sotp_label WHERE name = %s", (m.name,))
                    ids = [int(r[0]) for r in await cur.fetchall() if m.matches(str(r[1]))]  # type: ignore[call-overload,index]
                if not ids:
                    return []
                narrowing.append(ids)
            if narrowing:
                where = " AND ".join("label_ids && %s::int[]" for _ in narrowing)
                cur = await conn.execute(f"SELECT id FROM sotp_series WHERE {where}", narrowing)  # type: ignore[arg-type]
            else:
                cur = await conn.execute("SELECT id FROM sotp_series")
            sids = [int(r[0]) for r in await cur.fetchall()]  # type: ignore[call-overload]
            await store.index.labels_for(conn, sids)
        by_id = store.index.by_id
        return [sid for sid in sids if matches_all(matchers, by_id[sid])]

    async def select(self, matchers: list[Matcher], hints: SelectHints | None = None) -> list[Series]:
        sids = await self._candidates(matchers)
        if not sids:
            return []
        t_lo, t_hi, t_floor = self._window_params()
        blocks: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {}
        async with self._store.connection() as conn:
            cur = conn.cursor(binary=True)
            await cur.execute(
                "SELECT series_id, array_send(ts), array_send(vals) FROM sotp_samples "
                "WHERE series_id = ANY(%b::int8[]) AND t_max >= %s AND t_min <= %s AND t_min >= %s "
                "ORDER BY series_id, t_min",
                (sids, t_lo, t_hi, t_floor),
            )
            for sid, ts_b, vs_b in await cur.fetchall():
                blocks.setdefault(int(sid), []).append((int8_array(ts_b), float8_array(vs_b)))
        out: list[Series] = []
        by_id = self._store.index.by_id
        for sid, parts in blocks.items():
            ts, vs = merge_blocks(parts)
            lo = int(np.searchsorted(ts, self._mint, "left"))
            hi = int(np.searchsorted(ts, self._maxt, "right"))
            if hi > lo:
                out.append(Series(by_id[sid], ts[lo:hi], vs[lo:hi]))
        out.sort(key=lambda s: s.labels.items_tuple())
        return out

    async def _present(self, matchers: Sequence[Matcher] | None) -> list[Labels]:
        """Label sets of the matching series with at least one block overlapping the window."""
        sids = await self._candidates(matchers or [])
        if not sids:
            return []
        t_lo, t_hi, t_floor = self._window_params()
        async with self._store.connection() as conn:
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
