"""schemathesis hooks for tests/sotp/test_openapi.py: send protobuf bodies as the raw bytes generated for them
(schemathesis has no protobuf serializer; the receivers must answer 4xx to such bytes, never 5xx)."""

from __future__ import annotations

import schemathesis

schemathesis.serializer.alias("application/x-protobuf", "application/octet-stream")
schemathesis.serializer.alias("application/vnd.google.protobuf", "application/octet-stream")
