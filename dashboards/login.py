"""登录: the only page before login. Users come from the hashed credentials file (auth.py)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import streamlit as st

from dashboards.access import Session, audit_login
from dashboards.auth import AuthError, User, authenticate, default_users_path, ensure_users_file, load_users
from dashboards.common import SESSION_KEY
from rainbow.settings import Lake

log = logging.getLogger(__name__)

FAILURES_KEY = "login_failures"
MAX_FAST_FAILURES = 3  # after this many wrong passwords in a browser session, each try waits
FAILURE_DELAY_S = 2.0


@st.cache_data(ttl=10, show_spinner=False)
def _users(path: str, mtime_ns: int) -> dict[str, User]:
    return load_users(Path(path))


def users_for(lake: Lake) -> dict[str, User]:
    """The credentials file's users (demo users created first when there is no file)."""
    path = default_users_path(lake)
    ensure_users_file(path)
    return _users(str(path), path.stat().st_mtime_ns)


def login_page() -> None:
    lake = Lake.from_env()
    st.title("彩虹桥 养老数据湖")
    st.subheader("用户登录")
    try:
        users = users_for(lake)
    except (AuthError, OSError) as exc:
        st.error(f"用户文件无法读取，请联系数据管理员：{exc}")
        return
    with st.form("login", border=True):
        username = st.text_input("用户名", key="login_username", autocomplete="username")
        password = st.text_input(
            "密码", type="password", key="login_password", autocomplete="current-password"
        )
        submitted = st.form_submit_button("登录", type="primary")
    st.caption("账号由数据管理员通过 `rainbow user add` 创建；忘记密码请联系数据管理员重置。")
    if not submitted:
        return
    failures = int(st.session_state.get(FAILURES_KEY, 0))
    if failures >= MAX_FAST_FAILURES:
        time.sleep(FAILURE_DELAY_S)  # slows password guessing down
    user = authenticate(users, username, password)
    if user is None:
        st.session_state[FAILURES_KEY] = failures + 1
        audit_login(lake, username.strip(), "unknown", ok=False)
        st.error("用户名或密码错误，请重新输入。")
        return
    st.session_state[FAILURES_KEY] = 0
    st.session_state[SESSION_KEY] = Session.from_user(user)
    audit_login(lake, user.username, user.role, ok=True, street=user.street)
    log.info("dashboard login: %s (%s)", user.username, user.role)
    st.rerun()


def login_for(module: str) -> Callable[[], None]:
    """The login form under a page's address (one function per page: Streamlit tells pages
    apart by their callable's name)."""

    def page() -> None:
        login_page()

    page.__name__ = f"login_{module}"
    page.__qualname__ = page.__name__
    return page
