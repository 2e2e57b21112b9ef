"""Issue 17, finding 3: ``/api/v1/configs`` ignored tenants and served device secrets.

Real SSH device simulators (netmiko drivers unchanged) and a real ``sotp serve`` app with auth on.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from sotp.auth import TokenStore
from sotp.cli.serve import build_app
from sotp.config import Config
from sotp.storage.configs import ConfigStore, config_store_for
from sotp.web import CTX
from tests.worker.backup.devsim import DeviceSim
from tests.worker.backup.test_backups import PASSWORD_ENV, SECRET_ENV, device
from worker.backup.config import BackupConfig
from worker.backup.scheduler import BackupRunner

#: What the security review read through the API with a team=a read token.
SECRETS = ("$1$abcd$0123456789abcdefghij", "S3cr3tRW", "0822455D0A16", "$9$dVbYoJGDk.5z")


@pytest.fixture(autouse=True)
def credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PASSWORD_ENV, "s3cret-pass")
    monkeypatch.setenv(SECRET_ENV, "en4ble")


@dataclass
class Site:
    client: TestClient
    tokens: dict[str, str]
    store: ConfigStore
    runner: BackupRunner


@pytest.fixture
async def site(sims: dict[str, DeviceSim], tmp_path: Path, known_hosts: Path) -> AsyncIterator[Site]:
    sims["r1"].config = sims["r1"].config.replace(
        "!\ninterface GigabitEthernet0/1",
        "username admin password 7 0822455D0A16\nsnmp-server community S3cr3tRW RW\n!\ninterface GigabitEthernet0/1",
    )
    sims["mx1"].config += '\nset system radius-server 10.0.0.9 secret "$9$dVbYoJGDk.5z"'
    tokens_store = TokenStore(tmp_path / "tokens.json")
    tokens = {name: tokens_store.create(name, scopes, tenant)[0] for name, scopes, tenant in [
        ("read-a", ["read"], ("team", "a")), ("configs-a", ["configs"], ("team", "a")),
        ("configs-b", ["configs"], ("team", "b")), ("configs", ["configs"], None), ("admin", ["admin"], None),
        ("reader", ["read"], None),
    ]}
    config = Config()
    config.server.storage = f"sqlite:///{tmp_path}/sotp.db"
    config.auth = {"tokens_file": str(tokens_store.path)}
    app = build_app(config)
    async with TestClient(TestServer(app)) as client:
        store = config_store_for(app[CTX].storage)
        await store.open()
        cfg = BackupConfig(timeout="5s", known_hosts=str(known_hosts), devices=[
            device("r1", sims["r1"], "cisco_ios", labels={"team": "a"}),  # type: ignore[arg-type]
            device("mx1", sims["mx1"], "juniper_junos", labels={"team": "b"}),  # type: ignore[arg-type]
        ])
        runner = BackupRunner(cfg, app[CTX].storage, store)
        results = await runner.run_once()
        assert all(r.ok for r in results), [r.error for r in results]
        yield Site(client, tokens, store, runner)
        await store.close()


async def get(site: Site, path: str, token: str, **params: str) -> tuple[int, str]:
    r = await site.client.get(path, params=params, headers={"Authorization": f"Bearer {site.tokens[token]}"})
    return r.status, await r.text()


async def test_issue17_3_read_scope_does_not_grant_configs(site: Site) -> None:
    for token in ("read-a", "reader"):
        status, body = await get(site, "/api/v1/configs", token)
        assert status == 403, body
        assert "needs 'configs'" in body
    assert (await get(site, "/api/v1/configs", "admin"))[0] == 200
    assert (await get(site, "/api/v1/configs", "configs"))[0] == 200


async def test_issue17_3_tenant_tokens_see_only_their_devices(site: Site) -> None:
    import json

    def devices(body: str) -> list[str]:
        return [d["device"] for d in json.loads(body)["data"]]

    assert devices((await get(site, "/api/v1/configs", "configs-a"))[1]) == ["r1"]
    assert devices((await get(site, "/api/v1/configs", "configs-b"))[1]) == ["mx1"]
    assert sorted(devices((await get(site, "/api/v1/configs", "configs"))[1])) == ["mx1", "r1"]
    # Another tenant's device answers exactly like a missing one.
    for path in ("/api/v1/configs/mx1", "/api/v1/configs/mx1/1", "/api/v1/configs/mx1/diff"):
        status, body = await get(site, path, "configs-a")
        assert status == 404, (path, body)
        missing = await get(site, path.replace("mx1", "nosuch"), "configs-a")
        assert missing[0] == 404 and json.loads(body)["error"] == json.loads(missing[1])["error"].replace(
            "nosuch", "mx1")
    assert (await get(site, "/api/v1/configs/r1/1", "configs-a"))[0] == 200


async def test_issue17_3_secrets_masked_before_storing_and_in_diffs(site: Site, sims: dict[str, DeviceSim]) -> None:
    for dev in ("r1", "mx1"):
        stored = await site.store.get(dev, 1)
        assert stored is not None
        assert not [s for s in SECRETS if s in stored[1]], stored[1]  # not even in the database
        assert "<removed>" in stored[1]
    r1 = (await site.store.get("r1", 1))[1]  # type: ignore[index]
    assert "snmp-server community <removed> RW" in r1 and "username admin password 7 <removed>" in r1
    # A changed secret is a new version whose diff says which line changed, never the values.
    sims["r1"].config = sims["r1"].config.replace("S3cr3tRW", "N3wS3cr3t")
    (r, _) = await site.runner.run_once()
    assert r.new_version is None  # masked lines are equal: no version for a rotated community
    sims["r1"].config = sims["r1"].config.replace("hostname r1", "hostname r1b")
    (r, _) = await site.runner.run_once()
    assert r.new_version is not None
    status, text = await get(site, "/api/v1/configs/r1/diff", "admin", format="text")
    assert status == 200 and "+hostname r1b" in text
    for secret in (*SECRETS, "N3wS3cr3t"):
        assert secret not in text


async def test_issue17_3_versions_stored_before_masking_are_masked_when_read(site: Site) -> None:
    legacy = "hostname old\nenable secret 5 $1$abcd$0123456789abcdefghij\nsnmp-server community S3cr3tRW RW\n"
    await site.store.save("legacy", legacy, 1, "d1")  # no DeviceInfo: stored the way the old code stored it
    await site.store.save("legacy", legacy.replace("old", "new"), 2, "d2")
    for path in ("/api/v1/configs/legacy/1", "/api/v1/configs/legacy/diff"):
        status, body = await get(site, path, "admin", format="text")
        assert status == 200
        assert "S3cr3tRW" not in body and "$1$abcd" not in body
    # A tenant cannot see a device the store has no labels for.
    assert (await get(site, "/api/v1/configs/legacy", "configs-a"))[0] == 404


async def test_issue17_3_mask_secrets_false_is_an_explicit_opt_out(
    sims: dict[str, DeviceSim], tmp_path: Path, known_hosts: Path
) -> None:
    from sotp.storage import open_storage

    storage = open_storage(f"sqlite:///{tmp_path}/raw.db")
    await storage.open()
    store = config_store_for(storage)
    await store.open()
    cfg = BackupConfig(timeout="5s", mask_secrets=False, known_hosts=str(known_hosts),
                       devices=[device("r1", sims["r1"], "cisco_ios")])
    (r,) = await BackupRunner(cfg, storage, store).run_once()
    assert r.ok
    stored = await store.get("r1", 1)
    assert stored is not None and "$1$abcd$0123456789abcdefghij" in stored[1]
    await store.close()
    await storage.close()
