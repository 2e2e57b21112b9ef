"""One behaviour for every backend (memory, SQLite, PostgreSQL): the Appender and Querier contracts."""

from __future__ import annotations

import asyncio
import math

import numpy as np
import pytest

from sotp.errors import SampleRejected
from sotp.model import STALE_NAN, Labels, Matcher, MatchOp, stale_mask

UP_A = Labels({"__name__": "up", "job": "a", "instance": "x"})
UP_B = Labels({"__name__": "up", "job": "b", "instance": "y"})
G = Labels({"__name__": "g", "job": "a"})


def eq(name: str, value: str) -> Matcher:
    return Matcher(name, MatchOp.EQ, value)


async def write(store, series: list[tuple[Labels, list[int], list[float]]]) -> int:  # type: ignore[no-untyped-def]
    app = store.appender()
    for labels, ts, vs in series:
        app.append_series(labels, ts, vs)
    return int(await app.commit())


async def test_roundtrip_sorted_and_windowed(make_storage) -> None:  # type: ignore[no-untyped-def]
    store = await make_storage()
    assert await write(store, [(UP_A, [1000, 2000, 3000], [1, 2, 3]), (UP_B, [1500], [7])]) == 4
    q = store.querier(1500, 3000)
    got = await q.select([eq("__name__", "up")])
    assert [s.labels for s in got] == [UP_A, UP_B]
    assert got[0].timestamps.tolist() == [2000, 3000] and got[0].values.tolist() == [2.0, 3.0]
    assert got[0].timestamps.dtype == np.int64 and got[0].values.dtype == np.float64
    assert got[1].timestamps.tolist() == [1500]
    await q.close()


@pytest.mark.parametrize(
    ("matchers", "expected"),
    [
        ([eq("__name__", "up"), eq("job", "a")], [UP_A]),
        ([eq("__name__", "up"), Matcher("job", MatchOp.NEQ, "a")], [UP_B]),
        ([Matcher("__name__", MatchOp.RE, "u.")], [UP_A, UP_B]),
        ([Matcher("job", MatchOp.RE, "a|b"), Matcher("instance", MatchOp.NRE, "x")], [G, UP_B]),
        ([eq("__name__", "g"), eq("instance", "")], [G]),  # missing label matches ""
        ([Matcher("__name__", MatchOp.RE, "p")], []),  # regexes are fully anchored
    ],
    ids=["eq", "neq", "re", "re+nre", "empty-matches-missing", "anchored"],
)
async def test_matchers(make_storage, matchers, expected) -> None:  # type: ignore[no-untyped-def]
    store = await make_storage()
    await write(store, [(UP_A, [1000], [1]), (UP_B, [1000], [1]), (G, [1000], [5])])
    got = await store.querier(0, 10_000).select(matchers)
    assert [s.labels for s in got] == expected


async def test_label_names_and_values_respect_window_and_matchers(make_storage) -> None:  # type: ignore[no-untyped-def]
    store = await make_storage()
    await write(store, [(UP_A, [1000], [1]), (UP_B, [5000], [1]), (G, [1000], [5])])
    q = store.querier(0, 2000)
    assert await q.label_names() == ["__name__", "instance", "job"]
    assert await q.label_values("job") == ["a"]
    assert await q.label_values("__name__") == ["g", "up"]
    assert await q.label_values("instance", [eq("__name__", "g")]) == []
    assert await store.querier(0, 10_000).label_values("job", [eq("__name__", "up")]) == ["a", "b"]


async def test_exact_duplicate_is_idempotent(make_storage) -> None:  # type: ignore[no-untyped-def]
    store = await make_storage()
    batch = [(UP_A, [1000, 2000, 3000], [1.0, 2.0, 3.0])]
    assert await write(store, batch) == 3
    assert await write(store, batch) == 0  # a retried request
    got = await store.querier(0, 10_000).select([eq("__name__", "up")])
    assert got[0].timestamps.tolist() == [1000, 2000, 3000]


