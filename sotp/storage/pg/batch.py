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
        #: Series given as arrays (:meth:`add_columns`), kept as they came until commit.
        self.columns: tuple[list[Labels], npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.float64]] | None
        self.columns = None

    def add_columns(
        self,
        labels: list[Labels],
        counts: npt.NDArray[np.int64],
        ts: npt.NDArray[np.int64],
        vs: npt.NDArray[np.float64],
    ) -> None:
        """Stage ``counts[i]`` samples for ``labels[i]``, series after series in ``ts``/``vs``."""
        if len(labels) != len(counts) or int(counts.sum()) != len(ts) or len(ts) != len(vs):
            raise SampleRejected(
                f"column batch: {len(labels)} series, {int(counts.sum())} counted samples, "
                f"{len(ts)} timestamps and {len(vs)} values"
            )
        if self.columns is None and not self.rows and not self.staged and len(set(labels)) == len(labels):
            self.columns = (labels, np.asarray(counts, np.int64), np.asarray(ts, np.int64), np.asarray(vs, np.float64))
            return
        self._explode()
        pos = 0
        for lb, n in zip(labels, np.asarray(counts).tolist(), strict=True):
            self.add_series(lb, ts[pos : pos + n].tolist(), vs[pos : pos + n].tolist())
            pos += n

    def _explode(self) -> None:
        """Turn staged columns into ordinary rows (before anything else is staged beside them)."""
        if self.columns is None:
            return
        labels, counts, ts, vs = self.columns
        self.columns = None
        ts_l, vs_l = ts.tolist(), vs.tolist()
        pos = 0
        for lb, n in zip(labels, counts.tolist(), strict=True):
            if n:
                self.rows[lb] = (ts_l[pos : pos + n], vs_l[pos : pos + n])
            pos += n

    def _to_staged(self, labels: Labels) -> StagedSeries:
        st = self.staged[labels] = StagedSeries(labels)
        row = self.rows.pop(labels, None)
        if row is not None:
            st.extend(list(row[0]), [float(v) for v in row[1]])
        return st

    def add(self, labels: Labels, t_ms: int, value: float) -> None:
        if self.columns is not None:
            self._explode()
        st = self.staged.get(labels) or self._to_staged(labels)
        st.add(int(t_ms), float(value))

    def add_series(self, labels: Labels, ts: Sequence[int], vs: Sequence[float]) -> None:
        if len(ts) != len(vs):
            raise SampleRejected(f"series {labels}: {len(ts)} timestamps but {len(vs)} values")
        if not len(ts):
            return
        if self.columns is not None:
            self._explode()
        # One dict operation in the common case (a label set seen once): Labels hashes in Python.
        st = self.staged.get(labels) if self.staged else None
        if st is None:
            row = (ts, vs)
            if self.rows.setdefault(labels, row) is row:
                return
            st = self._to_staged(labels)
        st.extend(list(ts), [float(v) for v in vs])

    def __bool__(self) -> bool:
        return self.columns is not None or bool(self.rows) or any(st.ts for st in self.staged.values())

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
        pending = [(m, np.array(t, dtype=np.int64), np.array(v, dtype=np.float64)) for m, t, v in by_len.values()]
        if self.columns is not None:
            pending += _column_groups(*self.columns)
            self.columns = None
        out: list[Group] = []
        for members, ts2, vs2 in pending:
            if ts2.shape[1] > 1:
                rising = np.all(ts2[:, 1:] > ts2[:, :-1], axis=1)
                if not rising.all():
                    for i in np.flatnonzero(~rising).tolist():
                        st = self.staged[members[i]] = StagedSeries(members[i])
                        st.extend(ts2[i].tolist(), vs2[i].tolist())
                    members = [lb for lb, ok in zip(members, rising.tolist(), strict=True) if ok]
                    ts2, vs2 = ts2[rising], vs2[rising]
            if members:
                out.append(Group(members, ts2, vs2))
        self.rows = {}
        return out


def _column_groups(
    labels: list[Labels], counts: npt.NDArray[np.int64], ts: npt.NDArray[np.int64], vs: npt.NDArray[np.float64]
) -> list[tuple[list[Labels], npt.NDArray[np.int64], npt.NDArray[np.float64]]]:
    """Columns as (k, n) groups of equal length; with one length (the remote-write shape) a reshape."""
    nz = counts > 0
    if not bool(nz.all()):
        labels = [lb for lb, ok in zip(labels, nz.tolist(), strict=True) if ok]
        counts = counts[nz]
    if not len(counts):
        return []
    n0 = int(counts[0])
    if bool((counts == n0).all()):
        return [(labels, ts.reshape(-1, n0), vs.reshape(-1, n0))]
    starts = np.cumsum(counts) - counts
    out = []
    for n in np.unique(counts).tolist():
        sel = np.flatnonzero(counts == n)
        idx = starts[sel][:, None] + np.arange(n)[None, :]
        out.append(([labels[i] for i in sel.tolist()], ts[idx], vs[idx]))
    return out
