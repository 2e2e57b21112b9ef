"""The numpy pieces of the live-stream path, each checked against a plain-Python reference built in the test."""

from __future__ import annotations

import random
from collections import defaultdict

import numpy as np
import pytest

from sotp.errors import SampleRejected
from sotp.model import STALE_NAN, Labels
from sotp.storage.assemble import assemble, blocks_for
from sotp.storage.head import Chunk, FlushPolicy, Head, Runs
from sotp.storage.newest import EMPTY, NewestSamples, classify, verify_older
from sotp.storage.staging import Staging

I64 = np.int64


def reference(samples: list[tuple[int, int, float]]) -> dict[int, list[tuple[int, float]]]:
    """Series id -> time-sorted (t, v), first of equal times kept: what every read must return."""
    out: dict[int, dict[int, float]] = defaultdict(dict)
    for sid, t, v in samples:
        out[sid].setdefault(t, v)
    return {sid: sorted(d.items()) for sid, d in out.items()}


def runs_to_dict(runs: Runs) -> dict[int, list[tuple[int, float]]]:
    got: dict[int, dict[int, float]] = defaultdict(dict)
    pos = 0
    for sid, n in zip(runs.sids.tolist(), runs.counts.tolist(), strict=True):
        for t, v in zip(runs.ts[pos : pos + n].tolist(), runs.vs[pos : pos + n].tolist(), strict=True):
            got[sid].setdefault(t, v)
        pos += n
    return {sid: sorted(d.items()) for sid, d in got.items()}


def live_samples(n_series: int, rounds: int, seed: int) -> list[tuple[int, int, float]]:
    """Rounds of one sample per series, series in a shuffled order each round (as shards interleave)."""
    rnd = random.Random(seed)
    out = []
    for k in range(rounds):
        ids = list(range(1, n_series + 1))
        rnd.shuffle(ids)
        out += [(sid, 1000 * k + sid % 7, float(sid * 100 + k)) for sid in ids]
    return out


@pytest.mark.parametrize("seal_at", [3, 16, 1 << 16], ids=["tiny-chunks", "merging", "one-open-buffer"])
def test_head_select_matches_reference_across_seals_and_merges(seal_at: int) -> None:
    samples = live_samples(40, 30, seed=seal_at)
    head = Head(seal_at=seal_at)
    for start in range(0, len(samples), 13):  # requests of 13 samples
        part = samples[start : start + 13]
        head.append(np.array([s[0] for s in part], I64), np.array([s[1] for s in part], I64),
                    np.array([s[2] for s in part]))
    ref = reference(samples)
    sel = np.array([3, 4, 17, 40], I64)
    got = runs_to_dict(head.select(sel, 5000, 20_000))
    assert got == {sid: [p for p in ref[sid] if 5000 <= p[0] <= 20_000] for sid in sel.tolist()}
    everything = runs_to_dict(head.select(np.arange(1, 41, dtype=I64), -(10**12), 10**12))
    assert everything == ref
    assert head.span() == (0, 29_006, len(samples))


@pytest.mark.parametrize("seal_at", [50, 1 << 16], ids=["sealing", "one-open-buffer"])
def test_head_reads_between_appends_see_every_sample_so_far(seal_at: int) -> None:
    # reads keep sorted views of the open buffer and sort only what arrived since: each read must still
    # return exactly what was appended before it, across seals, drops and view merges
    samples = live_samples(30, 40, seed=7)
    head = Head(seal_at=seal_at)
    every = np.arange(1, 31, dtype=I64)
    for n, start in enumerate(range(0, len(samples), 11)):
        part = samples[start : start + 11]
        head.append(np.array([s[0] for s in part], I64), np.array([s[1] for s in part], I64),
                    np.array([s[2] for s in part]))
        if n == 60:
            head.drop_before(15_000)
        seen = [s for s in samples[: start + 11] if n < 60 or s[1] >= 15_000]
        if n % 3 == 0 or n == 60:
            assert runs_to_dict(head.select(every, -(10**12), 10**12)) == reference(seen)
            assert runs_to_dict(head.select(np.array([5], I64), 0, 10**12)) == {
                sid: pts for sid, pts in reference(seen).items() if sid == 5}


def test_head_lookup_before_drop_and_newest() -> None:
    samples = live_samples(10, 8, seed=1)
    head = Head(seal_at=7)
    head.append(np.array([s[0] for s in samples], I64), np.array([s[1] for s in samples], I64),
                np.array([s[2] for s in samples]))
    ref = reference(samples)
    found, vals = head.lookup(np.array([3, 3, 9], I64), np.array([2003, 2004, 7002], I64))
    assert found.tolist() == [True, False, True]
    assert vals[[0, 2]].tolist() == [dict(ref[3])[2003], dict(ref[9])[7002]]
    older = runs_to_dict(head.before(4000))
    assert older == {sid: [p for p in pts if p[0] < 4000] for sid, pts in ref.items()}
    sids, t, v = head.newest()
    assert dict(zip(sids.tolist(), zip(t.tolist(), v.tolist(), strict=True), strict=True)) == {
        sid: pts[-1] for sid, pts in ref.items()
    }
    head.drop_before(4000)
    assert runs_to_dict(head.select(np.arange(1, 11, dtype=I64), 0, 10**9)) == {
        sid: [p for p in pts if p[0] >= 4000] for sid, pts in ref.items()
    }
    head.append(np.array([1], I64), np.array([10], I64), np.array([5.0]))  # older than the boundary: refused
    assert head.lookup(np.array([1], I64), np.array([10], I64))[0].tolist() == [False]


