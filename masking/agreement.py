"""Data-sharing agreements (数据共享协议) for open-data export packages.

An agreement is a YAML file naming the recipient, the purpose and legal basis, who signed
it and until when it holds, the period of the data, k, and each dataset: which columns,
which rows (the period on a date column, value filters), which elder attributes to join,
which columns to pseudonymise, minimum generalisation levels, quasi-identifier overrides,
and optionally an aggregate (group-by columns and measures) instead of rows. Example::

    id: FDU-SPH-2026-007
    recipient:
      id: fudan_sph
      name_zh: 复旦大学公共卫生学院
      name_en: Fudan University School of Public Health
    purpose: 居家养老服务利用的街道差异研究 / street differences in home-care service use
    legal_basis: 《上海市公共数据开放暂行办法》有条件开放; 数据共享协议
    signed_by: 杨浦区民政局
    signed_on: 2026-10-20
    expires_on: 2027-10-19
    period: {from: 2026-11-01, to: 2026-11-30}
    k: 5
    datasets:
      - name: fact_service_event
        columns: [programme, service_date, street]
        elder_attributes: [sex, age_band]
        date_column: service_date
        generalise: {service_date: month, age_band: 10y}
        aggregate:
          group_by: [street, sex, age_band, programme, service_date]
          measures: [{name: elders, op: persons}, {name: events, op: count}]

:func:`load_agreement` parses and validates its shape; :func:`check_agreement` checks it
against the contracts and the date, and refuses it - with every reason, in Chinese and
English - when a dataset is not open (``non_open``), the agreement has expired or is not
yet in force, a column does not exist, or a direct identifier would leave in clear (a direct
identifier may only be requested under ``pseudonymise``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from masking.release import hierarchy_for
from schemas.contract import Column, DerivedTable, Table
from schemas.registry import Registry

SHANGHAI = ZoneInfo("Asia/Shanghai")
# The population / attribute table of the library: elder attributes are joined from it.
ELDER_TABLE = "dim_elder"
ELDER_KEY = "elder_key"
# file stems of the package's own files: no dataset may be written under them
RESERVED_STEMS = frozenset({"data_dictionary", "risk_report", "manifest"})


def today_shanghai() -> date:
    return datetime.now(SHANGHAI).date()


@dataclass(frozen=True)
class Problem:
    """One reason an agreement is refused, in Chinese and English."""

    code: str
    zh: str
    en: str

    def __str__(self) -> str:
        return f"[{self.code}] {self.zh} / {self.en}"


class AgreementError(ValueError):
    """The agreement is malformed or refused; ``problems`` lists every reason."""

    def __init__(self, problems: list[Problem], agreement_id: str | None = None) -> None:
        self.problems = problems
        self.agreement_id = agreement_id
        head = (
            f"协议 {agreement_id} 被拒绝 / agreement {agreement_id} refused"
            if agreement_id
            else ("协议被拒绝 / agreement refused")
        )
        super().__init__(head + ":\n" + "\n".join(f"  - {p}" for p in problems))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


_ID = r"^[a-z][a-z0-9_-]*$"


class Recipient(_Strict):
    id: str = Field(pattern=_ID, max_length=64)
    name_zh: str = Field(min_length=1)
    name_en: str = ""


class Period(_Strict):
    from_: date = Field(alias="from")
    to: date

    @model_validator(mode="after")
    def _ordered(self) -> Period:
        if self.to < self.from_:
            raise ValueError(f"period ends ({self.to}) before it starts ({self.from_})")
        return self


class MeasureSpec(_Strict):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    op: Literal["count", "persons", "sum", "mean", "min", "max"]
    column: str | None = None

    @model_validator(mode="after")
    def _column_when_needed(self) -> MeasureSpec:
        if self.op in ("sum", "mean", "min", "max") and not self.column:
            raise ValueError(f"measure {self.name}: op {self.op} needs a column")
        if self.op in ("count", "persons") and self.column:
            raise ValueError(f"measure {self.name}: op {self.op} takes no column")
        return self


class AggregateSpec(_Strict):
    group_by: list[str] = Field(min_length=1)
    measures: list[MeasureSpec] = Field(min_length=1)


class DatasetRequest(_Strict):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    # file name stem in the package (default: the table name); lets one table appear twice
    output: str | None = Field(default=None, pattern=r"^[a-z][a-z0-9_]*$")
    columns: list[str] = Field(min_length=1)
    # quasi-identifying attributes of the elder joined from dim_elder on elder_key
    elder_attributes: list[str] = Field(default_factory=list)
    # columns released as per-recipient pseudonyms (person keys are always pseudonymised)
    pseudonymise: list[str] = Field(default_factory=list)
    # keep rows whose date/timestamp lies within the agreement's period
    date_column: str | None = None
    # keep rows whose column holds one of the values
    filters: dict[str, list[str]] = Field(default_factory=dict)
    # minimum generalisation level per column (names as in masking.release: month, 5y, district...)
    generalise: dict[str, str] = Field(default_factory=dict)
    # quasi-identifiers (default: the contract's quasi_identifier columns released in clear)
    quasi_identifiers: list[str] | None = None
    aggregate: AggregateSpec | None = None

    @property
    def stem(self) -> str:
        return self.output or self.name

    @property
    def released_columns(self) -> list[str]:
        return [*self.columns, *self.elder_attributes]


class Agreement(_Strict):
    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=80)
    recipient: Recipient
    purpose: str = Field(min_length=1)
    legal_basis: str = Field(min_length=1)
    signed_by: str = Field(min_length=1)
    signed_on: date | None = None
    expires_on: date
    period: Period | None = None
    k: int = Field(default=5, ge=2, le=1000)
    max_suppression: float = Field(default=0.05, ge=0.0, le=0.5)
    datasets: list[DatasetRequest] = Field(min_length=1)


_PYDANTIC_ZH = {
    "missing": "缺少必填字段",
    "extra_forbidden": "不认识的字段",
    "string_pattern_mismatch": "格式不符",
    "string_too_short": "不能为空",
    "string_too_long": "过长",
    "too_short": "至少需要一项",
    "date_from_datetime_parsing": "日期应写作 YYYY-MM-DD",
    "date_parsing": "日期应写作 YYYY-MM-DD",
    "date_type": "日期应写作 YYYY-MM-DD",
    "int_parsing": "应为整数",
    "int_type": "应为整数",
    "float_parsing": "应为数字",
    "greater_than_equal": "数值过小",
    "less_than_equal": "数值过大",
    "literal_error": "取值不在允许范围内",
    "value_error": "取值不合理",
    "list_type": "应为列表",
    "dict_type": "应为映射",
    "string_type": "应为文本",
    "model_type": "应为映射",
}


def _malformed(exc: ValidationError) -> list[Problem]:
    problems = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(root)"
        zh = _PYDANTIC_ZH.get(err["type"], "不合格")
        problems.append(
            Problem("MALFORMED", f"协议字段 {where}：{zh}（{err['msg']}）", f"field {where}: {err['msg']}")
        )
    return problems


def parse_agreement(data: Any) -> Agreement:
    """An agreement from parsed YAML; :class:`AgreementError` (bilingual) when malformed."""
    if not isinstance(data, dict):
        raise AgreementError(
            [Problem("MALFORMED", "协议文件应为 YAML 映射", "the agreement must be a YAML mapping")]
        )
    try:
        return Agreement.model_validate(data)
    except ValidationError as exc:
        raise AgreementError(_malformed(exc), str(data.get("id") or "") or None) from exc


def load_agreement(path: Path) -> Agreement:
    """Read and validate an agreement YAML file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise AgreementError(
            [
                Problem(
                    "NOT_FOUND",
                    f"无法读取协议文件 {path}：{exc.strerror}",
                    f"cannot read {path}: {exc.strerror}",
                )
            ]
        ) from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise AgreementError(
            [Problem("MALFORMED", f"协议文件不是合法的 YAML：{exc}", f"not valid YAML: {exc}")]
        ) from exc
    return parse_agreement(data)


