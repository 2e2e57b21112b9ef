"""Helpers for the rules tests: a real Alertmanager on loopback and a webhook receiver that records posts."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from aiohttp import web

from tests.conftest import free_port, require_binary, wait_for_port


@contextmanager
def alertmanager(tmp: Path, webhook_url: str) -> Iterator[str]:
    """Debian's ``prometheus-alertmanager`` 0.25 routing everything to ``webhook_url``; yields its base URL."""
    exe = require_binary("prometheus-alertmanager", "alertmanager")
    port = free_port()
    cfg = tmp / "alertmanager.yml"
    cfg.write_text(
        "route:\n"
        "  receiver: hook\n"
        "  group_by: [alertname]\n"
        "  group_wait: 1s\n"
        "  group_interval: 1s\n"
        "  repeat_interval: 1h\n"
        "receivers:\n"
        "  - name: hook\n"
        "    webhook_configs:\n"
        f"      - url: {webhook_url}\n"
        "        send_resolved: true\n"
    )
    (tmp / "am-data").mkdir(exist_ok=True)
    log = open(tmp / "alertmanager.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [exe, f"--config.file={cfg}", f"--storage.path={tmp / 'am-data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
        stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port(port, timeout=30)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def am_alerts(base: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"{base}/api/v2/alerts", timeout=5) as resp:
        data: list[dict[str, Any]] = json.loads(resp.read())
    return data


def wait_until(predicate: Any, timeout: float = 30.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last value {last!r}")


class Webhook:
    """An aiohttp app collecting Alertmanager webhook notifications."""

    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []
        self.app = web.Application()
        self.app.router.add_post("/hook", self._hook)

    async def _hook(self, request: web.Request) -> web.Response:
        self.posts.append(await request.json())
        return web.Response(text="ok")
