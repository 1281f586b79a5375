"""Open-data export packages (开放数据包): one per agreement, for its named recipient.

:func:`build_package` checks the agreement (:mod:`masking.agreement`), then for each dataset:

1. reads the table's Parquet files (staged, library or marts zone) - only the contract's columns;
2. keeps the rows of the agreement's period (``date_column``) and value filters, and joins the
   requested elder attributes (quasi-identifiers of ``dim_elder``) on ``elder_key``;
3. scrubs every free-text column (:func:`masking.scrub.scrub_columns`);
4. replaces person keys (``elder_key`` -> ``elder_pseudonym``, and every other identifier that is
   a quasi-identifier) and the columns listed under ``pseudonymise`` by **per-recipient**
   pseudonyms: HMAC-SHA256 under a key derived from the master pseudonym key and the recipient
   id (:func:`recipient_key`), so two recipients' packages cannot be joined on the key while one
   recipient's packages stay joinable across runs. Export pseudonyms are spelt in 16 letters
   (no digits), so no recognizer can mistake one for a phone or ID number. Direct identifiers
   not pseudonymised are never read into the release;
5. releases either rows made k-anonymous (:func:`masking.release.anonymise`) or an aggregate
   with cells under k suppressed (:func:`masking.release.aggregate_cells`).

It writes ``<output>.parquet`` and ``<output>.csv`` (UTF-8 with BOM, for Excel) per dataset, a
bilingual data dictionary (``data_dictionary.csv`` / ``.md``), an ARX-style disclosure-risk
report (``risk_report.md`` / ``.json``) and ``manifest.json`` (every file's SHA-256 and size,
rows per dataset, the agreement) into a temporary directory. The **leak gate**
(:func:`masking.leak_gate.scan_package`) then reads every file back and runs the PII
recognizers over every value and line: any direct identifier (resident ID, mobile, bank card,
senior card, person name, address, landline) fails the export with :class:`LeakError` and
nothing is left behind. Only then is the directory renamed into
``<lake>/exports/<recipient>/<package id>/``.

Exemption: addresses and landlines are an organisation's published contact details in columns
the contract marks ``pii: none`` of a ``public`` table (the facility registry's address and
switchboard); every other entity counts everywhere, in every column.

**Journalist risk population.** For library and mart data whose quasi-identifiers are all elder
attributes (sex, age, birth date, street, ...), the population is the master elder index
``dim_elder``: every elder the district platform knows, of whom the release's persons are a
subset; an attacker who knows a neighbour is a Yangpu elder, but not whether they used the
service, must pick among the population's class. When a quasi-identifier is an event attribute
(a service date) the population holds no such attribute; the release is then taken as its own
population (every event of the period is in it), and the journalist risk equals the
prosecutor risk.

Every export attempt is recorded in the audit log (:func:`masking.audit.record_export`, one
``export`` row per dataset): ``ok`` when written, ``refused`` (agreement refused, k out of reach,
leak gate) or ``error``.
"""

from __future__ import annotations

import contextlib
import functools
import getpass
import hashlib
import hmac
import json
import os
import secrets
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import polars as pl

from masking.agreement import (
    ELDER_KEY,
    ELDER_TABLE,
    SHANGHAI,
    Agreement,
    AgreementError,
    AnyTable,
    DatasetRequest,
    Problem,
    always_pseudonymised,
    check_agreement,
    elder_attribute_columns,
    load_agreement,
    person_key_column,
    released_column,
    resolve_table,
)
from masking.audit import Outcome, record_export
from masking.leak_gate import (
    DIRECT_ENTITIES,
    ORGANISATION_CONTACT,
    LeakError,
    LeakFinding,
    json_strings,
    scan_package,
    scan_texts,
)
from masking.pseudonym import pseudonyms
from masking.release import (
    PERSON,
    Hierarchy,
    Measure,
    QuasiIdentifier,
    ReleaseError,
    aggregate_cells,
    anonymise,
    hierarchy_for,
    risk_metrics,
)
from masking.scrub import scrub_columns
from masking.secrets import PSEUDONYM_KEY, require_secret
from rainbow.io import sha256_file
from rainbow.parquet import read_frame
from rainbow.settings import Lake
from schemas.contract import Column
from schemas.registry import Registry, load_registry

PSEUDONYM_PURPOSE = "export"
PSEUDONYM_COLUMN = "elder_pseudonym"
MAX_DETAIL = 2000


class ExportError(RuntimeError):
    """The package cannot be built (a dataset not built yet, k out of reach)."""


