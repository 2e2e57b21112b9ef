"""Guards against web pages that use a visitor's browser to reach a server that trusts its network position.

Without authentication, a loopback server is reachable by any web page the user opens, two ways:

* **DNS rebinding**: ``evil.example`` resolves to the attacker, then to 127.0.0.1; the page's scripts now
  read the server as same-origin. The browser still sends ``Host: evil.example``, so only requests whose
  ``Host`` names this server are answered (:func:`check_host`): IP literals (rebinding needs a name),
  ``localhost``, the listen host and ``auth.allowed_hosts``.
* **Cross-site request forgery**: a page can POST ``text/plain`` or a form to any URL without a CORS
  preflight. Browsers mark such requests with ``Origin`` and ``Sec-Fetch-Site``; command-line clients,
  Prometheus, agents and Grafana's server-side proxy send neither. :func:`check_write_origin` refuses
  unsafe methods from another site, and simple content types from any browser page.

Both answer 403 with the reason and the fix (:class:`BrowserRefused`).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from typing import Final
from urllib.parse import urlsplit

from sotp.errors import AuthError

#: Methods a browser may send cross-site without side effects being the point (RFC 9110 "safe").
SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
#: Content types a cross-origin page may POST without a CORS preflight (the Fetch standard's list).
SIMPLE_CONTENT_TYPES: Final = frozenset({"text/plain", "application/x-www-form-urlencoded", "multipart/form-data"})


class BrowserRefused(AuthError):
    """A request refused because it looks driven by a foreign web page (403)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, status=403)


def host_name(host_header: str) -> str:
    """``Host`` header → lower-case host without port or IPv6 brackets (``[::1]:9201`` → ``::1``)."""
    h = host_header.strip().lower()
    if h.startswith("["):
        return h[1:].partition("]")[0]
    if h.count(":") == 1:
        h = h.partition(":")[0]
    return h.rstrip(".")


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def allowed_host_names(listen_host: str, extra: Iterable[str]) -> frozenset[str]:
    """The names accepted besides IP literals: ``localhost``, the listen host, the configured ones."""
    names = {"localhost", host_name(listen_host)} | {host_name(h) for h in extra}
    return frozenset(n for n in names if n)


def check_host(host_header: str | None, allowed: frozenset[str]) -> None:
    """Refuse a ``Host`` that names another site (DNS rebinding); a missing ``Host`` (HTTP/1.0) passes."""
    if not host_header or "*" in allowed:
        return
    name = host_name(host_header)
    if _is_ip(name) or name in allowed or name.endswith(".localhost"):
        return
    raise BrowserRefused(
        f"Host {host_header[:100]!r} is not a name of this server while authentication is off "
        "(DNS rebinding protection): use an IP address or localhost, add the name to auth.allowed_hosts, "
        "or turn authentication on (create a token: sotp token create)"
    )


def check_write_origin(method: str, headers: Mapping[str, str], simple_types_too: bool) -> None:
    """Refuse an unsafe method sent by a browser on behalf of another site.

    ``Sec-Fetch-Site: cross-site|same-site`` or an ``Origin`` whose host:port differs from ``Host`` is
    refused. With ``simple_types_too`` (auth off), any browser request (one carrying ``Origin`` or
    ``Sec-Fetch-Site``) with a simple content type is refused as well: SOTP serves no page of its own that
    could legitimately send one.
    """
    if method.upper() in SAFE_METHODS:
        return
    site = headers.get("Sec-Fetch-Site", "").strip().lower()
    origin = headers.get("Origin")
    if site in ("cross-site", "same-site"):
        raise BrowserRefused(
            f"cross-site {method} refused (Sec-Fetch-Site: {site}): a web page may not write to SOTP; "
            "send the request from a client, not a browser"
        )
    if origin is not None:
        parts = urlsplit(origin.strip())
        if origin.strip().lower() == "null" or not parts.netloc or parts.netloc.lower() != headers.get(
            "Host", ""
        ).strip().lower():
            raise BrowserRefused(
                f"{method} from origin {origin[:100]!r} refused: a web page of another site may not write to SOTP"
            )
    browser = origin is not None or bool(site)
    if simple_types_too and browser:
        ctype = headers.get("Content-Type", "").partition(";")[0].strip().lower()
        if ctype in SIMPLE_CONTENT_TYPES or not ctype:
            raise BrowserRefused(
                f"{method} with content type {ctype or '(none)'!r} from a browser refused while authentication "
                "is off (cross-site request forgery protection): send it from a client, or turn authentication on"
            )


__all__ = [
    "SAFE_METHODS",
    "SIMPLE_CONTENT_TYPES",
    "BrowserRefused",
    "allowed_host_names",
    "check_host",
    "check_write_origin",
    "host_name",
]
