"""SNMP exporter: snmp_exporter's configuration model, metric names and multi-target ``/snmp`` endpoint.

Layout (one job per module)::

    config.py      snmp.yml loader: ``auths`` + ``modules`` (v0.23+) or inline auth per module (v0.21)
    pdu.py         the backend-neutral varbind (:class:`Pdu`) and SNMP error classes
    collector.py   pure functions: varbinds of one module -> metric families (snmp_exporter's rules)
    scraper.py     the small I/O seam (:class:`Session`: get / getnext / getbulk) and the walk logic
    backend_pysnmp.py, backend_ezsnmp.py   the two Session implementations
    server.py      aiohttp app: ``/snmp``, ``/metrics``, concurrency limits
    cli.py         ``sotp exporter snmp``
"""
