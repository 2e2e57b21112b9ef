"""The in-memory head: recent samples of every series, columnar, for reads until they become blocks.

Real senders deliver about one sample per series per request, so the recent hours arrive as many tiny
pieces. Persistent backends log each request as one record (:mod:`sotp.storage.wal`) and keep its samples
here; a background step (:class:`FlushPolicy`) moves the head's older part into per-series block rows
minutes later. Reads merge blocks and head (:mod:`sotp.storage.assemble`).

Layout: an *open* append buffer (arrival order) and a few sealed :class:`Chunk` s, each sorted by series
id then time in CSR form (ids, offsets, times, values). The open buffer is sealed when it reaches
``seal_at`` samples, and chunks of similar size are merged, so a head of N samples has O(log N) chunks;
selecting a series costs one binary search per chunk. All work is numpy over whole requests or chunks.

Thread-safe: writers (commits, log tailing) and readers (queries) may run in different threads.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
BOOL = npt.NDArray[np.bool_]
_NO_TIME = np.iinfo(np.int64).min


@dataclass(frozen=True, slots=True)
class Runs:
    """Samples as runs: ``counts[i]`` samples of series ``sids[i]``, time-sorted within a run.

    The same series may have several runs (from several chunks); :func:`sotp.storage.assemble.assemble`
    merges them with block rows read from the database.
    """

    sids: I64
    counts: I64
    ts: I64
    vs: F64

    @staticmethod
    def empty() -> Runs:
        return Runs(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float64))

    @staticmethod
    def from_samples(sid: I64, ts: I64, vs: F64) -> Runs:
        """Per-sample arrays as runs of consecutive equal ids (the caller keeps each run time-sorted)."""
        if not len(sid):
            return Runs.empty()
        start = np.ones(len(sid), dtype=bool)
        start[1:] = sid[1:] != sid[:-1]
        at = np.flatnonzero(start)
        return Runs(sid[at], np.diff(np.append(at, len(sid))).astype(np.int64), ts, vs)

    @staticmethod
    def concat(parts: list[Runs]) -> Runs:
        parts = [p for p in parts if len(p.sids)]
        if not parts:
            return Runs.empty()
        if len(parts) == 1:
            return parts[0]
        return Runs(
            np.concatenate([p.sids for p in parts]),
            np.concatenate([p.counts for p in parts]),
            np.concatenate([p.ts for p in parts]),
            np.concatenate([p.vs for p in parts]),
        )


@dataclass(slots=True)
class Chunk:
    """Samples sorted by (series id, time): series ``sids[i]`` owns ``ts[offsets[i]:offsets[i + 1]]``."""

    sids: I64
    offsets: I64
    ts: I64
    vs: F64
    t_min: int
    t_max: int
    _keys: I64 | None = field(default=None, repr=False)

    @property
    def n(self) -> int:
        return len(self.ts)

    @staticmethod
    def build(sid: I64, ts: I64, vs: F64) -> Chunk:
        """Sort ``(sid, ts, vs)`` samples into a chunk. Samples usually come in time order per series (in
        arrival order, or one chunk after an older one), so a stable sort by id alone is tried first — linear
        for two sorted runs — and the two-key sort is used only when some series' times then fall."""
        order = np.argsort(sid, kind="stable")
        sid, ts, vs = sid[order], ts[order], vs[order]
        if len(ts) > 1:
            same = sid[1:] == sid[:-1]
            if bool((same & (ts[1:] < ts[:-1])).any()):
                order = np.lexsort((ts, sid))
                sid, ts, vs = sid[order], ts[order], vs[order]
        first = np.ones(len(sid), dtype=bool)
        first[1:] = sid[1:] != sid[:-1]
        starts = np.flatnonzero(first)
        offsets = np.append(starts, len(sid)).astype(np.int64)
        return Chunk(sid[starts], offsets, ts, vs, int(ts.min()), int(ts.max()))

    def keys(self) -> I64:
        """A sort key per sample, ``run index · 2^40 + (t − t_min)``: ascending in the chunk's order, so one
        ``searchsorted`` finds any (series, time) pair (a chunk spans far less than 2^40 ms, 34 years)."""
        if self._keys is None:
            run = np.repeat(np.arange(len(self.sids), dtype=np.int64), np.diff(self.offsets))
            self._keys = (run << 40) + (self.ts - self.t_min)
        return self._keys

    def window(self, mint: int, maxt: int) -> Runs:
        """Every series' samples inside ``[mint, maxt]`` (a mask over the chunk: no gather)."""
        if self.t_max < mint or self.t_min > maxt:
            return Runs.empty()
        if mint <= self.t_min and self.t_max <= maxt:
            return Runs(self.sids, np.diff(self.offsets), self.ts, self.vs)
        keep = (self.ts >= mint) & (self.ts <= maxt)
        sid = np.repeat(self.sids, np.diff(self.offsets))
        return Runs.from_samples(sid[keep], self.ts[keep], self.vs[keep])

    def select(self, sel: I64, mint: int, maxt: int) -> Runs:
        if self.t_max < mint or self.t_min > maxt or not len(sel):
            return Runs.empty()
        if len(sel) * 2 >= len(self.sids):
            # Most of the chunk: mask the window and keep the selected series' runs.
            runs = self.window(mint, maxt)
            keep = np.isin(runs.sids, sel)
            if bool(keep.all()):
                return runs
            per_sample = np.repeat(keep, runs.counts)
            return Runs(runs.sids[keep], runs.counts[keep], runs.ts[per_sample], runs.vs[per_sample])
        pos = np.searchsorted(self.sids, sel)
        hit = pos < len(self.sids)
        hit[hit] = self.sids[pos[hit]] == sel[hit]
        rows = pos[hit]
        if not len(rows):
            return Runs.empty()
        starts, ends = self.offsets[rows], self.offsets[rows + 1]
        lens = ends - starts
        idx = np.repeat(starts - (np.cumsum(lens) - lens), lens) + np.arange(int(lens.sum()))
        run_of = np.repeat(np.arange(len(rows)), lens)
        ts = self.ts[idx]
        if self.t_min < mint or self.t_max > maxt:
            keep = (ts >= mint) & (ts <= maxt)
            idx, run_of, ts = idx[keep], run_of[keep], ts[keep]
        counts = np.bincount(run_of, minlength=len(rows)).astype(np.int64)
        nz = counts > 0
        return Runs(self.sids[rows][nz], counts[nz], ts, self.vs[idx])

    def lookup(self, sid: I64, t: I64) -> tuple[BOOL, F64]:
        """Whether each ``(sid[i], t[i])`` is here, and its value (0 where absent)."""
        found = np.zeros(len(sid), dtype=bool)
        out = np.zeros(len(sid), np.float64)
        pos = np.searchsorted(self.sids, sid)
        ok = pos < len(self.sids)
        ok[ok] = self.sids[pos[ok]] == sid[ok]
        ok &= (t >= self.t_min) & (t <= self.t_max)
        if not ok.any():
            return found, out
        want = (pos[ok].astype(np.int64) << 40) + (t[ok] - self.t_min)
        keys = self.keys()
        at = np.searchsorted(keys, want)
        inside = at < len(keys)
        inside[inside] = keys[at[inside]] == want[inside]
        where = np.flatnonzero(ok)[inside]
        found[where] = True
        out[where] = self.vs[at[inside]]
        return found, out

    def without_before(self, t: int) -> Chunk | None:
        """This chunk minus its samples older than ``t`` (None when nothing is left)."""
        if self.t_min >= t:
            return self
        if self.t_max < t:
            return None
        keep = self.ts >= t
        sid = np.repeat(self.sids, np.diff(self.offsets))[keep]
        return Chunk.build(sid, self.ts[keep], self.vs[keep])


