"""One target's scrapes against an in-process HTTP stub, written to the in-memory storage and read back."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from sotp.config import Config
from sotp.model import METRIC_NAME, Labels, Matcher, MatchOp, is_stale
from sotp.storage import Storage, open_storage
from tests.worker.conftest import Stub
from worker.scrape.config import worker_config
from worker.scrape.discovery import static_groups
from worker.scrape.loop import ScrapeLoop
from worker.scrape.metrics import WorkerMetrics
from worker.scrape.relabel import compile_steps
from worker.scrape.targets import build_targets

OM = "application/openmetrics-text; version=1.0.0; charset=utf-8"


@pytest.fixture
async def storage() -> AsyncIterator[Storage]:
    st = open_storage("memory://")
    await st.open()
    yield st
    await st.close()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def make_loop(stub: Stub, storage: Storage, session: aiohttp.ClientSession, **job: Any) -> ScrapeLoop:
    job.setdefault("job_name", "j")
    job.setdefault("static_configs", [{"targets": [stub.address]}])
    wc = worker_config(Config(global_={"scrape_interval": "15s"}, scrape_configs=[job]))
    js = wc.jobs[0]
    (target,) = build_targets(static_groups(js.cfg.job_name, js.cfg.static_configs), js,
                              compile_steps(js.cfg.relabel_configs))
    return ScrapeLoop(target, js, compile_steps(js.cfg.metric_relabel_configs), session, storage, WorkerMetrics())


async def dump(storage: Storage, name: str | None = None) -> dict[Labels, list[tuple[int, float]]]:
    q = storage.querier(0, 2**62)
    matchers = [Matcher(METRIC_NAME, MatchOp.RE, ".+" if name is None else name)]
    out = {s.labels: list(zip(s.timestamps.tolist(), s.values.tolist(), strict=True)) for s in await q.select(matchers)}
    await q.close()
    return out


def L(**kv: str) -> Labels:
    name = kv.pop("name")
    return Labels({METRIC_NAME: name, **kv})


async def test_scrape_writes_samples_and_report_series(stub: Stub, storage: Storage,
                                                       session: aiohttp.ClientSession) -> None:
    stub.set("/metrics", '# TYPE a gauge\na{x="1"} 5\na{x="2"} 6\nb 7\n')
    loop = make_loop(stub, storage, session)
    r = await loop.scrape_once()
    assert r.up and r.error is None and (r.scraped, r.post_relabel, r.series_added) == (3, 3, 3)
    data = await dump(storage)
    inst = stub.address
    assert {lbl: [v for _, v in pts] for lbl, pts in data.items()} == {
        L(name="a", x="1", job="j", instance=inst): [5.0],
        L(name="a", x="2", job="j", instance=inst): [6.0],
        L(name="b", job="j", instance=inst): [7.0],
        L(name="up", job="j", instance=inst): [1.0],
        L(name="scrape_duration_seconds", job="j", instance=inst): [pytest.approx(r.duration_s)],
        L(name="scrape_samples_scraped", job="j", instance=inst): [3.0],
        L(name="scrape_samples_post_metric_relabeling", job="j", instance=inst): [3.0],
        L(name="scrape_series_added", job="j", instance=inst): [3.0],
    }
    # All samples of one scrape share the scrape's timestamp.
    assert len({t for pts in data.values() for t, _ in pts}) == 1
    # A second scrape of the same series adds none.
    r2 = await loop.scrape_once()
    assert r2.series_added == 0


async def test_request_headers_and_auth(stub: Stub, storage: Storage, session: aiohttp.ClientSession,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    stub.set("/m", "x 1\n")
    monkeypatch.setenv("SCRAPE_PW", "s3cret")
    loop = make_loop(stub, storage, session, metrics_path="/m", scrape_timeout="2500ms",
                     params={"module": ["if_mib"]}, basic_auth={"username": "u", "password": "env:SCRAPE_PW"})
    await loop.scrape_once()
    req = stub.requests[-1]
    assert req["X-Prometheus-Scrape-Timeout-Seconds"] == "2.5"
    assert req["Accept"].startswith("application/openmetrics-text;version=1.0.0")
    assert req["Authorization"] == "Basic " + base64.b64encode(b"u:s3cret").decode()
    assert req["_query"] == "module=if_mib"
    loop = make_loop(stub, storage, session, job_name="k", metrics_path="/m",
                     authorization={"credentials": "tok"})
    await loop.scrape_once()
    assert stub.requests[-1]["Authorization"] == "Bearer tok"


@pytest.mark.parametrize(
    ("honor", "want"),
    [
        (False, {"job": "j", "exported_job": "x", "exported_instance": "me", "exported_exported_job": "app"}),
        (True, {"job": "app", "instance": "me", "exported_job": "x"}),
    ],
    ids=["honor_labels-false-renames", "honor_labels-true-keeps"],
)
async def test_honor_labels(stub: Stub, storage: Storage, session: aiohttp.ClientSession, honor: bool,
                            want: dict[str, str]) -> None:
    stub.set("/metrics", 'm{job="app",instance="me",exported_job="x"} 1\n')
    loop = make_loop(stub, storage, session, honor_labels=honor)
    await loop.scrape_once()
    (labels,) = (await dump(storage, "m")).keys()
    expected = {"__name__": "m", "instance": stub.address, **want}
    assert dict(labels.items_tuple()) == expected


async def test_metric_relabel_and_duplicates(stub: Stub, storage: Storage, session: aiohttp.ClientSession) -> None:
    stub.set("/metrics", 'keep{a="1"} 1\nkeep{a="1"} 2\ndrop_me 3\nkeep{a="2",tmp="z"} 4\n')
    loop = make_loop(stub, storage, session, metric_relabel_configs=[
        {"source_labels": ["__name__"], "regex": "drop_.*", "action": "drop"},
        {"regex": "tmp", "action": "labeldrop"},
    ])
    r = await loop.scrape_once()
    data = await dump(storage, "keep")
    assert {lbl["a"]: pts[0][1] for lbl, pts in data.items()} == {"1": 1.0, "2": 4.0}  # first duplicate kept
    assert (r.scraped, r.post_relabel) == (4, 3)  # the repeated series counts, as in Prometheus


async def test_staleness_when_series_disappears_and_when_scrape_fails(
    stub: Stub, storage: Storage, session: aiohttp.ClientSession
) -> None:
    stub.set("/metrics", "a 1\nb 2\n")
    loop = make_loop(stub, storage, session)
    await loop.scrape_once()
    stub.set("/metrics", "a 1\n")
    r = await loop.scrape_once()
    assert r.stale_markers == 1
    b = (await dump(storage, "b"))[L(name="b", job="j", instance=stub.address)]
    assert b[0][1] == 2.0 and is_stale(b[1][1])
    stub.status = 500
    r = await loop.scrape_once()
    assert not r.up and "500" in (r.error or "") and r.stale_markers == 1
    a = (await dump(storage, "a"))[L(name="a", job="j", instance=stub.address)]
    assert is_stale(a[-1][1])
    up = (await dump(storage, "up"))[L(name="up", job="j", instance=stub.address)]
    assert [v for _, v in up] == [1.0, 1.0, 0.0]
    # Recovery: the series comes back.
    stub.status = 200
    assert (await loop.scrape_once()).up


@pytest.mark.parametrize(
    ("job", "text", "error"),
    [
        ({"sample_limit": 2}, "a 1\nb 2\nc 3\n", "sample_limit exceeded"),
        ({"label_limit": 2}, 'a{x="1",y="2"} 1\n', "label_limit exceeded"),
        ({"label_value_length_limit": 3}, 'a{x="1234"} 1\n', "label_value_length_limit"),
        ({}, "a 1\nb{ 2\n", "unterminated"),
        ({"body_size_limit": "10B"}, "abcdefghijklmnop 1\n", "body size limit"),
        ({"metric_relabel_configs": [{"target_label": "__name__", "replacement": "bad-name"}]}, "a 1\n",
         "invalid metric name 'bad-name'"),
        ({"metric_relabel_configs": [{"regex": "__name__", "action": "labeldrop"}]}, "a 1\n", "no __name__"),
    ],
    ids=["sample_limit", "label_limit", "label_value_length_limit", "parse-error", "body_size_limit",
         "relabeled-bad-metric-name", "relabeled-no-name"],
)
async def test_failed_scrape_keeps_nothing(stub: Stub, storage: Storage, session: aiohttp.ClientSession,
                                           job: dict[str, Any], text: str, error: str) -> None:
    stub.set("/metrics", text)
    loop = make_loop(stub, storage, session, **job)
    r = await loop.scrape_once()
    assert not r.up and error in (r.error or "")
    names = {lbl.name for lbl in await dump(storage)}
    assert names == {"up", "scrape_duration_seconds", "scrape_samples_scraped",
                     "scrape_samples_post_metric_relabeling", "scrape_series_added"}


async def test_openmetrics_and_timestamps(stub: Stub, storage: Storage, session: aiohttp.ClientSession) -> None:
    stub.set("/metrics", "# TYPE c counter\nc_total 3 1000.5 # {id=\"x\"} 1\ng 1\n# EOF\n", OM)
    loop = make_loop(stub, storage, session)
    r = await loop.scrape_once()
    assert r.up, r.error
    c = (await dump(storage, "c_total"))[L(name="c_total", job="j", instance=stub.address)]
    assert c == [(1000500, 3.0)]
    # The same explicit timestamp again is not re-written, and explicit-timestamp series never go stale.
    stub.set("/metrics", "g 1\n# EOF\n", OM)
    r = await loop.scrape_once()
    assert r.stale_markers == 0
    # honor_timestamps: false stamps samples with the scrape time instead.
    stub.set("/metrics", "h 1 1000\n")
    loop2 = make_loop(stub, storage, session, job_name="k", honor_timestamps=False)
    await loop2.scrape_once()
    ((_, pts),) = (await dump(storage, "h")).items()
    assert pts[0][0] > 1_600_000_000_000


async def test_schedule_never_overlaps_and_spreads_offsets(stub: Stub, storage: Storage,
                                                           session: aiohttp.ClientSession) -> None:
    # Offsets: 1,000 targets spread over the interval (hash-based), each within [0, interval).
    loop = make_loop(stub, storage, session)
    offsets = []
    for i in range(1000):
        t = loop.target
        other = type(t)(t.job, t.labels.with_(instance=f"h{i}:9100"), t.url + str(i), t.address, 15.0, 10.0)
        offsets.append(ScrapeLoop(other, loop.job, (), session, storage, WorkerMetrics()).offset_s())
    assert all(0 <= o < 15 for o in offsets)
    buckets = [sum(1 for o in offsets if k <= o < k + 1.5) for k in (i * 1.5 for i in range(10))]
    assert min(buckets) > 60  # ~100 each when spread evenly
    # Next start lands on the offset and strictly in the future.
    now = 1_700_000_000.0
    nxt = loop.next_start(now)
    assert now < nxt <= now + 15 and abs((nxt % 15) - loop.offset_s()) < 1e-6


async def test_slow_target_scrapes_do_not_overlap(storage: Storage, session: aiohttp.ClientSession) -> None:
    from aiohttp import web

    from tests.conftest import free_port

    active = 0
    peak = 0
    calls = 0

    async def slow(request: web.Request) -> web.Response:
        nonlocal active, peak, calls
        active += 1
        calls += 1
        peak = max(peak, active)
        await asyncio.sleep(0.35)
        active -= 1
        return web.Response(text="m 1\n")

    app = web.Application()
    app.router.add_get("/metrics", slow)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        stub = Stub(port)
        loop = make_loop(stub, storage, session, scrape_interval="200ms", scrape_timeout="200ms")
        loop.start()
        await asyncio.sleep(1.5)
        await loop.stop(stale=False)
    finally:
        await runner.cleanup()
    assert calls >= 3 and peak == 1
    assert loop.last_result is not None and not loop.last_result.up  # each timed out at 200 ms


async def test_body_under_the_size_limit_is_read_whole(stub: Stub, storage: Storage,
                                                      session: aiohttp.ClientSession) -> None:
    text = "".join(f'm{{i="{i}"}} {i}\n' for i in range(20000))  # ~0.3 MB: several network chunks
    stub.set("/metrics", text)
    loop = make_loop(stub, storage, session, body_size_limit=f"{len(text) + 1}B")
    r = await loop.scrape_once()
    assert r.up and r.scraped == 20000, r.error


async def test_stop_lets_the_scrape_in_flight_finish(storage: Storage, session: aiohttp.ClientSession) -> None:
    from aiohttp import web

    from tests.conftest import free_port

    started = asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        started.set()
        await asyncio.sleep(0.3)
        return web.Response(text="m 1\n")

    app = web.Application()
    app.router.add_get("/metrics", slow)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        loop = make_loop(Stub(port), storage, session, scrape_interval="1s", scrape_timeout="1s")
        loop.start()
        await asyncio.wait_for(started.wait(), 3)
        await loop.stop(stale=False)  # while the response is still 0.3 s away
    finally:
        await runner.cleanup()
    assert loop.scrapes == 1 and loop.last_result is not None and loop.last_result.up
    assert [v for pts in (await dump(storage, "m")).values() for _, v in pts] == [1.0]


class _FlakyStorage:
    """The in-memory store whose first ``failures`` commits raise StorageError. A test double because a
    real store's transient failure (a dropped PostgreSQL connection) cannot be produced on cue here."""

    def __init__(self, inner: Storage, failures: int) -> None:
        self.inner = inner
        self.failures = failures

    def appender(self) -> Any:
        outer, app = self, self.inner.appender()

        class _App:
            def append(self, labels: Labels, t_ms: int, value: float) -> None:
                app.append(labels, t_ms, value)

            async def commit(self) -> int:
                if outer.failures > 0:
                    outer.failures -= 1
                    from sotp.errors import StorageError

                    raise StorageError("connection reset")
                return await app.commit()

            async def rollback(self) -> None:
                await app.rollback()

        return _App()


@pytest.mark.parametrize(("failures", "stored"), [(2, True), (3, False)], ids=["retried", "gave-up"])
async def test_transient_storage_errors_are_retried(stub: Stub, storage: Storage, session: aiohttp.ClientSession,
                                                    failures: int, stored: bool) -> None:
    stub.set("/metrics", "a 1\n")
    loop = make_loop(stub, storage, session)
    loop.storage = _FlakyStorage(storage, failures)  # type: ignore[assignment]
    await loop.scrape_once()
    assert bool(await dump(storage, "a")) is stored
