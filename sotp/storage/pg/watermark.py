"""A settled watermark over ids taken from a PostgreSQL sequence, for readers that follow a table by id.

Ids come from a sequence, and a writer's id can become visible *after* a larger one (another transaction
committed first), so "everything above the largest id seen" would miss it for good. A reader therefore
re-reads from a watermark ``low`` that only passes an id range once every transaction that could still
hold an id in it has ended. When a read sees a new largest id, the watermark records it with the time; the
first read at least :data:`SETTLE_S` later records its snapshot's ``xmax``, above the transaction id of
every writer that took an id in the range (a writer takes its id a moment after its transaction id, never
a second); the range is settled once a snapshot's ``xmin`` (oldest running transaction) has reached that
``xmax``. Until then the recent rows are read again and skipped if already known; a long-running
transaction anywhere in the cluster only makes reads re-read more rows, never miss one.

Used by the posting index (``sotp_series``) and the log tail (``sotp_wal``).
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

#: Seconds an id range stays unsettled at least (see the module docstring).
SETTLE_S = 1.0
#: Select the current snapshot's bounds (run in the same statement as the read it qualifies).
SNAPSHOT_COLUMNS = (
    "pg_snapshot_xmin(pg_current_snapshot())::text, pg_snapshot_xmax(pg_current_snapshot())::text"
)


class Watermark:
    """``low``: every id at or below it is known to the reader; ``top``: the largest id seen."""

    def __init__(self) -> None:
        self.low = 0
        self.top = 0
        #: [monotonic time, largest id seen then, xmax of a snapshot taken SETTLE_S later or None]
        self._marks: deque[list[Any]] = deque()

    def saw(self, sid: int) -> None:
        self.top = max(self.top, sid)

    def settle(self, xmin: int, xmax: int, issued: float | None = None) -> None:
        """Record a read's snapshot bounds (after its ids went through :meth:`saw`). ``issued``: the
        ``time.monotonic()`` before the statement was sent (its snapshot is no older): a snapshot counts as
        a mark's witness only if it was taken :data:`SETTLE_S` after the mark, which a read that answers
        late (or after a concurrent one) must not pass for."""
        now = time.monotonic()
        taken = now if issued is None else issued
        for mark in self._marks:
            if mark[2] is None and mark[0] <= taken - SETTLE_S:
                mark[2] = xmax  # every writer that took an id <= mark[1] has a transaction id below this
        while self._marks and (witness := self._marks[0][2]) is not None and witness <= xmin:
            self.low = max(self.low, int(self._marks.popleft()[1]))
        last = self._marks[-1][1] if self._marks else self.low
        if self.top > last:  # a range to settle later (an older mark for the same ids settles first)
            self._marks.append([now, self.top, None])
