"""A dependency-light encoder for remote write 1.0 ``WriteRequest`` bodies (protobuf by hand + snappy).

Why not the protobuf runtime: importing ``google.protobuf`` and building the schema costs ~5 MB of RSS,
and the agent must stay within node_exporter's footprint. Encoding the four message types the agent
needs is a few lines of wire format; decoding (which must be lenient and fast) stays in
:mod:`sotp.codec.remote_write` on the protobuf runtime.

Wire format (``prometheus.WriteRequest``)::

    WriteRequest { repeated TimeSeries timeseries = 1; }          tag 0x0a, length-delimited
    TimeSeries   { repeated Label labels = 1; repeated Sample samples = 2; }   tags 0x0a / 0x12
    Label        { string name = 1; string value = 2; }           tags 0x0a / 0x12
    Sample       { double value = 1; int64 timestamp = 2; }       tag 0x09 + 8 bytes LE / 0x10 + varint

Fields are written in field-number order and proto3 defaults (empty string, 0.0 with a positive sign,
timestamp 0) are omitted, so the bytes equal the protobuf runtime's ``SerializeToString()``.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence

import cramjam

_DOUBLE = struct.Struct("<d")


def _varint(n: int) -> bytes:
    """Base-128 varint; negative int64 values take ten bytes (two's complement), as protobuf does."""
    if n < 0:
        n += 1 << 64
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(tag: int, payload: bytes) -> bytes:
    return bytes((tag,)) + _varint(len(payload)) + payload


def _label(name: str, value: str) -> bytes:
    body = b""
    if name:
        body += _field(0x0A, name.encode())
    if value:
        body += _field(0x12, value.encode())
    return _field(0x0A, body)


def _sample(t_ms: int, value: float) -> bytes:
    body = b""
    packed = _DOUBLE.pack(value)
    if packed != b"\x00" * 8:  # +0.0 is the proto3 default; -0.0 and NaNs are written
        body += b"\x09" + packed
    if t_ms:
        body += b"\x10" + _varint(int(t_ms))
    return _field(0x12, body)


def encode_timeseries(labels: Sequence[tuple[str, str]], samples: Iterable[tuple[int, float]]) -> bytes:
    """One ``TimeSeries`` field of a ``WriteRequest`` (tag included). ``labels`` must be sorted by name."""
    body = b"".join(_label(n, v) for n, v in labels) + b"".join(_sample(t, v) for t, v in samples)
    return _field(0x0A, body)


def serialize_write_request(
    series: Iterable[tuple[Sequence[tuple[str, str]], Iterable[tuple[int, float]]]],
) -> bytes:
    """The uncompressed protobuf ``WriteRequest`` for ``(sorted label pairs, [(t_ms, value)])`` items."""
    return b"".join(encode_timeseries(labels, samples) for labels, samples in series)


def snappy_block(data: bytes) -> bytes:
    """Snappy *block* format (remote write forbids the framed format)."""
    return bytes(cramjam.snappy.compress_raw(data))


def encode_write_request_pairs(
    series: Iterable[tuple[Sequence[tuple[str, str]], Iterable[tuple[int, float]]]],
) -> bytes:
    """A snappy-compressed remote-write 1.0 body, ready to POST."""
    return snappy_block(serialize_write_request(series))
