"""A replaying :class:`exporters.snmp.scraper.Session` over recorded varbinds (not a test module).

It is the seam's test double (as snmp_exporter's ``scraper/mock.go``): it answers GET/GETNEXT/GETBULK
from a sorted table so the walk rules and the mapping can be tested without a network; the same cases
run against real snmpd/snmpsim in test_integration.py.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from pathlib import Path

from exporters.snmp.pdu import AgentError, Pdu, PortUnreachable, RequestTimeout

#: snmp_exporter v0.21's generated if_mib, committed as a fixture (origin and licence in tests/fixtures/README.md).
UPSTREAM_V021 = Path(__file__).resolve().parents[2] / "fixtures" / "snmp_exporter" / "snmp_exporter_v0.21.0_if_mib.yml"

INT_TYPES = {"Integer", "Counter32", "Gauge32", "TimeTicks", "Counter64"}


def load_walk(path: Path) -> list[Pdu]:
    """Read ``walk.txt`` as written by record.py."""
    out = []
    for line in path.read_text().splitlines():
        oid, typ, text = line.split("\t")
        value: int | bytes | str | None
        if typ in INT_TYPES:
            value = int(text)
        elif typ == "OctetString":
            value = bytes.fromhex(text)
        elif typ == "Null":
            value = None
        else:
            value = text
        out.append(Pdu(oid, typ, value))
    return out


def _key(oid: str) -> tuple[int, ...]:
    return tuple(int(x) for x in oid.split("."))


class FakeSession:
    """Answers from ``pdus``; ``timeouts`` first calls raise RequestTimeout, the ``refused`` next ones
    PortUnreachable; ``status`` answers every request
    with that error-status, ``errors`` only requests whose first OID is a key (OID -> error-status)."""

    def __init__(self, pdus: Sequence[Pdu], version: int = 2, timeouts: int = 0, status: int = 0,
                 errors: dict[str, int] | None = None, refused: int = 0) -> None:
        self.table = sorted(pdus, key=lambda p: _key(p.oid))
        self.keys = [_key(p.oid) for p in self.table]
        self.by_oid = {p.oid: p for p in self.table}
        self.version, self.timeouts, self.status = version, timeouts, status
        self.errors, self.refused = errors or {}, refused
        self.extra_packets = 0
        self.calls: list[tuple[str, tuple[str, ...]]] = []

    def _start(self, kind: str, oids: Sequence[str]) -> None:
        self.calls.append((kind, tuple(oids)))
        if self.timeouts > 0:
            self.timeouts -= 1
            raise RequestTimeout("fake: no answer")
        if self.refused > 0:
            self.refused -= 1
            raise PortUnreachable("fake: ICMP port unreachable")
        status = self.errors.get(oids[0], self.status) if oids else self.status
        if status:
            raise AgentError(f"fake: error-status {status}", status)

    def _next(self, oid: str) -> Pdu:
        i = bisect.bisect_right(self.keys, _key(oid))
        return self.table[i] if i < len(self.table) else Pdu(oid, "EndOfMibView", None)

    async def get(self, oids: Sequence[str]) -> list[Pdu]:
        self._start("get", oids)
        return [self.by_oid.get(o, Pdu(o, "NoSuchInstance", None)) for o in oids]

    async def get_next(self, oids: Sequence[str]) -> list[Pdu]:
        self._start("getnext", oids)
        return [self._next(o) for o in oids]

    async def get_bulk(self, oids: Sequence[str], max_repetitions: int) -> list[Pdu]:
        self._start("getbulk", oids)
        out = []
        for oid in oids:
            cur = oid
            for _ in range(max_repetitions):
                p = self._next(cur)
                out.append(p)
                if p.type == "EndOfMibView":
                    break
                cur = p.oid
        return out

    async def close(self) -> None:
        return None
