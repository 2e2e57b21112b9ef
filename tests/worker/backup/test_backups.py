"""Backups against simulated devices (netmiko drivers unchanged) and a real OpenSSH sshd."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import yaml
from aiohttp.test_utils import TestClient, TestServer

from sotp.cli.serve import build_app
from sotp.config import Config
from sotp.model import Matcher, MatchOp
from sotp.storage import Storage, open_storage
from sotp.storage.configs import config_store_for
from tests.conftest import (
    REPO,
    STORAGE_BACKENDS,
    free_port,
    sshd_server,
    storage_location,
)
from tests.worker.backup.devsim import DeviceSim
from worker.backup.config import BackupConfig, Device
from worker.backup.scheduler import BackupRunner

PASSWORD_ENV = "SOTP_TEST_BACKUP_PASSWORD"
SECRET_ENV = "SOTP_TEST_BACKUP_ENABLE"


@pytest.fixture(autouse=True)
def credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PASSWORD_ENV, "s3cret-pass")
    monkeypatch.setenv(SECRET_ENV, "en4ble")


def device(name: str, sim: DeviceSim, device_type: str, **kw: str) -> Device:
    d = Device(name=name, host="127.0.0.1", port=sim.port, device_type=device_type, username=sim.username,
               password=f"env:{PASSWORD_ENV}", secret=f"env:{SECRET_ENV}" if device_type == "cisco_ios" else "")
    for k, v in kw.items():
        setattr(d, k, v)
    return d


@pytest.fixture(params=STORAGE_BACKENDS)
async def storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    with storage_location(request.param, tmp_path) as url:
        store = open_storage(url)
        await store.open()
        try:
            yield store
        finally:
            await store.close()


async def latest_value(storage: Storage, name: str, dev: str) -> float:
    now = int(time.time() * 1000)
    got = await storage.querier(now - 600_000, now + 1000).select(
        [Matcher("__name__", MatchOp.EQ, name), Matcher("device", MatchOp.EQ, dev)]
    )
    assert got, f"no {name}{{device={dev!r}}}"
    return float(got[0].values[-1])


async def test_change_detection_versions_diffs_and_metrics(storage: Storage, sims: dict[str, DeviceSim],
                                                           known_hosts: Path) -> None:
    cfg = BackupConfig(timeout="5s", known_hosts=str(known_hosts), devices=[device("r1", sims["r1"], "cisco_ios"),
                                              device("mx1", sims["mx1"], "juniper_junos")])
    store = config_store_for(storage)
    await store.open()
    runner = BackupRunner(cfg, storage, store)

    first = await runner.run_once()
    assert [(r.device, r.ok, r.new_version is not None) for r in first] == [("r1", True, True), ("mx1", True, True)]
    stored = await store.get("r1", 1)
    assert stored is not None and "interface GigabitEthernet0/1" in stored[1]
    assert "enable" in sims["r1"].commands and "terminal length 0" in sims["r1"].commands

    # Same config again: the devices print new timestamps / clock-period, but no new version.
    second = await runner.run_once()
    assert all(r.ok and r.new_version is None for r in second)
    assert [v.version for v in await store.versions("r1")] == [1]

    # A real change (made through the device's config mode) is a new version with a diff.
    sims["r1"].config = sims["r1"].config.replace("description access", "description access-vlan20")
    third = await runner.run_once()
    assert [r.new_version.version if r.new_version else None for r in third] == [2, None]
    old, new = await store.get("r1", 1), await store.get("r1", 2)
    assert old and new
    from worker.backup.scheduler import unified_diff

    diff = unified_diff("r1", old, new)
    assert "- description access\r\n" in diff or "- description access\n" in diff
    assert "+ description access-vlan20" in diff

    assert await latest_value(storage, "sotp_config_changes_total", "r1") == 1.0
    assert await latest_value(storage, "sotp_config_changes_total", "mx1") == 0.0
    assert await latest_value(storage, "sotp_config_backup_success", "mx1") == 1.0
    assert await latest_value(storage, "sotp_config_backup_version", "r1") == 2.0
    assert await latest_value(storage, "sotp_config_backup_duration_seconds", "r1") > 0
    last_ok = await latest_value(storage, "sotp_config_backup_last_success_timestamp_seconds", "r1")
    assert abs(last_ok - time.time()) < 60
    await store.close()


async def test_failures_are_isolated_and_never_leak_secrets(
    storage: Storage, sims: dict[str, DeviceSim], caplog: pytest.LogCaptureFixture, known_hosts: Path
) -> None:
    closed_port = free_port()
    cfg = BackupConfig(
        timeout="3s",
        known_hosts=str(known_hosts),
        devices=[
            device("r1", sims["r1"], "cisco_ios"),
            device("badauth", sims["r1"], "cisco_ios", password="env:SOTP_TEST_WRONG"),
            device("hung", sims["hung"], "cisco_ios"),
            Device(name="gone", host="127.0.0.1", port=closed_port, device_type="cisco_ios", username="x",
                   password=f"env:{PASSWORD_ENV}"),
        ],
    )
    os.environ["SOTP_TEST_WRONG"] = "not-the-password"
    store = config_store_for(storage)
    await store.open()
    with caplog.at_level(logging.INFO):
        results = {r.device: r for r in await BackupRunner(cfg, storage, store).run_once()}
    assert results["r1"].ok
    assert not results["badauth"].ok and results["badauth"].reason == "auth"
    assert not results["hung"].ok and results["hung"].reason in ("timeout", "session")
    # A closed port is refused at once, not reported as a timeout (issue 23, point 6).
    assert not results["gone"].ok and results["gone"].reason == "refused", results["gone"].error
    assert "connection refused" in results["gone"].error and "timed out" not in results["gone"].error
    for name in ("badauth", "hung", "gone"):
        assert await latest_value(storage, "sotp_config_backup_success", name) == 0.0
        assert name in results[name].error
    assert await latest_value(storage, "sotp_config_backup_success", "r1") == 1.0
    everything = caplog.text + "".join(r.error for r in results.values())
    for secret in ("s3cret-pass", "not-the-password", "en4ble"):
        assert secret not in everything
    await store.close()


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """A real OpenSSH server on a loopback port that accepts root with a key made for the test."""
    with sshd_server(tmp_path) as server:
        yield server


async def test_linux_device_through_real_openssh(storage: Storage, sshd: tuple[int, Path]) -> None:
    port, key = sshd
    user = os.environ.get("USER") or "root"
    host_key = (key.parent / "host_key.pub").read_text().split()
    hosts = key.parent / "known_hosts"
    hosts.write_text(f"[127.0.0.1]:{port} {host_key[0]} {host_key[1]}\n")
    cfg = BackupConfig(timeout="10s", known_hosts=str(hosts), devices=[
        Device(name="linux1", host="127.0.0.1", port=port, device_type="linux", username=user, key_file=str(key)),
    ])
    store = config_store_for(storage)
    await store.open()
    runner = BackupRunner(cfg, storage, store)
    (result,) = await runner.run_once()
    assert result.ok, result.error
    stored = await store.get("linux1", 1)
    assert stored is not None and "127.0.0.1" in stored[1]  # `ip -o addr show` lists lo
    (again,) = await runner.run_once()
    assert again.ok and again.new_version is None
    await store.close()


async def test_configs_http_api(sims: dict[str, DeviceSim], tmp_path: Path, known_hosts: Path) -> None:
    config = Config()
    config.server.storage = f"sqlite:///{tmp_path}/sotp.db"
    app = build_app(config)
    async with TestClient(TestServer(app)) as client:
        from sotp.web import CTX

        storage = app[CTX].storage
        store = config_store_for(storage)
        await store.open()
        cfg = BackupConfig(timeout="5s", known_hosts=str(known_hosts), devices=[device("r1", sims["r1"], "cisco_ios")])
        runner = BackupRunner(cfg, storage, store)
        await runner.run_once()
        sims["r1"].config = sims["r1"].config.replace("hostname r1", "hostname r1-new")
        await runner.run_once()

        devices = await (await client.get("/api/v1/configs")).json()
        assert devices["status"] == "success"
        assert [(d["device"], d["version"], d["versions"]) for d in devices["data"]] == [("r1", 2, 2)]
        versions = (await (await client.get("/api/v1/configs/r1")).json())["data"]
        assert [v["version"] for v in versions] == [1, 2] and versions[0]["size"] > 100
        one = (await (await client.get("/api/v1/configs/r1/1")).json())["data"]
        assert "hostname r1\n" in one["content"].replace("\r\n", "\n")
        text = await (await client.get("/api/v1/configs/r1/2", params={"format": "text"})).text()
        assert "hostname r1-new" in text
        diff = (await (await client.get("/api/v1/configs/r1/diff", params={"from": "1", "to": "2"})).json())["data"]
        assert "-hostname r1" in diff["diff"] and "+hostname r1-new" in diff["diff"]
        assert (await client.get("/api/v1/configs/nope")).status == 404
        assert (await client.get("/api/v1/configs/r1/9")).status == 404
        assert (await client.get("/api/v1/configs/r1/x")).status == 400
        await store.close()


def test_cli_run_and_diff(sims: dict[str, DeviceSim], tmp_path: Path, known_hosts: Path) -> None:
    cfg = tmp_path / "sotp.yml"
    db = tmp_path / "sotp.db"
    cfg.write_text(yaml.safe_dump({
        "server": {"storage": f"sqlite:///{db}"},
        "backup": {"timeout": "5s", "known_hosts": str(known_hosts), "devices": [
            {"name": "r1", "host": "127.0.0.1", "port": sims["r1"].port, "device_type": "cisco_ios",
             "username": "netops", "password": f"env:{PASSWORD_ENV}", "secret": f"env:{SECRET_ENV}"},
            {"name": "mx1", "host": "127.0.0.1", "port": sims["mx1"].port, "device_type": "juniper_junos",
             "username": "netops", "password": f"env:{PASSWORD_ENV}"},
        ]},
    }))
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    def sotp(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "sotp", "backup", *args, "--config", str(cfg)],
                              capture_output=True, text=True, env=env, cwd=REPO, timeout=120)

    r = sotp("run")
    assert r.returncode == 0, r.stderr
    assert "r1: ok" in r.stdout and "new version 1" in r.stdout
    # paramiko's per-session INFO lines ("Connected (version 2.0, ...)") stay out of the CLI's output
    assert "paramiko" not in r.stderr and "Connected (version" not in r.stderr, r.stderr
    sims["mx1"].config += '\nset interfaces ge-0/0/1 description "new link"'
    r = sotp("run", "--device", "mx1")
    assert r.returncode == 0 and "mx1: ok" in r.stdout and "new version 2" in r.stdout and "r1" not in r.stdout
    r = sotp("diff", "mx1")
    assert r.returncode == 0
    assert '+set interfaces ge-0/0/1 description "new link"' in r.stdout
    assert "s3cret-pass" not in r.stdout + r.stderr


def test_inline_password_is_refused() -> None:
    from sotp.errors import ConfigError
    from worker.backup.config import backup_config

    config = Config(backup={"devices": [{"name": "r", "host": "h", "device_type": "cisco_ios",
                                         "username": "u", "password": "plain"}]})
    with pytest.raises(ConfigError, match="never inline"):
        backup_config(config)


def test_worker_runs_backups_on_schedule(sims: dict[str, DeviceSim], tmp_path: Path, known_hosts: Path) -> None:
    """``sotp worker`` with a backup: section runs rounds by itself (the worker's backup hook)."""
    if shutil.which("true") is None:  # pragma: no cover - keeps the linters honest about subprocess use
        pytest.fail("coreutils missing")
    db = tmp_path / "sotp.db"
    cfg = tmp_path / "sotp.yml"
    cfg.write_text(yaml.safe_dump({
        "backup": {"interval": "1s", "timeout": "5s", "known_hosts": str(known_hosts), "devices": [
            {"name": "r1", "host": "127.0.0.1", "port": sims["r1"].port, "device_type": "cisco_ios",
             "username": "netops", "password": f"env:{PASSWORD_ENV}", "secret": f"env:{SECRET_ENV}"}]},
    }))
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "sotp", "worker", "--config", str(cfg), "--storage",
                             f"sqlite:///{db}", "--listen", f"127.0.0.1:{port}"], env=env, cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        rounds = 0
        while time.monotonic() < deadline and rounds < 2:
            time.sleep(0.5)
            rounds = sims["r1"].commands.count("show running-config")
        assert rounds >= 2, "the worker did not run two backup rounds"
    finally:
        proc.terminate()
        out = proc.communicate(timeout=30)[0].decode()
    assert "s3cret-pass" not in out


