"""安全告警: open alerts by street and by how long they have been open; stewards and street
staff acknowledge and close them (the lifecycle functions, with the user as actor).

Alert rows come from the role's ``safety_alerts`` view (street staff: their street only);
the lifecycle state (who acknowledged or closed, when, note) from the operational store.
An alert can only be acted on when it is among the rows the user's view returned.
"""

from __future__ import annotations

import altair as alt
import polars as pl
import streamlit as st

from assets.marts.alert_lifecycle import (
    ACKNOWLEDGED,
    CLOSED,
    OPEN,
    AlertLifecycleError,
    acknowledge,
    alert_states,
    close,
    collapse,
)
from assets.marts.alert_rules import load_rules
from dashboards import queries
from dashboards.common import (
    ALERT_STATES_ZH,
    SEVERITY_ZH,
    codelist_labels,
    guarded,
    page_context,
    show_chart,
    show_table,
    street_label,
)

ACTING_ROLES = ("steward", "street_staff")
FLASH_KEY = "alerts_flash"

ctx = page_context("alerts")
st.title("安全告警")
scope = street_label(ctx.session.street) if ctx.session.street else "全区"
st.caption(f"范围：{scope} · 来源：一键通智能腕表、独居老人智能水表")
if FLASH_KEY in st.session_state:
    st.success(st.session_state.pop(FLASH_KEY))

rows = guarded(lambda: queries.alert_rows(ctx.db), what="安全告警")
if rows is None:
    st.stop()
if rows.is_empty():
    st.info("当前没有安全告警。")
    st.stop()

states = alert_states(ctx.lake)
ctx.db.audit_read("ops:alert_state", states.height)
alerts = queries.with_states(collapse(rows), states, load_rules().auto_close_after_hours)
types_zh = codelist_labels("alert_type")
alerts = alerts.with_columns(
    类型=pl.col("alert_type").replace(types_zh),
    级别=pl.col("severity").replace(SEVERITY_ZH),
    街道=pl.col("street").map_elements(street_label, return_dtype=pl.String, skip_nulls=False),
    状态=pl.col("state").replace(ALERT_STATES_ZH),
)
open_alerts = alerts.filter(pl.col("state") != CLOSED)

c1, c2, c3 = st.columns(3)
c1.metric("未关闭告警", f"{open_alerts.height} 条")
c2.metric("其中紧急", f"{open_alerts.filter(pl.col('severity') == 'CRITICAL').height} 条")
c3.metric("超过24小时", f"{open_alerts.filter(pl.col('open_hours') >= 24).height} 条")

st.header("未关闭告警 · 按街道与时长")
if open_alerts.is_empty():
    st.success("所有告警均已关闭。")
else:
    by = open_alerts.group_by("街道", "open_band").len().rename({"open_band": "时长", "len": "告警数"})
    show_chart(
        alt.Chart(by.to_pandas())
        .mark_bar()
        .encode(
            y=alt.Y("街道:N", sort="-x", title=None),
            x=alt.X("告警数:Q", title="告警数", axis=alt.Axis(tickMinStep=1, format="d")),
            color=alt.Color("时长:N", sort=queries.AGE_BAND_ORDER, title="已持续"),
            order=alt.Order("时长:N"),
            tooltip=["街道", "时长", "告警数"],
        )
    )
    matrix = (
        by.pivot(on="时长", index="街道", values="告警数", aggregate_function="sum").fill_null(0).sort("街道")
    )
    ordered = ["街道", *[b for b in queries.AGE_BAND_ORDER if b in matrix.columns]]
    show_table(matrix.select(ordered))

st.header("告警列表")
choice = st.segmented_control(
    "显示", ["未关闭", "全部", "已关闭"], default="未关闭", key="alerts_filter", required=True
)
shown = {"未关闭": open_alerts, "已关闭": alerts.filter(pl.col("state") == CLOSED)}.get(choice or "", alerts)
show_table(
    shown.select(
        pl.col("alert_id").alias("告警编号"),
        "类型",
        "级别",
        "街道",
        pl.col("detected_at").dt.strftime("%m-%d %H:%M").alias("首次触发"),
        pl.col("open_band").alias("已持续"),
        "状态",
        pl.col("evidence").alias("告警依据"),
        pl.col("state_by").alias("处理人"),
        pl.col("state_note").alias("处理说明"),
        pl.col("elder_pseudonym").alias("老人化名键"),
    )
)

if ctx.session.role in ACTING_ROLES and not open_alerts.is_empty():
    st.header("处置告警")
    labels = {
        r["alert_id"]: f"{r['alert_id']} · {r['类型']} · {r['街道']} · {r['状态']}"
        for r in open_alerts.iter_rows(named=True)
    }
    alert_id = st.selectbox("选择告警", list(labels), format_func=lambda a: labels[a], key="alerts_pick")
    note = st.text_input(
        "处置说明（可选）", key="alerts_note", placeholder="例如：已电话联系家属，志愿者上门查看"
    )
    state = open_alerts.filter(pl.col("alert_id") == alert_id)["state"].item()
    b1, b2 = st.columns(2)
    ack = b1.button("确认告警（已知悉）", key="alerts_ack", disabled=state != OPEN, type="primary")
    done = b2.button("关闭告警（已处理）", key="alerts_close")
    if ack or done:
        if alert_id not in set(open_alerts["alert_id"].to_list()):  # only what the user's view returned
            st.error("无权处置该告警。")
        else:
            try:
                if ack:
                    acknowledge(ctx.lake, alert_id, ctx.session.username, note)
                else:
                    close(ctx.lake, alert_id, ctx.session.username, note)
            except AlertLifecycleError as exc:
                st.error(f"无法处置：{exc}")
            else:
                new_state = ACKNOWLEDGED if ack else CLOSED
                st.session_state[FLASH_KEY] = (
                    f"告警 {alert_id} {ALERT_STATES_ZH[new_state]}（处理人：{ctx.session.display_name}）"
                )
                st.rerun()
