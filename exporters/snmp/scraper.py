"""The I/O seam: a :class:`Session` sends single SNMP requests; :func:`scrape` walks and gets a module.

Backends implement only :class:`Session` (one request PDU per call, no retries of their own), so the
walk loop, retries, packet counting and the stop rules live once, here, like gosnmp's
``BulkWalkAll`` under snmp_exporter:

* GETBULK (GETNEXT for v1) from the subtree root until a varbind leaves the subtree or is
  endOfMibView/noSuch*, or the agent answers with an error-status (then the subtree keeps what it had
  and the scrape goes on, as gosnmp's walk does); when the first varbind of the first answer is already
  past the subtree, the root itself is fetched with a GET (walking a scalar), as gosnmp does;
* an error-status answering a GET of the module's ``get`` list fails the scrape (snmp_exporter's rule),
  except v1's noSuchName, which only means the OID is not there;
* a varbind repeating the OID it answers fails the walk unless ``allow_nonincreasing_oids`` (gosnmp's
  "OID not increasing" check, the only one it makes); a walk led back to an OID already asked for fails
  as a loop (gosnmp would loop until the scrape timed out);
* GETs go in chunks of ``max_repetitions`` OIDs (one per request for v1, whose noSuchName is skipped);
* dynamic ``filters`` walk their column first and turn the walks of their targets into GETs of the
  matching indices;
* each request is tried ``retries + 1`` times with ``timeout`` each: ``packets`` counts every send,
  ``retries`` every resend; a try refused by ICMP port unreachable (seen by backends with a connected
  socket) is retried at once, as gosnmp does, and when all are, the scrape fails with
  :class:`PortUnreachable` in milliseconds instead of after ``timeout x (retries + 1)``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from exporters.snmp.config import DynamicFilter, Module
from exporters.snmp.pdu import (
    END_OF_MIB_VIEW,
    EXCEPTION_TYPES,
    AgentError,
    Pdu,
    PortUnreachable,
    RequestTimeout,
    ScrapeError,
    TargetError,
)

NO_SUCH_NAME = 2


class Session(Protocol):
    """One device with one set of credentials. Each call sends ONE request and waits at most the
    session's timeout; it raises :class:`RequestTimeout` when nothing came back (the caller retries),
    :class:`AgentError` for a non-zero error-status and other :class:`ScrapeError`\\ s for the rest.
    Exception varbinds (noSuchObject, noSuchInstance, endOfMibView) are returned as :class:`Pdu`\\ s with
    value ``None``. Not task-safe: one scrape uses a session at a time."""

    version: int
    #: Packets the library sent by itself, like the SNMPv3 engine-ID discovery (counted as gosnmp does).
    extra_packets: int

    async def get(self, oids: Sequence[str]) -> list[Pdu]: ...

    async def get_next(self, oids: Sequence[str]) -> list[Pdu]: ...

    async def get_bulk(self, oids: Sequence[str], max_repetitions: int) -> list[Pdu]: ...

    async def close(self) -> None: ...


@dataclass
class ScrapeResult:
    """What a module scrape returned, and what it cost."""

    pdus: list[Pdu] = field(default_factory=list)
    packets: int = 0
    retries: int = 0
    walk_seconds: float = 0.0


def parse_target(target: str, default_port: int = 161) -> tuple[str, int]:
    """``host``, ``host:port``, ``[v6]:port`` or a bare IPv6 address -> (host, port)."""
    host, port = target, default_port
    if target.startswith("["):
        end = target.find("]")
        if end < 0:
            raise TargetError(f"invalid target {target!r}: missing ']' (write [ipv6]:port)")
        host, rest = target[1:end], target[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise TargetError(f"invalid target {target!r}: expected ':port' after ']'")
            port = _port(rest[1:], target)
    elif target.count(":") == 1:
        host, _, p = target.partition(":")
        port = _port(p, target)
    if not host:
        raise TargetError(f"invalid target {target!r}: empty host")
    return host, port


def _port(text: str, target: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise TargetError(f"invalid target {target!r}: port {text!r} is not a number in 1..65535")
    return int(text)


class _Counter:
    def __init__(self, result: ScrapeResult, retries: int, timeout: float, target: str) -> None:
        self.result, self.retries, self.timeout, self.target = result, retries, timeout, target

    async def send(self, call: Callable[[], Awaitable[list[Pdu]]]) -> list[Pdu]:
        refused = False
        for attempt in range(self.retries + 1):
            self.result.packets += 1
            if attempt:
                self.result.retries += 1
            try:
                return await call()
            except RequestTimeout:
                refused = False
            except PortUnreachable:
                refused = True  # gosnmp retries a refused try at once, like a lost one
        if refused:
            raise PortUnreachable(
                f"{self.target} refused {self.retries + 1} tries (ICMP port unreachable: nothing listens on "
                "that UDP port; check the target's port and that the SNMP agent runs)"
            )
        raise RequestTimeout(
            f"no response from {self.target} after {self.retries + 1} tries of {self.timeout:g}s "
            "(check address and credentials; raise the module's timeout/retries for slow devices)"
        )


async def scrape(session: Session, module: Module, target: str, result: ScrapeResult | None = None) -> ScrapeResult:
    """GETs then walks of ``module`` over ``session``; raises :class:`ScrapeError` on failure.

    Pass ``result`` to keep the packet counts of a scrape that fails."""
    result = ScrapeResult() if result is None else result
    send = _Counter(result, module.retries, module.timeout_s, target).send
    start = time.perf_counter()
    max_oids = module.max_repetitions or 1
    if session.version == 1:
        max_oids = 1
    gets, walks = list(module.get), list(module.walk)
    for dynamic in module.filters:
        try:
            pdus = await _walk(session, module, dynamic.oid, send, target)
        except ScrapeError:
            continue  # as snmp_exporter: a filter that cannot be read filters nothing
        gets, walks = apply_filter(dynamic, pdus, gets, walks)
    while gets:
        chunk, gets = gets[:max_oids], gets[max_oids:]
        try:
            pdus = await send(lambda chunk=chunk: session.get(chunk))  # type: ignore[misc]
        except AgentError as err:
            if session.version == 1 and err.status == NO_SUCH_NAME:
                continue  # v1 reports an unsupported OID as an error-status
            raise
        result.pdus.extend(p for p in pdus if p.type not in EXCEPTION_TYPES)
    for root in walks:
        result.pdus.extend(await _walk(session, module, root, send, target))
    result.packets += session.extra_packets
    result.walk_seconds = time.perf_counter() - start
    return result


def apply_filter(dynamic: DynamicFilter, pdus: Sequence[Pdu], gets: list[str], walks: list[str]) -> \
        tuple[list[str], list[str]]:
    """A dynamic filter: the targets are no longer walked, only GET at the indices whose value (as text)
    matches one of the filter's regexes. The index is the last sub-identifier, as snmp_exporter takes it."""
    allowed = []
    for pdu in pdus:
        text = pdu.value.decode("utf-8", "replace") if isinstance(pdu.value, bytes) else str(pdu.value)
        if any(re.search(value, text) for value in dynamic.values):
            allowed.append(pdu.oid.rsplit(".", 1)[-1])
    walks = [w for w in walks if w not in dynamic.targets]
    gets = [g for g in gets if not any(g.startswith(t) for t in dynamic.targets)]
    gets += [f"{t}.{index}" for t in dynamic.targets for index in allowed]
    return gets, walks


