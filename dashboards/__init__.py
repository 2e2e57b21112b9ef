"""SOTP dashboards: a Streamlit app and Grafana provisioning, both reading only the Prometheus HTTP API.

- :mod:`dashboards.promapi`: the HTTP API client (``query``, ``query_range``, discovery).
- :mod:`dashboards.servers`, :mod:`dashboards.network`: what the pages query, without Streamlit.
- :mod:`dashboards.panels`, :mod:`dashboards.timerange`, :mod:`dashboards.units`: charts as data, ranges, units.
- :mod:`dashboards.ui` and ``views/``: the Streamlit views; ``app.py`` is the entry script.
- :mod:`dashboards.cli`: ``sotp dashboard`` (runs ``streamlit run`` headless).
- ``grafana/``: data source and dashboard provisioning plus the dashboard JSON (built by
  :mod:`dashboards.grafana_build`).
"""
