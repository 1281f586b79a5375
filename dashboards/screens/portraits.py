"""老年人画像: segment distributions for everyone allowed; individual portraits (by the
pseudonymous key) only for stewards and street staff, names only in the stewards' view.

What a role sees comes from its views: leadership has aggregates only (small cells
suppressed), analysts pseudonymous portraits, street staff their own street.
"""

from __future__ import annotations

import functools

import altair as alt
import polars as pl
import streamlit as st

from dashboards import queries
from dashboards.common import guarded, page_context, show_chart, show_table, street_label, zh_codes

INDIVIDUAL_ROLES = ("steward", "street_staff")
SEVERITY_ZH = {"high": "高", "medium": "中", "low": "低"}
PORTRAIT_FIELDS: dict[str, str] = {
    "age_band": "年龄段",
    "sex": "性别",
    "street": "所属街道",
    "living_arrangement": "居住状况",
    "vitality_segment_zh": "老人分类",
    "segment_reason": "分类依据",
    "care_level": "照护等级",
    "care_level_valid_until": "评估有效期至",
    "cognitive_status": "认知状况",
    "last_screening_date": "最近筛查日期",
    "has_wristband": "在用智能腕表",
    "has_water_meter": "在用智能水表",
    "health_signals": "健康风险信号",
    "meal_aid_30d": "近30天助餐次数",
    "love_milk_30d": "近30天爱心奶次数",
    "ltci_home_care_30d": "近30天长护险居家照护次数",
    "ltci_visits_per_week": "长护险应享每周上门次数",
    "ltci_visits_28d": "近4周实际上门次数",
    "last_service_date": "最近服务日期",
    "as_of": "数据截止日期",
}
CODED = {
    "sex": "sex",
    "age_band": "age_band",
    "living_arrangement": "living_arrangement",
    "care_level": "care_level",
}

ctx = page_context("portraits")
st.title("老年人画像")
street = ctx.session.street
scope = street_label(street) if street else "全区"
st.caption(f"范围：{scope} · 画像按化名键标识，不含姓名、身份证号、电话、地址。")

# ------------------------------------------------------------------ segments
st.header("老人分类分布")
if ctx.db.has("elder_portrait"):
    seg = guarded(lambda: queries.segments(ctx.db), what="老人分类")
    if seg is not None and not seg.is_empty():
        totals = seg.group_by("vitality_segment_zh").agg(pl.col("elders").sum()).sort("vitality_segment_zh")
        cols = st.columns(max(len(totals), 1))
        for col, (name, n) in zip(cols, totals.iter_rows(), strict=False):
            col.metric(f"{name}老人", f"{n:,} 人")
        data = seg.with_columns(
            街道=pl.col("street").map_elements(street_label, return_dtype=pl.String),
            分类=pl.col("vitality_segment_zh"),
            人数=pl.col("elders"),
        )
        show_chart(
            alt.Chart(data.to_pandas())
            .mark_bar()
            .encode(
                y=alt.Y("街道:N", sort="-x", title=None),
                x=alt.X("人数:Q", stack="normalize", title="占比"),
                color=alt.Color("分类:N", title="老人分类"),
                tooltip=["街道", "分类", "人数"],
            )
        )
    elif seg is not None:
        st.info("还没有画像数据。")
else:
    st.caption(
        "当前角色看不到逐人画像，以下为汇总数据（不足 5 人的分组及可由合计反推出其人数的分组不显示）。"
    )
    for column, codelist, title in (
        ("age_band", "age_band", "年龄段"),
        ("care_level", "care_level", "照护等级"),
        ("living_arrangement", "living_arrangement", "居住状况"),
    ):
        frame = guarded(functools.partial(queries.elders_by, ctx.db, column), what=title)
        if frame is None or frame.is_empty():
            continue
        data = (
            zh_codes(frame, column, codelist, title).group_by(title).agg(pl.col("elders").sum().alias("人数"))
        )
        st.subheader(f"按{title}")
        show_chart(
            alt.Chart(data.to_pandas()).mark_bar().encode(x=alt.X(f"{title}:N", sort=None), y="人数:Q")
        )

