"""The ICMP exporter's errors, under :class:`sotp.errors.SotpError`; icmplib's and ``OSError`` are
translated where they are raised and chained with ``raise ... from``."""

from __future__ import annotations

from sotp.errors import SotpError


class IcmpError(SotpError):
    """Root of the ICMP exporter's errors."""


class SocketUnavailable(IcmpError):
    """No ICMP socket of the asked kind can be opened (privileges, ``ping_group_range``, no IPv6)."""


class SendFailed(IcmpError):
    """The kernel refused to send an echo request (no route, blackhole, message too big for DF...)."""
