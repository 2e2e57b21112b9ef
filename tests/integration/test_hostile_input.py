"""Issue 17 ("hostile input and tenants"): one regression test per finding on ``sotp serve``'s app.

Each test is named after its finding (``test_issue17_<n>_...``) and failed on the code before the fix.
The query-engine findings (1, 2, 4, query parameters of 12) are tested in tests/query/.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from sotp.auth import TokenStore
from sotp.cli.serve import build_app
from sotp.config import Config
from sotp.web import CTX


def _config(tmp_path: Path, **auth: object) -> Config:
    config = Config()
    config.server.storage = "memory://"
    config.auth = {"tokens_file": str(tmp_path / "tokens.json"), **auth}
    config.pushgateway = {"refresh_interval": "0"}
    return config


@pytest.fixture
async def loopback(tmp_path: Path) -> AsyncIterator[TestClient]:
    """``sotp serve`` on its default loopback address with no token: authentication is off."""
    async with TestClient(TestServer(build_app(_config(tmp_path)))) as client:
        yield client


INGEST = json.dumps({"metrics": {"csrf_probe": 1}})


# -- finding 7: auth off on loopback is a trap ---------------------------------------------------------


async def test_issue17_7_token_created_on_a_running_loopback_server_turns_auth_on(
    loopback: TestClient, tmp_path: Path
) -> None:
    assert (await loopback.get("/api/v1/labels")).status == 200
    token, _ = TokenStore(tmp_path / "tokens.json").create("grafana", ["read"])
    r = await loopback.get("/api/v1/labels")
    assert r.status == 401, await r.text()
    r = await loopback.get("/api/v1/labels", headers={"Authorization": f"Bearer {token}"})
    assert r.status == 200
    assert (await loopback.get("/-/healthy")).status == 200  # public paths stay public


@pytest.mark.parametrize("host", ["evil.example", "evil.example:9201", "rebind.attacker.net."])
async def test_issue17_7_foreign_host_header_refused_while_auth_is_off(loopback: TestClient, host: str) -> None:
    r = await loopback.get("/api/v1/configs", headers={"Host": host})
    assert r.status == 403
    assert "auth.allowed_hosts" in (await r.json())["error"]


@pytest.mark.parametrize("host", ["127.0.0.1:9201", "localhost:9201", "[::1]:9201", "10.1.2.3", "grafana.localhost"])
async def test_issue17_7_ip_literal_and_localhost_hosts_pass(loopback: TestClient, host: str) -> None:
    assert (await loopback.get("/api/v1/labels", headers={"Host": host})).status == 200


async def test_issue17_7_allowed_hosts_extends_the_host_check(tmp_path: Path) -> None:
    config = _config(tmp_path, allowed_hosts=["sotp.lan"])
    async with TestClient(TestServer(build_app(config))) as client:
        assert (await client.get("/api/v1/labels", headers={"Host": "sotp.lan:9201"})).status == 200
        assert (await client.get("/api/v1/labels", headers={"Host": "other.lan"})).status == 403


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/api/v1/ingest", {"Content-Type": "text/plain", "Origin": "http://evil.example"}),
        ("/api/v1/ingest", {"Content-Type": "text/plain", "Sec-Fetch-Site": "cross-site"}),
        ("/api/v1/ingest", {"Content-Type": "application/x-www-form-urlencoded", "Origin": "null"}),
        ("/metrics/job/x", {"Content-Type": "text/plain", "Origin": "http://evil.example"}),
        # Same-origin but a simple type from a page: SOTP serves no page that could send it.
        ("/metrics/job/x", {"Content-Type": "text/plain", "Sec-Fetch-Site": "same-origin"}),
    ],
)
async def test_issue17_7_browser_writes_refused_while_auth_is_off(
    loopback: TestClient, path: str, headers: dict[str, str]
) -> None:
    body = INGEST if path == "/api/v1/ingest" else "csrf_probe 1\n"
    r = await loopback.post(path, data=body, headers=headers)
    assert r.status == 403, await r.text()
    assert "refused" in await r.text()
    r = await loopback.get("/api/v1/query", params={"query": "csrf_probe"})
    assert (await r.json())["data"]["result"] == []  # nothing was written


async def test_issue17_7_clients_without_browser_headers_still_write(loopback: TestClient) -> None:
    # curl --data sends a form content type; prometheus_client sends text/plain: neither has Origin.
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    r = await loopback.post("/api/v1/ingest", data=INGEST, headers=form)
    assert r.status == 200, await r.text()
    r = await loopback.post("/metrics/job/x", data="pushed 1\n", headers={"Content-Type": "text/plain"})
    assert r.status == 200, await r.text()


async def test_issue17_7_basic_auth_writes_from_another_site_refused(tmp_path: Path) -> None:
    """With auth on, a browser may replay cached basic credentials: cross-site writes are refused too."""
    import base64

    token, _ = TokenStore(tmp_path / "tokens.json").create("w", ["write"])
    basic = "Basic " + base64.b64encode(f"u:{token}".encode()).decode()
    async with TestClient(TestServer(build_app(_config(tmp_path)))) as client:
        r = await client.post("/api/v1/ingest", data=INGEST,
                              headers={"Authorization": basic, "Sec-Fetch-Site": "cross-site"})
        assert r.status == 403
        r = await client.post("/api/v1/ingest", data=INGEST, headers={"Authorization": basic})
        assert r.status == 200


# -- finding 12 (non-query part): internals in errors --------------------------------------------------


async def test_issue17_12_ready_and_5xx_never_echo_store_internals(tmp_path: Path) -> None:
    secret_dir = tmp_path / "private-path-xyz"
    config = _config(tmp_path)
    config.server.storage = f"sqlite:///{secret_dir}/sotp.db"
    app = build_app(config)
    async with TestClient(TestServer(app)) as client:
        assert (await client.get("/-/ready")).status == 200
        await app[CTX].storage.close()  # the store goes away under the running server
        answers = [
            await client.get("/-/ready"),
            await client.post("/api/v1/ingest", data=INGEST),
            await client.put("/metrics/job/x", data="m 1\n"),
            await client.get("/api/v1/query", params={"query": "up", "time": "100"}),
            await client.get("/api/v1/series", params={"match[]": "up"}),
        ]
        for r in answers:
            body = await r.text()
            assert r.status >= 500, (r.url, r.status, body)
            assert "private-path-xyz" not in body and "sotp.db" not in body, (r.url, body)
            assert "Traceback" not in body
        assert "not ready" in await answers[0].text()


# -- finding 5: metadata is global and unbounded -------------------------------------------------------


def _metadata_body(entries: list[tuple[str, str]]) -> bytes:
    from sotp.codec.remote_write import WriteRequest, snappy_compress

    req = WriteRequest()
    for name, help_ in entries:
        m = req.metadata.add()
        m.type, m.metric_family_name, m.help = 1, name, help_
    return snappy_compress(req.SerializeToString())


RW = {"Content-Type": "application/x-protobuf", "Content-Encoding": "snappy"}


async def test_issue17_5_metadata_is_kept_per_tenant(tmp_path: Path) -> None:
    store = TokenStore(tmp_path / "tokens.json")
    a, _ = store.create("a", ["read", "write"], ("team", "a"))
    b, _ = store.create("b", ["read", "write"], ("team", "b"))
    admin, _ = store.create("admin", ["admin"])
    async with TestClient(TestServer(build_app(_config(tmp_path)))) as client:
        for token, text in ((a, "what team a says"), (b, "what team b says")):
            r = await client.post("/api/v1/write", data=_metadata_body([("shared_metric", text)]),
                                  headers={**RW, "Authorization": f"Bearer {token}"})
            assert r.status == 204, await r.text()

        async def seen(token: str) -> list[str]:
            r = await client.get("/api/v1/metadata", headers={"Authorization": f"Bearer {token}"})
            return [m["help"] for m in (await r.json())["data"].get("shared_metric", [])]

        assert await seen(a) == ["what team a says"]
        assert await seen(b) == ["what team b says"]
        assert sorted(await seen(admin)) == ["what team a says", "what team b says"]


async def test_issue17_5_metadata_names_validated_count_and_length_capped(tmp_path: Path) -> None:
    from sotp.metadata import metadata_store

    config = _config(tmp_path)
    config.limits.max_metadata_per_tenant = 50
    config.limits.max_metadata_length = 100
    app = build_app(config)
    async with TestClient(TestServer(app)) as client:
        invalid = [(f"bad name {i} " + "x" * 40, "h") for i in range(20_000)]  # the review's 1.25 MB request
        assert (await client.post("/api/v1/write", data=_metadata_body(invalid), headers=RW)).status == 204
        store = metadata_store(app[CTX].extras, config.limits)
        assert store.size() == 0 and store.dropped == 20_000
        valid = [(f"m_{i}", "h" * 10_000) for i in range(200)]
        assert (await client.post("/api/v1/write", data=_metadata_body(valid), headers=RW)).status == 204
        data = (await (await client.get("/api/v1/metadata")).json())["data"]
        assert len(data) == 50
        assert {len(e["help"]) for entries in data.values() for e in entries} == {100}


# -- finding 8: slow bodies and unbounded concurrent reads ---------------------------------------------


async def _slow_sender(client: TestClient, path: str, announced: int, sent: bytes) -> tuple[Any, Any]:
    """A raw connection that announces ``announced`` body bytes and sends only ``sent``."""
    reader, writer = await asyncio.open_connection(str(client.host), int(client.port))  # type: ignore[arg-type]
    ctype = "application/x-protobuf\r\nContent-Encoding: snappy" if path == "/api/v1/write" else "text/plain"
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {ctype}\r\n"
            f"Content-Length: {announced}\r\n\r\n").encode()
    writer.write(head + sent)
    await writer.drain()
    return reader, writer


async def _gauge(client: TestClient, name: str) -> float:
    text = await (await client.get("/metrics")).text()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


async def _wait_gauge(client: TestClient, name: str, at_least: float) -> None:
    deadline = asyncio.get_running_loop().time() + 30
    while await _gauge(client, name) < at_least:
        assert asyncio.get_running_loop().time() < deadline, f"{name} never reached {at_least}"
        await asyncio.sleep(0.05)


async def test_issue17_8_write_slot_taken_before_the_body_is_read(tmp_path: Path) -> None:
    config = _config(tmp_path)
    config.server.write_queue_depth = 1
    async with TestClient(TestServer(build_app(config))) as client:
        _, writer = await _slow_sender(client, "/api/v1/ingest", 1000, b'{"metrics": ')
        try:
            await _wait_gauge(client, "sotp_write_queue_depth", 1)  # the slow body holds the only slot
            r = await client.post("/api/v1/ingest", data=INGEST)
            assert r.status == 503, await r.text()
            assert "server.write_queue_depth" in await r.text() and r.headers["Retry-After"]
        finally:
            writer.close()
        await _wait_gauge_below(client, "sotp_write_queue_depth", 1)
        assert (await client.post("/api/v1/ingest", data=INGEST)).status == 200


async def _wait_gauge_below(client: TestClient, name: str, below: float) -> None:
    deadline = asyncio.get_running_loop().time() + 30
    while await _gauge(client, name) >= below:
        assert asyncio.get_running_loop().time() < deadline, f"{name} stayed at or above {below}"
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("path", ["/api/v1/ingest", "/api/v1/write", "/metrics/job/slow"])
async def test_issue17_8_body_read_timeout_answers_408_and_closes(tmp_path: Path, path: str) -> None:
    config = _config(tmp_path)
    config.limits.body_timeout_seconds = 0.5
    async with TestClient(TestServer(build_app(config))) as client:
        reader, writer = await _slow_sender(client, path, 30_000, b"x")
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 60)
            length_line = next(h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length:"))
            length = int(length_line.split(b":")[1])
            body = await asyncio.wait_for(reader.readexactly(length), 60)
        finally:
            writer.close()
        assert head.startswith(b"HTTP/1.1 408"), head
        assert b"connection: close" in head.lower()  # the rest of the body will not be read
        assert b"limits.body_timeout_seconds" in body
        assert await _gauge(client, "sotp_write_inflight_body_bytes") == 0


async def test_issue17_8_inflight_body_bytes_are_bounded(tmp_path: Path) -> None:
    config = _config(tmp_path)
    config.limits.max_inflight_body_bytes = 5000
    async with TestClient(TestServer(build_app(config))) as client:
        _, writer = await _slow_sender(client, "/api/v1/ingest", 4000, b'{"metrics": ')
        try:
            await _wait_gauge(client, "sotp_write_inflight_body_bytes", 4000)
            big = json.dumps({"metrics": {"m": 1}, "labels": {"pad": "x" * 2000}})
            r = await client.post("/api/v1/ingest", data=big)
            assert r.status == 503, await r.text()
            assert "limits.max_inflight_body_bytes" in await r.text() and r.headers["Retry-After"]
            assert (await client.post("/api/v1/ingest", data=INGEST)).status == 200  # small ones still fit
        finally:
            writer.close()
        await _wait_gauge_below(client, "sotp_write_inflight_body_bytes", 1)


# -- finding 11: decoding on the event loop ------------------------------------------------------------


@pytest.mark.parametrize(("module", "decoder"), [("remote_write.receiver", "decode_write_request"),
                                                 ("remote_write.ingest", "decode_ingest"),
                                                 ("remote_write.pushgateway", "prepare")])
async def test_issue17_11_large_bodies_decode_off_the_event_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, module: str, decoder: str
) -> None:
    """A spy around the decoder records the thread it runs in: the loop's thread must stay free to answer
    /-/healthy while a 100k-series body decodes (bench/hostile.py measures the latency)."""
    import importlib
    import threading
    import time

    from sotp.codec.remote_write import encode_write_request
    from sotp.model import Labels

    mod = importlib.import_module(module)
    real = getattr(mod, decoder)
    threads: list[threading.Thread] = []

    def spy(*args: Any, **kwargs: Any) -> Any:
        threads.append(threading.current_thread())
        return real(*args, **kwargs)

    monkeypatch.setattr(mod, decoder, spy)
    now = int(time.time() * 1000)
    n = 5000
    if decoder == "decode_write_request":
        path, headers = "/api/v1/write", RW
        body = encode_write_request([(Labels({"__name__": "big", "i": str(i)}), [(now, 1.0)]) for i in range(n)])
    elif decoder == "decode_ingest":
        path, headers = "/api/v1/ingest", {}
        body = json.dumps({"metrics": {"big": [{"labels": {"i": str(i)}, "value": 1} for i in range(n)]}}).encode()
    else:
        path, headers = "/metrics/job/big", {}
        body = "".join(f'big{{i="{i}"}} 1\n' for i in range(n)).encode()
    from sotp.codec.remote_write import announced_length

    assert (announced_length(body) if decoder == "decode_write_request" else len(body)) >= 64 << 10
    async with TestClient(TestServer(build_app(_config(tmp_path)))) as client:
        r = await client.post(path, data=body, headers=headers)
        assert r.status in (200, 204), await r.text()
    assert threads and all(t is not threading.main_thread() for t in threads), threads


# -- finding 6 and "from reading": the push gateway's tenants, group count and lock ---------------------


async def test_issue17_6_push_types_do_not_cross_tenants(tmp_path: Path) -> None:
    store = TokenStore(tmp_path / "tokens.json")
    a, _ = store.create("a", ["write"], ("team", "a"))
    b, _ = store.create("b", ["write"], ("team", "b"))
    async with TestClient(TestServer(build_app(_config(tmp_path)))) as client:
        def push(token: str, job: str, typ: str) -> Any:
            body = f"# TYPE billing_events {typ}\nbilling_events 1\n"
            return client.put(f"/metrics/job/{job}", data=body, headers={"Authorization": f"Bearer {token}"})

        assert (await push(a, "billing", "counter")).status == 200
        r = await push(b, "billing", "gauge")
        assert r.status == 200, await r.text()
        # Within one tenant the types must still agree (Pushgateway's rule).
        r = await push(a, "other", "gauge")
        assert r.status == 400 and "types must agree" in await r.text()


async def test_issue17_push_group_count_is_bounded_per_tenant(tmp_path: Path) -> None:
    store = TokenStore(tmp_path / "tokens.json")
    a, _ = store.create("a", ["write"], ("team", "a"))
    b, _ = store.create("b", ["write"], ("team", "b"))
    config = _config(tmp_path)
    config.pushgateway["max_groups"] = 3
    async with TestClient(TestServer(build_app(config))) as client:
        def push(token: str, job: str) -> Any:
            return client.put(f"/metrics/job/{job}", data="m 1\n", headers={"Authorization": f"Bearer {token}"})

        for i in range(3):
            assert (await push(a, f"j{i}")).status == 200
        r = await push(a, "j3")
        assert r.status == 400 and "pushgateway.max_groups" in await r.text()
        assert (await push(a, "j0")).status == 200  # an existing group still takes pushes
        assert (await push(b, "j3")).status == 200  # another tenant has its own allowance
        assert (await client.delete("/metrics/job/j0", headers={"Authorization": f"Bearer {a}"})).status == 202
        assert (await push(a, "j3")).status == 200


async def test_issue17_push_maintenance_releases_the_lock_between_chunks(tmp_path: Path) -> None:
    """Refreshing thousands of groups used to hold the gateway's one lock for the whole sweep: a push
    waited for every group's rewrite. Now a push waiting for the lock gets it after the first chunk."""
    from remote_write.pushgateway import GATEWAY, SWEEP_CHUNK

    config = _config(tmp_path)
    config.pushgateway = {"refresh_interval": "1s", "ttl": "1h"}
    app = build_app(config)
    async with TestClient(TestServer(app)) as client:
        gw = app[GATEWAY]
        gw.task.cancel()  # type: ignore[union-attr]  # the test drives the sweep itself

        class SpyLock(asyncio.Lock):
            """Notes when someone waits for the lock while it is held."""

            def __init__(self) -> None:
                super().__init__()
                self.contended = asyncio.Event()

            async def acquire(self) -> bool:
                if self.locked():
                    self.contended.set()
                return await super().acquire()

        lock = gw.lock = SpyLock()
        groups = SWEEP_CHUNK * 2 + 10
        for i in range(groups):
            assert (await client.put(f"/metrics/job/g{i}", data=f"m{i} 1\n")).status == 200
        for g in gw.groups.groups.values():
            g.last_write -= 10  # every group is due for a refresh
        events: list[str] = []
        real_commit = gw.commit

        async def commit(plans: Any) -> None:
            events.append(f"chunk of {len(plans)}")
            if len(events) == 1:  # a push arrives while the first chunk is being written
                push_task.append(asyncio.create_task(client.put("/metrics/job/late", data="late 1\n")))
                await asyncio.wait_for(lock.contended.wait(), 30)  # the push now waits for the lock
            await real_commit(plans)

        push_task: list[asyncio.Task[Any]] = []
        gw.commit = commit  # type: ignore[method-assign]
        real_plan_push = gw.groups.plan_push

        def plan_push(*args: Any, **kwargs: Any) -> Any:
            events.append("push")
            return real_plan_push(*args, **kwargs)

        gw.groups.plan_push = plan_push  # type: ignore[method-assign]
        await gw.sweep()
        assert (await push_task[0]).status == 200
        assert events.count("push") == 1 and events.index("push") < len(events) - 1, events
        assert [e for e in events if e != "push"] == [f"chunk of {SWEEP_CHUNK}", f"chunk of {SWEEP_CHUNK}",
                                                      "chunk of 10"]


