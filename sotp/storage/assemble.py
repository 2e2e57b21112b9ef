"""Runs of samples from any source (block rows, the head) -> one time-sorted Series per series.

A read gathers block rows from the database and runs from the in-memory head, in any order; each run is
time-sorted. Runs are ordered by (series, first time) — a sort over runs, not samples — and the samples
permuted once. A series whose runs overlap (a sample both flushed and still in a replica's head, or a raced
retry) is then sorted and de-duplicated on its own, keeping the first of equal timestamps. Finally each
series is trimmed to the window by binary search.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import numpy.typing as npt

from sotp.model import Labels, Series
from sotp.storage.head import Runs

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]


def merge_blocks(parts: list[tuple[I64, F64]]) -> tuple[I64, F64]:
    """Concatenate one series' blocks, sort by time and keep the first of equal timestamps (a raced retry)."""
    if len(parts) == 1:
        ts, vs = parts[0]
    else:
        ts = np.concatenate([p[0] for p in parts])
        vs = np.concatenate([p[1] for p in parts])
    if len(ts) > 1 and not bool(np.all(ts[1:] > ts[:-1])):
        order = np.argsort(ts, kind="stable")
        ts, vs = ts[order], vs[order]
        keep = np.concatenate(([True], ts[1:] != ts[:-1]))
        ts, vs = ts[keep], vs[keep]
    return ts, vs


def assemble(runs: Runs, mint: int, maxt: int, by_id: Mapping[int, Labels]) -> list[Series]:
    """One Series per series id in ``runs`` with samples inside ``[mint, maxt]`` (unsorted by labels)."""
    block_sids, counts, ts, vs = runs.sids, runs.counts, runs.ts, runs.vs
    if not len(block_sids):
        return []
    first = np.cumsum(counts) - counts
    order = np.lexsort((ts[first], block_sids))  # by series, then by run start time
    if not bool(np.all(order[1:] > order[:-1])):
        c = counts[order]
        perm = np.repeat(first[order], c) + (np.arange(len(ts)) - np.repeat(np.cumsum(c) - c, c))
        ts, vs, block_sids, counts = ts[perm], vs[perm], block_sids[order], c
        first = np.cumsum(counts) - counts
    # Each series' samples are now one stretch; it starts at the first run of a new id.
    new = np.concatenate(([True], block_sids[1:] != block_sids[:-1]))
    starts = first[new]
    # Time must rise within a stretch; a series whose runs overlap is sorted and de-duplicated on its own.
    down = np.flatnonzero(ts[1:] <= ts[:-1]) + 1
    if len(down) and not bool(np.isin(down, starts).all()):
        sid_of = np.repeat(block_sids, counts)
        ts, vs, sid_of = _repair(ts, vs, sid_of, down[~np.isin(down, starts)])
        bounds = np.flatnonzero(np.diff(sid_of)) + 1
        starts = np.concatenate(([0], bounds))
        ids = sid_of[starts]
    else:
        ids = block_sids[new]
    ends = np.append(starts[1:], len(ts))
    out: list[Series] = []
    for sid, a, b in zip(ids.tolist(), starts.tolist(), ends.tolist(), strict=True):
        run = ts[a:b]
        lo = a if run[0] >= mint else a + int(run.searchsorted(mint))
        hi = b if run[-1] <= maxt else a + int(run.searchsorted(maxt, "right"))
        if hi > lo:
            out.append(Series(by_id[sid], ts[lo:hi], vs[lo:hi]))
    return out


def _repair(ts: I64, vs: F64, sid_of: I64, bad_at: I64) -> tuple[I64, F64, I64]:
    """Sort and de-duplicate the series that contain the positions ``bad_at``."""
    bounds = np.flatnonzero(np.diff(sid_of)) + 1
    starts = np.concatenate(([0], bounds))
    ends = np.concatenate((bounds, [len(ts)]))
    which = set(np.searchsorted(starts, bad_at, "right").tolist())
    parts_t: list[I64] = []
    parts_v: list[F64] = []
    parts_s: list[I64] = []
    for i, (a, b) in enumerate(zip(starts.tolist(), ends.tolist(), strict=True)):
        t, v = (ts[a:b], vs[a:b]) if i + 1 not in which else merge_blocks([(ts[a:b], vs[a:b])])
        parts_t.append(t)
        parts_v.append(v)
        parts_s.append(np.full(len(t), sid_of[a], dtype=np.int64))
    return np.concatenate(parts_t), np.concatenate(parts_v), np.concatenate(parts_s)


def blocks_for(runs: Runs, block_ms: int) -> Runs:
    """``runs`` (time-sorted within each run, runs of one series not overlapping) cut so that no block spans
    two ``block_ms`` windows, and merged so that each series has one block per window (for flushes)."""
    if not len(runs.sids):
        return runs
    sid = np.repeat(runs.sids, runs.counts)
    order = np.lexsort((runs.ts, sid))
    sid, ts, vs = sid[order], runs.ts[order], runs.vs[order]
    # De-duplicate equal (series, time): the head may hold a sample twice (own write and log tail).
    keep = np.ones(len(ts), dtype=bool)
    keep[1:] = (sid[1:] != sid[:-1]) | (ts[1:] != ts[:-1])
    sid, ts, vs = sid[keep], ts[keep], vs[keep]
    window = ts // block_ms
    cut = np.ones(len(ts), dtype=bool)
    cut[1:] = (sid[1:] != sid[:-1]) | (window[1:] != window[:-1])
    starts = np.flatnonzero(cut)
    counts = np.diff(np.append(starts, len(ts))).astype(np.int64)
    return Runs(sid[starts], counts, ts, vs)
