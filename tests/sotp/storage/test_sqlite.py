"""SQLite-only behaviour: several processes sharing one file."""

from __future__ import annotations

from pathlib import Path

from sotp.model import Labels, Matcher, MatchOp
from sotp.storage.sqlite import SQLiteStorage


async def test_issue17_9_a_process_writing_a_collected_series_follows_the_collection(tmp_path: Path) -> None:
    """``sotp up`` runs the worker and ``sotp serve`` on one file: when one process collects a series the
    other still has in its index, the other's next write must create the series again, not write samples
    under the deleted id (they would be invisible forever)."""
    lb = Labels({"__name__": "dev_up", "device": "r1"})
    serve, worker = SQLiteStorage(str(tmp_path / "db")), SQLiteStorage(str(tmp_path / "db"))
    await serve.open()
    await worker.open()
    try:
        app = worker.appender()
        app.append(lb, 1000, 1.0)
        await app.commit()
        await worker.flush(before=10_000)
        await serve.delete_before(5000)
        assert await serve.gc_series() == 1
        app = worker.appender()  # the worker's index still names the deleted series id
        app.append(lb, 6000, 2.0)
        await app.commit()
        got = await serve.querier(0, 10_000).select([Matcher("__name__", MatchOp.EQ, "dev_up")])
        assert [(s.labels, s.timestamps.tolist()) for s in got] == [(lb, [6000])]
        assert await serve.series_count() == 1
    finally:
        await serve.close()
        await worker.close()