@dataclass(frozen=True)
class PackagePath:
    """A written package: its directory, id and manifest."""

    path: Path
    package_id: str
    manifest: dict[str, Any]

    def __fspath__(self) -> str:
        return str(self.path)

    @property
    def rows(self) -> dict[str, int]:
        return {name: d["rows"] for name, d in self.manifest["datasets"].items()}


@dataclass
class ReleasedColumn:
    name: str
    source: str  # table column or "dim_elder.<attr>" or "measure"
    zh: str
    en: str
    type: str
    role: str  # quasi_identifier / pseudonym / free_text_scrubbed / measure / flag / attribute
    generalisation: str = ""
    description: str = ""
    exempt: frozenset[str] = frozenset()


@dataclass
class ReleasedDataset:
    request: DatasetRequest
    zone: str
    table: AnyTable
    frame: pl.DataFrame
    columns: list[ReleasedColumn]
    mode: str  # microdata / aggregate
    rows_in: int
    risk: dict[str, Any] = field(default_factory=dict)
    quasi_identifiers: list[dict[str, Any]] = field(default_factory=list)
    notes: list[tuple[str, str]] = field(default_factory=list)  # (zh, en)


# ---------------------------------------------------------------- keys


def recipient_key(master: bytes, recipient_id: str) -> bytes:
    """The recipient's pseudonym key: HMAC-SHA256(master, recipient id) (32 bytes)."""
    return hmac.new(
        master, b"rainbow-export-recipient\x1f" + recipient_id.encode("utf-8"), hashlib.sha256
    ).digest()


def export_pseudonyms(values: Iterable[Any], key: bytes) -> list[str | None]:
    """Per-recipient pseudonyms (20 letters) of ``values``; None stays None."""
    texts = [None if v is None else str(v) for v in values]
    return pseudonyms(texts, key, PSEUDONYM_PURPOSE)  # letters only (masking.pseudonym)


# ---------------------------------------------------------------- reading


def table_files(lake: Lake, zone: str, name: str) -> list[Path]:
    """The Parquet files of a staged, library or mart table (quarantine excluded)."""
    root = lake.zone(zone) / name
    if zone == "library":
        f = root / "data.parquet"
        return [f] if f.exists() else []
    return sorted(p for p in root.glob("**/*.parquet") if not any(part.startswith(".") for part in p.parts))


def read_table(lake: Lake, zone: str, table: AnyTable, columns: Sequence[str]) -> pl.DataFrame:
    files = table_files(lake, zone, table.name)
    if not files:
        raise ExportError(
            f"数据集 {table.name} 尚未构建（{lake.zone(zone) / table.name} 下没有数据）/ "
            f"dataset {table.name} is not built yet (no data under {lake.zone(zone) / table.name})"
        )
    return read_frame(files, lake, columns=columns)


# ---------------------------------------------------------------- one dataset


def _en(column: Column) -> str:
    return column.name.replace("_", " ")


def _exempt(table: AnyTable, column: Column) -> frozenset[str]:
    if table.sensitivity == "public" and column.pii == "none" and column.semantic != "free_text":
        return ORGANISATION_CONTACT
    return frozenset()


_ROLE_TEXT = {
    "quasi_identifier": ("准标识符（已泛化/隐匿）", "quasi-identifier (generalised / suppressed)"),
    "pseudonym": ("按接收方生成的假名", "per-recipient pseudonym"),
    "free_text_scrubbed": ("自由文本（已去除个人信息）", "free text (personal data scrubbed)"),
    "attribute": ("属性", "attribute"),
    "measure": ("汇总指标", "measure"),
    "flag": ("隐匿标记", "suppression flag"),
    "group": ("分组维度", "group-by dimension"),
}

_MEASURE_TEXT = {
    "count": ("记录数", "records"),
    "persons": ("人数（不同老人）", "distinct persons"),
    "sum": ("合计", "sum of"),
    "mean": ("平均", "mean of"),
    "min": ("最小", "minimum of"),
    "max": ("最大", "maximum of"),
}


def _pseudonym_names(pseudo: Sequence[str], taken: set[str]) -> dict[str, str]:
    """Released names of pseudonymised columns: elder_key -> elder_pseudonym, x -> x_pseudonym."""
    out = {}
    for c in pseudo:
        name = PSEUDONYM_COLUMN if c == ELDER_KEY else c if c.endswith("pseudonym") else f"{c}_pseudonym"
        if name != c and name not in taken:
            out[c] = name
    return out


