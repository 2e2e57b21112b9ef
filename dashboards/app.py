"""Entry script of the Streamlit app: page setup, sidebar (range, refresh) and navigation.

Run it with ``sotp dashboard --api URL`` (or ``streamlit run dashboards/app.py`` with
``SOTP_DASHBOARD_API`` set). Pages live in ``views/`` (a ``pages/`` folder would make Streamlit add its
own legacy navigation) and read only the Prometheus HTTP API.
"""

from __future__ import annotations

import sys
from pathlib import Path

# ``streamlit run`` puts this file's folder, not the project, on sys.path; ``sotp dashboard`` sets
# PYTHONPATH, this covers a bare ``streamlit run dashboards/app.py`` from a source checkout.
_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import streamlit as st  # noqa: E402

from dashboards import ui  # noqa: E402

_HERE = Path(__file__).resolve().parent

st.set_page_config(page_title="SOTP", page_icon=":material/monitoring:", layout="wide")
PAGES = [
    st.Page(_HERE / "views" / "servers.py", title="Servers", icon=":material/dns:", url_path="servers", default=True),
    st.Page(_HERE / "views" / "network.py", title="Network devices", icon=":material/lan:", url_path="network"),
    st.Page(_HERE / "views" / "alerts.py", title="Alerts", icon=":material/notifications:", url_path="alerts"),
    st.Page(_HERE / "views" / "explorer.py", title="Explorer", icon=":material/query_stats:", url_path="explorer"),
]
navigation = st.navigation(PAGES)
try:
    ui.sidebar(ui.Settings.from_env())
except Exception as err:  # a bad setting must read as a message, not a traceback
    st.error(str(err))
    st.stop()
navigation.run()
