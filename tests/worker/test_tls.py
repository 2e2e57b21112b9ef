"""``scheme: https`` with ``tls_config``: a self-signed exporter (openssl makes the certificate)."""

from __future__ import annotations

import ssl
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from sotp.config import Config
from sotp.storage import Storage, open_storage
from tests.conftest import free_port, require_binary
from worker.scrape.config import worker_config
from worker.scrape.discovery import static_groups
from worker.scrape.loop import ScrapeLoop
from worker.scrape.metrics import WorkerMetrics
from worker.scrape.targets import build_targets


@pytest.fixture
async def https_stub(tmp_path: Path) -> AsyncIterator[tuple[int, Path]]:
    openssl = require_binary("openssl")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=sotp-test.local",
         "-addext", "subjectAltName=DNS:sotp-test.local", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(text="secure 1\n")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=ctx).start()
    yield port, cert
    await runner.cleanup()


@pytest.mark.parametrize(
    ("tls", "up", "error"),
    [
        ({}, False, "certificate verify failed"),
        ({"insecure_skip_verify": True}, True, None),
        ({"ca_file": "{cert}", "server_name": "sotp-test.local"}, True, None),
        ({"ca_file": "{cert}"}, False, "127.0.0.1"),  # the certificate names sotp-test.local only
    ],
    ids=["untrusted", "insecure_skip_verify", "ca_file+server_name", "ca_file-wrong-name"],
)
async def test_https_targets(https_stub: tuple[int, Path], tls: dict[str, Any], up: bool, error: str | None) -> None:
    port, cert = https_stub
    tls = {k: (v.format(cert=cert) if isinstance(v, str) else v) for k, v in tls.items()}
    job = {"job_name": "tls", "scheme": "https", "tls_config": tls,
           "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}
    js = worker_config(Config(global_={"scrape_interval": "15s"}, scrape_configs=[job])).jobs[0]
    (target,) = build_targets(static_groups("tls", js.cfg.static_configs), js, ())
    storage: Storage = open_storage("memory://")
    await storage.open()
    async with aiohttp.ClientSession() as session:
        r = await ScrapeLoop(target, js, (), session, storage, WorkerMetrics()).scrape_once()
    assert r.up is up, r.error
    if error:
        assert error in (r.error or "")
