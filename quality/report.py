"""The static HTML quality report (Chinese UI): ``<lake>/marts/quality_report/index.html``.

Rebuilt from the history (:mod:`quality.scorecard`) after every check run, so
it always shows the newest batch of every table: source-system health, the
scorecards per system and per table along the six dimensions, trends over the
recent batches, and every failed rule with masked example rows. One file, no
scripts, no external assets; every text is escaped and masked.
"""

from __future__ import annotations

import html
import json
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from quality.redact import scrub
from quality.rules import FAMILIES, FAMILY_ZH
from quality.scorecard import (
    Thresholds,
    is_daily_expr,
    latest_batches,
    latest_partition_per_table,
    load_thresholds,
    owner_zh,
    read_history,
    scorecard,
    source_health,
    system_scorecard,
    table_zh,
)
from rainbow.io import write_bytes_atomic
from rainbow.settings import Lake
from schemas.registry import Registry

STATUS_ZH = {"green": "良好", "amber": "关注", "red": "告警", None: "—"}
CSS = """
body{font-family:"Noto Sans CJK SC","WenQuanYi Micro Hei","Microsoft YaHei",sans-serif;margin:24px;color:#222}
h1{font-size:22px}h2{font-size:18px;margin-top:28px;border-bottom:1px solid #ddd;padding-bottom:4px}
table{border-collapse:collapse;margin:8px 0;font-size:13px}
th,td{border:1px solid #ddd;padding:4px 8px;text-align:left}
th{background:#f5f5f5}td.n{text-align:right}.green{background:#e8f5e9}.amber{background:#fff8e1}
.red{background:#ffebee}.muted{color:#888}.cards{display:flex;gap:12px}.card{border:1px solid #ddd;
padding:8px 16px;border-radius:4px}.card b{font-size:20px;display:block}.ex{font-size:12px;color:#555}
nav a{margin-right:12px}
"""


def report_path(lake: Lake) -> Path:
    return lake.marts / "quality_report" / "index.html"


def _e(value: object) -> str:
    return html.escape(scrub("" if value is None else str(value)))


def _pct(score: float | None) -> str:
    return "—" if score is None else f"{score * 100:.2f}%"


def _cell(score: float | None, status: str | None) -> str:
    return f'<td class="n {status or ""}" title="{STATUS_ZH[status]}">{_pct(score)}</td>'


def _table(head: list[str], rows: list[str]) -> str:
    ths = "".join(f"<th>{_e(h)}</th>" for h in head)
    body = "".join(rows) if rows else f'<tr><td colspan="{len(head)}" class="muted">无</td></tr>'
    return f"<table><tr>{ths}</tr>{body}</table>"


def _health_section(health: pl.DataFrame) -> str:
    head = ["来源系统", "表", "交付频率", "最近交付", "距今（天）", "当日行数", "近期中位数", "比值", "状态"]
    rows = []
    for r in health.iter_rows(named=True):
        status = r["status"]
        css = "green" if status == "正常" else "red" if status in ("僵尸系统", "已沉默") else "amber"
        ratio = "—" if r["volume_ratio"] is None else f"{r['volume_ratio']:.2f}"
        median = "—" if r["trailing_median"] is None else f"{r['trailing_median']:g}"
        rows.append(
            f"<tr><td>{_e(r['system_zh'])}</td><td>{_e(r['table_zh'])}（{_e(r['table'])}）</td>"
            f"<td>{_e(r['frequency'])}</td><td>{_e(r['last_delivery'] or '从未交付')}</td>"
            f'<td class="n">{_e(r["days_since"] if r["days_since"] is not None else "—")}</td>'
            f'<td class="n">{_e(r["rows_on_day"] if r["rows_on_day"] is not None else "—")}</td>'
            f'<td class="n">{_e(median)}</td><td class="n">{_e(ratio)}</td>'
            f'<td class="{css}">{_e(status)}</td></tr>'
        )
    return _table(head, rows)


def _system_section(card: pl.DataFrame, registry: Registry) -> str:
    head = ["来源系统", *[FAMILY_ZH[f] for f in FAMILIES]]
    rows = []
    for system in sorted(set(card["system"].to_list())):
        sub = {r["family"]: r for r in card.filter(pl.col("system") == system).iter_rows(named=True)}
        cells = "".join(
            _cell(sub[f]["score"], sub[f]["status"]) if f in sub else _cell(None, None) for f in FAMILIES
        )
        rows.append(f"<tr><td>{_e(owner_zh(registry, system))}</td>{cells}</tr>")
    return _table(head, rows)


