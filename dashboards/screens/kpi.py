"""指标看板: every KPI of the registry for the district and the 12 streets - actual against
target, traffic lights (达标 / 未达标 / 暂无数据), and the trend month by month.

Street staff see the rows their role view holds (their own street); the district
cards then show their street.
"""

from __future__ import annotations

import altair as alt
import polars as pl
import streamlit as st

from dashboards import queries
from dashboards.common import (
    DISTRICT_CODE,
    guarded,
    light,
    light_md,
    page_context,
    show_chart,
    show_table,
    street_label,
)


def matrix_cell(status: str | None, value_text: str | None) -> str:
    """``● 87.0% 未达标``; a KPI whose target is district-wide shows its value only."""
    if status == "NO_TARGET":
        return value_text or ""
    if status in ("NO_DATA", None):
        return light("NO_DATA")
    return f"{light(status).split()[0]} {value_text} {light(status).split()[1]}"


ctx = page_context("kpi")
st.title("指标看板")

months = guarded(lambda: queries.kpi_months(ctx.db), what="评价指标")
if months is None:
    st.stop()
if not months:
    st.info("还没有指标数据：夜间流水线生成 marts.kpi_values 后这里会显示。")
    st.stop()

month = st.selectbox("统计月份", months, format_func=lambda m: f"{m:%Y年%m月}", key="kpi_month")
rows = guarded(lambda: queries.kpi_month(ctx.db, month), what="评价指标")
if rows is None or rows.is_empty():
    st.info("该月份没有指标数据。")
    st.stop()
st.caption(f"数据截止：{rows['as_of'].max()!s} · 统计至：{rows['period_end'].max()!s}")

district = rows.filter(pl.col("area_code") == DISTRICT_CODE)
own_street = ctx.session.street
if district.is_empty() and own_street:
    headline, scope = rows.filter(pl.col("area_code") == own_street), street_label(own_street)
else:
    headline, scope = district, "杨浦区（全区）"

st.header(f"{scope} · 指标达标情况")
counts = headline.group_by("status").len()
count_of = dict(zip(counts["status"].to_list(), counts["len"].to_list(), strict=True))
c1, c2, c3 = st.columns(3)
c1.metric(":green[● 达标]", f"{count_of.get('MET', 0)} 项")
c2.metric(":red[● 未达标]", f"{count_of.get('NOT_MET', 0)} 项")
c3.metric(":gray[○ 暂无数据]", f"{count_of.get('NO_DATA', 0) + count_of.get('NO_BASELINE', 0)} 项")

cards = st.columns(3)
for i, row in enumerate(headline.sort("status", "kpi_id").iter_rows(named=True)):
    with cards[i % 3].container(border=True):
        target = row["target"]
        target_text = (
            f"目标 {target:g}{row['unit']}"
            if target is not None and row["target_type"] == "absolute"
            else ("目标：高于上月" if row["target_type"] == "growth" else "无目标值")
        )
        st.metric(row["kpi_name_zh"], row["value_text"])
        st.markdown(f"**{light_md(row['status'])}** · {target_text}")

streets = rows.filter(pl.col("level") == "street")
if not streets.is_empty():
    st.header("各街道 · 实际与目标")
    matrix = (
        streets.with_columns(
            街道=pl.col("area_name"),
            cell=pl.struct("status", "value_text").map_elements(
                lambda r: matrix_cell(r["status"], r["value_text"]), return_dtype=pl.String
            ),
        )
        .pivot(on="kpi_name_zh", index="街道", values="cell", aggregate_function="first")
        .sort("街道")
    )
    show_table(matrix, lights=True)
    st.caption("● 达标（绿）· ● 未达标（红）· ○ 暂无数据 · ◇ 无目标值（仅有全区目标的指标，街道不评达标）")

st.header("指标趋势")
names = dict(zip(rows["kpi_id"].to_list(), rows["kpi_name_zh"].to_list(), strict=True))
kpi_id = st.selectbox("选择指标", list(names), format_func=lambda k: names[k], key="kpi_trend")
history = guarded(lambda: queries.kpi_history(ctx.db, kpi_id), what="指标趋势")
if history is not None and not history.is_empty():
    area_names = sorted(set(history["area_name"].to_list()))
    default_areas = [scope.split("（")[0]] if scope.split("（")[0] in area_names else area_names[:1]
    areas = st.multiselect("区域", area_names, default=default_areas, key="kpi_trend_areas")
    shown = history.filter(pl.col("area_name").is_in(areas)).with_columns(
        月份=pl.col("month").dt.strftime("%Y-%m"), 指标值=pl.col("value"), 区域=pl.col("area_name")
    )
    unit = str(history["unit"].drop_nulls().first() or "")
    line = (
        alt.Chart(shown.to_pandas())
        .mark_line(point=True)
        .encode(
            x=alt.X("月份:O", title="月份"),
            y=alt.Y("指标值:Q", title=f"指标值（{unit}）"),
            color=alt.Color("区域:N", title="区域"),
            tooltip=["区域", "月份", "指标值"],
        )
    )
    targets = shown.filter(pl.col("target").is_not_null())
    chart = line
    if not targets.is_empty():
        rule = (
            alt.Chart(targets.select(目标值=pl.col("target").max()).to_pandas())
            .mark_rule(strokeDash=[6, 4], color="#b00020")
            .encode(y="目标值:Q", tooltip=["目标值"])
        )
        chart = line + rule
    show_chart(chart)
    st.caption("虚线为目标值；空缺月份表示暂无数据（不按 0 计）。")
    table = shown.select(
        "区域", "月份", pl.col("value_text").alias("指标值（显示）"), pl.col("status_zh").alias("达标状态")
    )
    show_table(table, lights=True)
