"""Staging for the PostgreSQL appender: whole series kept as arrays, so a commit checks and encodes them
with numpy rather than sample by sample.

A series appended once with :meth:`append_series` (the remote-write shape) stays a row of a 2-D array
group of its length. A series appended again, or sample by sample, falls back to
:class:`~sotp.storage.head.StagedSeries`, which applies the in-request ordering rules one sample at a time.
Both paths give the same results; the array path is only faster.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from sotp.errors import SampleRejected
from sotp.model import Labels
from sotp.storage.head import StagedSeries


@dataclass(slots=True)
class Group:
    """``k`` series with ``n`` samples each, strictly rising in time: ``ts``/``vs`` are ``(k, n)``."""

    labels: list[Labels]
    ts: npt.NDArray[np.int64]
    vs: npt.NDArray[np.float64]


class Staging:
    """What one appender has staged."""

    def __init__(self) -> None:
        self.rows: dict[Labels, tuple[Sequence[int], Sequence[float]]] = {}
        self.staged: dict[Labels, StagedSeries] = {}

    def _to_staged(self, labels: Labels) -> StagedSeries:
        st = self.staged[labels] = StagedSeries(labels)
        row = self.rows.pop(labels, None)
        if row is not None:
            st.extend(list(row[0]), [float(v) for v in row[1]])
        return st

    def add(self, labels: Labels, t_ms: int, value: float) -> None:
        st = self.staged.get(labels) or self._to_staged(labels)
        st.add(int(t_ms), float(value))

    def add_series(self, labels: Labels, ts: Sequence[int], vs: Sequence[float]) -> None:
        if len(ts) != len(vs):
            raise SampleRejected(f"series {labels}: {len(ts)} timestamps but {len(vs)} values")
        if not len(ts):
            return
        st = self.staged.get(labels)
        if st is None and labels in self.rows:
            st = self._to_staged(labels)
        if st is not None:
            st.extend(list(ts), [float(v) for v in vs])
        else:
            self.rows[labels] = (ts, vs)

    def __bool__(self) -> bool:
        return bool(self.rows) or any(st.ts for st in self.staged.values())

    def groups(self) -> list[Group]:
        """The array rows grouped by length; rows not strictly rising move to :attr:`staged` (which then
        raises the in-request ordering error, or collapses exact repeats)."""
        by_len: dict[int, list[Labels]] = {}
        for labels, (ts, _) in self.rows.items():
            by_len.setdefault(len(ts), []).append(labels)
        out: list[Group] = []
        rows = self.rows
        for members in by_len.values():
            ts2 = np.array([rows[lb][0] for lb in members], dtype=np.int64)
            vs2 = np.array([rows[lb][1] for lb in members], dtype=np.float64)
            if ts2.shape[1] > 1:
                rising = np.all(ts2[:, 1:] > ts2[:, :-1], axis=1)
                if not rising.all():
                    for i in np.flatnonzero(~rising).tolist():
                        self._to_staged(members[i])
                    members = [lb for lb, ok in zip(members, rising.tolist(), strict=True) if ok]
                    ts2, vs2 = ts2[rising], vs2[rising]
            if members:
                out.append(Group(members, ts2, vs2))
        self.rows = {}
        return out