def _filter_rows(
    frame: pl.DataFrame, table: AnyTable, agreement: Agreement, req: DatasetRequest
) -> pl.DataFrame:
    if req.date_column and agreement.period:
        col = pl.col(req.date_column)
        if table.column(req.date_column).type == "timestamp":
            col = col.dt.date()
        frame = frame.filter(col.is_between(agreement.period.from_, agreement.period.to))
    for name, values in sorted(req.filters.items()):
        frame = frame.filter(pl.col(name).cast(pl.String).is_in(values))
    return frame


def prepare_dataset(
    lake: Lake,
    registry: Registry,
    agreement: Agreement,
    req: DatasetRequest,
    key: bytes,
    elders: pl.DataFrame | None,
) -> ReleasedDataset:
    """One dataset released under the agreement (not written)."""
    found = resolve_table(registry, req.name)
    assert found is not None  # checked by check_agreement
    zone, table = found
    person_key = person_key_column(table)
    needed = list(
        dict.fromkeys(
            [
                *req.columns,
                *([req.date_column] if req.date_column else []),
                *req.filters,
                *([person_key] if person_key else []),
                *([ELDER_KEY] if req.elder_attributes else []),
            ]
        )
    )
    frame = _filter_rows(read_table(lake, zone, table, needed), table, agreement, req)
    if req.elder_attributes:
        if elders is None:
            raise ExportError("dim_elder is needed for elder attributes but is not built")
        frame = frame.join(elders.select([ELDER_KEY, *req.elder_attributes]), on=ELDER_KEY, how="left")
    if person_key:
        frame = frame.with_columns(pl.col(person_key).cast(pl.String).alias(PERSON))
    rows_in = frame.height

    cols: dict[str, Column] = {c: released_column(registry, table, c) for c in req.released_columns}
    free_text = [c for c, col in cols.items() if col.semantic == "free_text"]
    if free_text:
        frame = scrub_columns(frame, free_text)
    pseudo = [c for c, col in cols.items() if c in req.pseudonymise or always_pseudonymised(col)]
    frame = frame.with_columns(
        [pl.Series(c, export_pseudonyms(frame.get_column(c).to_list(), key), dtype=pl.String) for c in pseudo]
    )
    renames = _pseudonym_names(pseudo, set(cols))

    hierarchies: dict[str, Hierarchy] = {
        c: hierarchy_for(col, frame.get_column(c)) for c, col in cols.items() if c not in pseudo
    }
    out_cols: list[ReleasedColumn] = []
    for c, col in cols.items():
        source = f"{ELDER_TABLE}.{c}" if c in req.elder_attributes else f"{req.name}.{c}"
        role = "pseudonym" if c in pseudo else "free_text_scrubbed" if c in free_text else "attribute"
        desc = col.description
        if col.codelist:
            cl = registry.codelist(col.codelist)
            desc = (desc + "; " if desc else "") + f"code list {cl.name} ({cl.zh} / {cl.en})"
        out_cols.append(
            ReleasedColumn(
                name=renames.get(c, c),
                source=source,
                zh=col.zh + ("（假名）" if c in pseudo else ""),
                en=_en(col) + (" (pseudonym)" if c in pseudo else ""),
                type=col.type if c not in pseudo else "string",
                role=role,
                description=desc,
                exempt=_exempt(table, col) if c in table.column_names and c not in pseudo else frozenset(),
            )
        )
    by_name = {rc.name: rc for rc in out_cols}
    released = ReleasedDataset(req, zone, table, frame, out_cols, "microdata", rows_in)
    if req.aggregate is not None:
        _release_aggregate(released, agreement, hierarchies, renames, person_key)
    else:
        _release_rows(released, registry, agreement, hierarchies, renames, person_key, elders, by_name)
    released.frame = released.frame.sort(released.frame.columns, nulls_last=True)
    return released


