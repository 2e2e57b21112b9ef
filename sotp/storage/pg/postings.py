"""An in-process posting index of ``sotp_series`` for the querier: label pair -> series ids.

Selecting candidates in memory costs microseconds where a GIN lookup costs about a millisecond, which is
most of a one-series query. Series rows are never deleted and their ids never change, so the index only
grows: each select first reads the rows added since the last refresh (one indexed ``id > low`` scan,
empty in the steady state), then intersects postings like :mod:`sotp.storage.sqlite`'s index.

Series ids come from a sequence, so the refresh reads from a settled watermark
(:mod:`sotp.storage.pg.watermark`) and skips rows it knows.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from sotp.model import Labels, Matcher, MatchOp, matches_all
from sotp.storage.pg.series import SeriesIndex
from sotp.storage.pg.watermark import SNAPSHOT_COLUMNS, Watermark

#: The snapshot bounds, the ids above the settled watermark (only ids: in the steady state there are none,
#: but for a second after a series is created they are read again) and the label sets (JSON text) of those
#: above the largest id seen, both in id order. Parameters: the watermark, the largest id seen.
REFRESH_COLUMNS = (
    "(SELECT array_agg(id ORDER BY id) FROM sotp_series WHERE id > %s), "
    "(SELECT array_agg(labels::text ORDER BY id) FROM sotp_series WHERE id > %s)"
)
REFRESH_SQL = f"SELECT {SNAPSHOT_COLUMNS}, {REFRESH_COLUMNS}"


class Postings:
    def __init__(self, index: SeriesIndex) -> None:
        self._index = index  # labels of every series seen here go to the shared id -> labels cache
        self._ids: set[int] = set()
        self._by_pair: dict[tuple[str, str], set[int]] = {}
        self._values: dict[str, set[str]] = {}
        self._mark = Watermark()  # every series with id <= low is in the index

    @property
    def labels(self) -> dict[int, Labels]:
        """Series id -> label set of every indexed series."""
        return self._index.by_id

    def __len__(self) -> int:
        return len(self._ids)

    def params(self) -> tuple[int, int]:
        """The parameters of :data:`REFRESH_COLUMNS`: the watermark and the largest id seen."""
        return self._mark.low, self._mark.top

    async def refresh(self, conn: Any) -> None:
        """Add the series rows created since the settled watermark (one round trip, two when a series
        committed late: its labels are read then)."""
        params = self.params()
        issued = time.monotonic()
        cur = await conn.execute(REFRESH_SQL, params)
        xmin, xmax, got, labels = await cur.fetchone()
        await self.apply(conn, params, xmin, xmax, got, labels, issued)

    async def apply(self, conn: Any, params: tuple[int, int], xmin: Any, xmax: Any, got: list[int] | None,
                    labels: list[str] | None, issued: float) -> None:
        """Add what a statement with :data:`REFRESH_COLUMNS` (sent with ``params`` at ``issued``, a
        ``time.monotonic()``) found; reads the labels of ids that committed late over ``conn``."""
        top = params[1]  # the labels column starts above this one (a concurrent refresh may move it)
        ids: list[int] = got or []
        late = [sid for sid in ids if sid <= top and sid not in self._ids]
        new = [sid for sid in ids if sid > top]
        for sid, text in zip(new, labels or [], strict=True):
            if sid not in self._ids:
                self._add(sid, Labels(json.loads(text)))
        if late:
            cur = await conn.execute("SELECT id, labels::text FROM sotp_series WHERE id = ANY(%s)", (late,))
            for sid, text in await cur.fetchall():
                if int(sid) not in self._ids:
                    self._add(int(sid), Labels(json.loads(text)))
        self._mark.settle(int(xmin), int(xmax), issued)

    def _add(self, sid: int, labels: Labels) -> None:
        self._ids.add(sid)
        self._mark.saw(sid)
        self._index.by_id.setdefault(sid, labels)
        for name, value in labels.items_tuple():
            self._by_pair.setdefault((name, value), set()).add(sid)
            self._values.setdefault(name, set()).add(value)

    def candidates(self, matchers: Sequence[Matcher]) -> list[int]:
        """Sorted ids of the indexed series matching ``matchers``: each matcher that cannot match an empty
        value selects the union of its accepted pairs' postings; the others filter the survivors."""
        sets: list[set[int]] = []
        rest: list[Matcher] = []
        for m in matchers:
            if m.matches(""):
                rest.append(m)
                continue
            if m.op is MatchOp.EQ:
                sets.append(self._by_pair.get((m.name, m.value), set()))
            else:
                hit: set[int] = set()
                for value in self._values.get(m.name, ()):
                    if m.matches(value):
                        hit |= self._by_pair[(m.name, value)]
                sets.append(hit)
        if sets:
            sets.sort(key=len)
            found = set(sets[0])
            for other in sets[1:]:
                if not found:
                    break
                found &= other
            ids = sorted(found)
        else:
            ids = sorted(self._ids)
        if not rest:
            return ids
        by_id = self._index.by_id
        return [sid for sid in ids if matches_all(rest, by_id[sid])]
