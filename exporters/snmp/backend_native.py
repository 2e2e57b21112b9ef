"""The native backend: SOTP's own v1/v2c codec (:mod:`exporters.snmp.ber`) over an asyncio UDP socket.

For v1/v2c this is the fastest of the three (no pyasn1, no text round trip through net-snmp's printer);
SNMPv3 needs USM crypto, so v3 auths are handed to the pysnmp backend unchanged.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from typing import Any

from exporters.snmp import ber
from exporters.snmp.config import Auth
from exporters.snmp.pdu import AgentError, Pdu, PortUnreachable, RequestTimeout, ScrapeError, TargetError
from exporters.snmp.scraper import Session


class _Protocol(asyncio.DatagramProtocol):
    """Routes responses to the waiting request by request-id; late or foreign datagrams are dropped."""

    def __init__(self, connected: bool) -> None:
        self.waiting: dict[int, asyncio.Future[bytes]] = {}
        self.connected = connected

    def datagram_received(self, data: bytes, addr: object) -> None:
        try:
            request_id = ber.decode_request_id(data)
        except ber.BerError:
            return
        fut = self.waiting.pop(request_id, None)
        if fut is not None and not fut.done():
            fut.set_result(data)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable reaches a connected socket as ECONNREFUSED: the try in flight failed (one
        # request at a time per session). gosnmp, on its connected socket, does the same; with
        # use_unconnected_udp_socket it never sees it, and neither do we: the try times out.
        if self.connected and isinstance(exc, ConnectionRefusedError):
            for fut in self.waiting.values():
                if not fut.done():
                    fut.set_exception(exc)


class NativeBackend:
    """Opens native v1/v2c sessions; v3 goes to pysnmp."""

    name = "native"

    def __init__(self) -> None:
        self._v3: Any = None  # a PysnmpBackend, imported on the first v3 scrape (pysnmp is ~20 MB)

    async def open(self, host: str, port: int, auth: Auth, timeout: float, max_repetitions: int,
                   connected: bool = True) -> Session:
        if auth.version == 3:
            if self._v3 is None:
                from exporters.snmp.backend_pysnmp import PysnmpBackend

                self._v3 = PysnmpBackend()
            session: Session = await self._v3.open(host, port, auth, timeout, max_repetitions, connected)
            return session
        loop = asyncio.get_running_loop()
        try:
            transport, protocol = await loop.create_datagram_endpoint(lambda: _Protocol(connected),
                                                                      remote_addr=(host, port))
        except OSError as err:
            raise TargetError(f"cannot use target {host}:{port}: {err.strerror or err}") from err
        return NativeSession(transport, protocol, auth, timeout, f"{host}:{port}")

    def close(self) -> None:
        if self._v3 is not None:
            self._v3.close()


class NativeSession:
    """:class:`exporters.snmp.scraper.Session` speaking v1/v2c with :mod:`exporters.snmp.ber`."""

    def __init__(self, transport: asyncio.DatagramTransport, protocol: _Protocol, auth: Auth, timeout: float,
                 target: str) -> None:
        self._transport, self._protocol = transport, protocol
        self._community, self._timeout, self._target = auth.community, timeout, target
        self.version = auth.version
        self.extra_packets = 0
        self._next_id = random.randrange(1, 1 << 30)

    async def _request(self, pdu_type: int, oids: Sequence[str], max_repetitions: int = 0) -> list[Pdu]:
        self._next_id = (self._next_id + 1) & 0x7FFFFFFF
        request_id = self._next_id
        message = ber.encode_request(self.version, self._community, pdu_type, request_id, oids, 0, max_repetitions)
        fut: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._protocol.waiting[request_id] = fut
        try:
            self._transport.sendto(message)
            data = await asyncio.wait_for(fut, self._timeout)
        except TimeoutError:
            raise RequestTimeout(f"{self._target}: no response in {self._timeout:g}s") from None
        except ConnectionRefusedError as err:
            raise PortUnreachable(f"{self._target}: ICMP port unreachable") from err
        finally:
            self._protocol.waiting.pop(request_id, None)
        try:
            _, status, index, pdus = ber.decode_response(data)
        except ber.BerError as err:
            raise ScrapeError(f"{self._target}: {err}") from err
        if status:
            raise AgentError(f"{self._target} answered error-status {status} at index {index}", status)
        return pdus

    async def get(self, oids: Sequence[str]) -> list[Pdu]:
        return await self._request(ber.GET, oids)

    async def get_next(self, oids: Sequence[str]) -> list[Pdu]:
        return await self._request(ber.GETNEXT, oids)

    async def get_bulk(self, oids: Sequence[str], max_repetitions: int) -> list[Pdu]:
        if self.version == 1:
            return await self._request(ber.GETNEXT, oids)
        return await self._request(ber.GETBULK, oids, max_repetitions)

    async def close(self) -> None:
        self._transport.close()
