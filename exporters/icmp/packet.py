"""ICMP echo packets: building requests and parsing what an ICMP socket returns. Pure functions, no I/O.

Linux hands a socket different shapes of the same reply:

- IPv4 raw socket: the IPv4 header (length from IHL) then the ICMP message;
- IPv4 datagram ("ping") socket and every IPv6 socket: the ICMP message alone.

On a datagram socket the kernel owns the echo identifier (it is the socket's "port") and the checksum;
on an IPv6 socket the kernel always computes the checksum. Only IPv4 raw sockets need ours.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Final

ICMP_ECHO_REQUEST: Final = 8
ICMP_ECHO_REPLY: Final = 0
ICMP6_ECHO_REQUEST: Final = 128
ICMP6_ECHO_REPLY: Final = 129

#: Linux socket option numbers that Python's ``socket`` module does not export (x86-64 and arm64 alike).
SOL_RAW: Final = 255
ICMP_FILTER: Final = 1
ICMP6_FILTER: Final = 1
IP_MTU_DISCOVER: Final = 10
IP_PMTUDISC_DONT: Final = 0
IP_PMTUDISC_WANT: Final = 1
IP_PMTUDISC_DO: Final = 2
IP_RECVTTL: Final = 12
SO_TIMESTAMPNS: Final = 35
SO_RCVBUFFORCE: Final = 33

_PAYLOAD_FILL: Final = b"SOTP ICMP exporter "


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071) of ``data``."""
    if len(data) % 2:
        data += b"\x00"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


@lru_cache(maxsize=64)
def payload(size: int) -> bytes:
    """``size`` bytes of recognisable filler (so a capture shows who sent the probe)."""
    reps = size // len(_PAYLOAD_FILL) + 1
    return (_PAYLOAD_FILL * reps)[:size]


COOKIE_SIZE: Final = 8


def with_cookie(data: bytes, cookie: int) -> bytes:
    """``data`` with its first 8 bytes replaced by ``cookie`` (unchanged when shorter than 8 bytes).

    The reply echoes it back, so a reply that arrives after its request timed out and its 16-bit
    sequence number was reused is not taken for the new request's reply."""
    if len(data) < COOKIE_SIZE:
        return data
    return struct.pack("!Q", cookie & 0xFFFFFFFFFFFFFFFF) + data[COOKIE_SIZE:]


def echo_request(ident: int, seq: int, data: bytes, *, ipv6: bool = False) -> bytes:
    """An ICMP (or ICMPv6) echo request; the checksum is filled in for IPv4 (the kernel does it for v6)."""
    kind = ICMP6_ECHO_REQUEST if ipv6 else ICMP_ECHO_REQUEST
    header = struct.pack("!BBHHH", kind, 0, 0, ident & 0xFFFF, seq & 0xFFFF)
    if ipv6:
        return header + data
    csum = checksum(header + data)
    return struct.pack("!BBHHH", kind, 0, csum, ident & 0xFFFF, seq & 0xFFFF) + data


@dataclass(frozen=True, slots=True)
class Echo:
    """An echo reply as read from a socket. ``ttl`` is the IPv4 header's TTL (raw IPv4 only, else None);
    ``data`` is the echoed payload."""

    ident: int
    seq: int
    size: int
    ttl: int | None = None
    data: bytes = field(default=b"", compare=False, repr=False)


def parse_echo_reply(packet: bytes, *, ipv6: bool, has_ip_header: bool) -> Echo | None:
    """The echo reply in ``packet``, or ``None`` for anything else (requests, errors, truncated data)."""
    ttl: int | None = None
    if has_ip_header:
        if len(packet) < 20 or packet[0] >> 4 != 4:
            return None
        ihl = (packet[0] & 0x0F) * 4
        ttl = packet[8]
        packet = packet[ihl:]
    if len(packet) < 8:
        return None
    kind, code = packet[0], packet[1]
    if kind != (ICMP6_ECHO_REPLY if ipv6 else ICMP_ECHO_REPLY) or code != 0:
        return None
    ident, seq = struct.unpack_from("!HH", packet, 4)
    return Echo(ident=ident, seq=seq, size=len(packet), ttl=ttl, data=packet[8:])


def icmp_filter_echo_reply() -> bytes:
    """``ICMP_FILTER`` value for an IPv4 raw socket: a set bit blocks that type; pass echo replies only.

    Without it every raw socket also sees the echo requests the host itself sends or answers."""
    return struct.pack("I", ~(1 << ICMP_ECHO_REPLY) & 0xFFFFFFFF)


def icmp6_filter_echo_reply() -> bytes:
    """``ICMP6_FILTER`` value (``struct icmp6_filter``: 256 bits, set = block) passing echo replies only."""
    words = [0xFFFFFFFF] * 8
    words[ICMP6_ECHO_REPLY >> 5] &= ~(1 << (ICMP6_ECHO_REPLY & 31)) & 0xFFFFFFFF
    return struct.pack("8I", *words)


def timespec_ns(data: bytes) -> int:
    """Nanoseconds since the epoch from an ``SCM_TIMESTAMPNS`` control message (``struct timespec``)."""
    sec, nsec = struct.unpack_from("qq", data)
    return int(sec) * 1_000_000_000 + int(nsec)


def cmsg_int(data: bytes) -> int:
    """An ``int`` control message (``IP_TTL``, ``IPV6_HOPLIMIT``)."""
    (value,) = struct.unpack_from("i", data)
    return int(value)
