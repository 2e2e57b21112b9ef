"""JSON ingest: the documented schema lands in storage; every bad field is a 400 naming its path; nothing partial."""

from __future__ import annotations

import gzip
import json
import math
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from remote_write.ingest import decode_ingest
from sotp.cli.serve import build_app
from sotp.config import Config, Limits
from sotp.errors import DecodeError, LimitExceeded
from sotp.model import Labels
from tests.conftest import STORAGE_BACKENDS, storage_location

NOW_S = int(time.time()) - 60


@pytest.fixture(params=STORAGE_BACKENDS)
async def client(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[TestClient]:
    config = Config()
    config.limits.max_body_bytes = 16 * 1024
    config.limits.max_decompressed_bytes = 64 * 1024
    config.limits.max_series_per_request = 50
    config.limits.max_labels_per_series = 6
    with storage_location(request.param, tmp_path) as config.server.storage:
        async with TestClient(TestServer(build_app(config))) as c:
            yield c


async def all_series(client: TestClient) -> list[dict[str, str]]:
    r = await client.get("/api/v1/series", params={"match[]": '{__name__=~".+"}'})
    assert r.status == 200
    data: list[dict[str, str]] = (await r.json())["data"]
    return data


async def value_at(client: TestClient, selector: str, t: float) -> list[tuple[dict[str, str], float]]:
    r = await client.get("/api/v1/query", params={"query": selector, "time": str(t)})
    assert r.status == 200, await r.text()
    return [(s["metric"], float(s["value"][1])) for s in (await r.json())["data"]["result"]]


async def ingest(client: TestClient, doc: Any, **kw: Any) -> tuple[int, str]:
    data = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    r = await client.post("/api/v1/ingest", data=data, **kw)
    return r.status, await r.text()


async def test_documented_example_lands_in_storage(client: TestClient) -> None:
    doc = {
        "host": "web01",
        "timestamp": NOW_S,
        "labels": {"env": "prod"},
        "metrics": {
            "cpu_percent": 12.5,
            "disk_free_bytes": [
                {"labels": {"mount": "/"}, "value": 1.2e9},
                {"labels": {"mount": "/var", "env": "dev"}, "value": 3e8},
            ],
            "up_flag": {"labels": {"role": "db"}, "value": "+Inf"},
        },
    }
    status, body = await ingest(client, doc)
    assert status == 200, body
    assert json.loads(body)["data"] == {"series": 4, "samples": 4, "written": 4}
    got = sorted(await value_at(client, '{host="web01"}', NOW_S), key=lambda x: sorted(x[0].items()))
    assert got == sorted(
        [
            ({"__name__": "cpu_percent", "host": "web01", "env": "prod"}, 12.5),
            ({"__name__": "disk_free_bytes", "host": "web01", "env": "prod", "mount": "/"}, 1.2e9),
            # A sample's labels win over the payload's.
            ({"__name__": "disk_free_bytes", "host": "web01", "env": "dev", "mount": "/var"}, 3e8),
            ({"__name__": "up_flag", "host": "web01", "env": "prod", "role": "db"}, math.inf),
        ],
        key=lambda x: sorted(x[0].items()),
    )


async def test_batch_form_many_hosts_and_rfc3339_and_gzip(client: TestClient) -> None:
    iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(NOW_S))
    doc = [
        {"host": f"h{i}", "timestamp": iso, "metrics": {"load1": i / 10}} for i in range(5)
    ] + [{"host": "h0", "timestamp": NOW_S - 30, "metrics": {"load1": 9}}]
    status, body = await ingest(
        client, gzip.compress(json.dumps(doc).encode()), headers={"Content-Encoding": "gzip"}
    )
    assert status == 200, body
    # h0 has two samples at different times: both kept, in time order.
    assert json.loads(body)["data"]["samples"] == 6
    assert sorted(v for _, v in await value_at(client, "load1", NOW_S)) == [0.0, 0.1, 0.2, 0.3, 0.4]
    assert await value_at(client, 'load1{host="h0"}', NOW_S - 30) == [({"__name__": "load1", "host": "h0"}, 9.0)]