# -- finding 9: cardinality is unbounded and never freed ------------------------------------------------


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
async def test_issue17_9_series_limits_per_tenant_and_total(tmp_path: Path, backend: str) -> None:
    import time

    from sotp.cli.serve import maintain_once
    from sotp.codec.remote_write import encode_write_request
    from sotp.model import Labels

    store = TokenStore(tmp_path / "tokens.json")
    a, _ = store.create("a", ["read", "write"], ("team", "a"))
    b, _ = store.create("b", ["read", "write"], ("team", "b"))
    admin, _ = store.create("admin", ["admin"])
    config = _config(tmp_path)
    config.server.storage = "memory://" if backend == "memory" else f"sqlite:///{tmp_path}/db.sqlite"
    config.limits.max_series_per_tenant = 10
    config.limits.max_series = 25
    app = build_app(config)
    now = int(time.time() * 1000)
    old = now - 3 * 3600_000  # written three hours ago: expired once retention is 1h

    def body(prefix: str, n: int, t: int = old) -> bytes:
        return encode_write_request([(Labels({"__name__": f"{prefix}_{i}"}), [(t, 1.0)]) for i in range(n)])

    async with TestClient(TestServer(app)) as client:
        async def write(token: str, data: bytes) -> tuple[int, str]:
            r = await client.post("/api/v1/write", data=data, headers={**RW, "Authorization": f"Bearer {token}"})
            return r.status, await r.text()

        async def count(token: str) -> int:
            params = {"query": 'count({__name__=~".+"})', "time": str(old / 1000)}
            r = await client.get("/api/v1/query", params=params, headers={"Authorization": f"Bearer {token}"})
            result = (await r.json())["data"]["result"]
            return int(result[0]["value"][1]) if result else 0

        assert (await write(a, body("m", 8)))[0] == 204
        status, text = await write(a, body("n", 3))  # 8 + 3 > 10
        assert status == 400 and "limits.max_series_per_tenant" in text and "team=a" in text, text
        assert await count(a) == 8  # nothing of the refused request was written
        assert (await write(a, body("m", 8)))[0] == 204  # existing series still take samples
        assert (await write(b, body("m", 10)))[0] == 204  # the other tenant has its own allowance
        status, text = await write(admin, body("x", 8))  # 18 + 8 > 25 in total
        assert status == 400 and "limits.max_series" in text, text
        # Retention: once team a's samples expire, its series are collected and its allowance is back.
        config.server.retention = "1h"
        await maintain_once(app[CTX], now_ms=now)
        assert (await write(a, body("n", 10, now)))[0] == 204


# -- from reading: SO_REUSEPORT -----------------------------------------------------------------------------


def test_issue17_no_other_process_can_share_the_serve_port(tmp_path: Path, spawn: Any) -> None:
    """``sotp serve`` bound with SO_REUSEPORT: any process of the same user could bind the port too and
    receive a share of the connections (with their tokens)."""
    import socket

    from tests.conftest import free_port, sotp_cmd, wait_for_port

    port = free_port()
    spawn(sotp_cmd("serve", "--listen", f"127.0.0.1:{port}", "--storage", f"sqlite:///{tmp_path}/db.sqlite"))
    wait_for_port(port)
    with socket.socket() as thief:
        thief.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        with pytest.raises(OSError):
            thief.bind(("127.0.0.1", port))
