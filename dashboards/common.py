"""What every dashboard page shares: the session, the page guard, the 适老化 style, labels.

A page starts with ``ctx = page_context("kpi")``: it stops the page unless someone is
logged in whose role may open it (the navigation shows only such pages, but a page
never relies on that) and returns the lake, the session and the session's
:class:`~dashboards.access.Db`, through which every query of the page runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import altair as alt
import polars as pl
import streamlit as st

from dashboards.access import DataUnavailable, Db, Session, open_db
from dashboards.auth import street_names
from dashboards.navigation import page
from rainbow.settings import Lake

SESSION_KEY = "rainbow_session"
ELDER_MODE_KEY = "elder_mode"
DISTRICT_CODE = "310110000000"
DISTRICT_ZH = "杨浦区"

T = TypeVar("T")

# Traffic lights: a symbol and a word, never colour alone (colour-blind and 适老化 readers);
# symbols from plain fonts (DejaVu), not emoji, so they render on machines without an emoji font.
STATUS_LIGHTS: dict[str, tuple[str, str]] = {
    "MET": ("●", "达标"),
    "NOT_MET": ("●", "未达标"),
    "NO_DATA": ("○", "暂无数据"),
    "NO_TARGET": ("◇", "无目标值"),
    "NO_BASELINE": ("○", "无上期数据"),
}
# cell text -> colour, most specific word first (未达标 before 达标)
TEXT_COLOURS: tuple[tuple[str, str], ...] = (
    ("未达标", "#b3261e"),
    ("已过期", "#b3261e"),
    ("告警", "#b3261e"),
    ("不符", "#b3261e"),
    ("紧急", "#b3261e"),
    ("即将到期", "#a15c00"),
    ("关注", "#a15c00"),
    ("达标", "#1b7a34"),
    ("良好", "#1b7a34"),
    ("有效", "#1b7a34"),
    ("完整", "#1b7a34"),
    ("暂无数据", "#5f6368"),
    ("无上期数据", "#5f6368"),
    ("未生效", "#5f6368"),
    ("无目标值", "#1a56a8"),
)
MARKDOWN_COLOURS = {
    "MET": "green",
    "NOT_MET": "red",
    "NO_DATA": "gray",
    "NO_TARGET": "blue",
    "NO_BASELINE": "gray",
}
ALERT_STATES_ZH = {"OPEN": "待处理", "ACKNOWLEDGED": "已确认", "CLOSED": "已关闭"}
SEVERITY_ZH = {"CRITICAL": "紧急", "HIGH": "高", "MEDIUM": "中", "LOW": "低"}
DENIED_TEXT = "当前角色无权查看此数据（由脱敏与访问策略决定）。"

# Base style: phone widths (390 px) keep the main column inside the screen.
BASE_CSS = """
<style>
@media (max-width: 640px) {
  [data-testid="stMainBlockContainer"] { padding-left: 0.75rem; padding-right: 0.75rem; padding-top: 3rem; }
  [data-testid="stMetricValue"] { font-size: 1.6rem; }
  h1 { font-size: 1.7rem !important; }
}
[data-testid="stMainBlockContainer"] { max-width: 100%; }
[data-testid="stMainBlockContainer"] img, [data-testid="stMainBlockContainer"] svg { max-width: 100%; }
[data-testid="stMetricLabel"] p { white-space: normal; }
</style>
"""

# 适老化: large text, strong contrast, thick focus and button outlines; the traffic lights keep
# their (dark) colours and their words.
ELDER_CSS = """
<style>
html { font-size: 20px; }
[data-testid="stApp"], [data-testid="stSidebar"], [data-testid="stHeader"] { background: #ffffff; }
[data-testid="stApp"] p, [data-testid="stApp"] li, [data-testid="stApp"] label,
[data-testid="stApp"] h1, [data-testid="stApp"] h2, [data-testid="stApp"] h3,
[data-testid="stCaptionContainer"], [data-testid="stMetricValue"] div { color: #000000 !important; }
[data-testid="stApp"] a { color: #0000cc !important; text-decoration: underline; }
[data-testid^="stBaseButton"] { border: 3px solid #000000 !important; font-weight: 700; }
[data-testid="stApp"] input { border: 2px solid #000000 !important; font-size: 1.1rem; }
[data-testid="stMetricValue"] { font-size: 2.4rem; font-weight: 700; }
*:focus-visible { outline: 4px solid #ffbf00 !important; }
</style>
"""


@dataclass(frozen=True)
class PageContext:
    lake: Lake
    session: Session
    db: Db


def current_session() -> Session | None:
    value = st.session_state.get(SESSION_KEY)
    return value if isinstance(value, Session) else None


def apply_style() -> None:
    """The base style, plus the 适老化 style while the sidebar toggle is on."""
    st.html(BASE_CSS + (ELDER_CSS if st.session_state.get(ELDER_MODE_KEY) else ""))


def page_context(module: str) -> PageContext:
    """Stop the page unless a logged-in user whose role may open ``module`` is here."""
    session = current_session()
    if session is None:
        st.warning("请先登录。")
        st.stop()
    assert session is not None
    if session.role not in page(module).roles:
        st.error(f"您的角色（{session.role_zh}）无权打开此页面。")
        st.stop()
    lake = Lake.from_env()
    return PageContext(lake, session, open_db(lake, session))


def guarded(fn: Callable[[], T], *, what: str = "数据") -> T | None:
    """Run a data call; show a friendly Chinese message instead of a traceback when the
    lake is busy or the policy refuses (None then)."""
    try:
        return fn()
    except DataUnavailable as exc:
        st.info(str(exc))
    except PermissionError as exc:
        st.warning(f"{what}：{DENIED_TEXT}")
        st.caption(str(exc))
    return None


def light(status: str | None) -> str:
    """``● 达标`` for a KPI status code (coloured where shown through :func:`show_table`)."""
    symbol, word = STATUS_LIGHTS.get(status or "NO_DATA", ("○", status or "暂无数据"))
    return f"{symbol} {word}"


def light_md(status: str | None) -> str:
    """The traffic light as coloured Markdown (``:green[● 达标]``)."""
    return f":{MARKDOWN_COLOURS.get(status or 'NO_DATA', 'gray')}[{light(status)}]"


def text_colour(value: object) -> str:
    """CSS for a table cell whose text carries a status word (traffic lights)."""
    if isinstance(value, str):
        for word, colour in TEXT_COLOURS:
            if word in value:
                return f"color: {colour}; font-weight: 600"
    return ""


def street_label(code: str | None) -> str:
    if code is None:
        return "（未知街道）"
    if code == DISTRICT_CODE:
        return DISTRICT_ZH
    return street_names().get(code) or _all_street_names().get(code, code)


def _all_street_names() -> dict[str, str]:
    from schemas import load_registry

    return {v.code: v.zh for v in load_registry().codelist("street").values}


def codelist_labels(name: str) -> dict[str, str]:
    """Code -> Chinese label of a code list (``sex``, ``age_band``, ``care_level``, ...)."""
    from schemas import load_registry

    try:
        return {v.code: v.zh for v in load_registry().codelist(name).values}
    except KeyError:
        return {}


def zh_codes(frame: pl.DataFrame, column: str, codelist: str, alias: str | None = None) -> pl.DataFrame:
    """Replace codes by their Chinese labels (unknown codes stay as they are)."""
    labels = codelist_labels(codelist)
    return frame.with_columns(
        pl.col(column).cast(pl.String).replace(labels).fill_null("（空）").alias(alias or column)
    )


def show_table(frame: pl.DataFrame, *, lights: bool = False, **kwargs: Any) -> None:
    """A full-width table without the index (scrolls inside itself on a phone).

    ``lights``: colour cells holding a status word (达标 green, 未达标 red, ...).
    """
    if lights and not frame.is_empty():
        text = [c for c, t in frame.schema.items() if t == pl.String]
        styled = frame.to_pandas().style.map(text_colour, subset=text)
        st.dataframe(styled, hide_index=True, width="stretch", **kwargs)
        return
    st.dataframe(frame, hide_index=True, width="stretch", **kwargs)


def show_chart(chart: alt.TopLevelMixin) -> None:
    """A full-width Vega-Lite chart (renders offline) with its legend below the plot, so a
    phone-width screen (390 px) keeps the plot wide."""
    st.altair_chart(
        chart.configure_legend(orient="bottom", direction="horizontal", columns=3, labelLimit=200),
        width="stretch",
    )
