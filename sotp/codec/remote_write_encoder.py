"""A dependency-free encoder for remote write 1.0 bodies: protobuf ``WriteRequest`` and snappy, by hand.

Why not the protobuf runtime and cramjam: importing ``google.protobuf`` and building the schema costs
~5 MB of RSS and cramjam ~1.6 MB, and the agent must stay within node_exporter's footprint (~20 MB).
Encoding the four message types the agent needs is a few lines of wire format, and a greedy snappy
compressor takes ~2 ms for one host collection (~28 KB, about cramjam's ratio). Decoding (lenient, fast,
size-checked) stays in :mod:`sotp.codec.remote_write` on protobuf + cramjam, which also offers the
cramjam-compressed :func:`~sotp.codec.remote_write.encode_write_request` for large bodies.

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

_DOUBLE = struct.Struct("<d")


def varint(n: int) -> bytes:
    """Base-128 varint; negative int64 values take ten bytes (two's complement), as protobuf does."""
    if n < 0:
        n += 1 << 64
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def field(tag: int, payload: bytes) -> bytes:
    return bytes((tag,)) + varint(len(payload)) + payload


def _label(name: str, value: str) -> bytes:
    body = b""
    if name:
        body += field(0x0A, name.encode())
    if value:
        body += field(0x12, value.encode())
    return field(0x0A, body)


def _sample(t_ms: int, value: float) -> bytes:
    body = b""
    packed = _DOUBLE.pack(value)
    if packed != b"\x00" * 8:  # +0.0 is the proto3 default; -0.0 and NaNs are written
        body += b"\x09" + packed
    if t_ms:
        body += b"\x10" + varint(int(t_ms))
    return field(0x12, body)


def encode_label_fields(labels: Sequence[tuple[str, str]]) -> bytes:
    """The ``labels`` fields of a ``TimeSeries`` (sorted by name). Senders whose label sets repeat every
    interval can cache this and pass it to :func:`encode_timeseries_raw`."""
    return b"".join(_label(n, v) for n, v in labels)


def encode_timeseries_raw(label_fields: bytes, samples: Iterable[tuple[int, float]]) -> bytes:
    """One ``TimeSeries`` field (tag included) from pre-encoded label fields and samples."""
    return field(0x0A, label_fields + b"".join(_sample(t, v) for t, v in samples))


def encode_timeseries(labels: Sequence[tuple[str, str]], samples: Iterable[tuple[int, float]]) -> bytes:
    """One ``TimeSeries`` field of a ``WriteRequest`` (tag included). ``labels`` must be sorted by name."""
    return encode_timeseries_raw(encode_label_fields(labels), samples)


#: ``MetricMetadata.type`` numbers (prompb): exposition type -> enum value.
METADATA_TYPES = {"counter": 1, "gauge": 2, "histogram": 3, "gaugehistogram": 4, "summary": 5, "info": 6,
                  "stateset": 7}


def encode_metadata(metadata: Iterable[tuple[str, str, str, str]]) -> bytes:
    """``WriteRequest.metadata`` fields (tag 0x1a) for ``(family name, type, help, unit)`` items; the type
    is an exposition type name (unknown names, e.g. ``untyped``, become UNKNOWN = 0). Prometheus sends
    these in requests of their own, without series."""
    out = []
    for name, typ, help_, unit in metadata:
        body = b""
        if METADATA_TYPES.get(typ, 0):
            body += b"\x08" + varint(METADATA_TYPES[typ])
        if name:
            body += field(0x12, name.encode())
        if help_:
            body += field(0x22, help_.encode())
        if unit:
            body += field(0x2A, unit.encode())
        out.append(field(0x1A, body))
    return b"".join(out)


def serialize_write_request(
    series: Iterable[tuple[Sequence[tuple[str, str]], Iterable[tuple[int, float]]]],
) -> bytes:
    """The uncompressed protobuf ``WriteRequest`` for ``(sorted label pairs, [(t_ms, value)])`` items."""
    return b"".join(encode_timeseries(labels, samples) for labels, samples in series)


def _literal(out: bytearray, chunk: bytes) -> None:
    n = len(chunk) - 1
    if n < 60:
        out.append(n << 2)
    else:  # tags 60..63: the length follows in 1..4 little-endian bytes
        size = (n.bit_length() + 7) // 8
        out.append((59 + size) << 2)
        out += n.to_bytes(size, "little")
    out += chunk


def _copy(out: bytearray, offset: int, length: int) -> None:
    # A 2-byte-offset copy carries 1..64 bytes; split longer ones so the last piece keeps >= 4 bytes.
    while length >= 68:
        out += bytes((63 << 2 | 2, offset & 0xFF, offset >> 8))
        length -= 64
    if length > 64:
        out += bytes((59 << 2 | 2, offset & 0xFF, offset >> 8))
        length -= 60
    if length <= 11 and offset < 2048:  # the 2-byte form: 3 bits of offset in the tag
        out += bytes(((offset >> 8) << 5 | (length - 4) << 2 | 1, offset & 0xFF))
    else:
        out += bytes(((length - 1) << 2 | 2, offset & 0xFF, offset >> 8))


def snappy_block(data: bytes) -> bytes:
    """Snappy *block* format (remote write forbids the framed format), greedy 4-byte-hash matching.

    Any snappy decoder reads it; matches are limited to 64 KiB back so every copy fits the 2-byte form.
    """
    out = bytearray(varint(len(data)))
    n = len(data)
    table: dict[bytes, int] = {}
    i = lit = 0
    while i <= n - 4:
        key = data[i : i + 4]
        j = table.get(key)
        table[key] = i
        if j is None or i - j > 0xFFFF:
            i += 1
            continue
        m = 4
        while i + m + 32 <= n and data[j + m : j + m + 32] == data[i + m : i + m + 32]:
            m += 32  # compare in slices: a per-byte Python loop would dominate long matches
        while i + m < n and data[j + m] == data[i + m]:
            m += 1
        if lit < i:
            _literal(out, data[lit:i])
        _copy(out, i - j, m)
        i += m
        lit = i
    if lit < n:
        _literal(out, data[lit:])
    return bytes(out)


def encode_write_request_pairs(
    series: Iterable[tuple[Sequence[tuple[str, str]], Iterable[tuple[int, float]]]],
) -> bytes:
    """A snappy-compressed remote-write 1.0 body, ready to POST."""
    return snappy_block(serialize_write_request(series))
