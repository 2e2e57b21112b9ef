"""End to end with real processes: durability across kill -9, and real Prometheus as the sender."""

from __future__ import annotations

import json
import signal
import textwrap
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from sotp.codec.remote_write import encode_write_request
from sotp.model import Labels
from tests.conftest import free_port, require_binary, sotp_cmd, storage_location, wait_for_port

pytestmark = pytest.mark.integration


KINDS = ["sqlite", "postgres", "timescaledb"]


@pytest.fixture(params=KINDS)
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with storage_location(request.param, tmp_path) as url:
        yield url


def get_json(url: str) -> dict:  # type: ignore[type-arg]
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())  # type: ignore[no-any-return]


def post_write(port: int, body: bytes) -> int:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/v1/write",
        data=body,
        headers={"Content-Type": "application/x-protobuf", "Content-Encoding": "snappy"},
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.status


def test_acknowledged_samples_survive_kill_9(storage: str, spawn) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    argv = sotp_cmd("serve", "--listen", f"127.0.0.1:{port}", "--storage", storage)
    server = spawn(argv, name="serve")
    wait_for_port(port, timeout=30)
    base = int(time.time() * 1000) - 600_000
    acked = 0
    for batch in range(40):
        series = [
            (Labels({"__name__": "durable", "i": str(i)}), [(base + batch * 1000 + k, float(batch)) for k in range(5)])
            for i in range(50)
        ]
        assert post_write(port, encode_write_request(series)) == 204
        acked += 50 * 5
    server.stop(signal.SIGKILL)  # no shutdown hook runs: only what was committed may remain
    port2 = free_port()
    spawn(sotp_cmd("serve", "--listen", f"127.0.0.1:{port2}", "--storage", storage), name="serve2")
    wait_for_port(port2, timeout=30)
    end = (base + 100_000) / 1000
    q = urllib.parse.urlencode({"match[]": "durable", "start": base / 1000 - 1, "end": end})
    data = get_json(f"http://127.0.0.1:{port2}/api/v1/series?{q}")["data"]
    assert len(data) == 50
    # Every acknowledged sample is there, read straight from the store the server wrote.
    import asyncio

    from sotp.model import Matcher, MatchOp
    from sotp.storage import open_storage

    async def count() -> int:
        s = open_storage(storage)
        await s.open()
        try:
            got = await s.querier(base - 1, base + 100_000).select([Matcher("__name__", MatchOp.EQ, "durable")])
            return sum(len(x.timestamps) for x in got)
        finally:
            await s.close()

    assert asyncio.run(count()) == acked


def test_real_prometheus_remote_writes_into_sotp(storage: str, tmp_path: Path, spawn) -> None:  # type: ignore[no-untyped-def]
    prometheus = require_binary("prometheus")
    sotp_port, prom_port = free_port(), free_port()
    spawn(sotp_cmd("serve", "--listen", f"127.0.0.1:{sotp_port}", "--storage", storage), name="serve")
    wait_for_port(sotp_port, timeout=30)
    cfg = tmp_path / "prometheus.yml"
    cfg.write_text(
        textwrap.dedent(
            f"""
            global:
              scrape_interval: 1s
            scrape_configs:
              - job_name: prometheus
                static_configs: [{{targets: ["127.0.0.1:{prom_port}"]}}]
            remote_write:
              - url: http://127.0.0.1:{sotp_port}/api/v1/write
                queue_config: {{batch_send_deadline: 1s, min_backoff: 100ms, max_backoff: 1s}}
            """
        )
    )
    spawn(
        [
            prometheus,
            f"--config.file={cfg}",
            f"--storage.tsdb.path={tmp_path / 'prom-data'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
        ],
        name="prometheus",
    )
    deadline = time.monotonic() + 60
    found: list[dict[str, str]] = []
    while time.monotonic() < deadline and not found:
        time.sleep(1)
        q = urllib.parse.urlencode({"match[]": 'up{job="prometheus"}'})
        found = get_json(f"http://127.0.0.1:{sotp_port}/api/v1/series?{q}")["data"]
    assert found == [{"__name__": "up", "instance": f"127.0.0.1:{prom_port}", "job": "prometheus"}]
    names = get_json(f"http://127.0.0.1:{sotp_port}/api/v1/label/__name__/values")["data"]
    assert "prometheus_build_info" in names and "scrape_duration_seconds" in names
