"""Streamlit page scripts (run by ``st.navigation`` from ``dashboards/app.py``, not imported)."""
