"""The remote-write decoder's fast paths (numpy sample decoding, label/sample split, label-set cache)
must give exactly what a plain protobuf-runtime parse gives, for canonical and for unusual layouts."""

from __future__ import annotations

import math
import struct

import cramjam
import numpy as np
import pytest

from sotp.codec import remote_write as rw
from sotp.codec.remote_write import WriteRequest, decode_write_request
from sotp.codec.remote_write_encoder import field, varint
from sotp.errors import DecodeError
from sotp.model import STALE_NAN, STALE_NAN_BITS
from tests.conftest import RawSeries, raw_write_request

NOW = 1_764_000_000_000  # 2025: a 6-byte varint, the canonical shape


def _bits(v: float) -> int:
    return int(struct.unpack("<Q", struct.pack("<d", v))[0])


def _reference(raw: bytes) -> list[tuple[tuple[tuple[str, str], ...], list[int], list[int]]]:
    """Series as the protobuf runtime parses them (values as bit patterns, empty series dropped)."""
    req = WriteRequest.FromString(raw)
    return [
        (
            tuple((lb.name, lb.value) for lb in ts.labels),
            [s.timestamp for s in ts.samples],
            [_bits(s.value) for s in ts.samples],
        )
        for ts in req.timeseries
        if len(ts.samples)
    ]


def _decoded(raw: bytes) -> list[tuple[tuple[tuple[str, str], ...], list[int], list[int]]]:
    rw._LABELS_CACHE.clear()
    first = decode_write_request(bytes(cramjam.snappy.compress_raw(raw)))
    again = decode_write_request(bytes(cramjam.snappy.compress_raw(raw)))  # through the label cache
    out = [(s.labels.items_tuple(), list(s.timestamps), [_bits(v) for v in s.values]) for s in first.series]
    assert out == [(s.labels.items_tuple(), list(s.timestamps), [_bits(v) for v in s.values]) for s in again.series]
    assert all(type(t) is int for s in first.series for t in s.timestamps)
    assert all(type(v) is float for s in first.series for v in s.values)
    return out


def _label(n: str, v: str) -> bytes:
    return field(0x0A, field(0x0A, n.encode()) + field(0x12, v.encode()))


def _sample_raw(t: int, v: float, order: str = "vt") -> bytes:
    parts = {"v": b"\x09" + struct.pack("<d", v), "t": b"\x10" + varint(t)}
    return field(0x12, b"".join(parts[k] for k in order))


def _runtime(series: RawSeries) -> bytes:
    return raw_write_request(series, compress=False)


LABELS = [("__name__", "up"), ("job", "node")]
CASES: dict[str, bytes] = {
    "canonical-many-series": _runtime(
        [([("__name__", "m"), ("i", str(i))], [(NOW + k * 1000, i + k / 7) for k in range(10)]) for i in range(500)]
    ),
    "uneven-sample-counts": _runtime(
        [([("__name__", "m"), ("i", str(i))], [(NOW + k, float(k + 1)) for k in range(i % 4)]) for i in range(40)]
    ),
    "special-values": _runtime([(LABELS, [(NOW, STALE_NAN), (NOW + 1, math.nan), (NOW + 2, -math.inf),
                                          (NOW + 3, -0.0), (NOW + 4, 5e-324)])]),
    "zero-value-omitted": _runtime([(LABELS, [(NOW, 0.0), (NOW + 1, 1.0)])]),
    "zero-timestamp-and-small": _runtime([(LABELS, [(0, 1.0), (1, 2.0), (127, 3.0), (128, 4.0)])]),
    "negative-timestamp": _runtime([(LABELS, [(-1000, 1.0), (NOW, 2.0)])]),
    "far-future-7-byte-varint": _runtime([(LABELS, [(1 << 43, 1.0)])]),
    "fields-reordered": field(0x0A, b"".join(_label(n, v) for n, v in LABELS) + _sample_raw(NOW, 1.5, "tv")),
    "samples-before-labels": field(
        0x0A, _sample_raw(NOW, 1.5) + b"".join(_label(n, v) for n, v in LABELS) + _sample_raw(NOW + 1, 2.5)
    ),
    "exemplar-between": field(
        0x0A,
        b"".join(_label(n, v) for n, v in LABELS)
        + field(0x1A, _label("trace_id", "abc") + b"\x11" + struct.pack("<d", 1.0))
        + _sample_raw(NOW, 3.5),
    ),
    "repeated-field-last-wins": field(
        0x0A, b"".join(_label(n, v) for n, v in LABELS) + field(0x12, b"\x09" + struct.pack("<d", 1.0)
                                                                  + b"\x10" + varint(NOW) + b"\x10" + varint(5))
    ),
    "series-without-samples": _runtime([(LABELS, []), ([("__name__", "x")], [(NOW, 1.0)])]),
}


