"""主索引人工复核: the stewards' review queue of uncertain record pairs - both records side by
side with the match weight of each field - and the decision (same person / not the same),
recorded with :func:`assets.library.mei.record_decision`; the next build honours it.
"""

from __future__ import annotations

import json

import polars as pl
import streamlit as st

from assets.library.mei import read_decisions, record_decision
from dashboards import queries
from dashboards.common import guarded, page_context, show_table

FLASH_KEY = "review_flash"
FIELDS = (
    ("name", "姓名"),
    ("sex", "性别"),
    ("birth_date", "出生日期"),
    ("id_number", "身份证号"),
    ("phone", "电话"),
    ("address", "地址"),
    ("source", "来源"),
    ("elder_key", "老人主键"),
)
DECISION_ZH = {"match": "是同一人", "no_match": "不是同一人"}

ctx = page_context("review")
st.title("主索引人工复核")
st.caption("疑似同一老人的记录对：请核对后裁定。裁定写入运营库，下次夜间构建生效。")
if FLASH_KEY in st.session_state:
    st.success(st.session_state.pop(FLASH_KEY))

queue = guarded(lambda: queries.review_queue(ctx.db, status=None, limit=1000), what="复核队列")
if queue is None:
    st.stop()
decisions = read_decisions(ctx.lake)
ctx.db.audit_read("ops:match_decisions", decisions.height)
decided = set(decisions["pair_id"].to_list())
pending = queue.filter(~pl.col("pair_id").is_in(list(decided)) & (pl.col("status") == "OPEN"))

c1, c2, c3 = st.columns(3)
c1.metric("待复核", f"{pending.height} 对")
c2.metric("已裁定（待构建生效）", f"{len(decided)} 对")
c3.metric("队列总数", f"{queue.height} 对")

if pending.is_empty():
    st.success("没有待复核的记录对。")
else:
    labels = {
        r["pair_id"]: (
            f"{r['pair_id']} · {r['name_l'] or '—'} / {r['name_r'] or '—'}"
            f" · 匹配概率 {r['match_probability']:.1%}"
        )
        for r in pending.iter_rows(named=True)
    }
    pair_id = st.selectbox("选择记录对", list(labels), format_func=lambda p: labels[p], key="rv_pick")
    row = pending.filter(pl.col("pair_id") == pair_id).row(0, named=True)
    weights = json.loads(row["field_weights"] or "{}")
    compare = pl.DataFrame(
        [
            (
                label,
                str(row.get(f"{f}_l") or "—"),
                str(row.get(f"{f}_r") or "—"),
                "" if weights.get(f) is None else f"{weights[f]:+.2f}",
            )
            for f, label in FIELDS
        ],
        schema=["字段", "记录甲", "记录乙", "匹配权重"],
        orient="row",
    )
    show_table(compare)
    st.caption(
        f"证据：{row['evidence'] or '—'} · 总匹配权重 {row['match_weight'] or 0:+.2f} · "
        f"本次构建{'已合并' if row['linked'] else '未合并'}"
    )
    note = st.text_input("裁定说明（可选）", key="rv_note")
    b1, b2 = st.columns(2)
    same = b1.button("是同一人（合并）", key="rv_match", type="primary")
    different = b2.button("不是同一人（拆分）", key="rv_no_match")
    if same or different:
        decision = "match" if same else "no_match"
        record_decision(
            ctx.lake, row["record_id_l"], row["record_id_r"], decision, ctx.session.username, note or None
        )
        st.session_state[FLASH_KEY] = (
            f"记录对 {pair_id}：已裁定为“{DECISION_ZH[decision]}”（{ctx.session.display_name}）"
        )
        st.rerun()

if not decisions.is_empty():
    st.header("已作出的裁定")
    show_table(
        decisions.select(
            pl.col("pair_id").alias("复核编号"),
            pl.col("decision").replace(DECISION_ZH).alias("裁定"),
            pl.col("decided_by").alias("裁定人"),
            pl.col("decided_at").alias("时间"),
            pl.col("note").alias("说明"),
        )
    )