AnyTable = Table | DerivedTable


def resolve_table(registry: Registry, name: str) -> tuple[str, AnyTable] | None:
    """(zone, contract) of a staged source, library or mart table, or None when unknown."""
    for _, t in registry.tables():
        if t.name == name:
            return "staged", t
    for d, dt in registry.derived_tables():
        if dt.name == name:
            return d.zone, dt
    return None


def person_key_column(table: AnyTable) -> str | None:
    """The column naming the person behind a row (counts persons, never released in clear)."""
    names = table.column_names
    for candidate in (ELDER_KEY, "elder_pseudonym"):
        if candidate in names:
            return candidate
    for c in table.columns:
        if c.semantic == "resident_id":
            return c.name
    return None


def always_pseudonymised(column: Column) -> bool:
    """Person and device keys (identifiers that are quasi-identifiers) never leave in clear."""
    return column.semantic == "identifier" and column.pii == "quasi_identifier"


def elder_attribute_columns(registry: Registry) -> dict[str, Column]:
    """Elder attributes a dataset may join: dim_elder's quasi-identifiers that are not identifiers."""
    elder = registry.derived(ELDER_TABLE)
    return {
        c.name: c
        for c in elder.columns
        if c.pii == "quasi_identifier" and c.semantic not in ("identifier",) and c.name != ELDER_KEY
    }


def released_column(registry: Registry, table: AnyTable, name: str) -> Column:
    """The contract of a released column (a table column or a joined elder attribute)."""
    if name in table.column_names:
        return table.column(name)
    return elder_attribute_columns(registry)[name]