def _release_aggregate(
    rel: ReleasedDataset,
    agreement: Agreement,
    hierarchies: dict[str, Hierarchy],
    renames: dict[str, str],
    person_key: str | None,
) -> None:
    req = rel.request
    agg = req.aggregate
    assert agg is not None
    frame = rel.frame
    gen: dict[str, str] = {}
    for c in agg.group_by:
        level = req.generalise.get(c)
        if level and c in hierarchies:
            h = hierarchies[c]
            frame = frame.with_columns(h.generalise(frame.get_column(c), h.level(level)))
            gen[c] = level
    measures = [Measure(m.name, m.op, m.column) for m in agg.measures]
    cells, report = aggregate_cells(
        frame, agg.group_by, measures, agreement.k, PERSON if person_key else None
    )
    cells = cells.rename({k: v for k, v in renames.items() if k in cells.columns})
    by_source = {c.source.split(".", 1)[1]: c for c in rel.columns}
    out: list[ReleasedColumn] = []
    for c in agg.group_by:
        rc = by_source[c]
        rc.role = "group"
        if c in gen:
            rc.generalisation = f"{gen[c]} ({hierarchies[c].describe()})"
            rc.type = "string"
        out.append(rc)
    for m in agg.measures:
        zh, en = _MEASURE_TEXT[m.op]
        src = by_source.get(m.column or "")
        out.append(
            ReleasedColumn(
                name=m.name,
                source=f"{m.op}({m.column or ''})",
                zh=f"{zh}{src.zh if src else ''}",
                en=f"{en} {src.en}" if src else en,
                type="integer" if m.op in ("count", "persons") else "decimal",
                role="measure",
                description="NULL when the cell is suppressed",
            )
        )
    out.append(ReleasedColumn("suppressed", "flag", "是否隐匿", "suppressed", "boolean", "flag"))
    out.append(
        ReleasedColumn(
            "suppression",
            "flag",
            "隐匿原因",
            "suppression reason",
            "string",
            "flag",
            description="primary: fewer than k persons; complementary: protects a primary cell from totals",
        )
    )
    rel.frame = cells
    rel.columns = out
    rel.mode = "aggregate"
    rel.risk = report
    rel.quasi_identifiers = [
        {
            "column": renames.get(c, c),
            "hierarchy": hierarchies[c].describe() if c in hierarchies else "pseudonym",
            "min_level": gen.get(c, hierarchies[c].levels[0] if c in hierarchies else "pseudonym"),
            "level": gen.get(c, hierarchies[c].levels[0] if c in hierarchies else "pseudonym"),
        }
        for c in agg.group_by
    ]
    rel.notes.append(
        (
            f"少于 k={agreement.k} {'人' if person_key else '条记录'}的单元格已隐匿（NULL），并做了补充隐匿",
            f"cells with fewer than k={agreement.k} {report['unit']} are suppressed (NULL), "
            "with complementary suppression",
        )
    )


def _release_rows(
    rel: ReleasedDataset,
    registry: Registry,
    agreement: Agreement,
    hierarchies: dict[str, Hierarchy],
    renames: dict[str, str],
    person_key: str | None,
    elders: pl.DataFrame | None,
    by_name: dict[str, ReleasedColumn],
) -> None:
    req = rel.request
    if req.quasi_identifiers is not None:
        qi_names = [c for c in req.quasi_identifiers if c in hierarchies]
    else:
        qi_names = [
            c
            for c in req.released_columns
            if c in hierarchies and released_column(registry, rel.table, c).pii == "quasi_identifier"
        ]
    frame = rel.frame
    # minimum levels of non-quasi-identifiers are applied as they are
    for c, level in req.generalise.items():
        if c not in qi_names and c in hierarchies:
            h = hierarchies[c]
            frame = frame.with_columns(h.generalise(frame.get_column(c), h.level(level)))
            rc = by_name[renames.get(c, c)]
            rc.generalisation = f"{level} ({h.describe()})"
            rc.type = "string"
    qis = [
        QuasiIdentifier(
            c, hierarchies[c], hierarchies[c].level(req.generalise[c]) if c in req.generalise else 0
        )
        for c in qi_names
    ]
    person = PERSON if person_key else None
    result = anonymise(frame, qis, agreement.k, agreement.max_suppression, person)
    for c, chosen in result.levels.items():
        rc = by_name[renames.get(c, c)]
        rc.role = "quasi_identifier"
        h = hierarchies[c]
        rc.generalisation = f"{h.levels[chosen]} ({h.describe()})"
        if chosen > 0:
            rc.type = "string"
    population: pl.DataFrame | None = None
    population_note = (
        "无准标识符 / no quasi-identifiers"
        if not qis
        else "发布数据自身（每个事件都在其中）：记者风险 = 检察官风险 / the release itself (it holds every "
        "event of the period): journalist risk = prosecutor risk"
    )
    elder_attrs = set(elder_attribute_columns(registry))
    if (
        qis
        and elders is not None
        and rel.zone != "staged"
        and ELDER_KEY in rel.table.column_names
        and all(q.column in elder_attrs for q in qis)
    ):
        population = elders.select(
            [q.hierarchy.generalise(elders.get_column(q.column), result.levels[q.column]) for q in qis]
        )
        population_note = (
            f"主索引 dim_elder（{elders.height} 位老人）/ "
            f"the master elder index dim_elder ({elders.height} elders)"
        )
    risk = risk_metrics(result.frame, [q.column for q in qis], agreement.k, person, population)
    risk.update(
        {
            "records_in": rel.rows_in,
            "records_suppressed": result.suppressed,
            "suppressed_share": round(result.suppressed / rel.rows_in, 6) if rel.rows_in else 0.0,
            "max_suppression": agreement.max_suppression,
            "lattice_nodes_evaluated": result.nodes_evaluated,
            "population": population_note,
        }
    )
    rel.frame = result.frame.drop(PERSON, strict=False).rename(
        {k: v for k, v in renames.items() if k in result.frame.columns}
    )
    rel.risk = risk
    rel.quasi_identifiers = [
        {
            "column": renames.get(q.column, q.column),
            "hierarchy": q.hierarchy.describe(),
            "min_level": q.hierarchy.levels[q.min_level],
            "level": q.hierarchy.levels[result.levels[q.column]],
            "level_index": result.levels[q.column],
            "top": q.hierarchy.top,
        }
        for q in qis
    ]


