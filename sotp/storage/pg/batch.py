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
        # One dict operation in the common case (a label set seen once): Labels hashes in Python.
        st = self.staged.get(labels) if self.staged else None
        if st is None:
            row = (ts, vs)
            if self.rows.setdefault(labels, row) is row:
                return
            st = self._to_staged(labels)
        st.extend(list(ts), [float(v) for v in vs])

    def __bool__(self) -> bool:
        return bool(self.rows) or any(st.ts for st in self.staged.values())

    def groups(self) -> list[Group]:
        """The array rows grouped by length; rows not strictly rising move to :attr:`staged` (which then
        raises the in-request ordering error, or collapses exact repeats)."""
        by_len: dict[int, tuple[list[Labels], list[Sequence[int]], list[Sequence[float]]]] = {}
        for labels, (ts, vs) in self.rows.items():
            entry = by_len.get(len(ts))
            if entry is None:
                entry = by_len[len(ts)] = ([], [], [])
            entry[0].append(labels)
            entry[1].append(ts)
            entry[2].append(vs)
        out: list[Group] = []
        for members, ts_rows, vs_rows in by_len.values():
            ts2 = np.array(ts_rows, dtype=np.int64)
            vs2 = np.array(vs_rows, dtype=np.float64)
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