def test_chunk_keeps_out_of_order_arrivals_sorted_and_stale_bits() -> None:
    sid = np.array([2, 1, 2, 1, 2], I64)
    ts = np.array([30, 10, 10, 5, 20], I64)
    vs = np.array([3.0, 1.0, 1.0, STALE_NAN, 2.0])
    c = Chunk.build(sid, ts, vs)
    assert c.sids.tolist() == [1, 2] and c.offsets.tolist() == [0, 2, 5]
    assert c.ts.tolist() == [5, 10, 10, 20, 30]
    assert c.vs.view("u8")[0] == np.array([STALE_NAN]).view("u8")[0]


def test_assemble_merges_overlapping_runs_keeps_first_and_trims() -> None:
    by_id = {1: Labels({"__name__": "a"}), 2: Labels({"__name__": "b"})}
    runs = Runs(
        np.array([2, 1, 2, 1], I64),
        np.array([2, 3, 2, 1], I64),
        np.array([50, 60, 10, 20, 30, 40, 60, 25], I64),
        np.array([5.0, 6.0, 1.0, 2.0, 3.0, 4.0, 9.0, 99.0]),
    )
    got = {s.labels.name: (s.timestamps.tolist(), s.values.tolist()) for s in assemble(runs, 15, 55, by_id)}
    # Series a: runs [10,20,30] and [25]; series b: [50,60] then [40,60]: sorted, trimmed to [15, 55].
    assert got == {"a": ([20, 25, 30], [2.0, 99.0, 3.0]), "b": ([40, 50], [4.0, 5.0])}


def test_blocks_for_cuts_at_windows_and_drops_repeats() -> None:
    runs = Runs(np.array([7, 7], I64), np.array([3, 2], I64), np.array([90, 110, 130, 110, 140], I64),
                np.array([1.0, 2.0, 3.0, 2.0, 4.0]))
    b = blocks_for(runs, block_ms=100)
    assert b.sids.tolist() == [7, 7] and b.counts.tolist() == [1, 3]
    assert b.ts.tolist() == [90, 110, 130, 140]


def test_staging_groups_repeated_series_and_applies_request_rules() -> None:
    a, b = Labels({"__name__": "a"}), Labels({"__name__": "b"})
    st = Staging()
    st.add(a, 10, 1.0)
    st.add_series(b, [5, 6], [1.0, 2.0])
    st.add(a, 20, 2.0)
    st.add(a, 20, 2.0)  # a repeat collapses
    batch = st.batch()
    assert batch.labels == [a, b] and batch.counts.tolist() == [2, 2]
    assert batch.ts.tolist() == [10, 20, 5, 6]
    for bad, match in (([(a, 10, 1.0), (a, 9, 1.0)], "out-of-order sample in request"),
                       ([(a, 10, 1.0), (a, 10, 2.0)], "conflicting samples in request")):
        st = Staging()
        for lb, t, v in bad:
            st.add(lb, t, v)
        with pytest.raises(SampleRejected, match=match):
            st.batch()


def test_newest_classifies_new_repeat_conflict_and_older() -> None:
    a = Labels({"__name__": "a"})
    newest = NewestSamples()
    sids = np.array([5], I64)
    newest.set_loaded(sids, np.array([100], I64), np.array([1.0]))
    st = Staging()
    st.add_series(a, [50, 100, 150], [0.5, 1.0, 2.0])
    batch = st.batch()
    new, older = classify(batch, sids, newest)
    assert new.tolist() == [False, False, True] and older == [0]
    with pytest.raises(SampleRejected, match="out-of-order sample for series"):
        verify_older(batch, older, np.array([False]), np.array([0.0]), np.array([100], I64))
    verify_older(batch, older, np.array([True]), np.array([0.5]), np.array([100], I64))  # a stored retry
    st = Staging()
    st.add(a, 100, 7.0)
    with pytest.raises(SampleRejected, match="conflicting sample for series"):
        classify(st.batch(), sids, newest)
    empty = np.array([9], I64)
    newest.set_loaded(empty, np.array([EMPTY], I64), np.array([0.0]))
    assert newest.unknown(np.array([5, 9, 11], I64)).tolist() == [11]


@pytest.mark.parametrize(
    ("head_min", "oldest", "newest", "samples", "now", "want"),
    [
        (-(2**62), 0, 3_600_000, 10, 10**13, 3_600_000 - 300_000 - (3_600_000 - 300_000) % 900_000),
        (-(2**62), 0, 200_000, 10, 10**13, None),  # not a whole window behind the grace yet
        (2_700_000, 2_700_000, 3_600_000, 10, 10**13, None),  # already flushed up to that window
        (-(2**62), -1_000_000, 3_600_000, 10, 1_000_000, 0),  # capped by the clock: now - grace, aligned down
        (-(2**62), 0, 3_600_000, 5_000_000, 10**13, 3_300_000),  # over max_samples: grace behind, unaligned
    ],
    ids=["aligned-cut", "too-early", "done", "clock-cap", "over-bound"],
)
def test_flush_policy_cut(head_min: int, oldest: int, newest: int, samples: int, now: int, want: int | None) -> None:
    policy = FlushPolicy(window_ms=900_000, grace_ms=300_000, max_samples=4_000_000)
    assert policy.cut(head_min, oldest, newest, samples, now) == want
