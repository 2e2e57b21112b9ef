"""``sotp serve`` as a process: remote write in, the query API out, on one port (the real composition)."""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from sotp.codec.remote_write import encode_write_request
from sotp.model import Labels
from tests.conftest import free_port, sotp_cmd, wait_for_port

pytestmark = pytest.mark.integration


def _get(base: str, path: str, params: dict[str, str]) -> dict[str, Any]:
    with urllib.request.urlopen(f"{base}{path}?{urllib.parse.urlencode(params)}", timeout=10) as r:
        body: dict[str, Any] = json.load(r)
        return body


def test_remote_write_then_promql(spawn: Any, tmp_path: Path) -> None:
    port = free_port()
    proc = spawn(sotp_cmd("serve", "--listen", f"127.0.0.1:{port}", "--storage", f"sqlite:///{tmp_path}/s.db"))
    wait_for_port(port)
    base = f"http://127.0.0.1:{port}"
    assert _get(base, "/api/v1/query", {"query": "1+1", "time": "4"})["data"] == {
        "resultType": "scalar", "result": [4, "2"]}
    now = int(time.time()) * 1000
    series = [
        (Labels({"__name__": "req_total", "job": j}), [(now - 60_000 + i * 15_000, float(i * k)) for i in range(5)])
        for j, k in (("a", 1), ("b", 3))
    ]
    req = urllib.request.Request(f"{base}/api/v1/write", data=encode_write_request(series), method="POST", headers={
        "Content-Encoding": "snappy", "Content-Type": "application/x-protobuf",
        "X-Prometheus-Remote-Write-Version": "0.1.0"})
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 204, proc.output()
    body = _get(base, "/api/v1/query", {"query": "sum by (job) (increase(req_total[1m]))", "time": str(now / 1000)})
    got = {s["metric"]["job"]: float(s["value"][1]) for s in body["data"]["result"]}
    assert got == {"a": 4.0, "b": 12.0}, body
    body = _get(base, "/api/v1/label/job/values", {})
    assert body["data"] == ["a", "b"]
