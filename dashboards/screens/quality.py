"""数据质量: scorecards per source system and table (the six rule families), the trend by
delivery day, source-system health (freshness, volume, silent systems), and the HTML report.

Quality history and health are metadata about tables (no personal data): they are read
from ``marts/quality_history`` and the ingest ledger, and each read is recorded in the
audit log like a query.
"""

from __future__ import annotations

import altair as alt
import polars as pl
import streamlit as st

from dashboards.common import page_context, show_chart, show_table
from quality.report import report_path
from quality.rules import FAMILY_ZH
from quality.scorecard import (
    is_daily_expr,
    latest_partition_per_table,
    load_thresholds,
    read_history,
    scorecard,
    source_health,
    system_scorecard,
)
from schemas import load_registry

STATUS_LIGHT = {"green": "● 良好", "amber": "▲ 关注", "red": "● 告警"}
TREND_DAYS = 30

ctx = page_context("quality")
st.title("数据质量")
registry = load_registry()
thresholds = load_thresholds()


def _system_zh(name: str) -> str:
    try:
        return registry.system(name).zh
    except KeyError:
        return name


def _table_zh(name: str) -> str:
    try:
        return registry.table(name).zh
    except KeyError:
        try:
            return registry.derived(name).zh
        except KeyError:
            return name


def _cell(score: float | None, status: str | None) -> str:
    if score is None:
        return "—"
    return f"{STATUS_LIGHT.get(status or '', '')} {score * 100:.1f}%".strip()


history = read_history(ctx.lake, newest_partitions=TREND_DAYS)
ctx.db.audit_read("file:marts/quality_history", history.height)
if history.is_empty():
    st.info("还没有质量检查记录：夜间流水线运行质量检查后这里会显示评分卡。")
else:
    latest = latest_partition_per_table(history)
    card = scorecard(latest, thresholds)
    tables = card.group_by("table").agg(pl.col("score").mean()).sort("table")
    m1, m2, m3 = st.columns(3)
    m1.metric("已检查表", f"{tables.height} 张")
    mean_score = tables["score"].mean()
    m2.metric("平均得分", "—" if mean_score is None else f"{float(mean_score) * 100:.1f}%")  # type: ignore[arg-type]
    m3.metric("告警维度", f"{card.filter(pl.col('status') == 'red').height} 个")

    st.header("来源系统评分卡")
    systems = system_scorecard(history, thresholds).with_columns(
        来源系统=pl.col("system").map_elements(_system_zh, return_dtype=pl.String),
        维度=pl.col("family").replace(FAMILY_ZH),
        cell=pl.struct("score", "status").map_elements(
            lambda s: _cell(s["score"], s["status"]), return_dtype=pl.String
        ),
    )
    show_table(
        systems.pivot(on="维度", index="来源系统", values="cell", aggregate_function="first"), lights=True
    )

    st.header("各表评分卡（最近一批）")
    per_table = card.with_columns(
        表=pl.col("table").map_elements(_table_zh, return_dtype=pl.String),
        批次=pl.col("partition"),
        维度=pl.col("family").replace(FAMILY_ZH),
        cell=pl.struct("score", "status").map_elements(
            lambda s: _cell(s["score"], s["status"]), return_dtype=pl.String
        ),
    )
    show_table(
        per_table.pivot(on="维度", index=["表", "批次"], values="cell", aggregate_function="first"),
        lights=True,
    )
    st.caption("● 良好（绿）· ▲ 关注（橙）· ● 告警（红）（阈值见 quality/thresholds.yaml）")

    st.header("质量趋势（按投递日）")
    daily = scorecard(history.filter(is_daily_expr()), thresholds)
    if daily.is_empty():
        st.info("还没有按日检查的表。")
    else:
        trend = (
            daily.filter(~pl.col("partition").str.contains("..", literal=True))
            .group_by("table", "partition")
            .agg(pl.col("score").mean())
            .with_columns(
                表=pl.col("table").map_elements(_table_zh, return_dtype=pl.String),
                投递日=pl.col("partition"),
                得分=(pl.col("score") * 100).round(1),
            )
            .sort("投递日")
        )
        show_chart(
            alt.Chart(trend.select("表", "投递日", "得分").to_pandas())
            .mark_line(point=True)
            .encode(
                x=alt.X("投递日:O", title="投递日"),
                y=alt.Y("得分:Q", title="得分（%）", scale=alt.Scale(zero=False)),
                color=alt.Color("表:N", title="表"),
                tooltip=["表", "投递日", "得分"],
            )
        )

st.header("来源系统健康")
health = source_health(ctx.lake, registry, thresholds)
ctx.db.audit_read("file:raw/_ledger", health.height)
if health.is_empty():
    st.info("还没有投递记录。")
else:
    problems = health.filter(pl.col("status") != "正常")
    h1, h2 = st.columns(2)
    h1.metric("正常的表", f"{health.height - problems.height} 张")
    h2.metric("需关注的表", f"{problems.height} 张")
    show_table(
        health.sort(pl.col("status") == "正常", "system").select(
            pl.col("system_zh").alias("来源系统"),
            pl.col("table_zh").alias("表"),
            pl.col("last_delivery").alias("最近投递"),
            pl.col("days_since").alias("距今天数"),
            pl.col("volume_ratio").round(2).alias("量比"),
            pl.col("status").alias("状态"),
        )
    )

st.header("质量报告")
report = report_path(ctx.lake)
if report.is_file():
    st.download_button(
        "下载完整质量报告（HTML）",
        data=report.read_bytes(),
        file_name="quality_report.html",
        mime="text/html",
        key="quality_report",
    )
    st.caption(f"报告文件：{report}")
else:
    st.info("质量报告尚未生成。")
