"""A scripted ICMP echo responder behind a TUN device: fixed delay and exact, deterministic loss.

Stands in for ``tc netem`` (this machine's kernel is built without CONFIG_NET_SCH_NETEM). Run it inside
a test network namespace::

    tun_responder.py DEV --delay 0.04 --drop-every 4 --stats FILE

It creates TUN device DEV, answers every IPv4 echo request routed into it after DELAY seconds, except
the Nth, 2Nth, ... request, which it drops. After each request it rewrites FILE with
``{"requests": n, "replies": m}`` so the test knows exactly what the network did.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import select
import struct
import time

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def reply_for(pkt: bytes) -> bytes | None:
    """The echo reply to IPv4 echo request ``pkt`` (addresses swapped), or None for anything else."""
    if len(pkt) < 28 or pkt[0] >> 4 != 4 or pkt[9] != 1:
        return None
    ihl = (pkt[0] & 0x0F) * 4
    icmp = bytearray(pkt[ihl:])
    if icmp[0] != 8:
        return None
    icmp[0] = 0
    icmp[2:4] = b"\x00\x00"
    icmp[2:4] = struct.pack("!H", checksum(bytes(icmp)))
    ip = bytearray(pkt[:ihl])
    ip[12:16], ip[16:20] = pkt[16:20], pkt[12:16]
    ip[8] = 61  # a TTL the tests can recognise (3 "hops" away)
    ip[10:12] = b"\x00\x00"
    ip[10:12] = struct.pack("!H", checksum(bytes(ip)))
    return bytes(ip) + bytes(icmp)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("dev")
    ap.add_argument("--delay", type=float, default=0.0)
    ap.add_argument("--drop-every", type=int, default=0)
    ap.add_argument("--stats", required=True)
    args = ap.parse_args()
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", args.dev.encode(), IFF_TUN | IFF_NO_PI))
    requests = replies = 0
    queue: list[tuple[float, bytes]] = []  # (due time, reply), in due order since the delay is fixed

    def save() -> None:
        tmp = args.stats + ".tmp"
        with open(tmp, "w") as fh:
            json.dump({"requests": requests, "replies": replies}, fh)
        os.replace(tmp, args.stats)

    save()
    while True:
        now = time.monotonic()
        while queue and queue[0][0] <= now:
            os.write(fd, queue.pop(0)[1])
            replies += 1
            save()
        wait = max(0.0, queue[0][0] - now) if queue else 1.0
        ready, _, _ = select.select([fd], [], [], wait)
        if not ready:
            continue
        rep = reply_for(os.read(fd, 65536))
        if rep is None:
            continue
        requests += 1
        if not (args.drop_every and requests % args.drop_every == 0):
            queue.append((time.monotonic() + args.delay, rep))
        save()


if __name__ == "__main__":
    main()
