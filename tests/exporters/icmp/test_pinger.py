"""The shared-socket pinger on real loopback sockets (as root: raw sockets in the host's namespace)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from exporters.icmp.errors import SendFailed
from exporters.icmp.pinger import Pinger, ping_group_range


def default_hop_limit(ip: str) -> int:
    """What the kernel puts in the loopback replies: the IPv4 default TTL or lo's IPv6 hop limit."""
    f = "/proc/sys/net/ipv6/conf/lo/hop_limit" if ":" in ip else "/proc/sys/net/ipv4/ip_default_ttl"
    return int(Path(f).read_text())


@pytest.fixture
async def pinger() -> Pinger:  # type: ignore[misc]
    if os.geteuid() != 0 and ping_group_range() in (None, (1, 0)):
        pytest.skip("needs root or a ping_group_range covering this gid")
    p = Pinger(max_in_flight=64)
    yield p
    p.close()


@pytest.mark.parametrize(("ip", "size"), [("127.0.0.1", 56), ("127.3.2.1", 0), ("::1", 56), ("::1", 1400)])
async def test_loopback_reply(pinger: Pinger, ip: str, size: int) -> None:
    reply = await pinger.ping(ip, timeout=2.0, size=size)
    assert reply is not None
    assert 0 < reply.rtt < 0.5
    assert reply.size == 8 + size  # ICMP header + our payload, echoed back
    assert reply.hop_limit == default_hop_limit(ip)


async def test_many_targets_share_one_socket_without_loss(pinger: Pinger) -> None:
    ips = [f"127.1.{i // 250}.{i % 250 + 1}" for i in range(2000)]
    seen_in_flight: list[int] = []

    async def watch() -> None:
        while True:
            seen_in_flight.append(pinger.in_flight)
            await asyncio.sleep(0)

    watcher = asyncio.create_task(watch())
    replies = await asyncio.gather(*(pinger.ping(ip, timeout=2.0) for ip in ips))
    watcher.cancel()
    assert sum(r is None for r in replies) == 0
    assert max(seen_in_flight) <= pinger.max_in_flight  # the bound holds across 2,000 concurrent callers
    assert len(pinger.modes()) == 1  # one IPv4 socket served them all
    assert pinger.in_flight == 0 and pinger.unmatched == 0


async def test_cancelled_ping_leaves_nothing_pending(pinger: Pinger) -> None:
    task = asyncio.create_task(pinger.ping("127.0.0.1", timeout=5.0))
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert pinger.in_flight == 0
    assert await pinger.ping("127.0.0.1", timeout=2.0) is not None


async def test_send_refused_by_kernel_raises(pinger: Pinger) -> None:
    # Broadcast without SO_BROADCAST is refused locally (EACCES): nothing is sent anywhere.
    with pytest.raises(SendFailed, match=r"cannot send icmp echo to 255\.255\.255\.255"):
        await pinger.ping("255.255.255.255", timeout=1.0)
    assert pinger.in_flight == 0


async def test_reply_with_reused_sequence_but_old_cookie_is_not_matched(pinger: Pinger) -> None:
    import socket

    from exporters.icmp import packet
    from exporters.icmp.pinger import _Pending

    sock = pinger.socket_for(socket.AF_INET)
    loop = asyncio.get_running_loop()
    seq = 4242
    cookie = packet.with_cookie(packet.payload(56), 99)[:8]
    pending = _Pending("127.0.0.1", loop.create_future(), cookie, sent_ns=1)
    sock._pending[seq] = pending  # white-box: a request in flight with this sequence number

    def reply(with_cookie: int) -> bytes:
        msg = bytearray(packet.echo_request(sock.ident, seq, packet.with_cookie(packet.payload(56), with_cookie)))
        msg[0] = packet.ICMP_ECHO_REPLY
        hdr = b"\x45" + b"\x00" * 7 + b"\x40" + b"\x00" * 11 if sock.mode == "raw" else b""
        return hdr + bytes(msg)

    before = sock.unmatched
    sock._on_packet(reply(98), [], "127.0.0.1")  # the late reply of an earlier request with the same seq
    assert not pending.future.done() and sock.unmatched == before + 1
    sock._on_packet(reply(99), [], "127.0.0.2")  # right cookie, wrong host
    assert not pending.future.done() and sock.unmatched == before + 2
    sock._on_packet(reply(99), [], "127.0.0.1")
    assert pending.future.done() and pending.future.result() is not None
    del sock._pending[seq]
