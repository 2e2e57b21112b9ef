"""Packet building and parsing (pure functions), against hand-built packets and RFC 1071's example."""

from __future__ import annotations

import struct

import pytest

from exporters.icmp import packet


@pytest.mark.parametrize(
    ("data", "want"),
    [
        # RFC 1071 §3: the words 0001 f203 f4f5 f6f7 sum (with carries folded) to ddf2; checksum = ~ddf2.
        (bytes.fromhex("0001f203f4f5f6f7"), 0x220D),
        (b"", 0xFFFF),
        (b"\xff", 0x00FF),  # odd length is padded with a zero byte
    ],
    ids=["rfc1071", "empty", "odd-length"],
)
def test_checksum(data: bytes, want: int) -> None:
    assert packet.checksum(data) == want


def test_checksum_of_a_request_verifies_to_zero() -> None:
    req = packet.echo_request(0x1234, 7, packet.payload(56))
    assert packet.checksum(req) == 0  # a correct checksum makes the whole message sum to 0xffff


def test_payload_size_and_filler() -> None:
    assert len(packet.payload(0)) == 0
    assert len(packet.payload(1400)) == 1400
    assert packet.payload(4) == b"SOTP"


def _ipv4_header(payload_len: int, ttl: int, ihl_words: int = 5) -> bytes:
    hdr = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl_words, 0, 20 + payload_len, 0, 0, ttl, 1, 0,
                      bytes([127, 0, 0, 1]), bytes([127, 0, 0, 2]))
    return hdr + b"\x00" * (ihl_words * 4 - 20)


def _reply(kind: int, ident: int, seq: int, data: bytes = b"abc") -> bytes:
    return struct.pack("!BBHHH", kind, 0, 0, ident, seq) + data


@pytest.mark.parametrize(
    ("raw", "ipv6", "has_ip", "want"),
    [
        (_reply(0, 0x4242, 9), False, False, packet.Echo(0x4242, 9, 11)),
        (_ipv4_header(11, 61) + _reply(0, 1, 2), False, True, packet.Echo(1, 2, 11, ttl=61)),
        (_ipv4_header(11, 64, ihl_words=6) + _reply(0, 1, 3), False, True, packet.Echo(1, 3, 11, ttl=64)),
        (_reply(129, 5, 65535), True, False, packet.Echo(5, 65535, 11)),
        (_reply(8, 1, 1), False, False, None),  # our own echo request, seen by a raw socket
        (_reply(3, 1, 1), False, False, None),  # destination unreachable
        (_reply(128, 1, 1), True, False, None),  # ICMPv6 echo request
        (_reply(0, 1, 1), True, False, None),  # type 0 is not an ICMPv6 echo reply
        (b"\x00\x00\x00", False, False, None),  # truncated
        (_ipv4_header(0, 64)[:19], False, True, None),  # truncated IP header
        (b"\x60" + b"\x00" * 30, False, True, None),  # not IPv4
    ],
    ids=["v4-dgram", "v4-raw", "v4-raw-options", "v6", "v4-request", "v4-unreach", "v6-request",
         "v6-wrong-type", "short", "short-ip", "not-ipv4"],
)
def test_parse_echo_reply(raw: bytes, ipv6: bool, has_ip: bool, want: packet.Echo | None) -> None:
    assert packet.parse_echo_reply(raw, ipv6=ipv6, has_ip_header=has_ip) == want


def test_request_round_trips_through_parser_as_reply() -> None:
    req = bytearray(packet.echo_request(77, 1000, packet.payload(20)))
    assert req[0] == packet.ICMP_ECHO_REQUEST
    req[0] = packet.ICMP_ECHO_REPLY
    assert packet.parse_echo_reply(bytes(req), ipv6=False, has_ip_header=False) == packet.Echo(77, 1000, 28)
    v6 = packet.echo_request(77, 1, b"", ipv6=True)
    assert v6[0] == packet.ICMP6_ECHO_REQUEST and v6[2:4] == b"\x00\x00"  # the kernel fills v6 checksums


def test_filters_pass_only_echo_replies() -> None:
    (v4,) = struct.unpack("I", packet.icmp_filter_echo_reply())
    assert [t for t in range(32) if not v4 >> t & 1] == [packet.ICMP_ECHO_REPLY]
    words = struct.unpack("8I", packet.icmp6_filter_echo_reply())
    passed = [t for t in range(256) if not words[t >> 5] >> (t & 31) & 1]
    assert passed == [packet.ICMP6_ECHO_REPLY]


def test_control_message_decoding() -> None:
    assert packet.timespec_ns(struct.pack("qq", 1_700_000_000, 123)) == 1_700_000_000_000_000_123
    assert packet.cmsg_int(struct.pack("i", 57)) == 57


def test_cookie_replaces_the_first_8_bytes() -> None:
    body = packet.with_cookie(packet.payload(56), 0x0102030405060708)
    assert len(body) == 56 and body[:8] == bytes(range(1, 9)) and body[8:] == packet.payload(56)[8:]
    assert packet.with_cookie(b"abc", 5) == b"abc"  # too short for a cookie: left as is
    reply = bytearray(packet.echo_request(1, 2, body))
    reply[0] = packet.ICMP_ECHO_REPLY
    echo = packet.parse_echo_reply(bytes(reply), ipv6=False, has_ip_header=False)
    assert echo is not None and echo.data == body