if ctx.db.has("elder_risk_tags"):
    st.header("风险标签")
    tags = guarded(lambda: queries.risk_tag_counts(ctx.db), what="风险标签")
    if tags is not None and not tags.is_empty():
        show_table(
            tags.select(
                pl.col("tag_zh").alias("风险标签"),
                pl.col("severity").replace(SEVERITY_ZH).alias("严重程度"),
                pl.col("elders").alias("老人数"),
            )
        )

# ------------------------------------------------------------------ one elder
if ctx.session.role in INDIVIDUAL_ROLES:
    st.header("个人画像")
    if not ctx.db.has("elder_portrait"):
        st.info("个人画像：当前角色没有画像视图（由脱敏与访问策略决定）。")
    else:
        tag_options = {"": "（全部）"}
        if ctx.db.has("elder_risk_tags"):
            counted = guarded(lambda: queries.risk_tag_counts(ctx.db), what="风险标签")
            if counted is not None:
                tag_options.update(
                    dict(zip(counted["tag"].to_list(), counted["tag_zh"].to_list(), strict=True))
                )
        tag = st.selectbox(
            "按风险标签筛选", list(tag_options), format_func=lambda t: tag_options[t], key="pt_tag"
        )
        keys = guarded(lambda: queries.portrait_keys(ctx.db, tag=tag or None), what="画像列表")
        if keys is not None and not keys.is_empty():
            pseudonym = st.selectbox(
                "化名键（老人）",
                keys["elder_pseudonym"].to_list(),
                key="pt_key",
                help="化名键由密钥哈希生成，不能反推身份。",
            )
            row = guarded(lambda: queries.portrait(ctx.db, pseudonym), what="个人画像")
            if row:
                values = []
                for field, label in PORTRAIT_FIELDS.items():
                    value = row.get(field)
                    if field in CODED and value is not None:
                        value = zh_codes(pl.DataFrame({"v": [str(value)]}), "v", CODED[field])["v"][0]
                    if field == "street":
                        value = street_label(value)  # type: ignore[arg-type]
                    if isinstance(value, bool):
                        value = "是" if value else "否"
                    values.append((label, "—" if value is None else str(value)))
                show_table(pl.DataFrame(values, schema=["项目", "内容"], orient="row"))
                tags_one = guarded(lambda: queries.portrait_tags(ctx.db, pseudonym), what="风险标签")
                if tags_one is not None and not tags_one.is_empty():
                    st.subheader("风险标签与证据")
                    show_table(
                        tags_one.select(
                            pl.col("tag_zh").alias("风险标签"),
                            pl.col("severity").replace(SEVERITY_ZH).alias("严重程度"),
                            pl.col("evidence").alias("证据"),
                        )
                    )
                if ctx.db.has("elder_scenarios"):
                    sc = guarded(lambda: queries.portrait_scenarios(ctx.db, pseudonym), what="推荐场景")
                    if sc is not None and not sc.is_empty():
                        st.subheader("推荐服务场景")
                        show_table(sc.rename({"scenario_id": "场景编号", "scenario_name": "场景名称"}))
        elif keys is not None:
            st.info("没有符合条件的老人。")

    if ctx.session.role == "steward":
        st.header("按姓名查找（仅数据管理员）")
        name = st.text_input("姓名（可输入部分）", key="pt_name")
        if name.strip():
            found = guarded(lambda: queries.elders_by_name(ctx.db, name.strip()), what="按姓名查找")
            if found is not None:
                found = zh_codes(zh_codes(found, "sex", "sex"), "age_band", "age_band")
                show_table(
                    found.with_columns(pl.col("street").map_elements(street_label, return_dtype=pl.String))
                )
                st.caption("姓名查找使用数据管理员的明细视图，每次查询均记入审计日志。")