BAD: list[tuple[str, Any, str]] = [
    ("not json", b"{metrics:", "invalid JSON at line 1"),
    ("empty", b"", "empty body"),
    ("not utf8", b'{"metrics": {"a": 1}, "host": "\xff"}', "not UTF-8"),
    ("NaN token", b'{"metrics": {"a": NaN}}', "invalid JSON token NaN"),
    ("dup key", b'{"metrics": {"a": 1, "a": 2}}', "duplicate key 'a'"),
    ("top scalar", 5, "$: expected a payload (an object), got number"),
    ("no metrics", {"host": "x"}, "metrics: required field missing"),
    ("unknown field", {"metrics": {}, "hots": "x"}, "hots: unknown field"),
    ("metrics not object", {"metrics": [1]}, "metrics: expected an object"),
    ("bool value", {"metrics": {"a": True}}, "metrics.a: expected a number"),
    ("string value", {"metrics": {"a": "1"}}, "metrics.a: expected a number"),
    ("bad metric name", {"metrics": {"1a": 1}}, "metrics.1a: invalid metric name '1a'"),
    ("empty metric name", {"metrics": {"": 1}}, "has no metric name"),
    ("bad label name", {"metrics": {"a": [{"labels": {"a-b": "x"}, "value": 1}]}},
     "metrics.a[0]: invalid label name 'a-b'"),
    ("reserved label", {"labels": {"__x": "1"}, "metrics": {"a": 1}}, "label name '__x' is reserved"),
    ("name in labels", {"metrics": {"a": [{"labels": {"__name__": "b"}, "value": 1}]}},
     "metrics.a[0].labels.__name__: the metric name comes from the key"),
    ("label not string", {"metrics": {"a": [{"labels": {"x": 1}, "value": 1}]}},
     "metrics.a[0].labels.x: expected a string, got number"),
    ("sample missing value", {"metrics": {"a": [{"labels": {}}]}}, "metrics.a[0].value: required field missing"),
    ("sample unknown key", {"metrics": {"a": [{"value": 1, "ts": 3}]}}, "metrics.a[0].ts: unknown field"),
    ("host empty", {"host": "", "metrics": {"a": 1}}, "host: expected a non-empty string"),
    ("ts in ms", {"timestamp": NOW_S * 1000, "metrics": {"a": 1}}, "timestamp: time"),
    ("ts no zone", {"timestamp": "2023-11-14T22:13:20", "metrics": {"a": 1}}, "has no time zone"),
    ("ts garbage", {"timestamp": "yesterday", "metrics": {"a": 1}}, "is not an RFC 3339 time"),
    ("ts future", {"timestamp": NOW_S + 3600, "metrics": {"a": 1}}, "in the future"),
    ("batch path", [{"metrics": {"a": 1}}, {"metrics": {"b": [{"value": None}]}}],
     "[1].metrics.b[0].value: expected a number"),
    ("conflict in request", [{"timestamp": NOW_S, "metrics": {"a": 1}}, {"timestamp": NOW_S, "metrics": {"a": 2}}],
     "two values at time"),
    ("too many labels", {"labels": {f"l{i}": "v" for i in range(6)}, "metrics": {"a": 1}},
     "limit 6 (limits.max_labels_per_series)"),
    ("too many series", {"metrics": {f"m{i}": 1 for i in range(51)}}, "limits.max_series_per_request"),
    ("huge int", {"metrics": {"a": 10**400}}, "too large"),
]


@pytest.mark.parametrize(("doc", "message"), [(d, m) for _, d, m in BAD], ids=[n for n, _, _ in BAD])
async def test_bad_input_is_400_with_path_and_writes_nothing(client: TestClient, doc: Any, message: str) -> None:
    # A good series first in every payload proves nothing is partially written.
    if isinstance(doc, dict) and isinstance(doc.get("metrics"), dict) and "good" not in doc["metrics"]:
        doc = {**doc, "metrics": {"good": 1, **doc["metrics"]}}
    status, body = await ingest(client, doc)
    assert status == 400, body
    assert message in body
    assert await all_series(client) == []


async def test_size_limits_are_413(client: TestClient) -> None:
    big = {"metrics": {"a": 1}, "labels": {"x": "y" * 20000}}
    assert (await ingest(client, big))[0] == 413
    bomb = gzip.compress(b" " * 100_000 + json.dumps({"metrics": {"a": 1}}).encode())
    status, body = await ingest(client, bomb, headers={"Content-Encoding": "gzip"})
    assert (status, "limits.max_decompressed_bytes" in body) == (413, True)
    assert (await ingest(client, b"{}", headers={"Content-Encoding": "snappy"}))[0] == 415
    assert await all_series(client) == []


async def test_out_of_order_against_stored_is_400_and_retry_is_idempotent(client: TestClient) -> None:
    doc = {"timestamp": NOW_S, "metrics": {"a": 1, "b": 2}}
    assert (await ingest(client, doc))[0] == 200
    assert (await ingest(client, doc))[0] == 200  # a retried request is accepted (duplicates dropped)
    older = {"timestamp": NOW_S - 10, "metrics": {"c": 3, "a": 5}}
    status, body = await ingest(client, older)
    assert status == 400, body
    assert sorted(s["__name__"] for s in await all_series(client)) == ["a", "b"]  # c not written either


def test_decode_is_pure_and_sorts_each_series_by_time() -> None:
    doc = [{"timestamp": 20, "metrics": {"a": 2}}, {"timestamp": 10, "metrics": {"a": 1}}]
    (b,) = decode_ingest(json.dumps(doc).encode(), Limits(), now_ms=0)
    assert (b.labels, list(b.timestamps), list(b.values)) == (Labels({"__name__": "a"}), [10_000, 20_000], [1, 2])
    with pytest.raises(DecodeError, match=r"^\[0\]\.metrics\.a: expected a number"):
        decode_ingest(b'[{"metrics": {"a": []}}]' .replace(b"[]", b"null"), Limits())
    with pytest.raises(LimitExceeded):
        decode_ingest(json.dumps({"metrics": {"a": 1}, "labels": {"b": "x" * 5000}}).encode(), Limits())
