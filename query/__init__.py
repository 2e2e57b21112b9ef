"""PromQL engine and the Prometheus HTTP API v1."""
