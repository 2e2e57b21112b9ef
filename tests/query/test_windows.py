"""Window bounds and sliced range functions: the fast paths must equal the plain ones bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

from query import range_funcs
from query.range_funcs import RANGE_FUNCTIONS, Window
from query.values import Range
from sotp.model import Labels


def random_range(rng: np.random.Generator, k: int, max_len: int, counters: bool) -> Range:
    lens = rng.integers(0, max_len, k)
    ts = np.zeros(0, np.int64)
    vs = np.zeros(0, np.float64)
    for n in lens.tolist():
        ts = np.append(ts, np.sort(rng.choice(4000, n, replace=False)).astype(np.int64) * 1000)
        if counters:  # increasing with resets
            vs = np.append(vs, np.cumsum(rng.integers(0, 100, n)).astype(np.float64) % 700)
        else:
            vs = np.append(vs, rng.normal(0, 1e3, n))
    starts = np.zeros(k + 1, np.int64)
    np.cumsum(lens, out=starts[1:])
    return Range([Labels({"i": str(i)}) for i in range(k)], ts, vs, starts)


@pytest.mark.parametrize("seed", range(40))
def test_search_by_histogram_equals_one_search_per_series(seed: int) -> None:
    rng = np.random.default_rng(seed)
    r = random_range(rng, int(rng.integers(0, 8)), 12, counters=False)
    n = int(rng.integers(1, 12))
    sorted_t = np.sort(rng.integers(-5, 4005, n) * 1000).astype(np.int64)
    constant = np.full(n, int(rng.integers(-5, 4005)) * 1000, np.int64)  # `@` makes every step one time
    unsorted = rng.permutation(sorted_t)
    for t in (sorted_t, constant, unsorted):
        for side in ("left", "right"):
            assert np.array_equal(r.search(t, side), r._search_rows(t, side))


@pytest.mark.parametrize("name", ["rate", "increase", "delta"])
def test_rate_in_row_slices_equals_rate_in_one_piece(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(7)
    r = random_range(rng, 50, 200, counters=True)
    steps = np.arange(0, 4_000_000, 15_000, dtype=np.int64)
    lo, hi = r.windows(steps - 300_000, steps)
    w = Window(r, lo, hi, steps, 300_000, steps, [])
    with np.errstate(all="ignore"):
        whole_v, whole_p = RANGE_FUNCTIONS[name](w)
        monkeypatch.setattr(range_funcs, "CHUNK", len(steps) * 3 + 5)  # slices of 3 rows, one of 2 at the end
        sliced_v, sliced_p = RANGE_FUNCTIONS[name](w)
    assert np.array_equal(whole_p, sliced_p)
    assert np.array_equal(whole_v[whole_p].view(np.int64), sliced_v[sliced_p].view(np.int64))


@pytest.mark.parametrize("seed", range(6))
def test_avg_over_time_by_twosum_equals_the_kahan_loop(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    # magnitudes from 1e-300 to 1e299 and both signs: Neumaier's branch goes both ways, cancellations happen
    rng = np.random.default_rng(seed)
    r = random_range(rng, 40, 300, counters=False)
    r.vs[:] = rng.normal(0, 1, len(r.vs)) * 10.0 ** rng.integers(-300, 299, len(r.vs))
    r.vs[::7] = np.round(r.vs[::7], 2) if seed % 2 else -r.vs[::7]
    steps = np.arange(0, 4_000_000, 15_000, dtype=np.int64)
    lo, hi = r.windows(steps - 300_000, steps)
    w = Window(r, lo, hi, steps, 300_000, steps, [])
    fast_v, fast_p = RANGE_FUNCTIONS["avg_over_time"](w)
    monkeypatch.setattr(range_funcs, "_exact_sums_safe", lambda vs: False)
    loop_v, loop_p = RANGE_FUNCTIONS["avg_over_time"](w)
    assert np.array_equal(fast_p, loop_p)
    assert np.array_equal(fast_v[fast_p].view(np.int64), loop_v[loop_p].view(np.int64))
