"""Stored state committed with samples (sotp.storage.state) on every backend: both or neither, a
compare-and-set on the namespace's generation, catch-up reads with tombstones, purge, reopen."""

from __future__ import annotations

import asyncio

import pytest

from sotp.errors import SampleRejected
from sotp.model import METRIC_NAME, Labels, Matcher, MatchOp
from sotp.storage import Storage
from sotp.storage.state import StateChange, StateConflict, attach_state, state_store_for
from tests.sotp.storage.conftest import StorageFactory

NS = "test"
UP = Labels({METRIC_NAME: "up", "job": "state"})


async def commit(
    store: Storage, change: StateChange, samples: list[tuple[int, float]], labels: Labels = UP
) -> int:
    app = store.appender()
    if samples:
        app.append_series(labels, [t for t, _ in samples], [v for _, v in samples])
    attach_state(app, change)
    try:
        return await app.commit()
    except BaseException:
        await app.rollback()
        raise


async def stored(store: Storage) -> list[tuple[int, float]]:
    q = store.querier(0, 10**9)
    try:
        got = await q.select([Matcher(METRIC_NAME, MatchOp.EQ, "up")])
    finally:
        await q.close()
    return list(zip(got[0].timestamps, got[0].values, strict=True)) if got else []


async def test_state_commits_with_its_samples_or_not_at_all(make_storage: StorageFactory) -> None:
    store = await make_storage()
    state = state_store_for(store)
    assert (await state.load(NS, -1)).rows == {}
    assert await commit(store, StateChange(NS, 0, {"a": "1"}), [(1000, 1.0)]) == 1
    snap = await state.load(NS, -1)
    assert (snap.generation, snap.full, snap.rows) == (1, True, {"a": "1"})

    # Planned against generation 0 again (a stale mirror): refused, and its sample is not written either.
    with pytest.raises(StateConflict, match="generation 0"):
        await commit(store, StateChange(NS, 0, {"a": "2"}), [(2000, 2.0)])
    assert await stored(store) == [(1000, 1.0)]
    assert (await state.load(NS, -1)).rows == {"a": "1"}

    # Samples refused (out of order): the state change is not written either.
    with pytest.raises(SampleRejected):
        await commit(store, StateChange(NS, 1, {"a": "3"}), [(500, 9.0)])
    assert (await state.load(NS, 0)).generation == 1

    # A delete is a tombstone for a catch-up read, absent from a full one; a change without samples commits.
    await commit(store, StateChange(NS, 1, {"b": "x"}, ["a"]), [(3000, 3.0)])
    await commit(store, StateChange(NS, 2, {"c": "y"}), [])
    snap = await state.load(NS, 1)
    assert (snap.generation, snap.full, snap.rows) == (3, False, {"a": None, "b": "x", "c": "y"})
    assert (await state.load(NS, 3)).rows == {}
    assert (await state.load(NS, -1)).rows == {"b": "x", "c": "y"}
    assert await stored(store) == [(1000, 1.0), (3000, 3.0)]

    # Tombstones purged: a mirror older than the purge reloads everything.
    await state.purge(NS, 2)
    snap = await state.load(NS, 1)
    assert (snap.full, snap.rows) == (True, {"b": "x", "c": "y"})
    assert (await state.load(NS, 2)).full is False

    # Reopened (a restart): everything is still there.
    again = await make_storage()
    snap = await state_store_for(again).load(NS, -1)
    assert (snap.generation, snap.rows) == (3, {"b": "x", "c": "y"})


async def test_concurrent_changes_from_one_generation_commit_once(make_storage: StorageFactory) -> None:
    store = await make_storage()
    # Each writer has a series of its own, so only the state's compare-and-set can refuse one (one shared
    # series would let the newest-sample check refuse a writer first, in whatever order they reach it).
    results = await asyncio.gather(
        *(
            commit(store, StateChange(NS, 0, {"k": str(i)}), [(1000, float(i))], UP.with_(instance=str(i)))
            for i in range(4)
        ),
        return_exceptions=True,
    )
    won = [i for i, r in enumerate(results) if r == 1]
    assert len(won) == 1 and all(isinstance(r, StateConflict) for r in results if r != 1), results
    assert (await state_store_for(store).load(NS, -1)).rows == {"k": str(won[0])}
    assert await stored(store) == [(1000, float(won[0]))]