class Head:
    """Recent samples of every series (see the module docstring).

    ``min_t``: samples older than this are not held (they are in blocks); :meth:`append` drops them.
    """

    def __init__(self, seal_at: int = 1 << 16) -> None:
        self.seal_at = seal_at
        self.min_t = _NO_TIME
        self._lock = threading.Lock()
        self._chunks: list[Chunk] = []
        self._sid = np.zeros(seal_at, np.int64)
        self._ts = np.zeros(seal_at, np.int64)
        self._vs = np.zeros(seal_at, np.float64)
        self._open = 0
        self.max_t = _NO_TIME
        # Sorted views of the open buffer's first samples, reused by reads: the buffer only grows between
        # seals, so a read sorts only what arrived since the last one (see :meth:`_open_chunks`).
        self._open_views: list[tuple[int, Chunk]] = []

    # -- writes ----------------------------------------------------------------------------------

    def append(self, sid: I64, ts: I64, vs: F64) -> None:
        """Add samples (one entry per sample, any order); those older than :attr:`min_t` are skipped."""
        if not len(ts):
            return
        with self._lock:
            if int(ts.min()) < self.min_t:
                keep = ts >= self.min_t
                sid, ts, vs = sid[keep], ts[keep], vs[keep]
                if not len(ts):
                    return
            self.max_t = max(self.max_t, int(ts.max()))
            pos = 0
            while pos < len(ts):
                room = self.seal_at - self._open
                take = min(room, len(ts) - pos)
                end = self._open + take
                self._sid[self._open : end] = sid[pos : pos + take]
                self._ts[self._open : end] = ts[pos : pos + take]
                self._vs[self._open : end] = vs[pos : pos + take]
                self._open = end
                pos += take
                if self._open == self.seal_at:
                    self._seal()

    def _seal(self) -> None:
        n = self._open
        if not n:
            return
        self._chunks.append(Chunk.build(self._sid[:n].copy(), self._ts[:n].copy(), self._vs[:n].copy()))
        self._open = 0
        self._open_views = []
        # Merge chunks of similar size: sizes then shrink at least 4× from oldest to newest.
        while len(self._chunks) >= 2 and self._chunks[-2].n < 4 * self._chunks[-1].n:
            b = self._chunks.pop()
            a = self._chunks.pop()
            sid = np.concatenate([np.repeat(a.sids, np.diff(a.offsets)), np.repeat(b.sids, np.diff(b.offsets))])
            self._chunks.append(Chunk.build(sid, np.concatenate([a.ts, b.ts]), np.concatenate([a.vs, b.vs])))

    def drop_before(self, t: int) -> None:
        """Forget samples older than ``t`` and refuse them from now on (they were flushed to blocks)."""
        with self._lock:
            self.min_t = max(self.min_t, t)
            self._discard(t)

    def discard_before(self, t: int) -> None:
        """Forget samples older than ``t`` (retention) without changing :attr:`min_t`."""
        with self._lock:
            self._discard(t)

    def _discard(self, t: int) -> None:
        self._chunks = [c for c in (c.without_before(t) for c in self._chunks) if c is not None]
        n = self._open
        if n and int(self._ts[:n].min()) < t:
            keep = np.flatnonzero(self._ts[:n] >= t)
            m = len(keep)
            self._sid[:m], self._ts[:m], self._vs[:m] = self._sid[keep], self._ts[keep], self._vs[keep]
            self._open = m
            self._open_views = []

    def clear(self) -> None:
        with self._lock:
            self._chunks = []
            self._open = 0
            self._open_views = []
            self.max_t = _NO_TIME

    # -- reads -----------------------------------------------------------------------------------

    def _open_chunks(self) -> list[Chunk]:
        """The open buffer as sorted chunks (caller holds the lock). Views of its prefixes are kept: a read
        sorts only the samples appended since the previous read, and the views are merged like sealed
        chunks (each at most a quarter of the one before), so a read of an unchanged head sorts nothing and
        a read after a write sorts that write's samples (previously every read sorted the whole buffer,
        up to ``seal_at`` samples: most of a one-series query's time)."""
        n = self._open
        views = self._open_views
        done = views[-1][0] if views else 0
        if done < n:
            views.append((n, Chunk.build(self._sid[done:n].copy(), self._ts[done:n].copy(), self._vs[done:n].copy())))
            while len(views) >= 2 and views[-2][1].n < 4 * views[-1][1].n:
                end = views.pop()[0]
                views.pop()
                start = views[-1][0] if views else 0
                views.append((end, Chunk.build(self._sid[start:end].copy(), self._ts[start:end].copy(),
                                               self._vs[start:end].copy())))
        return [c for _, c in views]

    def _all(self) -> list[Chunk]:
        """The sealed chunks and sorted views of the open buffer, taken under the lock (read without it)."""
        with self._lock:
            return [*self._chunks, *self._open_chunks()]

    def select(self, sids: I64, mint: int, maxt: int) -> Runs:
        """Runs of the series ``sids`` (ascending, unique) inside ``[mint, maxt]``."""
        return Runs.concat([c.select(sids, mint, maxt) for c in self._all()])

    def present(self, sids: I64, mint: int, maxt: int) -> I64:
        """The ids among ``sids`` with at least one sample inside ``[mint, maxt]``."""
        got = self.select(sids, mint, maxt).sids
        return np.unique(got)

    def lookup(self, sid: I64, t: I64) -> tuple[BOOL, F64]:
        """Whether each ``(sid[i], t[i])`` is held, and its value."""
        found = np.zeros(len(sid), dtype=bool)
        out = np.zeros(len(sid), np.float64)
        for c in self._all():
            f, v = c.lookup(sid, t)
            new = f & ~found
            out[new] = v[new]
            found |= f
        return found, out

    def newest(self) -> tuple[I64, I64, F64]:
        """Each held series' newest sample: ``(sids, t, v)``."""
        runs = Runs.concat([c.window(c.t_min, c.t_max) for c in self._all()])
        if not len(runs.sids):
            return runs.sids, runs.ts, runs.vs
        ends = np.cumsum(runs.counts) - 1
        return runs.sids, runs.ts[ends], runs.vs[ends]

    def before(self, t: int) -> Runs:
        """Every held sample older than ``t``, as runs of each series (for a flush into blocks)."""
        return Runs.concat([c.window(c.t_min, t - 1) for c in self._all() if c.t_min < t])

    def span(self) -> tuple[int, int, int]:
        """``(oldest time, newest time, samples)`` held; times are meaningless when empty."""
        with self._lock:
            n = self._open + sum(c.n for c in self._chunks)
            lows = [c.t_min for c in self._chunks]
            if self._open:
                lows.append(int(self._ts[: self._open].min()))
            return (min(lows) if lows else _NO_TIME), self.max_t, n