# ---------------------------------------------------------------- writing


def _dictionary(datasets: list[ReleasedDataset]) -> pl.DataFrame:
    rows = []
    for d in datasets:
        for c in d.columns:
            role_zh, role_en = _ROLE_TEXT[c.role]
            rows.append(
                {
                    "dataset": d.request.stem,
                    "column": c.name,
                    "name_zh": c.zh,
                    "name_en": c.en,
                    "type": c.type,
                    "role_zh": role_zh,
                    "role_en": role_en,
                    "generalisation": c.generalisation,
                    "source": c.source,
                    "description": c.description,
                }
            )
    return pl.DataFrame(rows, schema=dict.fromkeys(rows[0] if rows else ["dataset"], pl.String))


def _md_cell(v: object) -> str:
    return str(v if v is not None else "").replace("|", "\\|").replace("\n", " ")


def _md_table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(_md_cell(v) for v in r) + " |" for r in rows]
    return out


def _dictionary_md(agreement: Agreement, datasets: list[ReleasedDataset]) -> str:
    lines = [
        "# 数据字典 / Data dictionary",
        "",
        f"协议 Agreement: {agreement.id} · 接收方 Recipient: {agreement.recipient.name_zh} "
        f"({agreement.recipient.id})",
        "",
    ]
    for d in datasets:
        mode = "汇总 aggregate" if d.mode == "aggregate" else "行级 microdata"
        lines += [
            f"## {d.request.stem}: {d.table.zh} / {d.table.en} ({mode})",
            "",
            d.table.description,
            "",
            f"文件 Files: `{d.request.stem}.parquet`, `{d.request.stem}.csv` · 行数 Rows: {d.frame.height}",
            "",
        ]
        lines += _md_table(
            [
                "列 Column",
                "中文名",
                "English",
                "类型 Type",
                "角色 Role",
                "泛化 Generalisation",
                "说明 Description",
            ],
            [
                [
                    f"`{c.name}`",
                    c.zh,
                    c.en,
                    c.type,
                    " / ".join(_ROLE_TEXT[c.role]),
                    c.generalisation,
                    c.description,
                ]
                for c in d.columns
            ],
        )
        lines.append("")
    return "\n".join(lines)


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x * 100:.2f}%"


