"""The fast backend: ezsnmp (net-snmp's C library, wheels bundle it), blocking calls in worker threads.

ezsnmp is the maintained fork of easysnmp. easysnmp itself is never imported: it is unmaintained
since 2022, needs libsnmp-dev to build, crashes when used from several threads and segfaults when
loaded in the same process as ezsnmp. Every ezsnmp call runs in the backend's thread pool so the
event loop keeps serving; each scrape has its own ``ezsnmp.Session`` (never shared across threads).
ezsnmp returns values as text (net-snmp's printing): :func:`to_pdu` turns them back into typed values.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import ezsnmp
from ezsnmp import exceptions as ezerr

from exporters.snmp.config import Auth
from exporters.snmp.pdu import (
    COUNTER32,
    COUNTER64,
    END_OF_MIB_VIEW,
    GAUGE32,
    INTEGER,
    IP_ADDRESS,
    NO_SUCH_INSTANCE,
    NO_SUCH_OBJECT,
    NULL,
    OBJECT_IDENTIFIER,
    OCTET_STRING,
    OPAQUE_DOUBLE,
    TIMETICKS,
    AgentError,
    AuthFailure,
    Pdu,
    RequestTimeout,
    ScrapeError,
    TargetError,
)

AUTH_PROTOCOLS = {"MD5": "MD5", "SHA": "SHA", "SHA224": "SHA-224", "SHA256": "SHA-256", "SHA384": "SHA-384",
                  "SHA512": "SHA-512"}
PRIV_PROTOCOLS = {"DES": "DES", "AES": "AES", "AES192": "AES-192", "AES256": "AES-256", "AES192C": "AES-192-C",
                  "AES256C": "AES-256-C"}
_TICKS = re.compile(r"^\((\d+)\)")
_STRING_ESCAPE = re.compile(r'\\(["\\])')
_EXCEPTION_MESSAGES = (
    ("No more variables left in this MIB View", END_OF_MIB_VIEW),
    ("No Such Instance", NO_SUCH_INSTANCE),
    ("No Such Object", NO_SUCH_OBJECT),
)
#: RFC 3416 error-status names as net-snmp's snmp_errstring() prints them after "Reason:" ("(genError) A
#: general failure occured", "noAccess", "authorizationError (access denied to that object)").
_ERROR_STATUS = {
    "tooBig": 1, "noSuchName": 2, "badValue": 3, "readOnly": 4, "genError": 5, "noAccess": 6, "wrongType": 7,
    "wrongLength": 8, "wrongEncoding": 9, "wrongValue": 10, "noCreation": 11, "inconsistentValue": 12,
    "resourceUnavailable": 13, "commitFailed": 14, "undoFailed": 15, "authorizationError": 16, "notWritable": 17,
    "inconsistentName": 18,
}
_REASON = re.compile(r"Reason: \(?(\w+)")


def _hex(value: str) -> bytes:
    return bytes.fromhex(value)


def _ticks(value: str) -> int:
    m = _TICKS.match(value)
    return int(m.group(1)) if m else int(value)


def _opaque(value: str) -> tuple[str, Any]:
    # net-snmp prints "Float: 1.5" / "Double: 2.5" for Opaque-wrapped floats, else hex.
    kind, _, rest = value.partition(":")
    if kind.strip() in ("Float", "Double"):
        return OPAQUE_DOUBLE, float(rest)
    return OCTET_STRING, _hex(value)


_CONVERT: dict[str, Callable[[str], tuple[str, Any]]] = {
    "INTEGER": lambda v: (INTEGER, int(v)),
    "Integer32": lambda v: (INTEGER, int(v)),
    "Counter32": lambda v: (COUNTER32, int(v)),
    "Gauge32": lambda v: (GAUGE32, int(v)),
    "UInteger": lambda v: (GAUGE32, int(v)),
    "Counter64": lambda v: (COUNTER64, int(v)),
    "Timeticks": lambda v: (TIMETICKS, _ticks(v)),
    # net-snmp prints only printable text as STRING (quotes and backslashes escaped, UTF-8 kept);
    # anything else comes as Hex-STRING.
    "STRING": lambda v: (OCTET_STRING, _STRING_ESCAPE.sub(r"\1", v).encode("utf-8", "surrogateescape")),
    "Hex-STRING": lambda v: (OCTET_STRING, _hex(v)),
    '""': lambda v: (OCTET_STRING, b""),
    "BITS": lambda v: (OCTET_STRING, _hex(v.split("  ")[0].strip())),
    "OID": lambda v: (OBJECT_IDENTIFIER, v.lstrip(".")),
    "IpAddress": lambda v: (IP_ADDRESS, v),
    "Network Address": lambda v: (IP_ADDRESS, v),
    "Opaque": _opaque,
    "NULL": lambda v: (NULL, None),
    "NOSUCHOBJECT": lambda v: (NO_SUCH_OBJECT, None),
    "NOSUCHINSTANCE": lambda v: (NO_SUCH_INSTANCE, None),
    "ENDOFMIBVIEW": lambda v: (END_OF_MIB_VIEW, None),
}


def to_pdu(oid: str, index: str, typ: str, value: str) -> Pdu:
    """One ezsnmp result (numeric ``oid`` with a leading dot, ``index``, type name, printed value)."""
    full = oid[1:] if oid.startswith(".") else oid
    if index:
        full = f"{full}.{index}"
    conv = _CONVERT.get(typ)
    if conv is None:
        # ezsnmp 2.x sometimes reports exception varbinds with net-snmp's message as the type.
        for prefix, kind in _EXCEPTION_MESSAGES:
            if typ.startswith(prefix):
                return Pdu(full, kind, None)
        return Pdu(full, OCTET_STRING, value.encode("utf-8"))
    t, v = conv(value)
    return Pdu(full, t, v)


def session_kwargs(host: str, port: int, auth: Auth, timeout: float, max_repetitions: int) -> dict[str, Any]:
    """ezsnmp.Session arguments: numeric OIDs, numeric enums, no MIB loading, no retries of its own."""
    kw: dict[str, Any] = {
        "hostname": f"udp6:[{host}]" if ":" in host else host,
        "port_number": port,
        "version": auth.version,
        "timeout": timeout,
        "retries": 0,
        "print_oids_numerically": True,
        "print_full_oids": True,
        "print_enums_numerically": True,
        "set_max_repeaters_to_num": max(max_repetitions, 1),
    }
    if auth.version in (1, 2):
        kw["community"] = auth.community
        return kw
    kw.update(security_username=auth.username, security_level=auth.security_level)
    if auth.context_name:
        kw["context"] = auth.context_name
    if auth.security_level != "noAuthNoPriv":
        kw.update(auth_protocol=AUTH_PROTOCOLS[auth.auth_protocol], auth_passphrase=auth.password)
    if auth.security_level == "authPriv":
        kw.update(privacy_protocol=PRIV_PROTOCOLS[auth.priv_protocol], privacy_passphrase=auth.priv_password)
    return kw


class EzsnmpBackend:
    """Opens ezsnmp sessions whose calls run in a shared thread pool."""

    name = "ezsnmp"

    def __init__(self, max_workers: int = 16) -> None:
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="ezsnmp")

    async def open(self, host: str, port: int, auth: Auth, timeout: float, max_repetitions: int,
                   connected: bool = True) -> EzsnmpSession:
        kwargs = session_kwargs(host, port, auth, timeout, max_repetitions)
        loop = asyncio.get_running_loop()
        target = f"{host}:{port}"
        try:
            session = await loop.run_in_executor(self._pool, lambda: ezsnmp.Session(**kwargs))
        except Exception as err:  # ezsnmp raises its own and plain exceptions for bad settings
            raise _translate(err, target) from err
        return EzsnmpSession(session, self._pool, auth.version, target)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _translate(err: Exception, target: str) -> ScrapeError:
    text = str(err).strip()
    if isinstance(err, ezerr.TimeoutError):
        return RequestTimeout(f"{target}: {text}")
    low = text.lower()
    if "authentication failure" in low or "decryption" in low or "unknown user" in low or "usm" in low:
        return AuthFailure(
            f"{target}: SNMPv3 security failure ({text}): check username, passwords, auth_protocol, "
            "priv_protocol and context_name of the auth"
        )
    reason = _REASON.search(text)
    if isinstance(err, ezerr.PacketError) or reason:
        # "Error in packet. Reason: ...": the agent answered with an error-status (an unknown name: genErr).
        name = reason.group(1) if reason else "genError"
        message = " ".join(text.split())
        return AgentError(f"{target} answered error-status {name}: {message}", _ERROR_STATUS.get(name, 5))
    if isinstance(err, ezerr.ConnectionError) or "unknown host" in low:
        return TargetError(f"cannot use target {target}: {text}")
    return ScrapeError(f"{target}: {text}")


class EzsnmpSession:
    """:class:`exporters.snmp.scraper.Session` over one ezsnmp session."""

    def __init__(self, session: Any, pool: ThreadPoolExecutor, version: int, target: str) -> None:
        self._s, self._pool, self.version, self._target = session, pool, version, target
        # net-snmp discovers the v3 engine ID with one extra request per new session.
        self.extra_packets = 1 if version == 3 else 0

    async def _call(self, fn: Callable[[], Any]) -> list[Pdu]:
        def work() -> list[Pdu]:
            try:
                results = fn()
            except Exception as err:
                raise _translate(err, self._target) from err
            return [to_pdu(r.oid, r.index, r.type, r.value) for r in results]

        return await asyncio.get_running_loop().run_in_executor(self._pool, work)

    async def get(self, oids: Sequence[str]) -> list[Pdu]:
        pdus = await self._call(lambda: self._s.get(list(oids)))
        if len(pdus) < len(oids):
            # net-snmp's snmpget code (which Session.get runs; its -Cf cannot be passed, and its module-level
            # snmpget is not thread-safe) answers an error-status by dropping the failed varbind and asking
            # again. A GET otherwise answers every OID, so fewer varbinds mean an error-status, which fails
            # the scrape as in snmp_exporter (status unknown: genErr).
            raise AgentError(f"{self._target} answered an error-status to a GET of {len(oids)} OIDs "
                             f"(net-snmp dropped {len(oids) - len(pdus)} and asked again)", 5)
        return pdus

    async def get_next(self, oids: Sequence[str]) -> list[Pdu]:
        return await self._call(lambda: self._s.get_next(list(oids)))

    async def get_bulk(self, oids: Sequence[str], max_repetitions: int) -> list[Pdu]:
        return await self._call(lambda: self._s.bulk_get(list(oids)))

    async def close(self) -> None:
        return None