@dataclass(frozen=True, slots=True)
class FlushPolicy:
    """When the head's older part becomes blocks: like Prometheus's head compaction, in ``window`` pieces.

    A flush cuts at a multiple of ``window`` at least ``grace`` behind the newest sample (capped at the real
    clock, so one sample from the future cannot push everyone else's into the late path). Samples then
    older than the cut and still arriving go straight to blocks. ``max_samples`` bounds memory: beyond it
    the cut moves up to ``grace`` behind the newest sample at once.
    """

    window_ms: int = 15 * 60_000
    grace_ms: int = 5 * 60_000
    max_samples: int = 4_000_000

    def cut(self, head_min: int, oldest: int, newest: int, samples: int, now_ms: int) -> int | None:
        """The flush boundary, or None when nothing is due."""
        if not samples:
            return None
        top = min(newest, now_ms) - self.grace_ms
        cut = top if samples > self.max_samples else top // self.window_ms * self.window_ms
        if cut <= max(head_min, oldest):
            return None
        return cut


HEAD_KEYS = ("head_window", "head_grace", "head_max_samples")


def policy_from_params(params: dict[str, str], where: str) -> FlushPolicy:
    """The flush policy from storage URL parameters ``head_window``, ``head_grace``, ``head_max_samples``."""
    from sotp.config import parse_duration
    from sotp.errors import ConfigError

    def ms(key: str, default: int) -> int:
        if key not in params:
            return default
        value = round(parse_duration(params[key], f"storage URL parameter {key}") * 1000)
        if value <= 0:
            raise ConfigError(f"storage URL parameter {key}: duration must be positive, got {params[key]!r}")
        return value

    base = FlushPolicy()
    window, grace = ms("head_window", base.window_ms), ms("head_grace", base.grace_ms)
    raw = params.get("head_max_samples", str(base.max_samples))
    if not raw.isdigit() or int(raw) < 1:
        raise ConfigError(f"storage URL parameter head_max_samples: expected a positive integer, got {raw!r} ({where})")
    return FlushPolicy(window, grace, int(raw))
