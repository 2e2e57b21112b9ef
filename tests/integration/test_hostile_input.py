"""Issue 17 ("hostile input and tenants"): one regression test per finding on ``sotp serve``'s app.

Each test is named after its finding (``test_issue17_<n>_...``) and failed on the code before the fix.
The query-engine findings (1, 2, 4, query parameters of 12) are tested in tests/query/.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from sotp.auth import TokenStore
from sotp.cli.serve import build_app
from sotp.config import Config


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
