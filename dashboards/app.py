"""Streamlit entry point of the Rainbow Bridge dashboards: ``streamlit run dashboards/app.py``.

Pages live one per module under ``dashboards/screens/`` and are registered in
:mod:`dashboards.navigation`. Nobody sees a page before logging in
(:mod:`dashboards.login`); then the navigation holds the pages of the user's role.
Pages read the lake through :mod:`dashboards.access` (the role's views, audited); the
lake root comes from ``$RAINBOW_LAKE_ROOT``.
"""

from __future__ import annotations

import streamlit as st

from dashboards.access import close_run_dbs
from dashboards.common import ELDER_MODE_KEY, SESSION_KEY, apply_style, current_session
from dashboards.login import login_for, login_page
from dashboards.navigation import PAGES, default_page, pages_for, sections

APP_TITLE = "彩虹桥 养老数据湖"

st.set_page_config(page_title=APP_TITLE, page_icon="🌈", layout="wide")


def _logout() -> None:
    st.session_state.pop(SESSION_KEY, None)


session = current_session()
with st.sidebar:
    st.toggle(
        "适老化模式（大字号、高对比度）",
        key=ELDER_MODE_KEY,
        help="放大文字、加深对比度、加粗按钮边框，便于老年用户和户外强光下使用。",
    )
apply_style()

if session is None:
    # every page's address shows the login form, so a bookmarked page opens after login
    navigation = st.navigation(
        [st.Page(login_page, title="登录", icon=":material/login:", url_path="login", default=True)]
        + [
            st.Page(login_for(spec.module), title="登录", url_path=spec.url_path, visibility="hidden")
            for spec in PAGES
        ],
        position="hidden",
    )
else:
    first = default_page(session.role)
    with st.sidebar:
        st.markdown(
            f"**{session.display_name}**  \n{session.role_zh}"
            + (f" · {session.street_zh}" if session.street else "")
        )
        st.button("退出登录", on_click=_logout, key="logout")
    navigation = st.navigation(
        {
            section: [
                st.Page(
                    page.path,
                    title=page.title,
                    icon=page.icon,
                    url_path=page.url_path,
                    default=first is not None and page.module == first.module,
                )
                for page in pages
            ]
            for section, pages in sections(pages_for(session.role)).items()
        }
    )
try:
    navigation.run()
finally:
    close_run_dbs()  # no role connection outlives the page run