Sender = Callable[[Callable[[], Awaitable[list[Pdu]]]], Awaitable[list[Pdu]]]


async def _walk(session: Session, module: Module, root: str, send: Sender, target: str) -> list[Pdu]:
    prefix = root + "."
    out: list[Pdu] = []
    cursor = root
    last: str | None = None
    reps = module.max_repetitions or 1
    scalar = False
    asked: set[str] = set()
    while True:
        if cursor in asked:
            # The agent led the walk back to an OID it was already asked to go past: gosnmp would loop until
            # the scrape times out; fail now, saying so.
            raise AgentError(f"{target} loops: the walk of {root} came back to {cursor}")
        asked.add(cursor)
        requested = cursor
        try:
            if session.version == 1:
                pdus = await send(lambda c=cursor: session.get_next([c]))  # type: ignore[misc]
            else:
                pdus = await send(lambda c=cursor: session.get_bulk([c], reps))  # type: ignore[misc]
        except AgentError:
            # gosnmp's walk ends at any error-status (v1's noSuchName past the end of the view, genErr,
            # noAccess, tooBig...) and keeps what it has: the scrape goes on with the next subtree.
            break
        if not pdus:
            break
        done = False
        for i, p in enumerate(pdus):
            if p.type in EXCEPTION_TYPES:
                done = True
                break
            if not p.oid.startswith(prefix):
                # gosnmp's rule: only when the very first varbind is already past the subtree is the root
                # itself fetched with a GET (walking a scalar); an endOfMibView first is just the end.
                scalar = last is None and i == 0
                done = True
                break
            if p.oid == requested and not module.allow_nonincreasing_oids:
                # gosnmp's check (snmp_exporter's): only an answer repeating the OID asked for is "not
                # increasing"; an OID before it is taken as it comes.
                raise AgentError(
                    f"{target} returned OID {p.oid}, the one it was asked to go past, while walking {root} "
                    "(set allow_nonincreasing_oids: true in the module for such agents)"
                )
            last = p.oid
            out.append(p)
            cursor = p.oid
        if done:
            break
    if scalar:
        # Walking a scalar or a single instance: the root itself may exist.
        try:
            pdus = await send(lambda: session.get([root]))
        except AgentError:
            return out  # gosnmp: any error-status ends this walk quietly, the GET of a scalar root too
        out.extend(p for p in pdus if p.type not in EXCEPTION_TYPES and p.type != END_OF_MIB_VIEW)
    return out
