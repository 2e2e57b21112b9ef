"""The SOTP server agent: collects host metrics with ``exporters.host`` and pushes them over remote write.

Footprint matters (it must stay within node_exporter's ~21 MB RSS), so the agent path imports neither
aiohttp, psycopg, prometheus_client, numpy, cramjam nor the protobuf runtime: HTTP is a small stdlib client
(``agent.http``), the body comes from :mod:`sotp.codec.remote_write_encoder`.
"""
