"""The same push sequence against Debian's real Pushgateway 1.5.1 and SOTP: same status codes, same groups
and series afterwards (Pushgateway's ``GET /metrics`` vs SOTP's query API)."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from sotp.cli.serve import build_app
from sotp.codec.textparse import parse
from sotp.config import Config
from tests.conftest import free_port, require_binary, wait_for_port

pytestmark = pytest.mark.integration

# (method, path, body): one sequence, run in order against both gateways.
STEPS: list[tuple[str, str, bytes]] = [
    ("PUT", "/metrics/job/a", b"# TYPE x counter\nx 1\n"),
    ("PUT", "/metrics/job/b", b"# TYPE x gauge\nx 1\n"),  # type conflict with group a
    ("PUT", "/metrics/job/c", b"x 1\n"),  # untyped vs counter
    ("PUT", "/metrics/job/a/instance/i", b'# TYPE x counter\nx 2\n'),
    ("PUT", "/metrics/job/a", b'# TYPE x counter\nx{instance="i"} 1\n'),  # series of another group
    ("PUT", "/metrics/job/ts", b"t 1 1000\n"),  # timestamps refused
    ("PUT", "/metrics/job/dup", b"w 1\nw 2\n"),
    ("PUT", "/metrics/job/syntax", b"w{ 1\n"),
    ("PUT", "/metrics/job/a/foo", b"y 1\n"),
    ("PUT", "/metrics/job/a/1foo/x", b"y 1\n"),
    ("PUT", "/metrics/job/a/x@base64/!!!", b"y 1\n"),
    ("PUT", "/metrics/job@base64/L3Zhci9sb2c", b"y 1\n"),
    ("PUT", "/metrics/job/k/path@base64/L3Zhci9sb2c/e@base64/=", b"y 2\n"),
    ("PUT", "/metrics/job/d/foo/p", b'z{job="other",foo="b",bar="q"} 1\n'),
    ("PUT", "/metrics/job/m", b"m1 1\nm2 2\n"),
    ("POST", "/metrics/job/m", b"m1 10\nm3 3\n"),
    ("PUT", "/metrics/job/e", b"e 1\n"),
    ("PUT", "/metrics/job/e", b""),
    ("PUT", "/metrics/job/h", b'# TYPE h histogram\nh_bucket{le="1"} 1\nh_bucket{le="+Inf"} 2\nh_sum 3\nh_count 2\n'),
    ("POST", "/metrics/job/h", b'# TYPE h histogram\nh_bucket{le="+Inf"} 5\nh_sum 6\nh_count 5\n'),
    ("PUT", "/metrics/job/gone", b"g 1\n"),
    ("DELETE", "/metrics/job/gone", b""),
    ("DELETE", "/metrics/job/never", b""),
    ("PUT", "/metrics/job/del/instance/x", b"q 1\n"),
    ("DELETE", "/metrics/job/del", b""),
]


def _pg_call(base: str, method: str, path: str, body: bytes) -> int:
    req = urllib.request.Request(base + path, data=body if method != "DELETE" else None, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return int(r.status)
    except urllib.error.HTTPError as err:
        err.close()
        return int(err.code)


def _pg_state(base: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], Any]:
    with urllib.request.urlopen(base + "/metrics", timeout=10) as r:
        text = r.read().decode()
    out = {}
    # SOTP's text parser reads names as exposed (prometheus_client's parser renames counters to *_total).
    for s in parse(text).samples:
        if s.name.startswith(("go_", "process_", "pushgateway_", "promhttp_")):
            continue
        labels = tuple(sorted((k, v) for k, v in s.labels if v != ""))
        out[(s.name, labels)] = _normalise(s.name, s.value)
    return out


def _normalise(name: str, value: float) -> Any:
    # Times differ between the two runs: compare "set or not" for the per-group times.
    if name in ("push_time_seconds", "push_failure_time_seconds"):
        return value > 0
    return value


@pytest.fixture
async def sotp_client(tmp_path: Path) -> AsyncIterator[TestClient]:
    config = Config()
    config.server.storage = "memory://"
    config.pushgateway = {"refresh_interval": "0"}
    async with TestClient(TestServer(build_app(config))) as c:
        yield c


async def _sotp_state(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], Any]:
    r = await client.get("/api/v1/query", params={"query": '{__name__=~".+"}', "time": str(time.time() + 0.001)})
    out = {}
    for s in (await r.json())["data"]["result"]:
        m = dict(s["metric"])
        name = m.pop("__name__")
        out[(name, tuple(sorted(m.items())))] = _normalise(name, float(s["value"][1]))
    return out


async def test_same_answers_and_state_as_pushgateway(spawn: Callable[..., Any], sotp_client: TestClient,
                                                    tmp_path: Path) -> None:
    binary = require_binary("prometheus-pushgateway")
    port = free_port()
    spawn([binary, f"--web.listen-address=127.0.0.1:{port}", f"--persistence.file={tmp_path / 'pgw'}"],
          name="pushgateway")
    wait_for_port(port)
    base = f"http://127.0.0.1:{port}"
    got, want = [], []
    for method, path, body in STEPS:
        want.append((method, path, _pg_call(base, method, path, body)))
        r = await sotp_client.request(method, path, data=body)
        got.append((method, path, r.status))
    assert got == want
    assert await _sotp_state(sotp_client) == _pg_state(base)
