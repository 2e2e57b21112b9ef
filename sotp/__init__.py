"""SOTP kernel: data model, storage, wire codecs, configuration, auth and the CLI.

The kernel imports only the standard library and its declared dependencies. It never imports a
component package (exporters, remote_write, query, worker, agent, dashboards); the CLI is the one
composition root that names them, and it imports them lazily by dotted path.
"""

__version__ = "0.1.0"
