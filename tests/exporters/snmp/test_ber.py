"""SOTP's v1/v2c codec checked against an independent implementation: pysnmp/pyasn1's BER codec.

Requests SOTP encodes must decode in pyasn1 to the same fields; responses pyasn1 encodes must decode in
SOTP to the same varbinds. The live behaviour is covered by test_integration.py (backend "native").
"""

from __future__ import annotations

import struct
from typing import Any

import pytest
from pyasn1.codec.ber import decoder, encoder
from pysnmp.proto import api, rfc1902, rfc1905

from exporters.snmp import ber
from exporters.snmp.pdu import Pdu

V2C = api.PROTOCOL_MODULES[api.SNMP_VERSION_2C]
V1 = api.PROTOCOL_MODULES[api.SNMP_VERSION_1]


def pyasn1_decode(raw: bytes, mod: Any = V2C) -> Any:
    msg, rest = decoder.decode(raw, asn1Spec=mod.Message())
    assert rest == b""
    return msg


@pytest.mark.parametrize("oid", ["1.3.6.1.2.1.1.3.0", "1.3.6.1.4.1.9.9.1000000.4294967295", "2.999.3", "0.0"])
def test_getbulk_request_decodes_in_pyasn1(oid: str) -> None:
    raw = ber.encode_request(2, "püblic", ber.GETBULK, 123456789, [oid, "1.3.6.1.2.1.2"], 0, 25)
    msg = pyasn1_decode(raw)
    pdu = V2C.apiMessage.get_pdu(msg)
    assert int(msg["version"]) == 1 and bytes(msg["community"]) == "püblic".encode()
    assert pdu.tagSet == V2C.GetBulkRequestPDU.tagSet
    assert int(V2C.apiBulkPDU.get_request_id(pdu)) == 123456789
    assert int(V2C.apiBulkPDU.get_max_repetitions(pdu)) == 25
    assert int(V2C.apiBulkPDU.get_non_repeaters(pdu)) == 0
    assert [str(name) for name, _ in V2C.apiBulkPDU.get_varbinds(pdu)] == [oid, "1.3.6.1.2.1.2"]


@pytest.mark.parametrize(("pdu_type", "spec"), [(ber.GET, "GetRequestPDU"), (ber.GETNEXT, "GetNextRequestPDU")])
def test_v1_requests_decode_in_pyasn1(pdu_type: int, spec: str) -> None:
    msg = pyasn1_decode(ber.encode_request(1, "public", pdu_type, 7, ["1.3.6.1.2.1.1.5.0"]), V1)
    pdu = V1.apiMessage.get_pdu(msg)
    assert int(msg["version"]) == 0 and pdu.tagSet == getattr(V1, spec).tagSet
    assert int(V1.apiPDU.get_request_id(pdu)) == 7


def response(values: list[tuple[str, Any]], request_id: int = 42, status: int = 0, index: int = 0) -> bytes:
    pdu = V2C.ResponsePDU()
    V2C.apiPDU.set_defaults(pdu)
    V2C.apiPDU.set_request_id(pdu, request_id)
    V2C.apiPDU.set_error_status(pdu, status)
    V2C.apiPDU.set_error_index(pdu, index)
    V2C.apiPDU.set_varbinds(pdu, values)
    msg = V2C.Message()
    V2C.apiMessage.set_defaults(msg)
    V2C.apiMessage.set_community(msg, "public")
    V2C.apiMessage.set_pdu(msg, pdu)
    return bytes(encoder.encode(msg))


VALUES = [
    ("integer", rfc1902.Integer32(-2147483648), Pdu("1.3.1", "Integer", -2147483648)),
    ("counter32-max", rfc1902.Counter32(4294967295), Pdu("1.3.1", "Counter32", 4294967295)),
    ("gauge32", rfc1902.Gauge32(1000000000), Pdu("1.3.1", "Gauge32", 1000000000)),
    ("unsigned32", rfc1902.Unsigned32(7), Pdu("1.3.1", "Gauge32", 7)),
    ("timeticks", rfc1902.TimeTicks(492446481), Pdu("1.3.1", "TimeTicks", 492446481)),
    ("counter64-max", rfc1902.Counter64(2**64 - 1), Pdu("1.3.1", "Counter64", 2**64 - 1)),
    ("octets-binary", rfc1902.OctetString(b"\x00\xff\x80"), Pdu("1.3.1", "OctetString", b"\x00\xff\x80")),
    ("octets-long", rfc1902.OctetString(b"x" * 300), Pdu("1.3.1", "OctetString", b"x" * 300)),
    ("oid", rfc1902.ObjectIdentifier("1.3.6.1.4.1.8072.3.2.10"), Pdu("1.3.1", "ObjectIdentifier",
                                                                      "1.3.6.1.4.1.8072.3.2.10")),
    ("ipaddress", rfc1902.IpAddress("192.0.2.254"), Pdu("1.3.1", "IpAddress", "192.0.2.254")),
    ("opaque-float", rfc1902.Opaque(b"\x9f\x78\x04" + struct.pack(">f", 1.5)), Pdu("1.3.1", "OpaqueFloat", 1.5)),
    ("opaque-other", rfc1902.Opaque(b"\x01\x02"), Pdu("1.3.1", "OctetString", b"\x01\x02")),
    ("no-such-object", rfc1905.noSuchObject, Pdu("1.3.1", "NoSuchObject", None)),
    ("no-such-instance", rfc1905.noSuchInstance, Pdu("1.3.1", "NoSuchInstance", None)),
    ("end-of-mib", rfc1905.endOfMibView, Pdu("1.3.1", "EndOfMibView", None)),
]


@pytest.mark.parametrize(("value", "want"), [c[1:] for c in VALUES], ids=[c[0] for c in VALUES])
def test_response_values_from_pyasn1(value: Any, want: Pdu) -> None:
    assert ber.decode_response(response([("1.3.1", value)])) == (42, 0, 0, [want])


def test_many_varbinds_long_lengths_and_error_status() -> None:
    values = [(f"1.3.6.1.2.1.2.2.1.10.{i}", rfc1902.Counter32(i * 1000)) for i in range(1, 60)]
    raw = response(values, request_id=2**31 - 1, status=5, index=3)
    request_id, status, index, pdus = ber.decode_response(raw)
    assert (request_id, status, index) == (2**31 - 1, 5, 3)
    assert pdus == [Pdu(o, "Counter32", int(v)) for o, v in values]
    assert ber.decode_request_id(raw) == 2**31 - 1


@pytest.mark.parametrize("raw", [b"", b"\x02\x01\x00", b"\x30\x03\x02\x01", response([])[:-1] + b"\xff"])
def test_garbage_is_a_ber_error(raw: bytes) -> None:
    with pytest.raises(ber.BerError):
        ber.decode_response(raw)