def _risk_md(
    agreement: Agreement, package_id: str, created_at: datetime, datasets: list[ReleasedDataset]
) -> str:
    a = agreement
    lines = [
        "# 披露风险报告 / Disclosure-risk report",
        "",
        *_md_table(
            ["项目 Item", "值 Value"],
            [
                ["导出包 Package", package_id],
                ["协议 Agreement", a.id],
                [
                    "接收方 Recipient",
                    f"{a.recipient.name_zh} {a.recipient.name_en} ({a.recipient.id})".strip(),
                ],
                ["用途 Purpose", a.purpose],
                ["法律依据 Legal basis", a.legal_basis],
                ["协议有效期至 Expires on", a.expires_on.isoformat()],
                ["数据期间 Period", f"{a.period.from_} .. {a.period.to}" if a.period else "-"],
                ["k", a.k],
                ["最大隐匿比例 Max suppression", _pct(a.max_suppression)],
                ["生成时间 Created", created_at.isoformat()],
            ],
        ),
        "",
        "模型 Models: 检察官 prosecutor (攻击者知道目标在发布数据中 / "
        "the target is known to be in the release), "
        "记者 journalist (目标在总体中 / the target is in a population), "
        "营销者 marketer (重识别全部记录的期望比例 / expected share re-identified when all are attacked).",
        "",
    ]
    keyed = [
        d.request.stem for d in datasets if d.mode == "microdata" and PSEUDONYM_COLUMN in d.frame.columns
    ]
    if len(keyed) > 1:
        lines += [
            f"注意：{', '.join(keyed)} 共用 {PSEUDONYM_COLUMN}，可相互关联；k 只对每个数据集单独保证。/ "
            f"Note: {', '.join(keyed)} share {PSEUDONYM_COLUMN} and can be joined; k holds for each "
            "dataset alone, not for their join.",
            "",
        ]
    for d in datasets:
        r = d.risk
        lines += [f"## {d.request.stem}: {d.table.zh} / {d.table.en}", ""]
        if d.quasi_identifiers:
            lines += ["### 准标识符与泛化 / Quasi-identifiers and generalisation", ""]
            lines += _md_table(
                ["列 Column", "层级 Hierarchy", "最低层级 Minimum", "采用层级 Applied"],
                [
                    [q["column"], q["hierarchy"], q.get("min_level", "-"), q["level"]]
                    for q in d.quasi_identifiers
                ],
            )
            lines.append("")
        else:
            lines += ["无准标识符：k-匿名不适用 / No quasi-identifiers: k-anonymity does not apply.", ""]
        lines += ["### 风险指标 / Risk", ""]
        if d.mode == "aggregate":
            rows: list[list[object]] = [
                ["计数单位 Unit", r["unit"]],
                ["要求的 k / k required", r["k_required"]],
                ["单元格 Cells", r["cells"]],
                ["主隐匿 Primary suppressed (< k)", r["primary_suppressed"]],
                ["补充隐匿 Complementary suppressed", r["complementary_suppressed"]],
                ["最小发布单元格 Smallest published cell", r["smallest_published_cell"]],
            ]
        else:
            pr, jr = r.get("prosecutor_risk", {}), r.get("journalist_risk", {})
            rows = [
                ["计数单位 Unit", r["unit"]],
                ["要求的 k / k required", r["k_required"]],
                ["实现的 k / k achieved", r.get("k_achieved")],
                ["输入记录 Records in", r.get("records_in")],
                [
                    "隐匿记录 Records suppressed",
                    f"{r.get('records_suppressed')} ({_pct(r.get('suppressed_share'))})",
                ],
                ["发布记录 Records released", r["records"]],
                ["等价类 Equivalence classes", r["equivalence_classes"]],
                ["最小等价类 Smallest class", r.get("smallest_class")],
                ["平均等价类 Average class size", r.get("average_class_size")],
                ["检察官风险 最高 Prosecutor risk, highest", _pct(pr.get("highest"))],
                ["检察官风险 平均 Prosecutor risk, average", _pct(pr.get("average"))],
                ["最高风险记录占比 Records at highest risk", _pct(pr.get("records_at_highest_risk"))],
                ["风险高于 1/k 的记录 Records above 1/k", _pct(pr.get("records_above_1_over_k"))],
                ["记者风险 最高 Journalist risk, highest", _pct(jr.get("highest"))],
                ["总体中最小类 Smallest population class", jr.get("smallest_population_class")],
                ["营销者风险 Marketer risk", _pct(r.get("marketer_risk"))],
                ["总体 Population", r.get("population")],
                ["搜索的格点 Lattice nodes evaluated", r.get("lattice_nodes_evaluated")],
            ]
        lines += _md_table(["指标 Metric", "值 Value"], rows)
        lines.append("")
        pseudo = [c.name for c in d.columns if c.role == "pseudonym"]
        scrubbed = [c.name for c in d.columns if c.role == "free_text_scrubbed"]
        if pseudo:
            lines.append(f"- 按接收方假名化 / pseudonymised per recipient: {', '.join(pseudo)}")
        if scrubbed:
            lines.append(f"- 自由文本已去除个人信息 / free text scrubbed: {', '.join(scrubbed)}")
        for zh, en in d.notes:
            lines.append(f"- {zh} / {en}")
        lines.append("")
    return "\n".join(lines)