def _table_section(card: pl.DataFrame, registry: Registry) -> str:
    head = ["表", "来源系统", "分区", "行数", *[FAMILY_ZH[f] for f in FAMILIES], "失败规则（ERROR）"]
    rows = []
    for table in sorted(set(card["table"].to_list())):
        sub = card.filter(pl.col("table") == table)
        by = {r["family"]: r for r in sub.iter_rows(named=True)}
        first = sub.row(0, named=True)
        cells = "".join(
            _cell(by[f]["score"], by[f]["status"]) if f in by else _cell(None, None) for f in FAMILIES
        )
        failed = int(sub["failed"].sum())
        errors = int(sub["failed_error"].sum())
        rows.append(
            f'<tr><td><a href="#t-{_e(table)}">{_e(table_zh(registry, table))}</a>（{_e(table)}）</td>'
            f"<td>{_e(owner_zh(registry, first['system']))}</td><td>{_e(first['partition'])}</td>"
            f'<td class="n">{first["rows"]}</td>{cells}<td class="n">{failed}（{errors}）</td></tr>'
        )
    return _table(head, rows)


def _short(partition: str) -> str:
    """``2026-11-05`` -> ``11-05``; ranges and ``all`` as they are."""
    return partition[5:] if len(partition) == 10 else partition


def _trend_section(history: pl.DataFrame, thresholds: Thresholds, registry: Registry) -> str:
    """Per table, oldest first: the lowest dimension score of each recent batch - per delivery day
    (newest run of each day) for tables validated by day, per run (night) for tables validated
    whole or by month (library and mart tables, master and reference tables)."""
    if history.is_empty():
        return _table(["表", "趋势"], [])
    daily = latest_batches(history.filter(is_daily_expr()))
    nightly = history.filter(~is_daily_expr())
    card = pl.concat([scorecard(daily, thresholds), scorecard(nightly, thresholds)], how="vertical_relaxed")
    per_batch = (
        card.with_columns(
            label=pl.when(is_daily_expr())
            .then(pl.col("partition"))
            .otherwise(pl.col("run_date").cast(pl.String))
        )
        .group_by("table", "label", "partition")
        .agg(score=pl.col("score").min(), worst=pl.col("status").sort_by("score").first())
        .sort("table", "label")
    )
    rows = []
    keep = thresholds.report.history_partitions
    for table in sorted(set(per_batch["table"].to_list())):
        sub = per_batch.filter(pl.col("table") == table).tail(keep)
        cells = "".join(
            f'<td class="n {r["worst"] or ""}" title="{_e(r["partition"])}">'
            f"{_e(_short(r['label']))}<br>{_pct(r['score'])}</td>"
            for r in sub.iter_rows(named=True)
        )
        rows.append(f"<tr><td>{_e(table_zh(registry, table))}</td>{cells}</tr>")
    return (
        "<table><tr><th>表</th><th colspan='99'>各批次最低维度得分（旧→新；按日分区的表为交付日，"
        "整表或按月校验的表为校验日）</th></tr>" + "".join(rows) + "</table>"
    )


def _failures_section(latest: pl.DataFrame, registry: Registry) -> str:
    failed = latest.filter(pl.col("evaluated") & ~pl.col("success")).sort("table", "partition", "rule_id")
    parts = []
    for table in sorted(set(failed["table"].to_list())):
        rows = []
        for r in failed.filter(pl.col("table") == table).iter_rows(named=True):
            examples = json.loads(r["examples_json"]) if r["examples_json"] else []
            ex = "<br>".join(
                _e("；".join(f"{k}={v}" for k, v in row.items() if v is not None)) for row in examples
            )
            share = "—" if r["unexpected_percent"] is None else f"{r['unexpected_percent']:.3f}%"
            css = "red" if r["severity"] == "ERROR" else "amber"
            detail = ex or _e(r["observed"] or r["note"] or "")
            rows.append(
                f"<tr><td>{_e(r['partition'])}</td><td>{_e(r['rule_zh'])}<br>"
                f'<span class="ex">{_e(r["rule_id"])}</span></td>'
                f"<td>{_e(FAMILY_ZH.get(r['family'], ''))}</td>"
                f'<td class="{css}">{_e(r["severity"])}</td><td class="n">{r["unexpected_count"]}</td>'
                f'<td class="n">{share}</td><td class="ex">{detail}</td></tr>'
            )
        head = ["分区", "规则", "维度", "级别", "不符合行数", "比例", "示例（已脱敏）"]
        parts.append(
            f'<h3 id="t-{_e(table)}">{_e(table_zh(registry, table))}（{_e(table)}）</h3>' + _table(head, rows)
        )
    skipped = latest.filter(~pl.col("evaluated"))
    if skipped.height:
        rows = [
            f"<tr><td>{_e(r['table'])}</td><td>{_e(r['partition'])}</td><td>{_e(r['rule_id'])}</td>"
            f"<td>{_e(r['note'])}</td></tr>"
            for r in skipped.iter_rows(named=True)
        ]
        parts.append("<h3>未评估的规则</h3>" + _table(["表", "分区", "规则", "原因"], rows))
    return "".join(parts) or '<p class="muted">最新批次全部规则通过。</p>'


