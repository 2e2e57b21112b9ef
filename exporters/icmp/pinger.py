"""Sending echo requests and matching replies over ONE socket per address family and source address.

Why one shared socket rather than icmplib's socket per ping (``async_multiping``): every raw ICMP socket
receives a copy of every ICMP packet the host gets, so N concurrent raw sockets do N² packet copies and
lose replies once their buffers fill (measured: 2 of 3 replies lost at 256 hosts in flight). One socket
with a large receive buffer sees each reply once and demultiplexes by sequence number in a dict.
icmplib still opens the sockets (its datagram/raw handling and permission errors); packets are built and
parsed by :mod:`exporters.icmp.packet`.

RTTs are measured against the kernel's receive timestamp (``SO_TIMESTAMPNS``), so event-loop delay
between the packet's arrival and our reading it does not inflate them.

Socket kind: ``auto`` tries an unprivileged datagram ("ping") socket first, which Linux allows when the
process's group is inside ``net.ipv4.ping_group_range`` (this sysctl also governs IPv6), then a raw socket
(root or ``CAP_NET_RAW``). The choice is logged and exposed as ``sotp_icmp_socket_info``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import random
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import icmplib

from exporters.icmp import packet
from exporters.icmp.errors import SendFailed, SocketUnavailable

log = logging.getLogger(__name__)

SocketMode = Literal["auto", "datagram", "raw"]


@dataclass(frozen=True, slots=True)
class Reply:
    """A matched echo reply: round-trip time in seconds, the reply's TTL/hop limit, ICMP message size."""

    rtt: float
    hop_limit: int | None
    size: int


@dataclass(slots=True)
class _Pending:
    ip: str
    future: asyncio.Future[Reply | None]
    cookie: bytes
    sent_ns: int = 0


def ping_group_range(proc: Path = Path("/proc/sys/net/ipv4/ping_group_range")) -> tuple[int, int] | None:
    """``net.ipv4.ping_group_range`` of this network namespace, or ``None`` when unreadable."""
    try:
        lo, hi = proc.read_text().split()
        return int(lo), int(hi)
    except (OSError, ValueError):
        return None