def _write_frame(frame: pl.DataFrame, stem: Path) -> None:
    frame.write_parquet(stem.with_suffix(".parquet"), compression="zstd", statistics=True)
    frame.write_csv(
        stem.with_suffix(".csv"),
        include_bom=True,
        date_format="%Y-%m-%d",
        datetime_format="%Y-%m-%d %H:%M:%S",
    )


def _json(data: object) -> str:
    return json.dumps(data, ensure_ascii=False, indent=2, sort_keys=False, default=str) + "\n"


# ---------------------------------------------------------------- audit


def _actor() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _audit(
    lake: Lake,
    *,
    actor: str,
    role: str,
    outcome: Outcome,
    agreement: Agreement | None,
    package_id: str | None = None,
    rows: dict[str, int] | None = None,
    detail: str | None = None,
) -> None:
    """One ``export`` row per dataset in the audit log (:func:`masking.audit.record_export`)."""
    names = [d.stem for d in agreement.datasets] if agreement else ["(agreement)"]
    who = f"recipient={agreement.recipient.id} agreement={agreement.id}" if agreement else ""
    for name in names:
        record_export(
            lake,
            user_id=actor,
            role=role,
            dataset=name,
            row_count=(rows or {}).get(name, 0),
            recipient=agreement.recipient.id if agreement else None,
            package=package_id,
            outcome=outcome,
            detail=f"{who} {detail}".strip()[:MAX_DETAIL] if detail else who or None,
        )


# ---------------------------------------------------------------- the package


def package_id_for(agreement: Agreement, created_at: datetime) -> str:
    return f"{agreement.id}-{created_at:%Y%m%dT%H%M%S}"


def build_package(
    lake: Lake,
    agreement: Agreement | Path,
    today: date | None = None,
    *,
    created_at: datetime | None = None,
    registry: Registry | None = None,
    master_key: bytes | None = None,
    actor: str | None = None,
    role: str = "steward",
) -> PackagePath:
    """Build, check and write the export package of ``agreement`` (see the module doc).

    Raises :class:`~masking.agreement.AgreementError` (refused: nothing read),
    :class:`ExportError` / :class:`~masking.release.ReleaseError` (a dataset not built, k out of
    reach) or :class:`LeakError` (the leak gate found a direct identifier: nothing written).
    ``created_at`` (default: now, Asia/Shanghai) names the package; with the same lake, key,
    agreement and ``created_at`` the bytes are the same. ``master_key`` defaults to the
    platform's pseudonym key (:data:`masking.secrets.PSEUDONYM_KEY`). Every attempt is audited.
    """
    registry = registry or load_registry()
    actor = actor or _actor()
    audit = functools.partial(_audit, lake, actor=actor, role=role)
    try:
        agreement = load_agreement(agreement) if isinstance(agreement, Path) else agreement
        check_agreement(agreement, registry, today)
    except AgreementError as exc:
        audit(
            outcome="refused",
            agreement=agreement if isinstance(agreement, Agreement) else None,
            detail=str(exc),
        )
        raise
    created_at = (created_at or datetime.now(SHANGHAI)).replace(microsecond=0)
    package_id = package_id_for(agreement, created_at)
    key = recipient_key(master_key or require_secret(lake, PSEUDONYM_KEY), agreement.recipient.id)
    try:
        elders = _elders(lake, registry)
        datasets = [prepare_dataset(lake, registry, agreement, r, key, elders) for r in agreement.datasets]
    except ReleaseError as exc:
        audit(outcome="refused", agreement=agreement, package_id=package_id, detail=str(exc))
        raise
    except ExportError as exc:
        audit(outcome="error", agreement=agreement, package_id=package_id, detail=str(exc))
        raise
    rows = {d.request.stem: d.frame.height for d in datasets}

    parent = lake.exports / agreement.recipient.id
    parent.mkdir(parents=True, exist_ok=True)
    final = parent / package_id
    tmp = parent / f".{package_id}.{secrets.token_hex(4)}.tmp"
    tmp.mkdir()
    try:
        _write_package(tmp, agreement, package_id, created_at, datasets)
        exempt = {d.request.stem: {c.name: c.exempt for c in d.columns if c.exempt} for d in datasets}
        findings = scan_package(tmp, exempt)
        if findings:
            raise LeakError(findings)
        manifest = _manifest(tmp, agreement, package_id, created_at, datasets)
        _publish(tmp, final)
    except LeakError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        _remove_if_empty(parent)
        audit(outcome="refused", agreement=agreement, package_id=package_id, rows=rows, detail=str(exc))
        raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        _remove_if_empty(parent)
        raise
    audit(outcome="ok", agreement=agreement, package_id=package_id, rows=rows)
    return PackagePath(final, package_id, manifest)