@pytest.mark.parametrize(
    ("ts", "vs", "reason"),
    [
        ([3000], [9.0], "conflicting"),
        ([2500], [1.0], "out-of-order"),
        ([2000], [5.0], "conflicting"),
    ],
    ids=["conflict-at-newest", "older-not-stored", "older-different-value"],
)
async def test_rejected_batch_writes_nothing(make_storage, ts, vs, reason) -> None:  # type: ignore[no-untyped-def]
    store = await make_storage()
    await write(store, [(UP_A, [1000, 2000, 3000], [1.0, 2.0, 3.0])])
    app = store.appender()
    app.append_series(UP_B, [4000], [1.0])  # valid, but must not land: the request is atomic
    app.append_series(UP_A, ts, vs)
    with pytest.raises(SampleRejected, match=reason):
        await app.commit()
    got = await store.querier(0, 10_000).select([eq("__name__", "up")])
    assert [s.labels for s in got] == [UP_A]
    assert got[0].values.tolist() == [1.0, 2.0, 3.0]


async def test_unsorted_within_request_rejected(make_storage) -> None:  # type: ignore[no-untyped-def]
    store = await make_storage()
    app = store.appender()
    with pytest.raises(SampleRejected):
        app.append_series(UP_A, [2000, 1000], [1.0, 2.0])
        await app.commit()
    await app.rollback()
    assert await store.querier(0, 10_000).select([eq("__name__", "up")]) == []


async def test_rollback_discards(make_storage) -> None:  # type: ignore[no-untyped-def]
    store = await make_storage()
    app = store.appender()
    app.append(UP_A, 1000, 1.0)
    await app.rollback()
    assert await store.querier(0, 10_000).select([eq("__name__", "up")]) == []


async def test_special_values_roundtrip_bit_exact(make_storage) -> None:  # type: ignore[no-untyped-def]
    store = await make_storage()
    vals = [STALE_NAN, math.nan, math.inf, -math.inf, -0.0, 5e-324, 1.7976931348623157e308]
    await write(store, [(G, list(range(1000, 1000 + len(vals))), vals)])
    got = (await store.querier(0, 10_000).select([eq("__name__", "g")]))[0].values
    assert stale_mask(got).tolist() == [True] + [False] * (len(vals) - 1)
    assert got.view(np.uint64).tolist() == np.array(vals, dtype=np.float64).view(np.uint64).tolist()


async def test_data_survives_reopen(make_storage) -> None:  # type: ignore[no-untyped-def]
    store = await make_storage()
    await write(store, [(UP_A, [1000, 2000], [1.0, 2.0])])
    reopened = await make_storage()
    got = await reopened.querier(0, 10_000).select([eq("__name__", "up")])
    assert got[0].values.tolist() == [1.0, 2.0]
    # The reopened store knows the newest sample: an older different one is out-of-order.
    app = reopened.appender()
    app.append(UP_A, 1500, 9.0)
    with pytest.raises(SampleRejected):
        await app.commit()


async def test_concurrent_appenders_all_land(make_storage) -> None:  # type: ignore[no-untyped-def]
    store = await make_storage()

    async def writer(i: int) -> int:
        labels = Labels({"__name__": "c", "writer": str(i)})
        total = 0
        for k in range(10):
            total += await write(store, [(labels, [k * 1000 + 1, k * 1000 + 2], [float(k), float(k) + 0.5])])
        return total

    written = await asyncio.gather(*(writer(i) for i in range(8)))
    assert sum(written) == 8 * 10 * 2
    got = await store.querier(0, 100_000).select([eq("__name__", "c")])
    assert len(got) == 8 and all(len(s.timestamps) == 20 for s in got)


async def test_many_series_and_blocks_merge_in_reads(make_storage) -> None:  # type: ignore[no-untyped-def]
    store = await make_storage()
    series = [Labels({"__name__": "m", "i": str(i)}) for i in range(300)]
    for step in range(5):
        await write(store, [(lb, [step * 15_000], [float(step)]) for lb in series])
    got = await store.querier(15_000, 45_000).select([eq("__name__", "m")])
    assert len(got) == 300
    assert all(s.timestamps.tolist() == [15_000, 30_000, 45_000] for s in got)
    assert got[0].values.tolist() == [1.0, 2.0, 3.0]


async def test_delete_before_removes_old_data(make_storage) -> None:  # type: ignore[no-untyped-def]
    store = await make_storage()
    await write(store, [(UP_A, [1000], [1.0])])
    await write(store, [(UP_A, [10_000_000], [2.0])])
    await store.delete_before(5_000_000)
    got = await store.querier(0, 20_000_000).select([eq("__name__", "up")])
    assert got[0].timestamps.tolist() == [10_000_000]


