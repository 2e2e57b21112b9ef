"""The newest committed sample of every series, as arrays indexed by series id.

Like Prometheus's head, a persistent backend decides whether a sample is new, a repeat (a retried
request), a conflict or out of order by comparing it with the newest sample of its series, kept in memory.
Series ids are small dense integers (SQLite rowids, PostgreSQL sequence values), so the state is two
arrays indexed by id and a whole request is classified with numpy, not series by series.

A series not looked at since the process started is *unknown* (:data:`UNKNOWN`): the backend loads its
newest sample from storage once, in one query for all the unknown series of a request.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from sotp.errors import SampleRejected
from sotp.model import Labels
from sotp.storage.staging import Batch

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
U64 = npt.NDArray[np.uint64]

#: Not loaded yet.
UNKNOWN = np.iinfo(np.int64).min
#: Loaded: the series has no sample.
EMPTY = UNKNOWN + 1


class NewestSamples:
    """``t[sid]``/``bits[sid]``: the newest committed timestamp and value bits of each series."""

    def __init__(self) -> None:
        self.t: I64 = np.full(1024, UNKNOWN, np.int64)
        self.bits: U64 = np.zeros(1024, np.uint64)

    def _fit(self, top: int) -> None:
        if top >= len(self.t):
            size = max(top + 1, 2 * len(self.t))
            t = np.full(size, UNKNOWN, np.int64)
            t[: len(self.t)] = self.t
            bits = np.zeros(size, np.uint64)
            bits[: len(self.bits)] = self.bits
            self.t, self.bits = t, bits

    def unknown(self, sids: I64) -> I64:
        """The ids among ``sids`` whose newest sample has not been loaded."""
        if not len(sids):
            return sids
        self._fit(int(sids.max()))
        found: I64 = sids[self.t[sids] == UNKNOWN]
        return found

    def forget(self) -> None:
        """Drop everything (after a transaction whose outcome is unknown)."""
        self.t[:] = UNKNOWN

    def set_loaded(self, sids: I64, t: I64, v: F64) -> None:
        """Record what storage holds: ``t`` is :data:`EMPTY` where a series has no sample."""
        if len(sids):
            self._fit(int(sids.max()))
            self.t[sids] = t
            self.bits[sids] = np.ascontiguousarray(v, np.float64).view(np.uint64)

    def advance(self, sids: I64, t: I64, v: F64) -> None:
        """Raise the newest of ``sids`` to ``(t, v)`` where ``t`` is newer (several entries per id allowed).

        Used for samples committed here and for those read back from the log of other processes; an
        unknown series becomes known, which is right because the log holds a series' newest samples.
        """
        if not len(sids):
            return
        self._fit(int(sids.max()))
        # Per id, the entry with the largest time wins: sort by (sid, t) and keep each id's last.
        order = np.lexsort((t, sids))
        s, tt = sids[order], t[order]
        last = np.ones(len(s), dtype=bool)
        last[:-1] = s[1:] != s[:-1]
        s, tt, vv = s[last], tt[last], np.ascontiguousarray(v, np.float64)[order][last]
        newer = tt > self.t[s]
        self.t[s[newer]] = tt[newer]
        self.bits[s[newer]] = vv[newer].view(np.uint64)

    def snapshot(self, sids: I64) -> tuple[I64, U64]:
        """The current state of ``sids`` (to restore with :meth:`restore` if a commit fails)."""
        self._fit(int(sids.max()) if len(sids) else 0)
        return self.t[sids].copy(), self.bits[sids].copy()

    def restore(self, sids: I64, state: tuple[I64, U64]) -> None:
        self.t[sids], self.bits[sids] = state


def classify(batch: Batch, sids: I64, newest: NewestSamples) -> tuple[npt.NDArray[np.bool_], list[int]]:
    """Split a batch against the newest committed samples.

    Returns a per-sample mask of **new** samples (strictly after the series' newest), and the indices of
    the samples that are *older* than the newest and must exist in storage with the same value to be
    accepted (retries of multi-sample requests; see :func:`verify_older`). A sample at the newest
    timestamp is a repeat when bit-equal (dropped) and a conflict otherwise (raises). Every id in ``sids``
    must be known (loaded) first.
    """
    per_sample = np.repeat(sids, batch.counts)
    last_t = newest.t[per_sample]
    new = batch.ts > last_t
    if bool(new.all()):
        return new, []
    at = np.flatnonzero(batch.ts == last_t)
    if len(at):
        bad = at[batch.vs[at].view(np.uint64) != newest.bits[per_sample[at]]]
        if len(bad):
            i = int(bad[0])
            lb = _owner(batch, i)
            stored = float(newest.bits[per_sample[i] : per_sample[i] + 1].view(np.float64)[0])
            raise SampleRejected(
                f"conflicting sample for series {lb} at {int(batch.ts[i])} ms: stored {stored!r}, "
                f"got {float(batch.vs[i])!r}"
            )
    older = np.flatnonzero(batch.ts < last_t)
    return new, older.tolist()


def verify_older(batch: Batch, idx: list[int], found: npt.NDArray[np.bool_], stored: F64, newest_t: I64) -> None:
    """Accept the older samples ``idx`` only when storage holds each exactly (``found``/``stored``, aligned
    with ``idx``); otherwise raise the out-of-order or conflict error for the first that is not."""
    if not idx:
        return
    ix = np.asarray(idx, np.int64)
    missing = np.flatnonzero(~found)
    if len(missing):
        i = int(ix[missing[0]])
        raise SampleRejected(
            f"out-of-order sample for series {_owner(batch, i)}: {int(batch.ts[i])} ms is older than the newest "
            f"stored sample at {int(newest_t[missing[0]])} ms"
        )
    differ = np.flatnonzero(stored.view(np.uint64) != batch.vs[ix].view(np.uint64))
    if len(differ):
        k = int(differ[0])
        i = int(ix[k])
        raise SampleRejected(
            f"conflicting sample for series {_owner(batch, i)} at {int(batch.ts[i])} ms: "
            f"stored {float(stored[k])!r}, got {float(batch.vs[i])!r}"
        )


def _owner(batch: Batch, i: int) -> Labels:
    return batch.labels[int(np.searchsorted(np.cumsum(batch.counts), i, "right"))]
