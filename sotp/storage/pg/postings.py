"""An in-process posting index of ``sotp_series`` for the querier: label pair -> series ids.

Selecting candidates in memory costs microseconds where a GIN lookup costs about a millisecond, which is
most of a one-series query. Series rows are never deleted and their ids never change, so the index only
grows: each select first reads the rows added since the last refresh (one indexed ``id > low`` scan,
empty in the steady state), then intersects postings like :mod:`sotp.storage.sqlite`'s index.

Ids come from a sequence, and a writer's id can become visible *after* a larger one (another process
committed first), so "everything above the largest id seen" would miss it for good. The refresh therefore
re-reads from a watermark ``low`` that only passes an id range once every transaction that could still
hold an id in it has ended. A refresh that sees a new largest id records it with the time; the first
refresh at least a second later (a writer takes its id a moment before its transaction id, never a second)
records its snapshot's ``xmax``, above the transaction id of every writer that took an id in the range;
the range is settled once a snapshot's ``xmin`` (oldest running transaction) has reached that ``xmax``.
Until then the recent rows are read again and ignored if known; a long-running transaction anywhere in
the cluster only makes refreshes re-read more rows, never miss one.
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

from sotp.model import Labels, Matcher, MatchOp, matches_all
from sotp.storage.pg.series import SeriesIndex

#: Seconds an id range stays unsettled at least (see the module docstring).
SETTLE_S = 1.0
#: The snapshot bounds, the ids above the settled watermark (only ids: in the steady state there are none,
#: but for a second after a series is created they are read again) and the label sets (JSON text) of those
#: above the largest id seen, both in id order. Parameters: the watermark, the largest id seen.
REFRESH_SQL = (
    "SELECT pg_snapshot_xmin(pg_current_snapshot())::text, pg_snapshot_xmax(pg_current_snapshot())::text, "
    "(SELECT array_agg(id ORDER BY id) FROM sotp_series WHERE id > %s), "
    "(SELECT array_agg(labels::text ORDER BY id) FROM sotp_series WHERE id > %s)"
)


class Postings:
    def __init__(self, index: SeriesIndex) -> None:
        self._index = index  # labels of every series seen here go to the shared id -> labels cache
        self._ids: set[int] = set()
        self._by_pair: dict[tuple[str, str], set[int]] = {}
        self._values: dict[str, set[str]] = {}
        self._low = 0  # every series with id <= low is in the index
        self._max = 0
        #: [monotonic time, largest id seen then, xmax of a snapshot taken SETTLE_S later or None]
        self._marks: deque[list[Any]] = deque()

    def __len__(self) -> int:
        return len(self._ids)

    async def refresh(self, conn: Any) -> None:
        """Add the series rows created since the settled watermark (one round trip, two when a series
        committed late: its labels are read then)."""
        top = self._max  # the labels column starts above this one (a concurrent refresh may move _max)
        cur = await conn.execute(REFRESH_SQL, (self._low, top))
        xmin, xmax, got, labels = await cur.fetchone()
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
        self._settle(int(xmin), int(xmax))

    def _settle(self, xmin: int, xmax: int) -> None:
        now = time.monotonic()
        for mark in self._marks:
            if mark[2] is None and mark[0] <= now - SETTLE_S:
                mark[2] = xmax  # every writer that took an id <= mark[1] has a transaction id below this
        while self._marks and (witness := self._marks[0][2]) is not None and witness <= xmin:
            self._low = max(self._low, int(self._marks.popleft()[1]))
        top = self._marks[-1][1] if self._marks else self._low
        if self._max > top:  # a range to settle later (an older mark for the same ids settles first)
            self._marks.append([now, self._max, None])

    def _add(self, sid: int, labels: Labels) -> None:
        self._ids.add(sid)
        self._max = max(self._max, sid)
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
