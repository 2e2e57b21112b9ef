"""The backend-neutral varbind and the errors a scrape of a device can end with.

Backends translate their library's values into :class:`Pdu` and their exceptions into
:class:`ScrapeError` subclasses (chained with ``raise ... from err``), so nothing above the backend
knows pysnmp or ezsnmp. ``reason`` is the label value of ``snmp_scrape_error``::

    sotp.errors.SotpError
     └── ScrapeError            the device scrape failed (reason "error")
          ├── RequestTimeout        no answer within timeout x (retries + 1) ("timeout")
          ├── PortUnreachable       every try refused by ICMP port unreachable ("refused")
          ├── AuthFailure           v3 authentication/decryption failure ("auth")
          ├── AgentError            the agent answered with an error status ("agent")
          └── TargetError           bad target address, unresolvable host, socket error ("target")
"""

from __future__ import annotations

from typing import NamedTuple

from sotp.errors import SotpError

#: Value kinds of :attr:`Pdu.type` (ASN.1 application types of SNMPv2-SMI, plus Opaque floats).
INTEGER = "Integer"
COUNTER32 = "Counter32"
GAUGE32 = "Gauge32"
TIMETICKS = "TimeTicks"
COUNTER64 = "Counter64"
OCTET_STRING = "OctetString"
OBJECT_IDENTIFIER = "ObjectIdentifier"
IP_ADDRESS = "IpAddress"
OPAQUE_FLOAT = "OpaqueFloat"
OPAQUE_DOUBLE = "OpaqueDouble"
NULL = "Null"
#: Exceptions in a response (value None): the walk stops at them, gets drop them.
NO_SUCH_OBJECT = "NoSuchObject"
NO_SUCH_INSTANCE = "NoSuchInstance"
END_OF_MIB_VIEW = "EndOfMibView"
EXCEPTION_TYPES = frozenset({NO_SUCH_OBJECT, NO_SUCH_INSTANCE, END_OF_MIB_VIEW})


class Pdu(NamedTuple):
    """One varbind. ``oid`` is dotted without a leading dot. ``value`` by ``type``: int for the integer
    kinds, bytes for OctetString, dotted str for ObjectIdentifier and IpAddress, float for Opaque
    floats, None for Null."""

    oid: str
    type: str
    value: int | float | bytes | str | None


class ScrapeError(SotpError):
    """A scrape of a device failed; the message names the target and what to change."""

    reason = "error"


class RequestTimeout(ScrapeError):
    reason = "timeout"


class PortUnreachable(ScrapeError):
    """The target's host answered ICMP port unreachable (no agent on that UDP port): seen on a connected
    socket, as gosnmp's (snmp_exporter), which retries at once and fails in milliseconds, not after the
    timeout."""

    reason = "refused"


class AuthFailure(ScrapeError):
    reason = "auth"


class AgentError(ScrapeError):
    """The agent answered with a non-zero error-status (``status``, e.g. 2 noSuchName, 5 genErr)."""

    reason = "agent"

    def __init__(self, message: str, status: int = 5) -> None:
        super().__init__(message)
        self.status = status


class TargetError(ScrapeError):
    reason = "target"
