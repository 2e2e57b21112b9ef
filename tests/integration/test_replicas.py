"""Two ``sotp serve`` replicas on one PostgreSQL schema (the K3s default): what one acknowledges, the other
serves at once; a retry that lands on the other replica is a no-op; a flush by one is followed by both.

The replicas are real processes started through the CLI; the sender round-robins over them as a load
balancer would. Visibility is checked with the next query after the 204 (no sleep): each replica reads the
other's log rows before it answers a query.
"""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from sotp.codec.remote_write import encode_write_request
from sotp.model import Labels
from tests.conftest import free_port, sotp_cmd, storage_location, wait_for_port

pytestmark = pytest.mark.integration
HEADERS = {"Content-Type": "application/x-protobuf", "Content-Encoding": "snappy"}


def post(base: str, body: bytes) -> int:
    req = urllib.request.Request(base + "/api/v1/write", data=body, headers=HEADERS, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return int(err.code)


def query(base: str, expr: str, at: float) -> list[dict[str, object]]:
    url = base + "/api/v1/query?" + urllib.parse.urlencode({"query": expr, "time": str(at)})
    with urllib.request.urlopen(url, timeout=30) as resp:
        body = json.loads(resp.read())
    assert body["status"] == "success", body
    result: list[dict[str, object]] = body["data"]["result"]
    return result


@pytest.fixture(params=["postgres", "timescaledb"])
def replicas(request: pytest.FixtureRequest, spawn, tmp_path: Path):  # type: ignore[no-untyped-def]
    with storage_location(request.param, tmp_path) as url:
        bases, procs = [], []
        for name in ("a", "b"):
            port = free_port()
            procs.append(spawn(sotp_cmd("serve", "--listen", f"127.0.0.1:{port}", "--storage", url),
                               name=f"serve-{name}"))
            wait_for_port(port, timeout=60)
            bases.append(f"http://127.0.0.1:{port}")
        yield bases
        for proc in procs:  # the schema goes only after the servers stopped using it
            proc.stop()


async def test_acknowledged_on_one_replica_is_served_by_the_other_at_once(replicas: list[str]) -> None:
    a, b = replicas
    now = int(time.time() * 1000)
    for k in range(20):  # live shape: each round one sample of every series, alternating replicas
        body = encode_write_request(
            [(Labels({"__name__": "rep", "i": str(i)}), [(now - (20 - k) * 1000, float(k))]) for i in range(50)]
        )
        target, other = (a, b) if k % 2 == 0 else (b, a)
        assert post(target, body) == 204
        got = query(other, f"count(count_over_time(rep[1m]) >= {k + 1})", now / 1000)
        assert [r["value"][1] for r in got] == ["50"], f"round {k}: the other replica does not see the write"  # type: ignore[index]
    counts = query(a, "count_over_time(rep[1m])", now / 1000)
    assert sorted(r["value"][1] for r in counts) == ["20"] * 50  # type: ignore[index]


async def test_a_retry_on_the_other_replica_is_accepted_and_stored_once(replicas: list[str]) -> None:
    a, b = replicas
    now = int(time.time() * 1000)
    lb = Labels({"__name__": "retried", "job": "x"})
    body = encode_write_request([(lb, [(now - 3000 + 1000 * k, float(k)) for k in range(3)])])
    assert post(a, body) == 204
    assert post(b, body) == 204  # the 204 was lost: the sender retries through the other replica
    changed = encode_write_request([(lb, [(now - 2000, 42.0)])])
    assert post(b, changed) == 400  # a different value for a stored sample is still a conflict
    for base in (a, b):
        got = query(base, "count_over_time(retried[1m])", now / 1000)
        assert [r["value"][1] for r in got] == ["3"]  # type: ignore[index]