class IcmpSocket:
    """One non-blocking ICMP socket of one family (and optional source address), shared by all pings.

    Not thread-safe; lives on the event loop that created it. The pending table is keyed by sequence
    number (16 bits), so at most 65,535 echoes may be in flight on one socket; :class:`Pinger` bounds it.
    """

    def __init__(self, family: int, mode: SocketMode, source: str | None, rcvbuf: int) -> None:
        self.family = family
        self.ipv6 = family == socket.AF_INET6
        self.source = source
        self.mode, self._icmplib_sock = self._open(mode)
        self.sock: socket.socket = self._icmplib_sock.sock
        self.sock.setblocking(False)
        self._configure(rcvbuf)
        if self.mode == "datagram":
            # The kernel owns the echo id of a ping socket: it is the socket's "port", fixed by bind().
            if not source:
                self.sock.bind(("::" if self.ipv6 else "0.0.0.0", 0))
            self.ident = int(self.sock.getsockname()[1])
        else:
            self.ident = random.getrandbits(16)
        self._seq = random.getrandbits(16)
        self._cookie = random.getrandbits(63)
        self._pending: dict[int, _Pending] = {}
        self._ttl: int | None = None
        self._df: bool | None = None
        self._writers: list[asyncio.Future[None]] = []
        self.unmatched = 0
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self.sock.fileno(), self._on_readable)

    @property
    def family_name(self) -> str:
        return "ipv6" if self.ipv6 else "ipv4"

    def _open(self, mode: SocketMode) -> tuple[Literal["datagram", "raw"], icmplib.ICMPSocket]:
        cls = icmplib.ICMPv6Socket if self.ipv6 else icmplib.ICMPv4Socket
        tried: list[str] = []
        kinds: list[Literal["datagram", "raw"]] = ["datagram", "raw"] if mode == "auto" else [mode]
        for kind in kinds:
            try:
                return kind, cls(address=self.source or None, privileged=kind == "raw")
            except icmplib.SocketPermissionError:
                tried.append(f"{kind}: permission denied")
            except icmplib.SocketAddressError as err:
                raise SocketUnavailable(
                    f"cannot bind an icmp socket to source address {self.source!r} "
                    f"(check source_ip_address): {err}"
                ) from err
            except icmplib.ICMPSocketError as err:
                tried.append(f"{kind}: {err}")
        rng = ping_group_range()
        raise SocketUnavailable(
            f"cannot open an {self.family_name} icmp socket ({'; '.join(tried)}); allow datagram sockets with "
            f"sysctl net.ipv4.ping_group_range='0 2147483647' (now {rng}, gid {os.getgid()}) "
            "or run as root / with CAP_NET_RAW for raw sockets"
        )

    def _configure(self, rcvbuf: int) -> None:
        s = self.sock
        # Kernel receive timestamps and the reply's TTL / hop limit as control messages.
        s.setsockopt(socket.SOL_SOCKET, packet.SO_TIMESTAMPNS, 1)
        if self.ipv6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVHOPLIMIT, 1)
        else:
            s.setsockopt(socket.IPPROTO_IP, packet.IP_RECVTTL, 1)
        # A burst of thousands of replies must fit in the buffer while the loop is busy elsewhere.
        try:
            s.setsockopt(socket.SOL_SOCKET, packet.SO_RCVBUFFORCE, rcvbuf)
        except OSError:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        if self.mode == "raw":
            if self.ipv6:
                s.setsockopt(socket.IPPROTO_ICMPV6, packet.ICMP6_FILTER, packet.icmp6_filter_echo_reply())
            else:
                s.setsockopt(packet.SOL_RAW, packet.ICMP_FILTER, packet.icmp_filter_echo_reply())

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._loop.remove_reader(self.sock.fileno())
            self._loop.remove_writer(self.sock.fileno())
        for p in self._pending.values():
            if not p.future.done():
                p.future.set_result(None)
        self._pending.clear()
        self._icmplib_sock.close()

    def _next_seq(self) -> int:
        for _ in range(65536):
            self._seq = (self._seq + 1) & 0xFFFF
            if self._seq not in self._pending:
                return self._seq
        raise SendFailed("more than 65,535 echo requests in flight on one socket (lower max_in_flight)")

    def _apply_options(self, ttl: int | None, dont_fragment: bool) -> None:
        # Options are per socket; set them just before each send that needs a different value. Sends
        # are synchronous on one event loop, so no other send can slip in between.
        if ttl != self._ttl:
            level, opt = (
                (socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS) if self.ipv6 else (socket.IPPROTO_IP, socket.IP_TTL)
            )
            self.sock.setsockopt(level, opt, -1 if ttl is None else ttl)  # -1: the system default
            self._ttl = ttl
        if dont_fragment != self._df:
            if self.ipv6:
                self.sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_DONTFRAG, int(dont_fragment))
            else:
                value = packet.IP_PMTUDISC_DO if dont_fragment else packet.IP_PMTUDISC_DONT
                self.sock.setsockopt(socket.IPPROTO_IP, packet.IP_MTU_DISCOVER, value)
            self._df = dont_fragment

    async def _wait_writable(self) -> None:
        fut: asyncio.Future[None] = self._loop.create_future()
        if not self._writers:
            self._loop.add_writer(self.sock.fileno(), self._on_writable)
        self._writers.append(fut)
        await fut

    def _on_writable(self) -> None:
        self._loop.remove_writer(self.sock.fileno())
        writers, self._writers = self._writers, []
        for fut in writers:
            if not fut.done():
                fut.set_result(None)

    async def ping(
        self, ip: str, *, timeout: float, size: int, ttl: int | None, dont_fragment: bool, dest: str | None = None
    ) -> Reply | None:
        """Send one echo request to ``ip`` and wait up to ``timeout`` s: the reply, or ``None`` on timeout.

        ``ip`` is the canonical address replies come from; ``dest`` (default ``ip``) is what is passed to
        ``sendto``, e.g. with an IPv6 zone (``fe80::1%eth0``).
        Raises :class:`SendFailed` when the kernel refuses the send (no route, blackhole, EMSGSIZE)."""
        seq = self._next_seq()
        self._cookie += 1
        body = packet.with_cookie(packet.payload(size), self._cookie)
        data = packet.echo_request(self.ident, seq, body, ipv6=self.ipv6)
        pending = _Pending(ip, self._loop.create_future(), body[: packet.COOKIE_SIZE])
        # Registered before sendto: on loopback the reply can be queued before sendto even returns.
        self._pending[seq] = pending
        try:
            while True:
                self._apply_options(ttl, dont_fragment)
                pending.sent_ns = time.time_ns()
                try:
                    self.sock.sendto(data, (dest or ip, 0))
                    break
                except BlockingIOError:
                    await self._wait_writable()
        except OSError as err:
            del self._pending[seq]
            raise SendFailed(f"cannot send icmp echo to {ip}: {err.strerror or err}") from err
        except BaseException:
            del self._pending[seq]
            raise
        handle = self._loop.call_later(timeout, self._expire, seq, pending)
        try:
            return await pending.future
        finally:
            handle.cancel()
            if self._pending.get(seq) is pending:
                del self._pending[seq]

    def _expire(self, seq: int, pending: _Pending) -> None:
        if self._pending.get(seq) is pending:
            del self._pending[seq]
        if not pending.future.done():
            pending.future.set_result(None)

    def _on_readable(self) -> None:
        # Drain in bounded batches so one busy socket cannot starve the HTTP server.
        for _ in range(1024):
            try:
                data, ancdata, _flags, addr = self.sock.recvmsg(65536, 256)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as err:
                # A datagram socket reports an ICMP error (e.g. host unreachable) once as a socket
                # error; the echo it belongs to simply times out, as in blackbox_exporter.
                log.debug("icmp %s socket error: %s", self.family_name, err)
                continue
            self._on_packet(data, ancdata, addr[0])

    def _on_packet(self, data: bytes, ancdata: list[tuple[int, int, bytes]], source: str) -> None:
        echo = packet.parse_echo_reply(data, ipv6=self.ipv6, has_ip_header=self.mode == "raw" and not self.ipv6)
        if echo is None or (self.mode == "raw" and echo.ident != self.ident):
            return
        pending = self._pending.get(echo.seq)
        if (
            pending is None
            or pending.future.done()
            or pending.ip != source.split("%")[0]
            or echo.data[: packet.COOKIE_SIZE] != pending.cookie
        ):
            self.unmatched += 1  # late (after its timeout), duplicated, or from another host
            return
        rx_ns: int | None = None
        hop = echo.ttl
        for level, kind, cdata in ancdata:
            if level == socket.SOL_SOCKET and kind == packet.SO_TIMESTAMPNS:
                rx_ns = packet.timespec_ns(cdata)
            elif (level, kind) in ((socket.IPPROTO_IP, socket.IP_TTL), (socket.IPPROTO_IPV6, socket.IPV6_HOPLIMIT)):
                hop = packet.cmsg_int(cdata)
        if rx_ns is None:
            rx_ns = time.time_ns()
        pending.future.set_result(Reply(max(rx_ns - pending.sent_ns, 0) / 1e9, hop, echo.size))


