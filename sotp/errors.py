"""SOTP's error tree. Components translate library exceptions into these at the call site.

::

    SotpError
     ├── ConfigError            bad configuration (key path + reason)
     ├── StorageError           the store failed (I/O, database down): retryable, 503 upstream
     │    └── StorageUnavailable    cannot reach the database
     ├── IngestError            input that can never succeed: 400 upstream
     │    ├── DecodeError           bad snappy / protobuf / text / JSON
     │    ├── SampleRejected        out-of-order, conflicting, too old, too far in the future
     │    └── LimitExceeded         a size, series or label limit (413 for size, 400 otherwise)
     ├── UnsupportedMediaType   content type or encoding the endpoint does not speak (415)
     └── AuthError              missing/invalid token (401) or scope (403)

Messages are lowercase, say what failed with sizes and limits, and name the setting to change.
"""

from __future__ import annotations


class SotpError(Exception):
    """Root of SOTP's own errors."""


class ConfigError(SotpError):
    """Configuration is invalid; the message names the key path."""


class StorageError(SotpError):
    """The store failed in a way a retry may fix."""


class StorageUnavailable(StorageError):
    """The database cannot be reached."""


class IngestError(SotpError):
    """Input that can never be accepted (HTTP 400)."""


class DecodeError(IngestError):
    """The body could not be decoded."""


class SampleRejected(IngestError):
    """A sample breaks the ordering rules of its series (out-of-order, conflict, too old)."""


class LimitExceeded(IngestError):
    """A request exceeds a configured limit. ``status`` is 413 for size limits, else 400."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class TooManySamples(SotpError):
    """A select loaded more samples than ``SelectHints.max_samples`` allows (the query engine answers 422)."""


class UnsupportedMediaType(SotpError):
    """The body's content type or encoding is not one the endpoint accepts (HTTP 415)."""


class AuthError(SotpError):
    """Authentication or authorization failed. ``status`` is 401 or 403."""

    def __init__(self, message: str, status: int = 401) -> None:
        super().__init__(message)
        self.status = status
