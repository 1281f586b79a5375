"""街道详情: one street - its KPIs against the district, its elders, services and facilities.

Street staff have no choice of street: their role views hold their own street only.
"""

from __future__ import annotations

import altair as alt
import polars as pl
import streamlit as st

from dashboards import queries
from dashboards.auth import street_names
from dashboards.common import (
    DISTRICT_CODE,
    codelist_labels,
    guarded,
    light,
    page_context,
    show_chart,
    show_table,
    street_label,
    zh_codes,
)

ctx = page_context("street")
st.title("街道详情")
names = street_names()
if ctx.session.street:
    street = ctx.session.street
    st.caption(f"您所属的街道：{names.get(street, street)}（只显示本街道数据）")
else:
    street = st.selectbox("选择街道", list(names), format_func=lambda c: names[c], key="street_pick")
st.header(street_label(street))

# KPIs of the street beside the district
months = guarded(lambda: queries.kpi_months(ctx.db), what="评价指标") if ctx.db.has("kpi_values") else None
if months:
    latest = months[0]
    rows = guarded(lambda: queries.kpi_month(ctx.db, latest), what="评价指标")
    if rows is not None:
        mine = rows.filter(pl.col("area_code") == street)
        district = rows.filter(pl.col("area_code") == DISTRICT_CODE).select(
            "kpi_id", pl.col("value_text").alias("全区")
        )
        if mine.is_empty():
            st.info("该街道本月没有指标数据。")
        else:
            st.subheader(f"本街道指标（{latest:%Y年%m月}）")
            table = mine.join(district, on="kpi_id", how="left").select(
                pl.col("kpi_name_zh").alias("指标"),
                pl.col("value_text").alias("本街道"),
                pl.col("全区").fill_null("—"),
                pl.col("status").map_elements(light, return_dtype=pl.String).alias("达标状态"),
            )
            show_table(table, lights=True)
elif not ctx.db.has("kpi_values"):
    st.caption("指标：当前角色无指标视图。")

# elders
st.subheader("在册在世老人")
ages = guarded(lambda: queries.elders_by(ctx.db, "age_band", street), what="老人统计")
if ages is not None:
    if ages.is_empty():
        st.info("该街道暂无老人数据。")
    else:
        total = int(ages["elders"].fill_null(0).sum())
        living = guarded(lambda: queries.elders_by(ctx.db, "living_arrangement", street), what="居住状况")
        alone = 0
        if living is not None:
            alone = int(living.filter(pl.col("living_arrangement") == "ALONE")["elders"].fill_null(0).sum())
        c1, c2 = st.columns(2)
        c1.metric("老人数", f"{total:,} 人")
        c2.metric("独居老人", f"{alone:,} 人")
        chart_data = zh_codes(ages, "age_band", "age_band", "年龄段").rename({"elders": "人数"})
        show_chart(
            alt.Chart(chart_data.to_pandas())
            .mark_bar()
            .encode(x=alt.X("年龄段:N", sort=None), y="人数:Q", tooltip=["年龄段", "人数"])
        )
        st.caption(
            "不足 5 人的分组，以及可由合计反推出其人数的分组，按隐私保护规则不显示具体数字。"
            if ages["elders"].null_count()
            else ""
        )

# services
st.subheader("为老服务（按月）")
services = guarded(lambda: queries.services_by_month(ctx.db, street), what="服务统计")
if services is not None:
    if services.is_empty():
        st.info("该街道暂无服务记录。")
    else:
        data = services.with_columns(
            月份=pl.col("month").dt.strftime("%Y-%m"),
            项目=pl.col("programme").replace(codelist_labels("programme")),
            服务人次=pl.col("events"),
        )
        show_chart(
            alt.Chart(data.to_pandas())
            .mark_bar()
            .encode(
                x="月份:O", y="服务人次:Q", color=alt.Color("项目:N"), tooltip=["月份", "项目", "服务人次"]
            )
        )

# facilities
st.subheader("养老服务设施")
fac = guarded(lambda: queries.facilities(ctx.db, street), what="设施")
if fac is not None:
    if fac.is_empty():
        st.info("该街道暂无设施登记。")
    else:
        fac = zh_codes(fac, "facility_type", "facility_type")
        fac = zh_codes(fac, "status", "facility_status")
        show_table(
            fac.select(
                pl.col("facility_name").alias("名称"),
                pl.col("facility_type").alias("类型"),
                pl.col("status").alias("状态"),
                pl.col("beds").alias("床位"),
                pl.col("address").alias("地址"),
            )
        )