def _dataset_problems(registry: Registry, agreement: Agreement, req: DatasetRequest) -> list[Problem]:
    found = resolve_table(registry, req.name)
    if found is None:
        return [Problem("UNKNOWN_DATASET", f"数据集 {req.name} 不存在", f"dataset {req.name} does not exist")]
    _, table = found
    out: list[Problem] = []
    if table.open_data == "non_open":
        out.append(
            Problem(
                "NON_OPEN",
                f"数据集 {req.name}（{table.zh}）属于不予开放类，不能导出",
                f"dataset {req.name} ({table.en}) is non-open (不予开放) and cannot be exported",
            )
        )
    names = set(table.column_names)
    unknown = [c for c in req.columns if c not in names]
    if unknown:
        out.append(
            Problem(
                "UNKNOWN_COLUMN",
                f"数据集 {req.name} 没有这些列：{', '.join(unknown)}",
                f"dataset {req.name} has no column(s): {', '.join(unknown)}",
            )
        )
    dupes = sorted({c for c in req.released_columns if req.released_columns.count(c) > 1})
    if dupes:
        out.append(
            Problem(
                "DUPLICATE_COLUMN",
                f"{req.name}：列重复 {', '.join(dupes)}",
                f"{req.name}: columns repeated: {', '.join(dupes)}",
            )
        )
    attrs = elder_attribute_columns(registry)
    if req.elder_attributes:
        if ELDER_KEY not in names:
            out.append(
                Problem(
                    "NO_ELDER_KEY",
                    f"{req.name} 没有 elder_key，不能关联老人属性",
                    f"{req.name} has no elder_key to join elder attributes on",
                )
            )
        bad = [a for a in req.elder_attributes if a not in attrs]
        if bad:
            out.append(
                Problem(
                    "ELDER_ATTRIBUTE",
                    f"不能关联的老人属性：{', '.join(bad)}（只允许准标识符：{', '.join(sorted(attrs))}）",
                    f"elder attributes not allowed: {', '.join(bad)} (quasi-identifiers only: "
                    f"{', '.join(sorted(attrs))})",
                )
            )
        clash = [a for a in req.elder_attributes if a in names]
        if clash:
            out.append(
                Problem(
                    "ELDER_ATTRIBUTE",
                    f"老人属性与 {req.name} 的列同名：{', '.join(clash)}",
                    f"elder attributes clash with columns of {req.name}: {', '.join(clash)}",
                )
            )
    released = set(req.released_columns)
    not_released = [c for c in req.pseudonymise if c not in released]
    if not_released:
        out.append(
            Problem(
                "PSEUDONYMISE",
                f"pseudonymise 中的列未在 columns 中：{', '.join(not_released)}",
                f"pseudonymise names columns not requested: {', '.join(not_released)}",
            )
        )
    direct = [c for c in req.columns if c in names and table.column(c).pii == "direct_identifier"]
    in_clear = [c for c in direct if c not in req.pseudonymise]
    if in_clear:
        out.append(
            Problem(
                "DIRECT_IDENTIFIER",
                f"{req.name}：直接标识符不得明文导出：{', '.join(in_clear)}（删去或列入 pseudonymise）",
                f"{req.name}: direct identifiers are never exported in clear: {', '.join(in_clear)} "
                "(drop them or list them under pseudonymise)",
            )
        )
    if req.date_column is not None:
        if req.date_column not in names or table.column(req.date_column).type not in ("date", "timestamp"):
            out.append(
                Problem(
                    "DATE_COLUMN",
                    f"{req.name}：date_column {req.date_column} 不是日期列",
                    f"{req.name}: date_column {req.date_column} is not a date or timestamp column",
                )
            )
        if agreement.period is None:
            out.append(
                Problem(
                    "NO_PERIOD",
                    f"{req.name} 指定了 date_column，但协议没有 period",
                    f"{req.name} names a date_column but the agreement has no period",
                )
            )
    bad_filters = [c for c in req.filters if c not in names]
    if bad_filters:
        out.append(
            Problem(
                "UNKNOWN_COLUMN",
                f"{req.name}：筛选条件中的列不存在：{', '.join(bad_filters)}",
                f"{req.name}: filter columns do not exist: {', '.join(bad_filters)}",
            )
        )
    valid_cols = (names | set(attrs)) & released
    for col, level in req.generalise.items():
        if col not in valid_cols:
            out.append(
                Problem(
                    "GENERALISE",
                    f"{req.name}：generalise 中的列 {col} 未被导出",
                    f"{req.name}: generalise names column {col}, which is not released",
                )
            )
            continue
        h = hierarchy_for(released_column(registry, table, col))
        if level not in h.levels:
            out.append(
                Problem(
                    "GENERALISE",
                    f"{req.name}.{col}：没有泛化层级 {level}（可选：{' / '.join(h.levels)}）",
                    f"{req.name}.{col}: no generalisation level {level!r} (one of {', '.join(h.levels)})",
                )
            )
    if req.quasi_identifiers is not None:
        bad = [c for c in req.quasi_identifiers if c not in valid_cols]
        if bad:
            out.append(
                Problem(
                    "QUASI_IDENTIFIER",
                    f"{req.name}：quasi_identifiers 中的列未被导出：{', '.join(bad)}",
                    f"{req.name}: quasi_identifiers not released: {', '.join(bad)}",
                )
            )
    if req.aggregate is not None:
        out.extend(_aggregate_problems(registry, table, req, valid_cols))
    return out


