"""设施与告警地图: elder-care facilities (registry coordinates) and open safety alerts per street.

Drawn with Vega-Lite (a Mercator projection of longitude/latitude): no map tiles, so it
works on the district's offline network. Each street is labelled at the centre of its
facilities; the red circles grow with the street's open alerts.
"""

from __future__ import annotations

import altair as alt
import polars as pl
import streamlit as st

from assets.marts.alert_lifecycle import CLOSED, alert_states, collapse
from assets.marts.alert_rules import load_rules
from dashboards import queries
from dashboards.common import codelist_labels, guarded, page_context, show_chart, show_table, street_label

ctx = page_context("map")
st.title("设施与告警地图")
st.caption("离线地图：按经纬度绘制，不加载在线底图。")

fac = guarded(lambda: queries.facilities(ctx.db), what="养老服务设施")
if fac is None:
    st.stop()
fac = fac.filter(pl.col("lat").is_not_null() & pl.col("lon").is_not_null()).with_columns(
    类型=pl.col("facility_type").replace(codelist_labels("facility_type")),
    名称=pl.col("facility_name"),
    街道=pl.col("street").map_elements(street_label, return_dtype=pl.String, skip_nulls=False),
)
if fac.is_empty():
    st.info("设施登记中还没有经纬度。")
    st.stop()

open_by_street = pl.DataFrame(schema={"street": pl.String, "open_alerts": pl.UInt32})
if ctx.db.has("safety_alerts"):
    rows = guarded(lambda: queries.alert_rows(ctx.db), what="安全告警")
    if rows is not None and not rows.is_empty():
        states = alert_states(ctx.lake)
        ctx.db.audit_read("ops:alert_state", states.height)
        alerts = queries.with_states(collapse(rows), states, load_rules().auto_close_after_hours)
        open_by_street = (
            alerts.filter(pl.col("state") != CLOSED).group_by("street").len().rename({"len": "open_alerts"})
        )

centres = (
    fac.group_by("street", "街道")
    .agg(pl.col("lat").mean(), pl.col("lon").mean(), pl.len().alias("设施数"))
    .join(open_by_street, on="street", how="left")
    .with_columns(未关闭告警=pl.col("open_alerts").fill_null(0).cast(pl.Int64))
    .drop("open_alerts")
    .sort("街道")
)

m1, m2 = st.columns(2)
m1.metric("设施数", f"{fac.height} 处")
m2.metric("未关闭告警", f"{int(centres['未关闭告警'].sum())} 条" if ctx.db.has("safety_alerts") else "—")

base = alt.Chart(fac.select("lat", "lon", "类型", "名称", "街道").to_pandas())
points = base.mark_point(filled=True, size=70, opacity=0.85).encode(
    longitude="lon:Q",
    latitude="lat:Q",
    color=alt.Color("类型:N", title="设施类型"),
    shape=alt.Shape("类型:N", title="设施类型"),
    tooltip=["名称", "类型", "街道"],
)
centre_chart = alt.Chart(centres.select("lat", "lon", "街道", "设施数", "未关闭告警").to_pandas())
alert_marks = centre_chart.mark_circle(color="#d7191c", opacity=0.35).encode(
    longitude="lon:Q",
    latitude="lat:Q",
    size=alt.Size(
        "未关闭告警:Q",
        title="未关闭告警",
        scale=alt.Scale(range=[0, 2500]),
        legend=alt.Legend(format="d", tickMinStep=1),
    ),
    tooltip=["街道", "设施数", "未关闭告警"],
)
labels = centre_chart.mark_text(fontSize=13, fontWeight="bold", dy=-12).encode(
    longitude="lon:Q", latitude="lat:Q", text="街道:N"
)
chart = (alert_marks + points + labels).project("mercator").properties(width="container", height=480)
show_chart(chart)

st.header("各街道设施与告警")
show_table(centres.select("街道", "设施数", "未关闭告警"))
