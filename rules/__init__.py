"""Recording and alerting rules with Prometheus 2.42's semantics (``sotp ruler``, ``sotp rules check|test``).

Rule groups are evaluated with :mod:`query`'s engine over the one :class:`sotp.storage.Querier`; their
results go through the one :class:`sotp.storage.Appender`; alerts go to Alertmanager's v2 API.
"""
