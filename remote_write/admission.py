"""Admission of write requests: how many may be in flight, and how many body bytes they may hold.

A write request takes its slot **before** its body is read (:meth:`Admission.enter`), so slow senders
cannot pile up unbounded reads beside the slots; its :class:`Ticket` then reserves the bytes it holds
(the announced ``Content-Length``, then what actually arrives, then the announced decompressed size)
against ``limits.max_inflight_body_bytes``. Beyond either bound the request gets 503 with ``Retry-After``
(:class:`QueueFull`), so well-behaved senders back off and retry. Everything is released when the
request ends, whatever the outcome.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from aiohttp import web
from prometheus_client import Gauge


class QueueFull(Exception):
    """Too many writes or too many body bytes in flight (503 + Retry-After)."""


class Ticket:
    """One admitted request: its slot and the bytes it has reserved."""

    def __init__(self, admission: Admission) -> None:
        self._admission = admission
        self.bytes = 0

    def grow_to(self, n: int) -> None:
        """Hold ``n`` bytes in total (no-op when already holding as many); raises :class:`QueueFull`."""
        if n > self.bytes:
            self._admission.reserve(self, n - self.bytes)


class Admission:
    """Bounds requests (``server.write_queue_depth``) and body bytes (``limits.max_inflight_body_bytes``)."""

    def __init__(self, depth: int, max_bytes: int, depth_gauge: Gauge, bytes_gauge: Gauge) -> None:
        self.depth = depth
        self.max_bytes = max_bytes
        self.requests = 0
        self.bytes = 0
        self._depth_gauge = depth_gauge
        self._bytes_gauge = bytes_gauge

    def enter(self) -> Ticket:
        if self.requests >= self.depth:
            raise QueueFull(f"write queue full ({self.depth} requests in flight; server.write_queue_depth)")
        self.requests += 1
        self._depth_gauge.set(self.requests)
        return Ticket(self)

    def reserve(self, ticket: Ticket, n: int) -> None:
        if self.bytes + n > self.max_bytes:
            raise QueueFull(
                f"server busy: {self.bytes} bytes of request bodies in flight, this request needs {n} more "
                f"(limit {self.max_bytes}, limits.max_inflight_body_bytes)"
            )
        self.bytes += n
        ticket.bytes += n
        self._bytes_gauge.set(self.bytes)

    def leave(self, ticket: Ticket) -> None:
        self.requests -= 1
        self.bytes -= ticket.bytes
        ticket.bytes = 0
        self._depth_gauge.set(self.requests)
        self._bytes_gauge.set(self.bytes)


ADMISSION = web.AppKey("sotp_write_admission", Admission)
TICKET = web.RequestKey("sotp_write_ticket", Ticket)


@contextmanager
def admitted(request: web.Request) -> Iterator[Ticket]:
    """The request's ticket for as long as the block runs; re-entrant (an inner use reuses the outer ticket)."""
    held = request.get(TICKET)
    if held is not None:
        yield held
        return
    admission = request.app[ADMISSION]
    ticket = admission.enter()
    request[TICKET] = ticket
    try:
        yield ticket
    finally:
        del request[TICKET]
        admission.leave(ticket)


__all__ = ["ADMISSION", "TICKET", "Admission", "QueueFull", "Ticket", "admitted"]
