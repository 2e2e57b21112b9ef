"""Authentication across every endpoint of ``sotp serve`` (the app built by sotp.cli.serve.build_app).

The endpoint list is read from the app's router, so an endpoint added later is covered without editing
this file: no token → 401, revoked → 401, read-only and write-only tokens cannot both use it, tenants
cannot see or overwrite each other's data.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.exposition import basic_auth_handler, default_handler, push_to_gateway

from sotp.auth import TokenStore
from sotp.cli.serve import build_app
from sotp.codec.remote_write import encode_write_request
from sotp.config import Config
from sotp.model import Labels
from tests.conftest import REPO, free_port, sotp_cmd, wait_for_port

PUBLIC = {"/-/healthy", "/-/ready"}
#: Endpoints any valid token may use (self-metrics and the API's own description carry no tenant data).
ANY_SCOPE = {"/metrics", "/api/v1/openapi.json", "/api/v1/docs"}
WRITE_PATHS = {"/api/v1/write", "/api/v1/ingest", "/metrics/job/x"}
FILL = {"name": "job", "job_path": "job/x", "device": "r1", "version": "1"}


@dataclass
class Env:
    client: TestClient
    tokens: dict[str, str]
    store: TokenStore


def endpoints(app: web.Application) -> list[tuple[str, str]]:
    """Every (method, concrete path) the app serves, dynamic segments filled in; HEAD left out."""
    out = set()
    for route in app.router.routes():
        canonical = route.resource.canonical if route.resource is not None else ""
        if route.method in ("HEAD", "*") or not canonical:
            continue
        path = re.sub(r"\{([^}:]+)(:[^}]*)?\}", lambda m: FILL.get(m.group(1), "x"), canonical)
        out.add((route.method, path))
    return sorted(out)


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    store = TokenStore(tmp_path / "tokens.json")
    tokens = {}
    for name, scopes, tenant in [
        ("reader", ["read"], None), ("writer", ["write"], None), ("admin", ["admin"], None),
        ("revoked", ["read", "write"], None), ("a", ["read", "write"], ("team", "a")),
        ("b", ["read", "write"], ("team", "b")),
    ]:
        tokens[name], _ = store.create(name, scopes, tenant)
    store.revoke("revoked")
    config = Config()
    config.server.storage = "memory://"
    config.server.listen = "0.0.0.0:9201"  # not loopback: auth is on without saying so
    config.auth = {"tokens_file": str(store.path)}
    config.pushgateway = {"refresh_interval": "0"}
    async with TestClient(TestServer(build_app(config))) as client:
        yield Env(client, tokens, store)


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def call(env: Env, method: str, path: str, token: str | None) -> tuple[int, str, str | None]:
    headers = auth(token) if token else {}
    r = await env.client.request(method, path, headers=headers, data=b"" if method != "GET" else None)
    return r.status, await r.text(), r.headers.get("WWW-Authenticate")


async def test_router_lists_every_component(env: Env) -> None:
    paths = {p for _, p in endpoints(env.client.app)}
    assert {"/api/v1/write", "/api/v1/ingest", "/metrics/job/x", "/api/v1/query", "/api/v1/series",
            "/api/v1/labels", "/api/v1/label/job/values", "/metrics"} <= paths


async def test_no_token_garbage_or_revoked_is_401_everywhere(env: Env) -> None:
    for method, path in endpoints(env.client.app):
        for token in (None, "sotp_0123456789ab_" + "x" * 43, env.tokens["revoked"]):
            status, body, challenge = await call(env, method, path, token)
            if path in PUBLIC:
                assert status == 200, (method, path)
                continue
            assert status == 401, (method, path, token, body)
            assert challenge is not None and "Bearer" in challenge, (method, path)
            assert env.tokens["revoked"] not in body


async def test_scopes_are_enforced_everywhere(env: Env) -> None:
    for method, path in endpoints(env.client.app):
        if path in PUBLIC:
            continue
        read = (await call(env, method, path, env.tokens["reader"]))[0]
        write = (await call(env, method, path, env.tokens["writer"]))[0]
        admin = (await call(env, method, path, env.tokens["admin"]))[0]
        assert admin not in (401, 403), (method, path)
        if path in ANY_SCOPE:
            assert (read, write) != (403, 403), (method, path)
        elif path in WRITE_PATHS:
            assert read == 403 and write not in (401, 403), (method, path, read, write)
        elif path.startswith("/api/v1/configs"):  # device configurations: their own scope, not read's
            assert read == 403 and write == 403, (method, path, read, write)
        else:  # everything else reads: query API, discovery, metadata
            assert write == 403 and read not in (401, 403), (method, path, read, write)


async def test_403_names_the_scope_and_401_offers_basic(env: Env) -> None:
    r = await env.client.post("/api/v1/write", data=b"", headers=auth(env.tokens["reader"]))
    assert r.status == 403
    assert "needs 'write'" in await r.text()
    r = await env.client.get("/api/v1/query", params={"query": "1"})
    assert r.status == 401
    assert 'Basic realm="sotp"' in r.headers["WWW-Authenticate"]
    assert (await r.json())["errorType"] == "unauthorized"  # Grafana shows the envelope's error


async def test_grafana_basic_auth_and_prometheus_client_basic_auth(env: Env) -> None:
    cred = base64.b64encode(f"grafana:{env.tokens['reader']}".encode()).decode()
    r = await env.client.get("/api/v1/query", params={"query": "1+1", "time": "4"},
                             headers={"Authorization": f"Basic {cred}"})
    assert r.status == 200, await r.text()
    reg = CollectorRegistry()
    Gauge("pushed_with_basic", "x", registry=reg).set(1)
    handler = partial(basic_auth_handler, username="job", password=env.tokens["writer"])
    await asyncio.to_thread(
        partial(push_to_gateway, f"127.0.0.1:{env.client.server.port}", job="j", registry=reg, handler=handler)
    )
    r = await env.client.get("/api/v1/series", params={"match[]": "pushed_with_basic"},
                             headers=auth(env.tokens["reader"]))
    assert (await r.json())["data"] == [{"__name__": "pushed_with_basic", "job": "j"}]


async def write_as(env: Env, who: str, now_ms: int) -> None:
    """One series by each write path, each trying to claim team=b (a forged tenant label)."""
    h = auth(env.tokens[who])
    body = encode_write_request([(Labels({"__name__": f"rw_{who}", "team": "b"}), [(now_ms, 1.0)])])
    r = await env.client.post("/api/v1/write", data=body,
                              headers={**h, "Content-Type": "application/x-protobuf", "Content-Encoding": "snappy"})
    assert r.status == 204, await r.text()
    r = await env.client.put("/metrics/job/shared", data=f'push_{who}{{team="b"}} 1\n'.encode(), headers=h)
    assert r.status == 200, await r.text()
    doc = {"labels": {"team": "b"}, "timestamp": now_ms / 1000, "metrics": {f"json_{who}": 1}}
    r = await env.client.post("/api/v1/ingest", data=json.dumps(doc), headers=h)
    assert r.status == 200, await r.text()


async def read_as(env: Env, who: str, now_ms: int) -> dict[str, object]:
    h = auth(env.tokens[who])
    sel = {"match[]": '{__name__=~".+"}'}
    out: dict[str, object] = {}
    r = await env.client.get("/api/v1/series", params=sel, headers=h)
    out["series"] = sorted((s["__name__"], s.get("team")) for s in (await r.json())["data"])
    r = await env.client.get("/api/v1/label/team/values", headers=h)
    out["teams"] = (await r.json())["data"]
    r = await env.client.get("/api/v1/label/__name__/values", headers=h)
    out["names"] = (await r.json())["data"]
    r = await env.client.get("/api/v1/query", params={"query": 'count({__name__=~".+"})', "time": str(time.time())},
                             headers=h)
    out["count"] = [v["value"][1] for v in (await r.json())["data"]["result"]]
    r = await env.client.get("/api/v1/query_range", headers=h, params={
        "query": '{__name__=~"rw_.*|json_.*"}', "start": str(now_ms / 1000 - 60), "end": str(time.time()),
        "step": "15"})
    out["range"] = sorted(s["metric"]["__name__"] for s in (await r.json())["data"]["result"])
    return out


async def test_tenants_cannot_write_as_or_read_each_other(env: Env) -> None:
    # Sample times are taken when the test runs (not at collection): queries look back 5 minutes from now.
    now_ms = int(time.time() * 1000) - 10_000
    await write_as(env, "a", now_ms)
    await write_as(env, "b", now_ms)
    # Tenant b's push to the same job is a different group: it must not end tenant a's series.
    seen_a = await read_as(env, "a", now_ms)
    seen_b = await read_as(env, "b", now_ms)
    meta = [("push_failure_time_seconds", "{t}"), ("push_time_seconds", "{t}")]
    for who, seen in (("a", seen_a), ("b", seen_b)):
        want = sorted([(f"json_{who}", who), (f"push_{who}", who), (f"rw_{who}", who)]
                      + [(n, t.format(t=who)) for n, t in meta])
        assert seen["series"] == want, who
        assert seen["teams"] == [who]
        assert seen["count"] == ["5"]
        assert seen["range"] == sorted([f"json_{who}", f"rw_{who}"])
        assert all(who in n or n.startswith("push_") for n in seen["names"])  # type: ignore[attr-defined]
    # A tenant's DELETE of the shared job path only ends its own group.
    r = await env.client.delete("/metrics/job/shared", headers=auth(env.tokens["a"]))
    assert r.status == 202
    r = await env.client.get("/api/v1/query", params={"query": '{job="shared"}', "time": str(time.time())},
                             headers=auth(env.tokens["admin"]))
    left = sorted((s["metric"]["__name__"], s["metric"]["team"]) for s in (await r.json())["data"]["result"])
    assert left == [("push_b", "b"), ("push_failure_time_seconds", "b"), ("push_time_seconds", "b")]
    # An untenanted admin sees both tenants.
    r = await env.client.get("/api/v1/label/team/values", headers=auth(env.tokens["admin"]))
    assert (await r.json())["data"] == ["a", "b"]


async def test_tokens_never_logged(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    for token in env.tokens.values():
        await env.client.get("/api/v1/labels", headers=auth(token))
        await env.client.post("/api/v1/write", data=b"junk", headers=auth(token))
        await env.client.put("/metrics/job/log", data=b"bad{ 1\n", headers=auth(token))
    assert caplog.records  # the rejections were logged: the check below looks at real log text
    for token in env.tokens.values():
        # sotp_<id>_<secret>; the url-safe secret itself may hold "_", so splitting at the last "_" (as this
        # test did) sometimes left a fragment of one or two characters that any log line contains.
        secret = token.split("_", 2)[2]
        assert len(secret) == 43, token
        assert token not in caplog.text
        assert secret not in caplog.text


async def test_loopback_runs_open_and_says_so(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    config = Config()
    config.server.storage = "memory://"
    config.auth = {"tokens_file": str(tmp_path / "none.json")}
    with caplog.at_level(logging.WARNING, logger="sotp.auth"):
        app = build_app(config)
    assert "authentication is OFF (127.0.0.1:9201 is a loopback address" in caplog.text
    async with TestClient(TestServer(app)) as client:
        assert (await client.get("/api/v1/labels")).status == 200
    # Forcing it on with no tokens refuses everything and says how to create one.
    caplog.clear()
    config.auth = {"tokens_file": str(tmp_path / "none.json"), "enabled": True}
    with caplog.at_level(logging.WARNING, logger="sotp.auth"):
        app = build_app(config)
    assert "sotp token create" in caplog.text
    async with TestClient(TestServer(app)) as client:
        assert (await client.get("/api/v1/labels")).status == 401
        assert (await client.get("/-/healthy")).status == 200


def test_real_sotp_serve_process_with_cli_tokens(tmp_path: Path, spawn: Any) -> None:
    """The documented flow end to end: sotp token create, sotp serve, push_to_gateway, query, revoke."""
    tokens = tmp_path / "tokens.json"
    cfg = tmp_path / "sotp.yml"
    port = free_port()
    cfg.write_text(f"server:\n  listen: 127.0.0.1:{port}\n  storage: sqlite:///{tmp_path}/db.sqlite\n"
                   f"auth:\n  enabled: true\n  tokens_file: {tokens}\n")

    def token(*args: str) -> str:
        out = subprocess.run(sotp_cmd("token", "--config", str(cfg), *args), cwd=REPO, capture_output=True,
                             text=True, timeout=60, check=True)
        return out.stdout.strip()

    writer = token("create", "--name", "job", "--scope", "write")
    reader = token("create", "--name", "g", "--scope", "read")
    proc = spawn(sotp_cmd("serve", "--config", str(cfg)), name="serve")
    wait_for_port(port)
    base = f"http://127.0.0.1:{port}"
    reg = CollectorRegistry()
    Gauge("e2e_pushed", "x", registry=reg).set(3)

    def bearer_handler(url: str, method: str, timeout: float | None, headers: list[tuple[str, str]],
                       data: bytes) -> Callable[[], None]:
        return default_handler(url, method, timeout, [*headers, ("Authorization", f"Bearer {writer}")], data)

    push_to_gateway(f"127.0.0.1:{port}", job="e2e", registry=reg, handler=bearer_handler)

    def get(path: str, tok: str | None) -> int:
        req = urllib.request.Request(base + path, headers={"Authorization": f"Bearer {tok}"} if tok else {})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                body = json.loads(r.read())
                assert body["data"]["result"][0]["value"][1] == "3"
                return int(r.status)
        except urllib.error.HTTPError as err:
            err.close()
            return int(err.code)

    q = "/api/v1/query?query=e2e_pushed"
    assert (get(q, None), get(q, writer), get(q, reader)) == (401, 403, 200)
    token("revoke", "g")
    assert get(q, reader) == 401
    log = proc.output()
    assert "authentication is on (auth.enabled is true): 2 active token(s)" in log
    assert writer not in log and reader not in log
