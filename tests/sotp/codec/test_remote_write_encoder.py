"""The hand-written WriteRequest encoder must produce the protobuf runtime's exact bytes."""

from __future__ import annotations

import math
import random
import struct

import cramjam
import pytest

from sotp.codec.remote_write import WriteRequest, decode_write_request, snappy_decompress
from sotp.codec.remote_write_encoder import (
    encode_metadata,
    encode_write_request_pairs,
    serialize_write_request,
    snappy_block,
)
from sotp.model import STALE_NAN, Labels, is_stale
from tests.conftest import raw_write_request

Case = list[tuple[tuple[tuple[str, str], ...], list[tuple[int, float]]]]

CASES: dict[str, Case] = {
    "one-sample": [((("__name__", "up"), ("job", "node")), [(1_700_000_000_000, 1.0)])],
    "zero-value-and-time": [((("__name__", "m"),), [(0, 0.0)])],
    "negative-zero": [((("__name__", "m"),), [(5, -0.0)])],
    "negative-timestamp": [((("__name__", "m"),), [(-1000, 2.5)])],
    "stale-nan-and-inf": [((("__name__", "m"),), [(1, STALE_NAN), (2, math.inf), (3, -math.inf)])],
    "unicode-and-long": [
        ((("__name__", "m"), ("dev", "é" * 200), ("x", "y" * 300)), [(i * 15000, float(i)) for i in range(50)])
    ],
    "many-series": [((("__name__", f"m{i}"), ("i", str(i))), [(i, i * 1.5)]) for i in range(300)],
}


def _reference_bytes(case: Case) -> bytes:
    return raw_write_request([(list(labels), samples) for labels, samples in case], compress=False)


@pytest.mark.parametrize("name", list(CASES), ids=list(CASES))
def test_bytes_equal_protobuf_runtime(name: str) -> None:
    case = CASES[name]
    assert serialize_write_request(case) == _reference_bytes(case)


@pytest.mark.parametrize("name", list(CASES), ids=list(CASES))
def test_round_trip_through_decoder(name: str) -> None:
    case = CASES[name]
    body = encode_write_request_pairs(case)
    assert snappy_decompress(body, 1 << 30) == _reference_bytes(case)
    decoded = decode_write_request(body)
    assert [s.labels for s in decoded.series] == [Labels(lbs) for lbs, _ in case]
    for got, (_, samples) in zip(decoded.series, case, strict=True):
        assert got.timestamps == [t for t, _ in samples]
        for gv, (_, v) in zip(got.values, samples, strict=True):
            # bit-exact: the staleness marker and -0.0 must survive
            assert struct.pack("<d", gv) == struct.pack("<d", v)
    if name == "stale-nan-and-inf":
        assert is_stale(decoded.series[0].values[0])


def _snappy_inputs() -> dict[str, bytes]:
    rng = random.Random(4)
    text = b"".join(b'node_cpu_seconds_total{cpu="%d",mode="idle"} ' % (i % 7) for i in range(3000))
    return {
        "empty": b"",
        "one-byte": b"x",
        "four-bytes": b"abcd",
        "incompressible-70k": rng.randbytes(70_000),  # literal lengths needing 3 length bytes
        "runs": b"a" * 100_000,  # one long overlapping copy, split into 64-byte pieces
        "repeat-at-40k": rng.randbytes(40_000) * 3,  # matches up to 64 KiB back
        "repeat-at-70k": rng.randbytes(70_000) * 2,  # too far back for a 2-byte offset: literals
        "short-alphabet": bytes(rng.choice(b"ab\x00") for _ in range(20_000)),
        "label-text": text,
    }


@pytest.mark.parametrize("name", list(_snappy_inputs()), ids=list(_snappy_inputs()))
def test_pure_python_snappy_reads_back_with_cramjam(name: str) -> None:
    data = _snappy_inputs()[name]
    packed = snappy_block(data)
    assert bytes(cramjam.snappy.decompress_raw(packed)) == data
    if name in ("runs", "label-text"):
        assert len(packed) < len(data) / 5  # it compresses, not just frames literals


META = [
    ("node_cpu_seconds_total", "counter", "Seconds the CPUs spent in each mode.", ""),
    ("node_load1", "gauge", "1m load average.", ""),
    ("x", "untyped", "", "bytes"),
    ("é_family", "summary", "héllo\nworld", ""),
]


def test_metadata_bytes_equal_protobuf_runtime() -> None:
    from sotp.codec.remote_write import MetricMetadata

    req = WriteRequest()
    for name, typ, help_, unit in META:
        m = req.metadata.add()
        m.metric_family_name, m.help, m.unit = name, help_, unit
        m.type = {"counter": 1, "gauge": 2, "summary": 5}.get(typ, 0)
    assert isinstance(req.metadata[0], MetricMetadata)
    assert encode_metadata(META) == req.SerializeToString()
    decoded = decode_write_request(snappy_block(encode_metadata(META)))
    assert [(m.metric, m.type, m.help, m.unit) for m in decoded.metadata] == [
        ("node_cpu_seconds_total", "counter", "Seconds the CPUs spent in each mode.", ""),
        ("node_load1", "gauge", "1m load average.", ""),
        ("x", "unknown", "", "bytes"),
        ("é_family", "summary", "héllo\nworld", ""),
    ]
    assert decoded.series == []
