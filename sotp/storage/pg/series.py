"""Series ids: an in-process cache of label set <-> id, with misses resolved in two batched statements.

Label pairs go to ``sotp_label`` once; a series row holds the sorted ids of its pairs (``label_ids``),
which is its unique key. Inserts use ``ON CONFLICT DO NOTHING`` and are sorted, so concurrent writers
in several processes neither fail nor deadlock; a follow-up ``SELECT`` picks up the rows another
writer won. Ids never change, so the cache never needs invalidation.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

import psycopg

from sotp.model import METRIC_NAME, Labels

Pair = tuple[str, str]


class SeriesIndex:
    """Label set <-> series id, and label pair -> label id, cached for the life of the process."""

    def __init__(self) -> None:
        self.by_labels: dict[Labels, int] = {}
        self.by_id: dict[int, Labels] = {}
        self.label_ids: dict[Pair, int] = {}
        self.hits = 0
        self.misses = 0

    def _remember(self, sid: int, labels: Labels) -> None:
        self.by_labels[labels] = sid
        self.by_id[sid] = labels

    def lookup(self, labels: list[Labels], count: bool = True) -> tuple[list[int | None], list[Labels]]:
        """Cached ids of ``labels`` (``None`` where unknown) and the unknown label sets."""
        got = [self.by_labels.get(lb) for lb in labels]
        missing = [lb for lb, sid in zip(labels, got, strict=True) if sid is None] if None in got else []
        if count:
            self.hits += len(labels) - len(missing)
        return got, missing

    async def resolve(
        self, conn: psycopg.AsyncConnection[Any], wanted: Iterable[Labels], first_ms: dict[Labels, int]
    ) -> set[int]:
        """Make sure every label set in ``wanted`` has an id in :attr:`by_labels`.

        ``conn`` is in autocommit mode. Returns the ids of the series this call created (they have no
        samples yet, so the caller can skip looking up their newest sample).
        """
        missing = [lb for lb in wanted if lb not in self.by_labels]
        self.misses += len(missing)
        if not missing:
            return set()
        await self._resolve_pairs(conn, {p for lb in missing for p in lb.items_tuple()})
        rows: dict[str, Labels] = {}
        for lb in missing:
            ids = sorted(self.label_ids[p] for p in lb.items_tuple())
            rows["{" + ",".join(map(str, ids)) + "}"] = lb
        keys = sorted(rows)
        cur = await conn.execute(
            "INSERT INTO sotp_series (metric, label_ids, labels, first_ms) "
            "SELECT m, li::int[], lj::jsonb, f FROM unnest(%b::text[], %b::text[], %b::text[], %b::int8[]) "
            "AS u(m, li, lj, f) ORDER BY li ON CONFLICT (label_ids) DO NOTHING RETURNING id, label_ids::text",
            (
                [rows[k].get(METRIC_NAME) or "" for k in keys],
                keys,
                [json.dumps(dict(rows[k].items_tuple()), ensure_ascii=False) for k in keys],
                [first_ms.get(rows[k], 0) for k in keys],
            ),
        )
        created: set[int] = set()
        for sid, li in await cur.fetchall():
            self._remember(int(sid), rows[str(li)])
            created.add(int(sid))
        rest = [k for k in keys if rows[k] not in self.by_labels]
        if rest:  # inserted by a concurrent writer
            cur = await conn.execute(
                "SELECT s.id, s.label_ids::text FROM sotp_series s "
                "JOIN unnest(%b::text[]) AS u(li) ON s.label_ids = u.li::int[]",
                (rest,),
            )
            for sid, li in await cur.fetchall():
                self._remember(int(sid), rows[str(li)])
        return created

    async def _resolve_pairs(self, conn: psycopg.AsyncConnection[Any], pairs: set[Pair]) -> None:
        todo = sorted(p for p in pairs if p not in self.label_ids)
        if not todo:
            return
        names = [p[0] for p in todo]
        values = [p[1] for p in todo]
        await conn.execute(
            "INSERT INTO sotp_label (name, value) SELECT * FROM unnest(%b::text[], %b::text[]) "
            "ON CONFLICT DO NOTHING",
            (names, values),
        )
        cur = await conn.execute(
            "SELECT l.id, l.name, l.value FROM sotp_label l "
            "JOIN unnest(%b::text[], %b::text[]) AS u(name, value) ON l.name = u.name AND l.value = u.value",
            (names, values),
        )
        for lid, name, value in await cur.fetchall():
            self.label_ids[(str(name), str(value))] = int(lid)

    async def labels_for(self, conn: psycopg.AsyncConnection[Any], ids: Sequence[int]) -> None:
        """Load the label sets of ``ids`` not cached yet into :attr:`by_id`."""
        todo = [i for i in ids if i not in self.by_id]
        if not todo:
            return
        cur = await conn.execute("SELECT id, labels FROM sotp_series WHERE id = ANY(%b::int8[])", (todo,))
        for sid, labels in await cur.fetchall():
            self._remember(int(sid), Labels(labels))
