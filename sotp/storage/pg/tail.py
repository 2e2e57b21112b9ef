"""Following ``sotp_wal`` from PostgreSQL: the log rows of every process (replica) since the last look.

Each ``sotp serve`` replica keeps its own head; reading the rows the others committed (and, at start-up,
all rows: the replay) is what makes a sample acknowledged by one replica visible to queries on every
replica. Seqs come from a sequence and may commit out of order, so the tail reads from a settled
:class:`~sotp.storage.pg.watermark.Watermark` and leaves out the rows it has applied (passed as an array:
only the ones above the watermark, a second's worth). One statement returns the snapshot bounds, the
flush boundary and the new rows' columns as arrays, so a look costs one round trip.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from sotp.storage import wal as walrec
from sotp.storage.pg.watermark import SNAPSHOT_COLUMNS, Watermark

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]

HEAD_MIN_KEY = "head_min_ms"
SERIES_GC_KEY = "series_gc_generation"

TAIL_SQL = (
    f"SELECT {SNAPSHOT_COLUMNS}, (SELECT value FROM sotp_meta WHERE key = '{HEAD_MIN_KEY}'), "
    f"(SELECT value FROM sotp_meta WHERE key = '{SERIES_GC_KEY}'), "
    "w.seqs, w.sids, w.counts, w.ts, w.vals FROM ("
    "  SELECT array_agg(seq ORDER BY seq) AS seqs, array_agg(sids ORDER BY seq) AS sids, "
    "  array_agg(counts ORDER BY seq) AS counts, array_agg(ts ORDER BY seq) AS ts, "
    "  array_agg(vals ORDER BY seq) AS vals "
    "  FROM sotp_wal WHERE seq > %s AND seq <> ALL(%s::int8[])) AS w"
)


@dataclass(frozen=True, slots=True)
class TailRead:
    """What one look found: the flush boundary (None: never flushed), the series-collection generation and
    the new samples, per sample."""

    head_min: int | None
    series_gen: int
    seqs: list[int]
    sid: I64
    ts: I64
    vs: F64


class LogTail:
    """Which log rows this process has applied to its head (see the module docstring)."""

    def __init__(self) -> None:
        self.mark = Watermark()
        self.applied: set[int] = set()  # applied seqs above the watermark

    def wants(self, seq: int) -> bool:
        """Whether the row ``seq`` (committed here) still has to be applied."""
        return seq > self.mark.low and seq not in self.applied

    def applied_now(self, seqs: list[int]) -> None:
        for seq in seqs:
            self.applied.add(seq)
            self.mark.saw(seq)

    async def read(self, conn: Any) -> TailRead:
        """Read the rows not applied yet (the caller applies them, then calls :meth:`applied_now`)."""
        cur = conn.cursor(binary=True)
        low = self.mark.low
        await cur.execute(TAIL_SQL, (low, sorted(s for s in self.applied if s > low)))
        xmin, xmax, head_min, series_gen, seqs, sids, counts, ts, vals = await cur.fetchone()
        if seqs:
            sid, t, v = walrec.decode(list(zip(sids, counts, ts, vals, strict=True)))
            self.mark.saw(max(seqs))
        else:
            sid, t, v = walrec.decode([])
        self.mark.settle(int(xmin), int(xmax))
        self.applied = {s for s in self.applied if s > self.mark.low}
        return TailRead(None if head_min is None else int(head_min), int(series_gen or 0), list(seqs or []), sid, t, v)
