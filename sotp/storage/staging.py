"""What one appender has staged, as columns: the unit every persistent backend checks, logs and stores.

An appender takes samples one at a time (:meth:`Staging.add`), a series at a time (:meth:`add_series`)
or a whole decoded request as arrays (:meth:`add_columns`, no Python object per sample). At commit,
:meth:`Staging.batch` turns everything into one :class:`Batch`: each label set once, its samples
contiguous and strictly rising in time. The in-request rules of :mod:`sotp.storage.ordering` apply, with
numpy over the whole request: within a series, an equal timestamp with a bit-equal value collapses (a
repeated sample), an equal timestamp with another value is a conflict, an earlier one is out of order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from sotp.errors import SampleRejected
from sotp.model import Labels

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]


@dataclass(slots=True)
class Batch:
    """Validated samples of one transaction: ``counts[i]`` samples of ``labels[i]``, series after series.

    Every label set appears once, every count is positive, and timestamps rise strictly within a series.
    """

    labels: list[Labels]
    counts: I64
    ts: I64
    vs: F64

    @property
    def starts(self) -> I64:
        """Offset of each series' first sample in :attr:`ts`."""
        return np.cumsum(self.counts) - self.counts

    def __len__(self) -> int:
        return len(self.ts)


def empty_batch() -> Batch:
    return Batch([], np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float64))


class Staging:
    """Accumulates appends in arrival order; :meth:`batch` validates and groups them."""

    __slots__ = ("_labels", "_one_labels", "_one_ts", "_one_vs", "_parts")

    def __init__(self) -> None:
        #: Appended arrays: (labels, counts, ts, vs), each label list with its counts.
        self._parts: list[tuple[list[Labels], I64, I64, F64]] = []
        #: Single samples (``add``) gathered in lists and turned into one part at :meth:`batch`.
        self._one_labels: list[Labels] = []
        self._one_ts: list[int] = []
        self._one_vs: list[float] = []
        self._labels = 0

    def add(self, labels: Labels, t_ms: int, value: float) -> None:
        self._one_labels.append(labels)
        self._one_ts.append(int(t_ms))
        self._one_vs.append(float(value))

    def add_series(self, labels: Labels, ts: Sequence[int], vs: Sequence[float]) -> None:
        if len(ts) != len(vs):
            raise SampleRejected(f"series {labels}: {len(ts)} timestamps but {len(vs)} values")
        if not len(ts):
            return
        self._flush_ones()
        self._parts.append(
            ([labels], np.array([len(ts)], np.int64), np.asarray(ts, np.int64), np.asarray(vs, np.float64))
        )

    def add_columns(self, labels: list[Labels], counts: I64, ts: I64, vs: F64) -> None:
        """Stage ``counts[i]`` samples of ``labels[i]``, series after series in ``ts``/``vs``."""
        counts = np.asarray(counts, np.int64)
        if len(labels) != len(counts) or int(counts.sum()) != len(ts) or len(ts) != len(vs):
            raise SampleRejected(
                f"column batch: {len(labels)} series, {int(counts.sum())} counted samples, "
                f"{len(ts)} timestamps and {len(vs)} values"
            )
        self._flush_ones()
        self._parts.append((list(labels), counts, np.asarray(ts, np.int64), np.asarray(vs, np.float64)))

    def _flush_ones(self) -> None:
        if self._one_labels:
            n = len(self._one_labels)
            self._parts.append(
                (self._one_labels, np.ones(n, np.int64), np.array(self._one_ts, np.int64),
                 np.array(self._one_vs, np.float64))
            )
            self._one_labels, self._one_ts, self._one_vs = [], [], []

    def __bool__(self) -> bool:
        return bool(self._one_labels) or any(len(p[2]) for p in self._parts)

    def batch(self) -> Batch:
        """Everything staged as one validated :class:`Batch` (raises :class:`SampleRejected`)."""
        self._flush_ones()
        parts, self._parts = self._parts, []
        if not parts:
            return empty_batch()
        if len(parts) == 1:
            labels, counts, ts, vs = parts[0]
        else:
            labels = [lb for p in parts for lb in p[0]]
            counts = np.concatenate([p[1] for p in parts])
            ts = np.concatenate([p[2] for p in parts])
            vs = np.concatenate([p[3] for p in parts])
        if not bool(counts.all()):
            keep = counts > 0
            labels = [lb for lb, k in zip(labels, keep.tolist(), strict=True) if k]
            counts = counts[keep]
        if len(set(labels)) != len(labels):
            labels, counts, ts, vs = _group(labels, counts, ts, vs)
        return _validated(labels, counts, ts, vs)


def _group(labels: list[Labels], counts: I64, ts: I64, vs: F64) -> tuple[list[Labels], I64, I64, F64]:
    """Gather the samples of label sets appended more than once, keeping arrival order within each."""
    first: dict[Labels, int] = {}
    which = np.fromiter((first.setdefault(lb, len(first)) for lb in labels), np.int64, len(labels))
    per_sample = np.repeat(which, counts)
    order = np.argsort(per_sample, kind="stable")
    return list(first), np.bincount(per_sample, minlength=len(first)).astype(np.int64), ts[order], vs[order]


def _validated(labels: list[Labels], counts: I64, ts: I64, vs: F64) -> Batch:
    """Apply the in-request ordering rules to grouped columns (see the module docstring)."""
    if len(ts) < 2 or bool(np.all(ts[1:] > ts[:-1])):
        return Batch(labels, counts, ts, vs)
    starts = np.cumsum(counts) - counts
    inner = np.ones(len(ts), dtype=bool)  # whether sample i follows a sample of its own series
    inner[starts] = False
    step = np.diff(ts)
    follows = inner[1:]
    down = np.flatnonzero(follows & (step < 0))
    if len(down):
        i = int(down[0]) + 1
        lb = labels[int(np.searchsorted(starts, i, "right")) - 1]
        raise SampleRejected(
            f"out-of-order sample in request for series {lb}: {int(ts[i])} ms after {int(ts[i - 1])} ms "
            "(samples of a series must be sorted by time)"
        )
    same = np.flatnonzero(follows & (step == 0)) + 1
    if not len(same):
        return Batch(labels, counts, ts, vs)
    bits = vs.view(np.uint64)
    differ = same[bits[same] != bits[same - 1]]
    if len(differ):
        i = int(differ[0])
        lb = labels[int(np.searchsorted(starts, i, "right")) - 1]
        raise SampleRejected(
            f"conflicting samples in request for series {lb} at {int(ts[i])} ms: "
            f"{float(vs[i - 1])!r} and {float(vs[i])!r}"
        )
    keep = np.ones(len(ts), dtype=bool)
    keep[same] = False  # repeats of the sample before them (equal time, equal bits)
    owner = np.repeat(np.arange(len(counts)), counts)
    return Batch(labels, np.bincount(owner[keep], minlength=len(counts)).astype(np.int64), ts[keep], vs[keep])