async def test_compaction_keeps_every_sample(make_storage) -> None:  # type: ignore[no-untyped-def]
    store = await make_storage()
    compact = getattr(store, "compact", None)  # the memory backend keeps plain lists: nothing to compact
    for k in range(20):
        await write(store, [(UP_A, [k * 15_000], [float(k)])])
    before = (await store.querier(0, 10**9).select([eq("__name__", "up")]))[0]
    assert len(before.timestamps) == 20
    if compact is not None:
        await compact(10**10)
        await compact(10**10)  # idempotent
    after = (await store.querier(0, 10**9).select([eq("__name__", "up")]))[0]
    assert after.timestamps.tolist() == before.timestamps.tolist()
    assert after.values.tolist() == before.values.tolist()


async def test_concurrent_requests_are_atomic_each(make_storage) -> None:  # type: ignore[no-untyped-def]
    """Requests committed at the same moment (a backend may group them into one transaction) succeed or
    fail on their own; a refused request's new series do not disturb later writes or a reopen."""
    store = await make_storage()
    await write(store, [(UP_A, [1000, 2000], [1.0, 2.0])])
    fresh = Labels({"__name__": "fresh", "job": "x"})

    async def bad() -> None:
        app = store.appender()
        app.append_series(fresh, [5000], [1.0])  # a new series in a request that is refused
        app.append_series(UP_A, [1500], [9.0])  # out of order
        await app.commit()

    async def good(i: int) -> int:
        return await write(store, [(Labels({"__name__": "ok", "i": str(i)}), [1000, 2000], [float(i), 1.0])])

    results = await asyncio.gather(bad(), *(good(i) for i in range(6)), return_exceptions=True)
    assert isinstance(results[0], SampleRejected)
    assert results[1:] == [2] * 6
    assert await store.querier(0, 10_000).select([eq("__name__", "fresh")]) == []
    assert await write(store, [(fresh, [6000], [3.0])]) == 1
    reopened = await make_storage()
    got = await reopened.querier(0, 10_000).select([Matcher("__name__", MatchOp.RE, "fresh|ok")])
    assert [s.labels.get("__name__") for s in got] == ["fresh"] + ["ok"] * 6
    assert got[0].values.tolist() == [3.0]


async def test_series_counts_and_new_series(make_storage) -> None:  # type: ignore[no-untyped-def]
    store = await make_storage()
    team_a = Labels({"__name__": "m", "team": "a"})
    assert await store.series_count() == 0
    assert await store.count_new_series([UP_A, UP_A, team_a]) == 2  # distinct label sets
    await write(store, [(UP_A, [1000], [1.0]), (UP_B, [1000], [1.0]), (team_a, [1000], [1.0])])
    assert await store.series_count() == 3
    assert await store.series_count([eq("team", "a")]) == 1
    assert await store.series_count([eq("__name__", "up"), eq("job", "b")]) == 1
    assert await store.count_new_series([UP_A, team_a]) == 0
    assert await store.count_new_series([UP_A, G, Labels({"__name__": "m", "team": "z"})]) == 2


async def test_issue17_9_series_without_samples_are_collected(make_storage) -> None:  # type: ignore[no-untyped-def]
    """Finding 9: retention deleted samples but never series or their index entries."""
    store = await make_storage()
    await write(store, [(UP_A, [1000], [1.0]), (UP_B, [10_000_000], [2.0])])
    flush = getattr(store, "flush", None)
    if flush is not None:
        await flush(before=20_000_000)  # the head's samples into blocks, as the flush job does
    await store.delete_before(5_000_000)
    assert await store.gc_series() == 1
    assert await store.series_count() == 1 and await store.count_new_series([UP_A]) == 1
    assert await store.gc_series() == 0
    # The collected series comes back as a new one when written again.
    await write(store, [(UP_A, [11_000_000], [3.0])])
    got = await store.querier(0, 20_000_000).select([eq("__name__", "up")])
    assert [(s.labels, s.timestamps.tolist()) for s in got] == [(UP_A, [11_000_000]), (UP_B, [10_000_000])]