def _aggregate_problems(
    registry: Registry, table: AnyTable, req: DatasetRequest, valid_cols: set[str]
) -> list[Problem]:
    agg = req.aggregate
    assert agg is not None
    out: list[Problem] = []
    bad = [c for c in agg.group_by if c not in valid_cols]
    bad += [m.column for m in agg.measures if m.column and m.column not in valid_cols]
    if bad:
        out.append(
            Problem(
                "AGGREGATE",
                f"{req.name}：汇总用到的列未在 columns / elder_attributes 中：{', '.join(bad)}",
                f"{req.name}: aggregate uses columns not released: {', '.join(bad)}",
            )
        )
    for m in agg.measures:
        numeric = m.column in valid_cols and released_column(registry, table, m.column).type in (
            "integer",
            "decimal",
        )
        if m.column and m.column in valid_cols and m.op in ("sum", "mean") and not numeric:
            out.append(
                Problem(
                    "AGGREGATE",
                    f"{req.name}：{m.op} 只能用于数值列，{m.column} 不是",
                    f"{req.name}: {m.op} needs a numeric column; {m.column} is not",
                )
            )
        if m.op == "persons" and person_key_column(table) is None:
            out.append(
                Problem(
                    "AGGREGATE",
                    f"{req.name}：没有人员主键，不能计人数（persons）",
                    f"{req.name}: no person key to count persons",
                )
            )
    names = [m.name for m in agg.measures]
    clash = sorted(
        {n for n in names if names.count(n) > 1 or n in agg.group_by or n in ("suppressed", "suppression")}
    )
    if clash:
        out.append(
            Problem(
                "AGGREGATE",
                f"{req.name}：指标名重复或与列同名：{', '.join(clash)}",
                f"{req.name}: measure names repeated or clashing with columns: {', '.join(clash)}",
            )
        )
    direct = [
        c for c in agg.group_by if c in table.column_names and table.column(c).pii == "direct_identifier"
    ]
    if direct:
        out.append(
            Problem(
                "AGGREGATE",
                f"{req.name}：不能按直接标识符分组：{', '.join(direct)}",
                f"{req.name}: cannot group by direct identifiers: {', '.join(direct)}",
            )
        )
    return out


def check_agreement(agreement: Agreement, registry: Registry, today: date | None = None) -> None:
    """Refuse (raise :class:`AgreementError`) unless every dataset may be released under it today.

    ``today`` defaults to today's date in Asia/Shanghai. The agreement holds through its
    ``expires_on`` day.
    """
    today = today or today_shanghai()
    problems: list[Problem] = []
    if agreement.expires_on < today:
        problems.append(
            Problem(
                "EXPIRED",
                f"协议已于 {agreement.expires_on} 到期（今天是 {today}），需续签后才能导出",
                f"the agreement expired on {agreement.expires_on} (today is {today}); renew it to export",
            )
        )
    if agreement.signed_on is not None and agreement.signed_on > today:
        problems.append(
            Problem(
                "NOT_IN_FORCE",
                f"协议签署日期 {agreement.signed_on} 晚于今天（{today}），尚未生效",
                f"the agreement is signed on {agreement.signed_on}, after today ({today}): not yet in force",
            )
        )
    stems = [d.stem for d in agreement.datasets]
    dupes = sorted({s for s in stems if stems.count(s) > 1})
    if dupes:
        problems.append(
            Problem(
                "DUPLICATE_DATASET",
                f"数据集输出名重复：{', '.join(dupes)}（用 output 区分）",
                f"datasets share an output name: {', '.join(dupes)} (set output)",
            )
        )
    reserved = sorted(set(stems) & RESERVED_STEMS)
    if reserved:
        problems.append(
            Problem(
                "RESERVED_NAME",
                f"输出名与导出包自带文件重名：{', '.join(reserved)}",
                f"output names reserved for the package's own files: {', '.join(reserved)}",
            )
        )
    for req in agreement.datasets:
        problems.extend(_dataset_problems(registry, agreement, req))
    if problems:
        raise AgreementError(problems, agreement.id)
