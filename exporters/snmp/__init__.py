"""SNMP exporter: snmp_exporter's configuration model, metric names and multi-target ``/snmp`` endpoint.

Layout (one job per module)::

    config.py      snmp.yml loader: ``auths`` + ``modules`` (v0.23+) or inline auth per module (v0.21)
    pdu.py         the backend-neutral varbind (:class:`Pdu`) and SNMP error classes
    collector.py   pure functions: varbinds of one module -> metric families (snmp_exporter's rules)
    scraper.py     the small I/O seam (:class:`Session`: get / getnext / getbulk) and the walk logic
    backend_pysnmp.py, backend_ezsnmp.py, backend_native.py   the Session implementations
    server.py      aiohttp app: ``/snmp``, ``/metrics``, concurrency limits
    cli.py         ``sotp exporter snmp``
    mib/           MIB files -> net-snmp's tree (pysmi parser), names for OIDs
    generator/     ``sotp snmp generate``: snmp_exporter's generator.yml -> snmp.yml
    tool_cli.py    ``sotp snmp generate|walk|check``
    generator.yml, modules.yml   SOTP's default modules: the generator's input and its output (built-in)
"""

from sotp.inventory import DEVICE_MODULES  # the modules each device is scraped with by default

__all__ = ["DEVICE_MODULES"]
