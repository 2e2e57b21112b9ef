"""A minimal SNMPv1/v2c message codec (BER, RFC 3416 PDUs) for the native backend.

Only what a poller needs: encode GET / GETNEXT / GETBULK requests, decode a Response-PDU into
:class:`Pdu`\\ s. Written for speed in pure Python (index arithmetic over ``bytes``, no objects per
TLV): pyasn1's generic decoder is what makes pysnmp cost ~300 µs per varbind; this is ~3-5 µs.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from exporters.snmp.pdu import (
    COUNTER32,
    COUNTER64,
    END_OF_MIB_VIEW,
    GAUGE32,
    INTEGER,
    IP_ADDRESS,
    NO_SUCH_INSTANCE,
    NO_SUCH_OBJECT,
    NULL,
    OBJECT_IDENTIFIER,
    OCTET_STRING,
    OPAQUE_DOUBLE,
    OPAQUE_FLOAT,
    TIMETICKS,
    Pdu,
)

GET, GETNEXT, RESPONSE, GETBULK = 0xA0, 0xA1, 0xA2, 0xA5
_UNSIGNED = {0x41: COUNTER32, 0x42: GAUGE32, 0x43: TIMETICKS, 0x46: COUNTER64, 0x47: GAUGE32}
_EXCEPTIONS = {0x80: NO_SUCH_OBJECT, 0x81: NO_SUCH_INSTANCE, 0x82: END_OF_MIB_VIEW}


class BerError(ValueError):
    """The bytes are not a well-formed SNMP message."""


def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(body),)) + body


def _tlv(tag: int, body: bytes) -> bytes:
    return bytes((tag,)) + _length(len(body)) + body


def _int(v: int) -> bytes:
    return _tlv(0x02, v.to_bytes(max(1, (v.bit_length() + 8) // 8), "big", signed=True))


def encode_oid(oid: str) -> bytes:
    """Dotted OID -> BER OBJECT IDENTIFIER TLV."""
    try:
        parts = [int(x) for x in oid.split(".")]
    except ValueError as err:
        raise BerError(f"not a numeric OID: {oid!r}") from err
    if len(parts) < 2:
        parts.append(0)
    out = bytearray()
    for i, v in enumerate([parts[0] * 40 + parts[1], *parts[2:]]):
        if v < 0:
            raise BerError(f"negative sub-identifier in OID {oid!r} at {i}")
        chunk = [v & 0x7F]
        v >>= 7
        while v:
            chunk.append(0x80 | (v & 0x7F))
            v >>= 7
        out.extend(reversed(chunk))
    return _tlv(0x06, bytes(out))


def encode_request(
    version: int, community: str, pdu_type: int, request_id: int, oids: Sequence[str],
    non_repeaters: int = 0, max_repetitions: int = 0,
) -> bytes:
    """A v1 (``version`` 1) or v2c (2) request message with NULL values."""
    varbinds = b"".join(_tlv(0x30, encode_oid(o) + b"\x05\x00") for o in oids)
    if pdu_type == GETBULK:
        fields = _int(request_id) + _int(non_repeaters) + _int(max_repetitions)
    else:
        fields = _int(request_id) + _int(0) + _int(0)
    pdu = _tlv(pdu_type, fields + _tlv(0x30, varbinds))
    return _tlv(0x30, _int(version - 1) + _tlv(0x04, community.encode()) + pdu)


def _read_len(data: bytes, i: int) -> tuple[int, int]:
    """(content length, content start) of the TLV whose length byte is at ``i``; checked against the data."""
    b = data[i]
    if b < 0x80:
        length, start = b, i + 1
    else:
        n = b & 0x7F
        if n == 0 or n > 4:
            raise BerError(f"unsupported length form 0x{b:02x} at byte {i}")
        length, start = int.from_bytes(data[i + 1 : i + 1 + n], "big"), i + 1 + n
    if start + length > len(data):
        raise BerError(f"length {length} at byte {i} runs past the end ({len(data)} bytes)")
    return length, start


#: Decoded OIDs by their encoding: a device answers the same OIDs every scrape. Cleared when full.
_OID_CACHE: dict[bytes, str] = {}
OID_CACHE_MAX = 200_000


def decode_oid(data: bytes, start: int, end: int) -> str:
    """BER OID content bytes -> dotted string."""
    key = data[start:end]
    text = _OID_CACHE.get(key)
    if text is None:
        if len(_OID_CACHE) >= OID_CACHE_MAX:
            _OID_CACHE.clear()
        text = _OID_CACHE[key] = _decode_oid(key)
    return text


def _decode_oid(data: bytes) -> str:
    parts: list[int] = []
    v = 0
    for b in data:
        if b & 0x80:
            v = (v << 7) | (b & 0x7F)
        else:
            parts.append((v << 7) | b)
            v = 0
    if not parts:
        raise BerError("empty OBJECT IDENTIFIER")
    first = parts[0]
    head = f"{first // 40}.{first % 40}" if first < 80 else f"2.{first - 80}"
    if len(parts) == 1:
        return head
    return head + "." + ".".join(map(str, parts[1:]))


def _opaque(raw: bytes) -> tuple[str, float | bytes]:
    # RFC draft "Opaque-wrapped" floats: 9F 78 04 <float32> / 9F 79 08 <float64>.
    if len(raw) == 7 and raw[:3] == b"\x9f\x78\x04":
        return OPAQUE_FLOAT, float(struct.unpack(">f", raw[3:])[0])
    if len(raw) == 11 and raw[:3] == b"\x9f\x79\x08":
        return OPAQUE_DOUBLE, float(struct.unpack(">d", raw[3:])[0])
    return OCTET_STRING, raw


def decode_response(data: bytes) -> tuple[int, int, int, list[Pdu]]:
    """(request-id, error-status, error-index, varbinds) of a Response-PDU message."""
    try:
        return _decode(data)
    except (IndexError, ValueError) as err:
        raise BerError(f"malformed SNMP response ({len(data)} bytes): {err}") from err


def _decode(data: bytes) -> tuple[int, int, int, list[Pdu]]:
    if data[0] != 0x30:
        raise BerError("not a SEQUENCE")
    _, i = _read_len(data, 1)
    # version
    if data[i] != 0x02:
        raise BerError("missing version")
    n, i = _read_len(data, i + 1)
    i += n
    # community
    if data[i] != 0x04:
        raise BerError("missing community")
    n, i = _read_len(data, i + 1)
    i += n
    if data[i] != RESPONSE:
        raise BerError(f"PDU type 0x{data[i]:02x} is not a Response")
    _, i = _read_len(data, i + 1)
    ints = []
    for _ in range(3):
        if data[i] != 0x02:
            raise BerError("missing request-id/error-status/error-index")
        n, i = _read_len(data, i + 1)
        ints.append(int.from_bytes(data[i : i + n], "big", signed=True))
        i += n
    if data[i] != 0x30:
        raise BerError("missing varbind list")
    n, i = _read_len(data, i + 1)
    end = i + n
    out: list[Pdu] = []
    append = out.append
    while i < end:
        # SEQUENCE { OID, value }
        n, i = _read_len(data, i + 1)
        if data[i] != 0x06:
            raise BerError("varbind without OBJECT IDENTIFIER")
        n, j = _read_len(data, i + 1)
        oid = decode_oid(data, j, j + n)
        i = j + n
        tag = data[i]
        n, j = _read_len(data, i + 1)
        raw = data[j : j + n]
        i = j + n
        if tag == 0x02:
            append(Pdu(oid, INTEGER, int.from_bytes(raw, "big", signed=True)))
        elif tag == 0x04:
            append(Pdu(oid, OCTET_STRING, raw))
        elif tag in _UNSIGNED:
            append(Pdu(oid, _UNSIGNED[tag], int.from_bytes(raw, "big")))
        elif tag == 0x06:
            append(Pdu(oid, OBJECT_IDENTIFIER, decode_oid(raw, 0, len(raw))))
        elif tag == 0x40:
            append(Pdu(oid, IP_ADDRESS, ".".join(map(str, raw))))
        elif tag == 0x05:
            append(Pdu(oid, NULL, None))
        elif tag in _EXCEPTIONS:
            append(Pdu(oid, _EXCEPTIONS[tag], None))
        elif tag == 0x44:
            typ, val = _opaque(raw)
            append(Pdu(oid, typ, val))
        else:
            append(Pdu(oid, OCTET_STRING, raw))
    return ints[0], ints[1], ints[2], out


def decode_request_id(data: bytes) -> int:
    """Only the request-id of a message (to route a datagram before decoding it fully)."""
    try:
        if data[0] != 0x30:
            raise BerError("not a SEQUENCE")
        _, i = _read_len(data, 1)
        for _ in range(2):  # version, community
            n, i = _read_len(data, i + 1)
            i += n
        _, i = _read_len(data, i + 1)  # PDU header
        n, i = _read_len(data, i + 1)
        return int.from_bytes(data[i : i + n], "big", signed=True)
    except IndexError as err:
        raise BerError(f"truncated SNMP message ({len(data)} bytes)") from err
