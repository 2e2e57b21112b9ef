"""Remote write 1.0 receiver: every input class gets its status, and a rejected request writes nothing."""

from __future__ import annotations

import gzip
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from sotp.cli.serve import build_app
from sotp.codec.remote_write import WriteRequest, encode_write_request, snappy_compress
from sotp.config import Config
from sotp.model import Labels
from tests.conftest import STORAGE_BACKENDS, storage_location
from tests.conftest import raw_write_request as raw

HEADERS = {
    "Content-Type": "application/x-protobuf",
    "Content-Encoding": "snappy",
    "X-Prometheus-Remote-Write-Version": "0.1.0",
}
NOW = int(time.time() * 1000)


GOOD = [("__name__", "good"), ("job", "a")]


@pytest.fixture(params=STORAGE_BACKENDS)
async def client(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[TestClient]:
    config = Config()
    config.limits.max_body_bytes = 64 * 1024
    config.limits.max_decompressed_bytes = 256 * 1024
    with storage_location(request.param, tmp_path) as config.server.storage:
        async with TestClient(TestServer(build_app(config))) as c:
            yield c


async def series_count(client: TestClient) -> int:
    r = await client.get("/api/v1/series", params={"match[]": '{__name__=~".+"}'})
    assert r.status == 200
    return len((await r.json())["data"])


async def post(client: TestClient, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, str]:
    r = await client.post("/api/v1/write", data=body, headers=headers or HEADERS)
    return r.status, await r.text()


async def test_good_write_is_204_and_readable(client: TestClient) -> None:
    body = encode_write_request([(Labels(dict(GOOD)), [(NOW - 2000, 1.0), (NOW - 1000, 2.0)])])
    assert await post(client, body) == (204, "")
    r = await client.get("/api/v1/series", params={"match[]": "good"})
    assert (await r.json())["data"] == [{"__name__": "good", "job": "a"}]
    # The exact same request again (a sender retry) is accepted and writes nothing new.
    assert (await post(client, body))[0] == 204


async def test_metadata_only_request_is_204(client: TestClient) -> None:
    req = WriteRequest()
    m = req.metadata.add()
    m.type, m.metric_family_name, m.help = 1, "http_requests_total", "Requests."
    assert (await post(client, snappy_compress(req.SerializeToString())))[0] == 204
    assert await series_count(client) == 0


BAD_400 = [
    ("bad-snappy", b"\x05not snappy at all", "snappy"),
    ("bad-protobuf", snappy_compress(b"\xff\xff\xff\xff"), "protobuf"),
    ("unsorted-labels", raw([([("job", "a"), ("__name__", "x")], [(NOW, 1.0)])]), "unsorted"),
    ("duplicate-labels", raw([([("__name__", "x"), ("a", "1"), ("a", "2")], [(NOW, 1.0)])]), "duplicate"),
    ("invalid-label-name", raw([([("__name__", "x"), ("bad-name", "1")], [(NOW, 1.0)])]), "invalid label"),
    ("invalid-metric-name", raw([([("__name__", "1x")], [(NOW, 1.0)])]), "invalid metric name"),
    ("empty-label-set", raw([([], [(NOW, 1.0)])]), "empty label set"),
    ("empty-label-value", raw([([("__name__", "x"), ("a", "")], [(NOW, 1.0)])]), "empty value"),
    ("missing-name", raw([([("job", "a")], [(NOW, 1.0)])]), "missing metric name"),
    ("unsorted-samples", raw([(GOOD, [(NOW, 1.0), (NOW - 1000, 2.0)])]), "out-of-order"),
    ("conflict-in-request", raw([(GOOD, [(NOW, 1.0), (NOW, 2.0)])]), "conflicting"),
    ("far-future", raw([(GOOD, [(NOW + 3_600_000, 1.0)])]), "future"),
]


@pytest.mark.parametrize(("body", "reason"), [b[1:] for b in BAD_400], ids=[b[0] for b in BAD_400])
async def test_bad_input_is_400_and_writes_nothing(client: TestClient, body: bytes, reason: str) -> None:
    # A valid series rides along in the same request where the body is decodable: it must not land.
    status, text = await post(client, body)
    assert status == 400, text
    assert reason in text
    assert "\n" not in text.rstrip("\n")  # one line
    assert await series_count(client) == 0


async def test_valid_series_beside_bad_one_is_not_written(client: TestClient) -> None:
    body = raw([(GOOD, [(NOW, 1.0)]), ([("__name__", "x"), ("bad-name", "1")], [(NOW, 1.0)])])
    assert (await post(client, body))[0] == 400
    assert await series_count(client) == 0


async def test_out_of_order_and_conflict_against_stored_are_400(client: TestClient) -> None:
    ok = encode_write_request([(Labels(dict(GOOD)), [(NOW - 1000, 1.0)])])
    assert (await post(client, ok))[0] == 204
    older = encode_write_request(
        [(Labels({"__name__": "other"}), [(NOW, 1.0)]), (Labels(dict(GOOD)), [(NOW - 5000, 1.0)])]
    )
    status, text = await post(client, older)
    assert status == 400 and "out-of-order" in text
    conflict = encode_write_request([(Labels(dict(GOOD)), [(NOW - 1000, 7.0)])])
    status, text = await post(client, conflict)
    assert status == 400 and "conflicting" in text
    assert await series_count(client) == 1  # "other" did not land


@pytest.mark.parametrize(
    ("headers", "fragment"),
    [
        ({**HEADERS, "Content-Type": "application/x-protobuf;proto=io.prometheus.write.v2.Request"}, "2.0"),
        ({**HEADERS, "Content-Encoding": "gzip"}, "encoding"),
        ({**HEADERS, "Content-Type": "application/json"}, "content type"),
    ],
    ids=["v2", "gzip", "json"],
)
async def test_unsupported_media_is_415(client: TestClient, headers: dict[str, str], fragment: str) -> None:
    body = encode_write_request([(Labels(dict(GOOD)), [(NOW, 1.0)])])
    if headers["Content-Encoding"] == "gzip":
        body = gzip.compress(body)  # a well-formed gzip body: the encoding itself is what is refused
    status, text = await post(client, body, headers)
    assert status == 415 and fragment in text
    assert await series_count(client) == 0


async def test_oversize_body_is_413(client: TestClient) -> None:
    status, text = await post(client, b"\x00" * (65 * 1024))
    assert status == 413 and "limits.max_body_bytes" in text


async def test_oversize_decompressed_is_413_before_decompressing(client: TestClient) -> None:
    big = [(Labels({"__name__": "big", "i": str(i), "pad": "x" * 200}), [(NOW, 1.0)]) for i in range(2000)]
    body = encode_write_request(big)
    assert len(body) < 64 * 1024  # compresses well, but announces > 256 KiB
    status, text = await post(client, body)
    assert status == 413 and "limits.max_decompressed_bytes" in text


async def test_queue_full_is_503_with_retry_after(tmp_path: Path) -> None:
    config = Config()
    config.server.storage = "memory://"
    config.server.write_queue_depth = 0
    async with TestClient(TestServer(build_app(config))) as c:
        body = encode_write_request([(Labels(dict(GOOD)), [(NOW, 1.0)])])
        r = await c.post("/api/v1/write", data=body, headers=HEADERS)
        assert r.status == 503
        assert r.headers["Retry-After"].isdigit()
        assert await series_count(c) == 0


async def test_self_metrics_count_samples_and_rejects(client: TestClient) -> None:
    await post(client, encode_write_request([(Labels(dict(GOOD)), [(NOW - 1000, 1.0), (NOW, 2.0)])]))
    await post(client, raw([([("__name__", "x"), ("bad-name", "1")], [(NOW, 1.0)])]))
    text = await (await client.get("/metrics")).text()
    assert 'sotp_ingest_samples_total{protocol="remote_write"} 2.0' in text
    assert 'sotp_ingest_requests_total{code="400",protocol="remote_write"} 1.0' in text
    assert "sotp_write_latency_seconds_bucket" in text


async def test_health_and_ready(client: TestClient) -> None:
    assert (await client.get("/-/healthy")).status == 200
    assert (await client.get("/-/ready")).status == 200
