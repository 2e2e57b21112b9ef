"""The query engine's error tree; :mod:`query.api` maps each class to an ``errorType`` and HTTP status.

::

    QueryError
     ├── BadData        the request cannot be parsed or is out of bounds (400 bad_data)
     │    ├── ParseError    the query text: syntax (``1:5: parse error: ...``), length and depth limits
     │    └── Unsupported   valid Prometheus 2.42 syntax SOTP does not implement (400, names the feature)
     ├── ExecutionError     a runtime PromQL error: matching cardinality, duplicate label sets,
     │                      too many samples (422 execution)
     ├── QueryTimeout       the query ran past server.query_timeout (503 timeout)
     └── QueryCanceled      the client went away (499 canceled)

Storage failures arrive as :class:`sotp.errors.StorageError` and map to 500 ``internal``.
"""

from __future__ import annotations


class QueryError(Exception):
    """Root of the query engine's errors."""


class BadData(QueryError):
    """The query or a parameter is invalid (HTTP 400 ``bad_data``)."""


class ParseError(BadData):
    """The query text is invalid or over a size limit; the API prefixes ``invalid parameter "query": ``."""


class Unsupported(BadData):
    """Prometheus 2.42 accepts this, SOTP does not; the message names the feature."""


class ExecutionError(QueryError):
    """A runtime PromQL error (HTTP 422 ``execution``)."""


class QueryTimeout(QueryError):
    """The query exceeded its time budget (HTTP 503 ``timeout``)."""


class QueryCanceled(QueryError):
    """The query was canceled (HTTP 499 ``canceled``)."""
