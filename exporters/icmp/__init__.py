"""ICMP exporter: blackbox_exporter-compatible ``/probe`` and smokeping-style continuous ping on ``/metrics``.

Modules, one job each::

    config      icmp.yml dataclasses (blackbox ``modules:`` plus ``continuous:``)
    errors      the exporter's errors (under sotp.errors.SotpError)
    packet      pure packet building and parsing (echo request/reply, control messages)
    pinger      one shared ICMP socket per family and source: send, match replies, kernel timestamps
    resolve     blackbox's address choice (preferred protocol + fallback) and ``probe_ip_addr_hash``
    probe       one ``/probe`` run -> metric families with blackbox's names
    continuous  background pinging of a target list -> counters and an RTT histogram
    server      the aiohttp app (``/probe``, ``/metrics``, ``/-/healthy``)
    cli         ``sotp exporter icmp``
"""