async def test_issue17_host_keys_checked_strictly_by_default(
    storage: Storage, sims: dict[str, DeviceSim], tmp_path: Path
) -> None:
    """netmiko accepted any host key: a man in the middle could collect the backup password and enable
    secret. Now an unknown key refuses the device, before any password is sent."""
    store = config_store_for(storage)
    await store.open()
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    cfg = BackupConfig(timeout="5s", known_hosts=str(empty), devices=[device("r1", sims["r1"], "cisco_ios")])
    assert cfg.host_key_checking == "strict"  # the default
    (r,) = await BackupRunner(cfg, storage, store).run_once()
    assert not r.ok and r.reason == "hostkey", r
    assert "ssh-keyscan" in r.error and "accept-new" in r.error
    assert sims["r1"].commands == []  # no session was opened
    assert await store.versions("r1") == []
    await store.close()


async def test_issue17_accept_new_trusts_on_first_use_and_refuses_changed_keys(
    storage: Storage, sims: dict[str, DeviceSim], tmp_path: Path
) -> None:
    store = config_store_for(storage)
    await store.open()
    hosts = tmp_path / "ssh" / "known_hosts"
    cfg = BackupConfig(timeout="5s", known_hosts=str(hosts), host_key_checking="accept-new",
                       devices=[device("r1", sims["r1"], "cisco_ios")])
    (r,) = await BackupRunner(cfg, storage, store).run_once()
    assert r.ok, r.error
    assert hosts.read_text() == sims["r1"].known_hosts_line()  # learnt exactly the device's key
    assert oct(hosts.stat().st_mode & 0o777) == "0o600"
    (r,) = await BackupRunner(cfg, storage, store).run_once()
    assert r.ok and hosts.read_text() == sims["r1"].known_hosts_line()  # not appended twice
    # The device's key changes (replaced, or someone poses as it): refused even with accept-new.
    import asyncssh

    other = asyncssh.generate_private_key("ssh-ed25519").export_public_key("openssh").decode().split()
    hosts.write_text(f"[127.0.0.1]:{sims['r1'].port} {other[0]} {other[1]}\n")
    (r,) = await BackupRunner(cfg, storage, store).run_once()
    assert not r.ok and r.reason == "hostkey" and "does not match" in r.error, r
    await store.close()
