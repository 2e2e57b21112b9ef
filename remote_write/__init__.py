"""Receivers of ``sotp serve``: remote write 1.0, the push gateway and JSON ingest.

All of them land samples through :func:`remote_write.pipeline.write_batch` and answer errors through
:func:`remote_write.pipeline.error_response`, the one error → HTTP status table of the write side.
"""
