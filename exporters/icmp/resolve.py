"""Choosing the address to probe exactly as blackbox_exporter's ``chooseProtocol`` does, and its hash."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from dataclasses import dataclass
from typing import Literal

from exporters.icmp.errors import IcmpError


class ResolveFailed(IcmpError):
    """The target has no address of a usable protocol."""


@dataclass(frozen=True, slots=True)
class Resolved:
    """The chosen address, its IP version (4/6), and how long the lookup took in seconds."""

    ip: str
    version: int
    lookup_seconds: float


def ip_hash(ip: str) -> float:
    """``probe_ip_addr_hash``: FNV-1a (32 bit) of the address bytes (4 for IPv4, 16 for IPv6), as blackbox
    0.23 hashes them (checked against its output in the tests)."""
    h = 0x811C9DC5
    for b in ipaddress.ip_address(ip.split("%")[0]).packed:
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return float(h)


async def _lookup(target: str, family: int) -> list[tuple[int, str]]:
    try:
        ipaddress.ip_address(target.split("%")[0])
    except ValueError:
        pass
    else:  # a literal address needs no lookup (getaddrinfo would accept it too, slower)
        v = ipaddress.ip_address(target.split("%")[0]).version
        fam = socket.AF_INET6 if v == 6 else socket.AF_INET
        return [(fam, target)] if family in (socket.AF_UNSPEC, fam) else []
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(target, None, family=family, type=socket.SOCK_RAW)
    except socket.gaierror as err:
        raise ResolveFailed(f"cannot resolve {target!r}: {err.strerror}") from err
    out: list[tuple[int, str]] = []
    for fam, _type, _proto, _name, sockaddr in infos:
        if fam in (socket.AF_INET, socket.AF_INET6) and (fam, str(sockaddr[0])) not in out:
            out.append((fam, str(sockaddr[0])))
    return out


async def choose_address(target: str, preferred: Literal["ip4", "ip6"], fallback: bool) -> Resolved:
    """Resolve ``target``: an address of the ``preferred`` protocol, else (with ``fallback``) of the other.

    Raises :class:`ResolveFailed`; its message names the protocol setting to change."""
    start = time.perf_counter()
    want = socket.AF_INET6 if preferred == "ip6" else socket.AF_INET
    addrs = await _lookup(target, socket.AF_UNSPEC if fallback else want)
    chosen = next((a for a in addrs if a[0] == want), None) or (addrs[0] if fallback and addrs else None)
    if chosen is None:
        hint = "" if fallback else " (set ip_protocol_fallback: true or change preferred_ip_protocol)"
        raise ResolveFailed(f"no {preferred} address for {target!r}{hint}")
    fam, ip = chosen
    return Resolved(ip=ip, version=6 if fam == socket.AF_INET6 else 4, lookup_seconds=time.perf_counter() - start)
