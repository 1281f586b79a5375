"""数据湖概览: what is in the lake right now, read from the lake itself.

Per zone, the warehouse's tables and views with their row counts; per source
system, the files waiting in the landing zone. Nothing here is made up: an
empty or missing lake is shown as such.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import streamlit as st

from dashboards.common import page_context
from dashboards.data import (
    LandingSystem,
    WarehouseOverview,
    WarehouseState,
    format_bytes,
    group_by_zone,
    landing_summary,
    read_warehouse,
)
from rainbow.settings import Lake

TITLE = "彩虹桥 养老数据湖"
CACHE_SECONDS = 30
KIND_LABELS = {"view": "视图", "table": "表"}
STATE_MESSAGES = {
    WarehouseState.MISSING: (
        "数据仓库尚未生成：还没有找到 warehouse.duckdb。请先运行一次数据流水线，然后刷新本页。"
    ),
    WarehouseState.LOCKED: "数据仓库正在被流水线写入（文件已锁定），暂时无法读取。请稍后点击“刷新”。",
    WarehouseState.ERROR: "数据仓库暂时无法读取。请联系数据管理员检查 warehouse.duckdb。",
}


@st.cache_data(ttl=CACHE_SECONDS, show_spinner=False)
def _warehouse(path: str) -> WarehouseOverview:
    return read_warehouse(Path(path))


@st.cache_data(ttl=CACHE_SECONDS, show_spinner=False)
def _landing(path: str) -> list[LandingSystem]:
    return landing_summary(Path(path))


def _render_warehouse(overview: WarehouseOverview) -> None:
    st.header("数据仓库 · 各区表与视图")
    if overview.state is not WarehouseState.OK:
        message = STATE_MESSAGES[overview.state]
        if overview.state is WarehouseState.ERROR:
            st.warning(message)
            st.caption(f"详细信息：{overview.detail}")
        else:
            st.info(message)
        return
    zones = group_by_zone(overview.tables)
    if not zones:
        st.info("数据仓库已存在，但其中还没有任何表或视图。")
        return
    columns = st.columns(len(zones))
    for column, zone in zip(columns, zones, strict=True):
        column.metric(
            f"{zone.label}（{zone.zone}）", f"{zone.total_rows:,} 行", help=f"{len(zone.tables)} 张表/视图"
        )
    for zone in zones:
        st.subheader(f"{zone.label}（{zone.zone}）")
        frame = pl.DataFrame(
            {
                "表名": [t.name for t in zone.tables],
                "类型": [KIND_LABELS.get(t.kind, t.kind) for t in zone.tables],
                "行数": [t.rows for t in zone.tables],
                "说明": ["" if t.error is None else f"无法读取：{t.error}" for t in zone.tables],
            },
            schema={"表名": pl.String, "类型": pl.String, "行数": pl.Int64, "说明": pl.String},
        )
        st.dataframe(frame, hide_index=True, width="stretch")


def _render_landing(lake: Lake, systems: list[LandingSystem]) -> None:
    st.header("落地区 · 源系统投递文件")
    if not lake.landing.is_dir():
        st.info(f"落地区目录尚不存在：{lake.landing}")
        return
    if not systems:
        st.info("落地区还没有任何源系统投递的文件。")
        return
    total_files = sum(s.files for s in systems)
    total_bytes = sum(s.bytes for s in systems)
    left, middle, right = st.columns(3)
    left.metric("源系统目录", f"{sum(1 for s in systems if s.system)}")
    middle.metric("文件总数", f"{total_files:,}")
    right.metric("总大小", format_bytes(total_bytes))
    frame = pl.DataFrame(
        {
            "源系统": [s.system or "（落地区根目录）" for s in systems],
            "文件数": [s.files for s in systems],
            "大小": [format_bytes(s.bytes) for s in systems],
            "最近投递（北京时间）": [
                s.latest.strftime("%Y-%m-%d %H:%M") if s.latest else "—" for s in systems
            ],
        },
        schema={
            "源系统": pl.String,
            "文件数": pl.Int64,
            "大小": pl.String,
            "最近投递（北京时间）": pl.String,
        },
    )
    st.dataframe(frame, hide_index=True, width="stretch")


page_context("home")  # stewards only: it lists every zone's tables
lake = Lake.from_env()
st.title(TITLE)
st.caption(f"数据湖概览 · 湖根目录：{lake.root}")
if st.button("刷新", help=f"重新读取数据湖（数据最多缓存 {CACHE_SECONDS} 秒）"):
    _warehouse.clear()
    _landing.clear()
_render_warehouse(_warehouse(str(lake.warehouse)))
_render_landing(lake, _landing(str(lake.landing)))