@dataclass
class Pinger:
    """The process's ICMP sockets (opened on first use per family and source) and the in-flight bound.

    ``max_in_flight`` bounds echoes awaiting a reply across all sockets, so a burst of probes queues
    instead of overflowing the receive buffer.
    """

    mode: SocketMode = "auto"
    max_in_flight: int = 1024
    rcvbuf: int = 4 << 20
    _sockets: dict[tuple[int, str | None], IcmpSocket] = field(default_factory=dict)
    _slots: asyncio.Semaphore | None = None
    #: Callers blocked waiting for a free slot (continuous mode stops queueing more at max_in_flight).
    waiting: int = 0

    def socket_for(self, family: int, source: str | None = None) -> IcmpSocket:
        """The shared socket for ``family`` and ``source``; opens it (and logs its kind) the first time."""
        key = (family, source or None)
        sock = self._sockets.get(key)
        if sock is None:
            sock = IcmpSocket(family, self.mode, source or None, self.rcvbuf)
            self._sockets[key] = sock
            rng = ping_group_range()
            why = (
                f"net.ipv4.ping_group_range={rng} covers gid {os.getgid()}"
                if sock.mode == "datagram"
                else f"datagram sockets not allowed (net.ipv4.ping_group_range={rng}, gid {os.getgid()})"
                if self.mode == "auto"
                else "socket: raw configured"
            )
            log.info("icmp: %s echo uses %s sockets (%s)", sock.family_name, sock.mode, why)
        return sock

    def open_default(self) -> dict[str, str]:
        """Open the IPv4 and IPv6 sockets now so their kinds are known (and logged) at start-up.

        Returns ``{family: mode}``, with ``"unavailable"`` for a family that cannot be opened."""
        out: dict[str, str] = {}
        for fam, name in ((socket.AF_INET, "ipv4"), (socket.AF_INET6, "ipv6")):
            try:
                out[name] = self.socket_for(fam).mode
            except SocketUnavailable as err:
                log.warning("icmp: %s", err)
                out[name] = "unavailable"
        return out

    def modes(self) -> dict[tuple[str, str], str]:
        """``{(family, source): mode}`` of the open sockets."""
        return {(s.family_name, s.source or ""): s.mode for s in self._sockets.values()}

    @property
    def in_flight(self) -> int:
        return sum(s.in_flight for s in self._sockets.values())

    @property
    def unmatched(self) -> int:
        return sum(s.unmatched for s in self._sockets.values())

    async def ping(
        self,
        ip: str,
        *,
        timeout: float,
        size: int = 56,
        ttl: int | None = None,
        dont_fragment: bool = False,
        source: str | None = None,
    ) -> Reply | None:
        """Ping ``ip`` (a literal address) once; see :meth:`IcmpSocket.ping`. Waits for a free slot first;
        the timeout starts when the request is sent."""
        addr = ipaddress.ip_address(ip.split("%")[0])  # replies come from the address without its zone
        family = socket.AF_INET6 if addr.version == 6 else socket.AF_INET
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.max_in_flight)
        self.waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self.waiting -= 1
        try:
            sock = self.socket_for(family, source)
            return await sock.ping(
                str(addr), timeout=timeout, size=size, ttl=ttl, dont_fragment=dont_fragment, dest=ip
            )
        finally:
            self._slots.release()

    def close(self) -> None:
        for s in self._sockets.values():
            s.close()
        self._sockets.clear()
