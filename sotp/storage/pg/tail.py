"""Following ``sotp_wal`` from PostgreSQL: the log rows of every process (replica) since the last look.

Each ``sotp serve`` replica keeps its own head; reading the rows the others committed (and, at start-up,
all rows: the replay) is what makes a sample acknowledged by one replica visible to queries on every
replica. Seqs come from a sequence and may commit out of order, so the tail reads from a settled
:class:`~sotp.storage.pg.watermark.Watermark` and leaves out the rows it has applied (passed as an array:
only the ones above the watermark, a second's worth). One statement returns the snapshot bounds, the
flush boundary and the new rows' columns as arrays, so a look costs one round trip.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
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

#: The tail's columns, for a statement that also reads other things in the same snapshot (the querier's
#: one round trip, :mod:`sotp.storage.pg.query`). Placeholders, in :data:`TAIL_FROM`: the watermark and the
#: applied seqs above it (:meth:`LogTail.params`).
TAIL_COLUMNS = (
    f"(SELECT value FROM sotp_meta WHERE key = '{HEAD_MIN_KEY}'), "
    f"(SELECT value FROM sotp_meta WHERE key = '{SERIES_GC_KEY}'), "
    "w.seqs, w.sids, w.counts, w.ts, w.vals"
)
TAIL_FROM = (
    "(SELECT array_agg(seq ORDER BY seq) AS seqs, array_agg(sids ORDER BY seq) AS sids, "
    "array_agg(counts ORDER BY seq) AS counts, array_agg(ts ORDER BY seq) AS ts, "
    "array_agg(vals ORDER BY seq) AS vals "
    "FROM sotp_wal WHERE seq > %s AND seq <> ALL(%s::int8[])) AS w"
)
TAIL_SQL = f"SELECT {SNAPSHOT_COLUMNS}, {TAIL_COLUMNS} FROM {TAIL_FROM}"


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

    def params(self) -> tuple[int, list[int]]:
        """The parameters of :data:`TAIL_FROM`: the watermark and the applied seqs above it."""
        low = self.mark.low
        return low, sorted(s for s in self.applied if s > low)

    async def read(self, conn: Any) -> TailRead:
        """Read the rows not applied yet (the caller applies them, then calls :meth:`applied_now`)."""
        cur = conn.cursor(binary=True)
        issued = time.monotonic()
        await cur.execute(TAIL_SQL, self.params())
        row = await cur.fetchone()
        return self.parse(row[0], row[1], row[2:], issued)

    def parse(self, xmin: Any, xmax: Any, cols: Sequence[Any], issued: float) -> TailRead:
        """What a statement with :data:`TAIL_COLUMNS` found; ``issued``: ``time.monotonic()`` before it was
        sent. Rows applied meanwhile (by a concurrent read or the writer that committed them) are left out,
        so reads may run concurrently and apply their results in any order; the caller applies the rest
        before its next ``await``."""
        head_min, series_gen, seqs, sids, counts, ts, vals = cols
        rows = [(seq, row) for seq, *row in zip(seqs or [], sids or [], counts or [], ts or [], vals or [],
                                                strict=True) if self.wants(seq)]
        sid, t, v = walrec.decode([tuple(r) for _, r in rows])  # type: ignore[misc]
        if seqs:
            self.mark.saw(max(seqs))
        self.mark.settle(int(xmin), int(xmax), issued)
        self.applied = {s for s in self.applied if s > self.mark.low}
        return TailRead(None if head_min is None else int(head_min), int(series_gen or 0), [s for s, _ in rows],
                        sid, t, v)
