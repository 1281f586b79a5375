"""The catalogue as a static, searchable HTML site (Chinese UI, fully offline).

``index.html`` lists every dataset with a client-side search (plain JavaScript
over an index embedded in the page, so it also works from ``file://``);
``datasets/<zone>.<table>.html`` shows a dataset's facts, its columns with PII
flags and each column's lineage (one hop up, the origin columns, everything
downstream), and a table-level lineage graph as inline SVG; ``scenarios.html``
is the scenario catalogue (场景库), ``kpis.html`` each KPI with its formula and
source columns. No external URL, script, font or stylesheet anywhere.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from html import escape
from pathlib import Path

from catalog.build import PII_ZH, Catalog, DatasetEntry
from rainbow.io import atomic_path

DATASET_DIR = "datasets"
STATUS_ZH = {
    "built": "已构建",
    "not built": "未构建",
    "delivered": "已交付",
    "not delivered": "未交付",
    "empty": "空",
}

CSS = """
body{font-family:"Noto Sans CJK SC","WenQuanYi Micro Hei","Microsoft YaHei",sans-serif;
  margin:0;color:#222;background:#fafafa}
header{background:#7a1f2b;color:#fff;padding:12px 24px}
header a{color:#fff;margin-right:18px;text-decoration:none}
main{padding:16px 24px}h1{font-size:22px;margin:4px 0}h2{font-size:18px;margin-top:28px}
table{border-collapse:collapse;width:100%;background:#fff;font-size:13px}
th,td{border:1px solid #ddd;padding:4px 6px;text-align:left;vertical-align:top}th{background:#f0e6e6}
.pii-direct_identifier{background:#fbd5d5}.pii-quasi_identifier{background:#fdeccf}.pii-sensitive{background:#e8dcf7}
.tag{display:inline-block;border-radius:3px;padding:0 5px;margin:1px;font-size:12px;background:#eee}
.st-fresh{color:#1a7f37}.st-late,.st-stale{color:#b35900}.st-silent,.st-zombie,.st-not_built,.st-no_delivery{color:#b00020}
.green{color:#1a7f37}.amber{color:#b35900}.red{color:#b00020}
.muted{color:#777}.problems{background:#fff4f4;border:1px solid #e5b5b5;padding:8px}
input#q{width:420px;padding:6px;font-size:14px}select{padding:5px}
ul.refs{margin:2px 0;padding-left:18px}details summary{cursor:pointer;color:#7a1f2b}
pre{background:#f5f5f5;padding:8px;overflow-x:auto;font-size:12px}
dl.facts{display:grid;grid-template-columns:160px 1fr;gap:2px 12px}dl.facts dt{color:#666}
table.scn td:nth-child(1),table.scn td:nth-child(2),table.scn td:nth-child(4){white-space:nowrap}
"""

SEARCH_JS = """
(function(){
  var index = JSON.parse(document.getElementById('search-index').textContent);
  var q = document.getElementById('q'), zone = document.getElementById('zone');
  var pii = document.getElementById('pii'), count = document.getElementById('count');
  var rows = {};
  document.querySelectorAll('tr[data-id]').forEach(function(tr){ rows[tr.getAttribute('data-id')] = tr; });
  function run(){
    var terms = q.value.trim().toLowerCase().split(/\\s+/).filter(function(t){ return t.length; });
    var z = zone.value, p = pii.checked, shown = 0;
    index.forEach(function(d){
      var ok = (!z || d.zone === z) && (!p || d.pii) &&
        terms.every(function(t){ return d.text.indexOf(t) >= 0; });
      rows[d.id].style.display = ok ? '' : 'none';
      if (ok) { shown++; }
    });
    count.textContent = shown + ' / ' + index.length;
  }
  q.addEventListener('input', run); zone.addEventListener('change', run); pii.addEventListener('change', run);
  var hash = decodeURIComponent(location.hash.slice(1)); if (hash) { q.value = hash; }
  run();
})();
"""


def _e(text: object) -> str:
    return escape("" if text is None else str(text))


def _details(summary: str, inner: str) -> str:
    return f"<details><summary>{summary}</summary>{inner}</details>"


def page_name(dataset_id: str) -> str:
    return f"{DATASET_DIR}/{re.sub(r'[^A-Za-z0-9_.-]', '_', dataset_id)}.html"


def _anchor(column: str) -> str:
    return "col-" + re.sub(r"[^A-Za-z0-9_-]", "_", column)


def _layout(title: str, body: str, root: str = "") -> str:
    nav = (
        f'<a href="{root}index.html">数据资源目录</a>'
        f'<a href="{root}scenarios.html">场景库</a>'
        f'<a href="{root}kpis.html">指标血缘</a>'
    )
    return (
        '<!DOCTYPE html>\n<html lang="zh-CN"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{_e(title)}</title>'
        f"<style>{CSS}</style></head><body><header><strong>彩虹桥 · 杨浦区养老数据资源目录</strong>"
        f"&nbsp;&nbsp;{nav}</header><main>{body}</main></body></html>\n"
    )


class _Links:
    """Column references -> links to the dataset pages that hold them."""

    def __init__(self, catalog: Catalog) -> None:
        self.pages = {d.id for d in catalog.datasets}
        self.kpis = {k.id for k in catalog.kpis}

    def ref(self, ref: str, root: str) -> str:
        zone, _, rest = ref.partition(".")
        table, _, column = rest.partition(".")
        dataset_id = f"{zone}.{table}"
        if dataset_id in self.pages:
            return f'<a href="{root}{page_name(dataset_id)}#{_anchor(column)}">{_e(ref)}</a>'
        if zone == "kpi" and table in self.kpis:
            return f'<a href="{root}kpis.html#kpi-{_e(table)}">{_e(ref)}</a>'
        return _e(ref)

    def href(self, dataset_id: str, root: str) -> str | None:
        if dataset_id in self.pages:
            return f"{root}{page_name(dataset_id)}"
        if dataset_id.startswith("kpi.") and dataset_id[4:] in self.kpis:
            return f"{root}kpis.html#kpi-{dataset_id[4:]}"
        return None

    def dataset(self, dataset_id: str, root: str, label: str | None = None) -> str:
        if dataset_id in self.pages:
            return f'<a href="{root}{page_name(dataset_id)}">{_e(label or dataset_id)}</a>'
        if dataset_id.startswith("kpi.") and dataset_id[4:] in self.kpis:
            return f'<a href="{root}kpis.html#kpi-{_e(dataset_id[4:])}">{_e(label or dataset_id)}</a>'
        return _e(label or dataset_id)

    def refs(self, refs: Iterable[str], root: str, limit: int = 400) -> str:
        items = list(refs)
        if not items:
            return '<span class="muted">—</span>'
        shown = "".join(f"<li>{self.ref(r, root)}</li>" for r in items[:limit])
        more = f'<li class="muted">…… 另 {len(items) - limit} 项</li>' if len(items) > limit else ""
        return f'<ul class="refs">{shown}{more}</ul>'


def _search_text(d: DatasetEntry) -> str:
    parts = [
        d.id,
        d.name_zh,
        d.name_en,
        d.description,
        d.owner_department,
        d.source_system_zh,
        d.group_zh,
        d.open_data,
        d.sensitivity,
        *d.scenarios,
        *d.kpis,
    ]
    for c in d.columns:
        parts += [c.name, c.zh, c.source_field or "", c.pii if c.pii != "none" else ""]
    return " ".join(p for p in parts if p).lower()


def search_index(catalog: Catalog) -> list[dict[str, object]]:
    return [
        {
            "id": d.id,
            "zone": d.zone,
            "pii": d.pii,
            "name": d.name_zh,
            "page": page_name(d.id),
            "text": _search_text(d),
        }
        for d in catalog.datasets
    ]


def _json_script(data: object) -> str:
    # '</' must not appear inside a <script> element
    return json.dumps(data, ensure_ascii=False).replace("</", "<\\/")


def _quality(d: DatasetEntry) -> str:
    if d.quality is None or d.quality.score is None:
        return '<span class="muted">—</span>'
    return f'<span class="{_e(d.quality.status)}">{d.quality.score * 100:.1f}</span>'


def _rows(d: DatasetEntry) -> str:
    return "" if d.row_count is None else f"{d.row_count:,}"


def render_index(catalog: Catalog) -> str:
    links = _Links(catalog)
    zones = list(dict.fromkeys(d.zone for d in catalog.datasets))
    zone_zh = {d.zone: d.zone_zh for d in catalog.datasets}
    summary = "".join(
        f"<li>{_e(zone_zh[z])}（{_e(z)}）：{sum(1 for d in catalog.datasets if d.zone == z)} 个数据集，"
        f"已构建 {sum(1 for d in catalog.datasets if d.zone == z and d.exists)} 个</li>"
        for z in zones
    )
    notes = ""
    if catalog.warnings or catalog.problems:
        items = "".join(f"<li>{_e(w)}</li>" for w in [*catalog.warnings, *catalog.problems])
        notes = f'<div class="problems"><strong>提示与血缘问题</strong><ul>{items}</ul></div>'
    rows = []
    for d in catalog.datasets:
        roles = (
            " ".join(f'<span class="tag">{_e(r.role_zh)}</span>' for r in d.roles)
            or '<span class="muted">仅流水线</span>'
        )
        pii = (
            f'<span class="tag pii-direct_identifier">{len(d.pii_columns)} 列</span>'
            if d.pii_columns
            else '<span class="muted">无</span>'
        )
        updated = d.last_update.strftime("%Y-%m-%d %H:%M") if d.last_update else "—"
        rows.append(
            f'<tr data-id="{_e(d.id)}"><td>{links.dataset(d.id, "")}</td><td>{_e(d.name_zh)}<br>'
            f'<span class="muted">{_e(d.name_en)}</span></td><td>{_e(d.zone_zh)}</td>'
            f"<td>{_e(d.owner_department)}</td><td>{_e(d.frequency_zh)}</td><td>{_rows(d)}</td><td>{updated}</td>"
            f'<td class="st-{_e(d.freshness.status)}">{_e(d.freshness.status_zh)}</td><td>{_quality(d)}</td>'
            f"<td>{pii}</td><td>{_e(d.open_data)}</td><td>{roles}</td></tr>"
        )
    options = "".join(f'<option value="{_e(z)}">{_e(zone_zh[z])}</option>' for z in zones)
    body = (
        f'<h1>数据资源目录</h1><p class="muted">生成于 {catalog.generated_at:%Y-%m-%d %H:%M} UTC；'
        f"数据截至 {_e(catalog.as_of or '—')}；湖根目录 {_e(catalog.lake_root)}</p>"
        f"<ul>{summary}</ul>{notes}"
        '<p><input id="q" type="search" '
        'placeholder="搜索：表名、中文名、字段、部门、场景……（如 身份证号 / id_number）">'
        f' <select id="zone"><option value="">全部分区</option>{options}</select>'
        ' <label><input id="pii" type="checkbox"> 仅含个人信息</label>'
        ' <span id="count" class="muted"></span></p>'
        "<table><thead><tr><th>数据集</th><th>名称</th><th>分区</th><th>责任部门</th><th>更新频率</th>"
        "<th>行数</th><th>最近更新</th><th>新鲜度</th><th>质量分</th><th>个人信息</th><th>开放类别</th>"
        f"<th>可见角色</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
        f'<script id="search-index" type="application/json">{_json_script(search_index(catalog))}</script>'
        f"<script>{SEARCH_JS}</script>"
    )
    return _layout("彩虹桥数据资源目录", body)


def lineage_svg(dataset_id: str, upstream: list[str], downstream: list[str], links: _Links) -> str:
    """Upstream tables -> this dataset -> downstream tables, as inline SVG with links."""
    box_w, box_h, gap = 240, 26, 8
    rows = max(len(upstream), len(downstream), 1)
    height = rows * (box_h + gap) + gap
    width = 3 * box_w + 2 * 80
    parts = [
        f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="表级血缘">'
    ]

    def box(x: int, y: int, label: str, href: str | None, fill: str) -> str:
        text = (
            f'<rect x="{x}" y="{y}" width="{box_w}" height="{box_h}" rx="4" fill="{fill}" stroke="#999"/>'
            f'<text x="{x + 6}" y="{y + 17}" font-size="12">{_e(label)}</text>'
        )
        return f'<a href="{_e(href)}">{text}</a>' if href else text

    cx, cy = box_w + 80, (height - box_h) // 2
    parts.append(box(cx, cy, dataset_id, None, "#f0e6e6"))
    for column, tables, x in ((0, upstream, 0), (2, downstream, 2 * (box_w + 80))):
        for i, t in enumerate(tables):
            y = gap + i * (box_h + gap)
            href = links.href(t, "../")
            parts.append(box(x, y, t, href, "#fff"))
            if column == 0:
                parts.append(
                    f'<line x1="{x + box_w}" y1="{y + box_h // 2}" x2="{cx}" y2="{cy + box_h // 2}" '
                    'stroke="#7a1f2b"/>'
                )
            else:
                parts.append(
                    f'<line x1="{cx + box_w}" y1="{cy + box_h // 2}" x2="{x}" y2="{y + box_h // 2}" '
                    'stroke="#7a1f2b"/>'
                )
    parts.append("</svg>")
    return "".join(parts)


def render_dataset(d: DatasetEntry, catalog: Catalog) -> str:
    links = _Links(catalog)
    root = "../"
    facts = [
        ("数据集", d.id),
        ("英文名", d.name_en),
        ("分区", f"{d.zone_zh}（{d.zone}）"),
        ("所属", f"{d.group_zh}（{d.group}）" if d.group else "—"),
        ("责任部门", f"{d.owner_department}（team:{d.owner_team}）"),
        ("来源系统", f"{d.source_system_zh}（{d.source_system}）"),
        ("构建方式", d.build),
        ("粒度", d.grain or "—"),
        ("主键", ", ".join(d.primary_key) or "—"),
        ("更新频率", d.frequency_zh),
        ("位置", d.location),
        ("DuckDB 视图", d.view or "—"),
        (
            "状态",
            STATUS_ZH.get(d.status, d.status)
            + (
                ""
                if d.view_exists is None or d.view is None
                else ("，视图存在" if d.view_exists else "，视图缺失")
            ),
        ),
        ("文件数", d.files),
        ("行数", _rows(d) or "—"),
        ("最近更新", d.last_update.strftime("%Y-%m-%d %H:%M UTC") if d.last_update else "—"),
        (
            "新鲜度",
            f"{d.freshness.status_zh}"
            + (
                f"（最近交付 {d.freshness.last_delivery}，距今 {d.freshness.days_since} 天）"
                if d.freshness.last_delivery
                else ""
            )
            + (f" {d.freshness.note}" if d.freshness.note else ""),
        ),
        (
            "质量分",
            f"{d.quality.score * 100:.1f}（{d.quality.status}，批次 {d.quality.partition}）"
            if d.quality and d.quality.score is not None
            else "—",
        ),
        ("开放类别", d.open_data),
        ("敏感级别", d.sensitivity),
        ("可见角色", "；".join(f"{r.role_zh}：{r.access_zh}" for r in d.roles) or "仅流水线"),
        ("应用场景", "、".join(d.scenarios) or "—"),
        ("相关指标", "、".join(d.kpis) or "—"),
    ]
    for key, value in d.extra_facts.items():
        facts.append(
            (
                key,
                json.dumps(value, ensure_ascii=False) if not isinstance(value, str | int | float) else value,
            )
        )
    dl = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in facts)
    pii_rows = "".join(
        f'<tr class="pii-{_e(p.pii)}"><td>{_e(p.column)}</td><td>{_e(p.zh)}</td><td>{_e(p.pii_zh)}</td>'
        f"<td>{_e(p.semantic or '')}</td></tr>"
        for p in d.pii_columns
    )
    pii_table = (
        f"<table><thead><tr><th>字段</th><th>中文名</th><th>个人信息分类</th><th>语义</th></tr></thead>"
        f"<tbody>{pii_rows}</tbody></table>"
        if pii_rows
        else '<p class="muted">无个人信息字段。</p>'
    )
    col_rows = []
    for c in d.columns:
        pii = PII_ZH.get(c.pii, "")
        lineage = ""
        if c.upstream or c.origins:
            lineage += _details(f"上游（一跳）{len(c.upstream)}", links.refs(c.upstream, root))
            lineage += _details(f"来源字段 {len(c.origins)}", links.refs(c.origins, root))
        if c.key_origins:
            lineage += (
                f"<details><summary>主键匹配所用属性 {len(c.key_origins)}</summary>"
                f"{links.refs(c.key_origins, root)}</details>"
            )
        if c.downstream:
            lineage += _details(f"流向（下游）{len(c.downstream)}", links.refs(c.downstream, root))
        col_rows.append(
            f'<tr id="{_anchor(c.name)}" class="pii-{_e(c.pii)}"><td>{_e(c.name)}</td><td>{_e(c.zh)}</td>'
            f"<td>{_e(c.type)}</td><td>{_e(pii)}</td><td>{_e(c.source_field or '')}</td>"
            f"<td>{_e(c.codelist or '')}</td><td>{_e(c.description)}</td>"
            f"<td>{lineage or '<span class=muted>—</span>'}</td></tr>"
        )
    problems = ""
    if d.lineage_problems:
        problems = (
            '<div class="problems"><strong>血缘问题</strong><ul>'
            + "".join(f"<li>{_e(p)}</li>" for p in d.lineage_problems)
            + "</ul></div>"
        )
    graph = ""
    if d.upstream_tables or d.downstream_tables:
        graph = "<h2>表级血缘</h2>" + lineage_svg(d.id, d.upstream_tables, d.downstream_tables, links)
    conditions = ""
    if d.row_conditions:
        conditions = (
            f"<details><summary>决定行范围的字段（过滤、关联、分组）{len(d.row_conditions)}</summary>"
            f"{links.refs(d.row_conditions, root)}</details>"
        )
    body = (
        f'<h1>{_e(d.name_zh)} <span class="muted">{_e(d.id)}</span></h1><p>{_e(d.description)}</p>'
        f'<dl class="facts">{dl}</dl>{problems}<h2>个人信息字段</h2>{pii_table}{graph}{conditions}'
        f'<h2>字段与字段级血缘</h2><p class="muted">血缘来源：{_e(d.lineage_source or "—")}</p>'
        "<table><thead><tr><th>字段</th><th>中文名</th><th>类型</th><th>个人信息</th><th>源字段名</th>"
        f"<th>代码表</th><th>说明</th><th>血缘</th></tr></thead><tbody>{''.join(col_rows)}</tbody></table>"
    )
    return _layout(f"{d.name_zh} - 数据资源目录", body, root)


def render_scenarios(catalog: Catalog) -> str:
    links = _Links(catalog)
    rows = []
    for s in catalog.scenarios:
        datasets = "<br>".join(links.dataset(x, "") for x in s.datasets)
        kpis = "<br>".join(f'<a href="kpis.html#kpi-{_e(k)}">{_e(k)}</a>' for k in s.kpis) or "—"
        streets = "全区" if len(s.pilot_streets) >= 12 else "、".join(s.pilot_streets_zh)
        rows.append(
            f'<tr id="{_e(s.id)}"><td>{_e(s.id)}</td><td>{_e(s.annex or "")}</td>'
            f"<td><strong>{_e(s.name)}</strong>"
            f'<br><span class="muted">{_e(s.en)}</span><br>{_e(s.description)}</td><td>{_e(s.class_)}</td>'
            f"<td>{_e(s.age_label)} 岁<br>{_e('、'.join(s.vitality_zh))}</td>"
            f"<td>{datasets}</td><td>{kpis}</td>"
            f"<td>{_e(s.lead_department)}<br>"
            f'<span class="muted">{_e("、".join(s.partner_departments))}</span></td>'
            f"<td>{_e(streets)}</td><td>{_e('；'.join(s.legal_basis))}</td></tr>"
        )
    body = (
        "<h1>场景库</h1><p>附件所列 18 个项目（附件序号 1-18）及平台支撑的其他场景。"
        "每个场景引用的数据集与指标均已与契约和指标目录核对。</p>"
        '<table class="scn"><thead><tr><th>编号</th><th>附件序号</th><th>场景</th><th>类别</th>'
        "<th>服务对象（年龄段 × 活力/介助/介护）</th>"
        "<th>使用数据集</th><th>指标</th><th>牵头部门</th><th>试点街道</th><th>法律依据</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )
    return _layout("场景库 - 数据资源目录", body)


def render_kpis(catalog: Catalog) -> str:
    links = _Links(catalog)
    if not catalog.kpis:
        return _layout("指标血缘", '<h1>指标血缘</h1><p class="muted">指标目录尚未提供。</p>')
    parts = [
        "<h1>指标血缘</h1><p>每个指标的公式（DuckDB SQL）、读取的数据集，以及追溯到标准化层的来源字段。</p>"
    ]
    for k in catalog.kpis:
        problems = "".join(f"<li>{_e(p)}</li>" for p in k.problems)
        used_in = "、".join(f'<a href="scenarios.html#{_e(s)}">{_e(s)}</a>' for s in k.scenarios) or "—"
        parts.append(
            f'<h2 id="kpi-{_e(k.id)}">{_e(k.name_zh)} '
            f'<span class="muted">{_e(k.id)}（{_e(k.unit)}）</span></h2>'
            f"<p>{_e(k.description)}</p><p>责任部门：{_e(k.owner_department)}；应用场景：{used_in}</p>"
            f"<p>读取：{'、'.join(links.dataset(r, '') for r in k.reads) or '—'}</p>"
            + _details(f"指标值的来源字段 {len(k.value_sources)}", links.refs(k.value_sources, ""))
            + _details(f"全部来源字段（含筛选与关联条件）{len(k.sources)}", links.refs(k.sources, ""))
            + _details("公式", f"<pre>{_e(k.formula)}</pre>")
            + (f'<div class="problems"><ul>{problems}</ul></div>' if problems else "")
        )
    return _layout("指标血缘 - 数据资源目录", "".join(parts))


def _write(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_site(catalog: Catalog, out: Path) -> list[Path]:
    """Write every page (each atomically) and drop pages of datasets no longer catalogued."""
    written = []
    pages = {page_name(d.id): d for d in catalog.datasets}
    for name, d in pages.items():
        _write(out / name, render_dataset(d, catalog))
        written.append(out / name)
    for stale in (out / DATASET_DIR).glob("*.html"):
        if f"{DATASET_DIR}/{stale.name}" not in pages:
            stale.unlink()
    for name, text in (
        ("scenarios.html", render_scenarios(catalog)),
        ("kpis.html", render_kpis(catalog)),
        ("search_index.json", json.dumps(search_index(catalog), ensure_ascii=False)),
        ("index.html", render_index(catalog)),
    ):
        _write(out / name, text)
        written.append(out / name)
    return written