def _elders(lake: Lake, registry: Registry) -> pl.DataFrame | None:
    files = table_files(lake, "library", ELDER_TABLE)
    if not files:
        return None
    cols = [ELDER_KEY, *elder_attribute_columns(registry)]
    return read_frame(files[0], lake, columns=cols)


def _write_package(
    tmp: Path, agreement: Agreement, package_id: str, created_at: datetime, datasets: list[ReleasedDataset]
) -> None:
    for d in datasets:
        _write_frame(d.frame, tmp / d.request.stem)
    dictionary = _dictionary(datasets)
    dictionary.write_csv(tmp / "data_dictionary.csv", include_bom=True)
    (tmp / "data_dictionary.md").write_text(_dictionary_md(agreement, datasets), encoding="utf-8")
    report = {
        "package_id": package_id,
        "agreement_id": agreement.id,
        "recipient": agreement.recipient.id,
        "k": agreement.k,
        "max_suppression": agreement.max_suppression,
        "created_at": created_at.isoformat(),
        "datasets": {
            d.request.stem: {
                "table": d.table.name,
                "zone": d.zone,
                "mode": d.mode,
                "quasi_identifiers": d.quasi_identifiers,
                "pseudonymised": [c.name for c in d.columns if c.role == "pseudonym"],
                "free_text_scrubbed": [c.name for c in d.columns if c.role == "free_text_scrubbed"],
                "risk": d.risk,
            }
            for d in datasets
        },
    }
    (tmp / "risk_report.json").write_text(_json(report), encoding="utf-8")
    (tmp / "risk_report.md").write_text(
        _risk_md(agreement, package_id, created_at, datasets), encoding="utf-8"
    )


def _manifest(
    tmp: Path, agreement: Agreement, package_id: str, created_at: datetime, datasets: list[ReleasedDataset]
) -> dict[str, Any]:
    files = [
        {"path": p.name, "sha256": sha256_file(p), "bytes": p.stat().st_size}
        for p in sorted(tmp.iterdir())
        if p.name != "manifest.json"
    ]
    manifest: dict[str, Any] = {
        "package_id": package_id,
        "agreement_id": agreement.id,
        "recipient": {"id": agreement.recipient.id, "name_zh": agreement.recipient.name_zh},
        "purpose": agreement.purpose,
        "legal_basis": agreement.legal_basis,
        "expires_on": agreement.expires_on.isoformat(),
        "period": (
            {"from": agreement.period.from_.isoformat(), "to": agreement.period.to.isoformat()}
            if agreement.period
            else None
        ),
        "k": agreement.k,
        "created_at": created_at.isoformat(),
        "datasets": {
            d.request.stem: {"table": d.table.name, "mode": d.mode, "rows": d.frame.height} for d in datasets
        },
        "files": files,
    }
    path = tmp / "manifest.json"
    path.write_text(_json(manifest), encoding="utf-8")
    found = scan_texts(json_strings(manifest))
    if found:
        raise LeakError([LeakFinding(path.name, None, e, n, ex) for e, (n, ex) in found.items()])
    return manifest


def _publish(tmp: Path, final: Path) -> None:
    """Rename the finished directory into place (replacing a package of the same id)."""
    for p in tmp.iterdir():
        os.chmod(p, 0o644)
    if final.exists():
        old = final.with_name(f".{final.name}.{secrets.token_hex(4)}.old")
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)


def _remove_if_empty(directory: Path) -> None:
    with contextlib.suppress(OSError):
        directory.rmdir()


def verify_manifest(package: Path) -> list[str]:
    """Files whose SHA-256 or size differ from the manifest (empty when the package is intact)."""
    manifest = json.loads((package / "manifest.json").read_text(encoding="utf-8"))
    bad = []
    listed = {f["path"] for f in manifest["files"]}
    for f in manifest["files"]:
        p = package / f["path"]
        if not p.exists() or sha256_file(p) != f["sha256"] or p.stat().st_size != f["bytes"]:
            bad.append(f["path"])
    bad += sorted(p.name for p in package.iterdir() if p.name not in listed and p.name != "manifest.json")
    return bad


__all__ = [
    "DIRECT_ENTITIES",
    "Agreement",
    "AgreementError",
    "ExportError",
    "LeakError",
    "LeakFinding",
    "PackagePath",
    "Problem",
    "build_package",
    "export_pseudonyms",
    "recipient_key",
    "scan_package",
    "verify_manifest",
]
