"""A v2c agent for the concurrency tests (not a test module): it records what arrives, and answers or not.

It listens on several UDP ports of 127.0.0.1 (one per "device") in a thread and logs every request as
(port, first requested OID) in arrival order. ``silent`` agents never answer (each scrape then sends its
tries and times out); a ``barrier`` agent answers GETs only once a request has arrived on every port,
so scrapes of different devices succeed only if the exporter runs them at the same time. Requests are
decoded and answers encoded with pysnmp's message API.
"""

from __future__ import annotations

import selectors
import socket
import threading
from types import TracebackType

from pyasn1.codec.ber import decoder, encoder
from pysnmp.proto import api

V2C = api.PROTOCOL_MODULES[api.SNMP_VERSION_2C]


class RecordingAgent:
    def __init__(self, ports: int, barrier: bool = False) -> None:
        self.barrier = barrier
        self.arrivals: list[tuple[int, str]] = []
        self.sockets = []
        for _ in range(ports):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("127.0.0.1", 0))
            self.sockets.append(s)
        self.ports = [s.getsockname()[1] for s in self.sockets]
        self._held: list[tuple[socket.socket, bytes, tuple[str, int]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> RecordingAgent:
        self._thread.start()
        return self

    def __exit__(self, *exc: object | TracebackType) -> None:
        self._stop.set()
        self._thread.join(5)
        for s in self.sockets:
            s.close()

    def _serve(self) -> None:
        sel = selectors.DefaultSelector()
        for s in self.sockets:
            sel.register(s, selectors.EVENT_READ)
        while not self._stop.is_set():
            for key, _ in sel.select(0.05):
                sock: socket.socket = key.fileobj  # type: ignore[assignment]
                data, addr = sock.recvfrom(65535)
                msg, _ = decoder.decode(data, asn1Spec=V2C.Message())
                pdu = V2C.apiMessage.get_pdu(msg)
                oid = str(V2C.apiPDU.get_varbinds(pdu)[0][0])
                self.arrivals.append((sock.getsockname()[1], oid))
                if not self.barrier:
                    continue  # silent
                self._held.append((sock, data, addr))
                if {port for port, _ in self.arrivals} == set(self.ports):
                    for held in self._held:  # every device was asked: answer all, then at once
                        self._answer(*held)
                    self._held.clear()
        sel.close()

    @staticmethod
    def _answer(sock: socket.socket, data: bytes, addr: tuple[str, int]) -> None:
        msg, _ = decoder.decode(data, asn1Spec=V2C.Message())
        pdu = V2C.apiMessage.get_pdu(msg)
        response = V2C.apiMessage.get_response(msg)
        answer = V2C.apiMessage.get_pdu(response)
        V2C.apiPDU.set_varbinds(answer, [(oid, V2C.OctetString("x")) for oid, _ in V2C.apiPDU.get_varbinds(pdu)])
        sock.sendto(encoder.encode(response), addr)


def grouped(sequence: list[str]) -> bool:
    """True when equal items are contiguous (``aabbcc``, not ``abab``): nothing ran interleaved."""
    seen: set[str] = set()
    previous = None
    for item in sequence:
        if item != previous and item in seen:
            return False
        seen.add(item)
        previous = item
    return True


class ScriptedAgent:
    """A v2c agent answering every request by its first OID from ``script`` (OID -> OIDs to return, each
    with INTEGER 1; anything else: ``1.3.9``, past every walk): agents whose answers break the walk rules."""

    def __init__(self, script: dict[str, list[str]]) -> None:
        self.script = script
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> ScriptedAgent:
        self._thread.start()
        return self

    def __exit__(self, *exc: object | TracebackType) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()

    def _serve(self) -> None:
        self.sock.settimeout(0.05)
        while not self._stop.is_set():
            try:
                data, addr = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            msg, _ = decoder.decode(data, asn1Spec=V2C.Message())
            asked = str(V2C.apiPDU.get_varbinds(V2C.apiMessage.get_pdu(msg))[0][0])
            response = V2C.apiMessage.get_response(msg)
            oids = self.script.get(asked, ["1.3.9"])
            V2C.apiPDU.set_varbinds(V2C.apiMessage.get_pdu(response), [(o, V2C.Integer(1)) for o in oids])
            self.sock.sendto(encoder.encode(response), addr)