def render_report(
    history: pl.DataFrame,
    health: pl.DataFrame,
    registry: Registry,
    thresholds: Thresholds,
    *,
    run_id: str | None = None,
    generated_at: datetime | None = None,
) -> str:
    generated_at = generated_at or datetime.now(UTC)
    newest = latest_partition_per_table(history)
    latest = latest_batches(history)
    table_card = scorecard(newest, thresholds)
    system_card = system_scorecard(history, thresholds)
    failed = newest.filter(pl.col("evaluated") & ~pl.col("success"))
    errors = failed.filter(pl.col("severity") == "ERROR").height
    as_of = health["as_of"][0] if health.height else None
    silent = health.filter(pl.col("silent"))["system"].n_unique() if health.height else 0
    zombies = health.filter(pl.col("system_zombie"))["system"].n_unique() if health.height else 0
    cards = [
        ("已校验表", newest["table"].n_unique()),
        ("最新批次失败规则", failed.height),
        ("其中 ERROR（阻断）", errors),
        ("有沉默表的系统", silent),
        ("僵尸系统", zombies),
    ]
    card_html = "".join(f'<div class="card"><b>{v}</b>{_e(k)}</div>' for k, v in cards)
    body = (
        f"<h1>彩虹桥数据质量报告（标准化层、主题库、专题集市）</h1>"
        f'<p class="muted">生成时间 {_e(generated_at.strftime("%Y-%m-%d %H:%M:%S UTC"))}'
        f"；运行 {_e(run_id or '—')}；来源健康截至 {_e(as_of or '—')}</p>"
        '<nav><a href="#health">来源系统健康</a><a href="#systems">系统评分卡</a>'
        '<a href="#tables">表评分卡</a><a href="#trends">趋势</a><a href="#failures">失败规则明细</a></nav>'
        f'<div class="cards">{card_html}</div>'
        '<h2 id="health">来源系统健康（交付及时性、数据量、僵尸系统）</h2>'
        f"{_health_section(health)}"
        '<h2 id="systems">质量评分卡：按来源系统与主题库数据集（各表最新批次）</h2>'
        f"{_system_section(system_card, registry)}"
        '<h2 id="tables">质量评分卡：按表（最新分区）</h2>'
        f"{_table_section(table_card, registry)}"
        f'<h2 id="trends">趋势</h2>{_trend_section(history, thresholds, registry)}'
        '<h2 id="failures">失败规则明细（各分区最新一次校验）</h2>'
        f"{_failures_section(latest, registry)}"
        '<p class="muted">得分 = 维度内各规则通过行比例的平均；阈值见 quality/thresholds.yaml。'
        "示例行已脱敏（身份证号、手机号、姓名、地址）。</p>"
    )
    return (
        '<!DOCTYPE html><html lang="zh-CN"><head><meta charset="utf-8">'
        f"<title>彩虹桥数据质量报告</title><style>{CSS}</style></head><body>{body}</body></html>"
    )


def write_report(
    lake: Lake,
    registry: Registry,
    thresholds: Thresholds | None = None,
    *,
    health: pl.DataFrame | None = None,
    run_id: str | None = None,
) -> Path:
    """Render the report from the lake's history and write it atomically; return its path."""
    limits = thresholds or load_thresholds()
    if health is None:
        health = source_health(lake, registry, limits)
    history = read_history(lake, newest_partitions=limits.report.history_partitions)
    text = render_report(history, health, registry, limits, run_id=run_id)
    path = report_path(lake)
    write_bytes_atomic(path, text.encode("utf-8"))
    return path