@pytest.mark.parametrize("raw", list(CASES.values()), ids=list(CASES))
def test_decoder_matches_protobuf_runtime(raw: bytes) -> None:
    assert _decoded(raw) == _reference(raw)


def test_stale_marker_bits_survive() -> None:
    got = _decoded(CASES["special-values"])
    assert got[0][2][0] == STALE_NAN_BITS


def test_invalid_labels_rejected_on_fast_path() -> None:
    raw = _runtime([([("__name__", "up"), ("bad-name", "x")], [(NOW, 1.0)])])
    rw._LABELS_CACHE.clear()
    with pytest.raises(DecodeError, match="invalid label name 'bad-name'"):
        decode_write_request(bytes(cramjam.snappy.compress_raw(raw)))


def test_histograms_rejected() -> None:
    raw = field(0x0A, b"".join(_label(n, v) for n, v in LABELS) + _sample_raw(NOW, 1.0) + field(0x22, b"\x08\x01"))
    with pytest.raises(DecodeError, match="native histograms"):
        decode_write_request(bytes(cramjam.snappy.compress_raw(raw)))


def test_split_series_refuses_other_layouts() -> None:
    from sotp.codec.remote_write_samples import split_series

    canonical = field(0x0A, b"".join(_label(n, v) for n, v in LABELS) + _sample_raw(NOW, 1.0))[2:]
    assert split_series([canonical], np.array([1])) is not None
    assert split_series([canonical], np.array([2])) is None  # more samples than bytes for them
    reordered = canonical[:-18] + _sample_raw(NOW, 1.0, "tv")
    assert split_series([reordered], np.array([1])) is None


def test_columns_carry_the_same_samples_as_series() -> None:
    raw = CASES["uneven-sample-counts"]
    rw._LABELS_CACHE.clear()
    decoded = decode_write_request(bytes(cramjam.snappy.compress_raw(raw)))
    cols = decoded.columns
    assert cols is not None
    assert decoded.sample_count == int(cols.counts.sum()) == len(cols.timestamps)
    assert all(n > 0 for n in cols.counts.tolist())  # series without samples are left out
    rebuilt = [(s.labels, list(s.timestamps), list(s.values)) for s in decoded.series]
    assert rebuilt == [(s[0], s[1], [struct.unpack("<d", struct.pack("<Q", b))[0] for b in s[2]])
                       for s in [(lb, ts, vs) for lb, ts, vs in _columns_as_lists(cols)]]


def _columns_as_lists(cols: rw.Columns) -> list[tuple[object, list[int], list[int]]]:
    out = []
    pos = 0
    for labels, n in zip(cols.labels, cols.counts.tolist(), strict=True):
        out.append((labels, cols.timestamps[pos : pos + n].tolist(), cols.values[pos : pos + n].view("u8").tolist()))
        pos += n
    return out


def test_other_layouts_have_no_columns() -> None:
    rw._LABELS_CACHE.clear()
    raw = CASES["fields-reordered"]
    decoded = decode_write_request(bytes(cramjam.snappy.compress_raw(raw)))
    assert decoded.columns is None and len(decoded.series) == 1
