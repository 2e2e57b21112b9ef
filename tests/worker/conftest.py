"""Worker test helpers: an in-process exposition stub and a real Prometheus 2.42 as the oracle."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web

from tests.conftest import Proc, free_port, require_binary, wait_for_port


@dataclass
class Stub:
    """Serves ``pages[path]`` (text, content type); records request headers. Mutate ``pages`` freely."""

    port: int
    pages: dict[str, tuple[str, str]] = field(default_factory=dict)
    requests: list[dict[str, str]] = field(default_factory=list)
    status: int = 200

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def set(self, path: str, text: str, content_type: str = "text/plain; version=0.0.4; charset=utf-8") -> None:
        self.pages[path] = (text, content_type)


async def start_stub() -> tuple[Stub, web.AppRunner]:
    """Start a :class:`Stub` on a free port; ``await runner.cleanup()`` stops it."""
    s = Stub(free_port())

    async def handler(request: web.Request) -> web.Response:
        s.requests.append({**dict(request.headers), "_query": request.query_string, "_path": request.path})
        page = s.pages.get(request.path)
        if page is None or s.status != 200:
            return web.Response(status=404 if page is None else s.status, text="nope\n")
        return web.Response(text=page[0], headers={"Content-Type": page[1]})

    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", s.port).start()
    return s, runner


@pytest.fixture
async def stub() -> AsyncIterator[Stub]:
    s, runner = await start_stub()
    yield s
    await runner.cleanup()


@pytest.fixture
async def stub2() -> AsyncIterator[Stub]:
    s, runner = await start_stub()
    yield s
    await runner.cleanup()


class Prometheus:
    """A real Prometheus on a temporary directory, queried through its HTTP API (blocking calls)."""

    def __init__(self, proc: Proc, port: int, config_file: Path):
        self.proc = proc
        self.port = port
        self.config_file = config_file

    def api(self, path: str, **params: Any) -> Any:
        url = f"http://127.0.0.1:{self.port}{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        with urllib.request.urlopen(url, timeout=10) as resp:
            body = json.load(resp)
        assert body["status"] == "success", body
        return body["data"]

    async def aapi(self, path: str, **params: Any) -> Any:
        return await asyncio.to_thread(self.api, path, **params)

    def instant(self, query: str, t: float | None = None) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"query": query}
        if t is not None:
            params["time"] = f"{t:.3f}"
        data = self.api("/api/v1/query", **params)
        result: list[dict[str, Any]] = data["result"]
        return result


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Callable[[dict[str, Any]], Prometheus]]:
    """``prometheus(config_dict)`` starts Prometheus 2.42 with that prometheus.yml; stopped at teardown."""
    binary = require_binary("prometheus", "/usr/bin/prometheus")
    procs: list[Proc] = []

    def start(config: dict[str, Any]) -> Prometheus:
        n = len(procs)
        cfg = tmp_path / f"prometheus-{n}.yml"
        cfg.write_text(yaml.safe_dump(config, sort_keys=False))
        port = free_port()
        argv = [
            binary,
            f"--config.file={cfg}",
            f"--storage.tsdb.path={tmp_path / f'prom-data-{n}'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ]
        proc = Proc(argv, tmp_path / f"prometheus-{n}.log")
        procs.append(proc)
        wait_for_port(port, timeout=30)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.1)
        return Prometheus(proc, port, cfg)

    yield start
    for p in procs:
        p.stop()
