"""Ordering rules shared by every backend: what is new, a duplicate, out-of-order or a conflict.

Like Prometheus's head, a backend keeps each series' newest committed timestamp and value in memory.
A staged sample newer than that is new. One at the same time with the same value (bit-equal) is a
duplicate and is dropped, so a retried request is idempotent. One at the same time with another value
is a conflict. One *older* than the newest is a duplicate only if storage already holds exactly that
sample (a retry of a multi-sample batch); the backend checks those with one read, else out-of-order.
"""

from __future__ import annotations

import itertools
import struct
from dataclasses import dataclass, field

from sotp.errors import SampleRejected
from sotp.model import Labels


def same_value(a: float, b: float) -> bool:
    """Bit-equal comparison, so NaN equals the same NaN and a staleness marker only itself."""
    return struct.pack("<d", a) == struct.pack("<d", b)


@dataclass(slots=True)
class StagedSeries:
    """The samples of one series staged in a transaction, in arrival order."""

    labels: Labels
    ts: list[int] = field(default_factory=list)
    vs: list[float] = field(default_factory=list)

    def add(self, t_ms: int, value: float) -> None:
        """Stage a sample; equal timestamps with equal values collapse, otherwise time must rise."""
        if self.ts:
            last = self.ts[-1]
            if t_ms < last:
                raise SampleRejected(
                    f"out-of-order sample in request for series {self.labels}: "
                    f"{t_ms} ms after {last} ms (samples of a series must be sorted by time)"
                )
            if t_ms == last:
                if same_value(value, self.vs[-1]):
                    return
                raise SampleRejected(
                    f"conflicting samples in request for series {self.labels} at {t_ms} ms: "
                    f"{self.vs[-1]!r} and {value!r}"
                )
        self.ts.append(t_ms)
        self.vs.append(value)


    def extend(self, ts: list[int] | tuple[int, ...], vs: list[float] | tuple[float, ...]) -> None:
        """Stage many samples; the fast path applies when they are strictly increasing and new."""
        if len(ts) != len(vs):
            raise SampleRejected(f"series {self.labels}: {len(ts)} timestamps but {len(vs)} values")
        if not ts:
            return
        strictly_rising = all(a < b for a, b in itertools.pairwise(ts))
        if strictly_rising and (not self.ts or ts[0] > self.ts[-1]):
            self.ts.extend(ts)
            self.vs.extend(vs)
            return
        for t, v in zip(ts, vs, strict=True):
            self.add(t, v)


@dataclass(slots=True)
class Classified:
    """Outcome of :func:`classify`: samples from ``first_new`` on are new; ``older`` must be verified."""

    first_new: int
    older: list[tuple[int, float]]


def classify(staged: StagedSeries, last: tuple[int, float] | None) -> Classified:
    """Split a staged series against the newest committed sample ``last`` (``None``: empty series).

    Raises :class:`SampleRejected` for a conflict at the newest timestamp.
    """
    if last is None or not staged.ts or staged.ts[0] > last[0]:
        return Classified(0, [])
    last_t, last_v = last
    older: list[tuple[int, float]] = []
    i = 0
    n = len(staged.ts)
    while i < n and staged.ts[i] <= last_t:
        t, v = staged.ts[i], staged.vs[i]
        if t == last_t:
            if not same_value(v, last_v):
                raise SampleRejected(
                    f"conflicting sample for series {staged.labels} at {t} ms: "
                    f"stored {last_v!r}, got {v!r}"
                )
        else:
            older.append((t, v))
        i += 1
    return Classified(i, older)


def verify_older(labels: Labels, t_ms: int, value: float, stored: float | None, newest_ms: int) -> None:
    """Accept a sample older than the series' newest only when storage holds exactly it (a retry).

    ``stored`` is the stored value at ``t_ms`` or ``None``. Raises :class:`SampleRejected` otherwise.
    """
    if stored is None:
        raise SampleRejected(
            f"out-of-order sample for series {labels}: {t_ms} ms is older than the newest stored "
            f"sample at {newest_ms} ms"
        )
    if not same_value(stored, value):
        raise SampleRejected(
            f"conflicting sample for series {labels} at {t_ms} ms: stored {stored!r}, got {value!r}"
        )
