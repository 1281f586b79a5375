"""数据目录: search the data resource catalogue, one dataset's page with its columns and a
column lineage graph, the scenario catalogue (场景库) and the KPI registry.

The catalogue (``marts/catalog/catalog.json``) describes tables, never their rows; each
read is recorded in the audit log.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl
import streamlit as st

from dashboards.common import page_context, show_table
from dashboards.lineage import CatalogueLineage, to_dot

OPEN_DATA_ZH = {"non_open": "不予开放", "conditional": "有条件开放", "unconditional": "无条件开放"}
SENSITIVITY_ZH = {"public": "公开", "internal": "内部", "restricted": "受限", "secret": "机密"}
PII_ZH = {
    "direct_identifier": "直接标识符",
    "quasi_identifier": "准标识符",
    "sensitive": "敏感个人信息",
    "none": "—",
}


@st.cache_data(ttl=60, show_spinner=False)
def _load(path: str, mtime_ns: int) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(Path(path).read_text(encoding="utf-8"))
    return data


def _matches(ds: dict[str, Any], words: list[str]) -> bool:
    text = " ".join(
        [
            ds["id"],
            ds.get("name_zh", ""),
            ds.get("name_en", ""),
            ds.get("description", ""),
            ds.get("group_zh", ""),
        ]
        + [f"{c['name']} {c.get('zh', '')}" for c in ds.get("columns", [])]
    ).lower()
    return all(w in text for w in words)


ctx = page_context("catalog")
st.title("数据目录")
path = ctx.lake.marts / "catalog" / "catalog.json"
if not path.is_file():
    st.info(
        "数据目录尚未生成：夜间流水线（或 `rainbow catalog`）写出 marts/catalog/catalog.json 后这里会显示。"
    )
    st.stop()
catalog = _load(str(path), path.stat().st_mtime_ns)
ctx.db.audit_read("file:marts/catalog/catalog.json", len(catalog.get("datasets", [])))
datasets: list[dict[str, Any]] = catalog.get("datasets", [])
generated = str(catalog.get("generated_at", ""))[:16].replace("T", " ")
st.caption(f"共 {len(datasets)} 个数据集 · {len(catalog.get('scenarios', []))} 个场景 · 生成于 {generated}")

tab_search, tab_scenarios, tab_kpis = st.tabs(["数据集检索", "场景库", "指标库"])

with tab_search:
    query = st.text_input(
        "搜索（名称、说明、字段，中英文均可）", key="cat_query", placeholder="例如：老人 画像 助餐 street"
    )
    words = [w for w in query.lower().split() if w]
    found = [d for d in datasets if _matches(d, words)] if words else datasets
    st.write(f"找到 **{len(found)}** 个数据集")
    show_table(
        pl.DataFrame(
            {
                "数据集": [d["id"] for d in found],
                "名称": [d.get("name_zh", "") for d in found],
                "区域": [d.get("zone_zh", "") for d in found],
                "行数": [d.get("row_count") for d in found],
                "责任部门": [d.get("owner_department", "") for d in found],
                "开放类别": [OPEN_DATA_ZH.get(d.get("open_data", ""), d.get("open_data", "")) for d in found],
            },
            schema={
                "数据集": pl.String,
                "名称": pl.String,
                "区域": pl.String,
                "行数": pl.Int64,
                "责任部门": pl.String,
                "开放类别": pl.String,
            },
        ),
        height=300,
    )
    if found:
        ids = [d["id"] for d in found]
        default = ids.index("marts.elder_portrait") if "marts.elder_portrait" in ids else 0
        names = {d["id"]: f"{d['id']} · {d.get('name_zh', '')}" for d in found}
        chosen = st.selectbox(
            "查看数据集", ids, index=default, format_func=lambda i: names[i], key="cat_dataset"
        )
        ds = next(d for d in found if d["id"] == chosen)
        st.header(f"{ds.get('name_zh', '')}（{ds['id']}）")
        st.write(ds.get("description", ""))
        m1, m2, m3 = st.columns(3)
        m1.metric("行数", "—" if ds.get("row_count") is None else f"{ds['row_count']:,}")
        m2.metric("新鲜度", (ds.get("freshness") or {}).get("status_zh", "—"))
        q = ds.get("quality") or {}
        m3.metric("质量得分", "—" if q.get("score") is None else f"{q['score'] * 100:.1f}%")
        facts = [
            ("区域", ds.get("zone_zh", "")),
            ("责任部门", ds.get("owner_department", "")),
            ("来源系统", ds.get("source_system_zh", "")),
            ("更新频率", ds.get("frequency_zh", "")),
            ("粒度", ds.get("grain", "")),
            ("主键", "、".join(ds.get("primary_key", []))),
            ("开放类别", OPEN_DATA_ZH.get(ds.get("open_data", ""), ds.get("open_data", ""))),
            ("敏感级别", SENSITIVITY_ZH.get(ds.get("sensitivity", ""), ds.get("sensitivity", ""))),
            (
                "可见角色",
                "；".join(f"{r['role_zh']}（{r['access_zh']}）" for r in ds.get("roles", [])) or "—",
            ),
            ("上游表", "、".join(ds.get("upstream_tables", [])) or "—"),
            ("下游表", "、".join(ds.get("downstream_tables", [])) or "—"),
            ("相关场景", "、".join(ds.get("scenarios", [])) or "—"),
        ]
        show_table(pl.DataFrame(facts, schema=["项目", "内容"], orient="row"))
        columns = ds.get("columns", [])
        if columns:
            st.subheader("字段")
            show_table(
                pl.DataFrame(
                    {
                        "字段": [c["name"] for c in columns],
                        "中文名": [c.get("zh", "") for c in columns],
                        "类型": [c.get("type", "") for c in columns],
                        "个人信息": [PII_ZH.get(c.get("pii", "none"), c.get("pii", "")) for c in columns],
                        "说明": [c.get("description", "") for c in columns],
                    }
                )
            )
            st.subheader("字段级血缘")
            labels = {c["name"]: f"{c['name']}（{c.get('zh', '')}）" for c in columns}
            first = next((i for i, c in enumerate(columns) if c.get("semantic") != "identifier"), 0)
            column = st.selectbox(
                "字段", list(labels), index=first, format_func=lambda n: labels[n], key="cat_column"
            )
            lineage = CatalogueLineage(catalog)
            ref = f"{ds['id']}.{column}"
            graph = lineage.trace(ref)
            downstream = lineage.downstream(ref)[:15]
            if len(graph.nodes) <= 1 and not downstream:
                st.info("该字段没有记录到上下游血缘（例如常量或引擎参数）。")
            else:
                st.graphviz_chart(to_dot(graph, lineage, ref, downstream), width="stretch")
                st.caption(
                    "从左到右：来源字段 → 本字段（黄色）→ 下游字段。"
                    + ("（节点较多，仅显示部分）" if graph.truncated else "")
                )

with tab_scenarios:
    scenarios = catalog.get("scenarios", [])
    st.write(f"场景库共 **{len(scenarios)}** 个场景")
    show_table(
        pl.DataFrame(
            {
                "编号": [s["id"] for s in scenarios],
                "场景": [s["name"] for s in scenarios],
                "类别": [s.get("class", "") for s in scenarios],
                "服务对象": [
                    f"{s.get('age_label', '')} · {'、'.join(s.get('vitality_zh', []))}" for s in scenarios
                ],
                "牵头部门": [s.get("lead_department", "") for s in scenarios],
                "试点街道": ["、".join(s.get("pilot_streets_zh", [])) for s in scenarios],
            }
        )
    )
    if scenarios:
        sid = st.selectbox(
            "查看场景",
            [s["id"] for s in scenarios],
            format_func=lambda i: next(f"{s['id']} {s['name']}" for s in scenarios if s["id"] == i),
            key="cat_scenario",
        )
        sc = next(s for s in scenarios if s["id"] == sid)
        st.subheader(sc["name"])
        st.write(sc.get("description", ""))
        st.markdown(
            f"- 使用数据集：{'、'.join(sc.get('datasets', [])) or '—'}\n"
            f"- 相关指标：{'、'.join(sc.get('kpis', [])) or '—'}\n"
            f"- 协同部门：{'、'.join(sc.get('partner_departments', [])) or '—'}\n"
            f"- 依据：{'、'.join(sc.get('legal_basis', [])) or '—'}"
        )

with tab_kpis:
    kpis = catalog.get("kpis", [])
    show_table(
        pl.DataFrame(
            {
                "指标": [k["name_zh"] for k in kpis],
                "单位": [k.get("unit", "") for k in kpis],
                "定义": [k.get("description", "") for k in kpis],
                "责任部门": [k.get("owner_department", "") for k in kpis],
                "读取数据": ["、".join(k.get("reads", [])) for k in kpis],
            }
        )
    )
