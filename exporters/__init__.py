"""Exporters: Prometheus-compatible /metrics endpoints for hosts (node_exporter names), SNMP and ICMP."""
