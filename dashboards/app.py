"""Streamlit entry point of the Rainbow Bridge dashboards: ``streamlit run dashboards/app.py``.

Pages live one per module under ``dashboards/pages/`` and are registered in
:mod:`dashboards.navigation`. Pages read the lake read-only through
:mod:`dashboards.data`; the lake root comes from ``$RAINBOW_LAKE_ROOT``.
"""

from __future__ import annotations

import streamlit as st

from dashboards.navigation import sections

APP_TITLE = "彩虹桥 养老数据湖"

st.set_page_config(page_title=APP_TITLE, page_icon="🌈", layout="wide")

navigation = st.navigation(
    {
        section: [
            st.Page(page.path, title=page.title, icon=page.icon, url_path=page.url_path, default=page.default)
            for page in pages
        ]
        for section, pages in sections().items()
    }
)
navigation.run()
