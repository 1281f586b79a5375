"""Quality rules: the rule model, the rule families, and the domain rules written by hand.

A :class:`QualityRule` is one Great Expectations expectation plus what the
project needs around it: a stable id, its family (the OHDSI Data Quality
Dashboard dimensions conformance / completeness / plausibility, plus
uniqueness, consistency and timeliness), whether it guards the library (a
failure blocks downstream assets), the columns that show a failing row, and
the derived ``_dq_*`` columns it reads (Polars expressions, computed once
before validation; GX then checks them like any column).

Contract rules (columns, types, nulls, code lists, keys, ranges, future dates)
are generated in :mod:`quality.suites`; this module holds the rules a contract
cannot say, for staged tables (:func:`domain_rules`) and for library and mart
tables (:func:`library_domain_rules`; rules that join other library tables are
DuckDB SQL in :mod:`quality.library_checks`). Their numbers are the typed
constants below (DOMAIN.md: screening ranges, 60+, two-year assessments;
configurable defaults, not law).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import polars as pl

from quality._gx import E, RowColumn
from schemas.contract import DerivedTable, Table
from schemas.registry import Registry

AnyTable = Table | DerivedTable
"""A staged (source) table or a library / mart table: both declare their columns alike."""

Family = Literal["conformance", "completeness", "plausibility", "uniqueness", "consistency", "timeliness"]
FAMILIES: tuple[Family, ...] = (
    "conformance",
    "completeness",
    "plausibility",
    "uniqueness",
    "consistency",
    "timeliness",
)
FAMILY_ZH: dict[str, str] = {
    "conformance": "规范性",
    "completeness": "完整性",
    "plausibility": "合理性",
    "uniqueness": "唯一性",
    "consistency": "一致性",
    "timeliness": "及时性",
}

# ------------------------------------------------------------------ domain constants (DOMAIN.md)
# Cognitive screening instruments: score range per instrument (codes of the screening_instrument list).
INSTRUMENT_RANGES: dict[str, tuple[int, int]] = {"AD8": (0, 8), "MMSE": (0, 30), "MOCA": (0, 30)}
ELDER_MIN_AGE = 60
MAX_PLAUSIBLE_AGE = 120
# Tables with a birth date whose people are not elders (the 60+ rule does not apply).
NOT_ELDERS: frozenset[str] = frozenset({"caregivers"})
# LTCI visits: |minutes(end - start) - declared duration| at most this.
DURATION_TOLERANCE_MINUTES = 5
# Meal aid: amount = subsidy + self-paid, to the fen.
MONEY_TOLERANCE_YUAN = 0.01
# Unified needs assessment: valid at most two years.
ASSESSMENT_MAX_VALID_DAYS = 731
# (table, later column, earlier column, equal allowed, Chinese description): "end after start" pairs.
ORDERED_PAIRS: tuple[tuple[str, str, str, bool, str], ...] = (
    ("muni_ltci_services", "end_time", "start_time", False, "长护险服务结束时间晚于开始时间"),
    ("care_bed_visits", "end_time", "start_time", False, "家床服务结束时间晚于开始时间"),
    ("district_hotline", "closed_at", "call_time", True, "工单办结时间不早于来电时间"),
    ("care_bed_contracts", "ends_on", "signed_on", True, "床位合同到期日不早于签约日"),
    ("muni_assessments", "valid_until", "assessment_date", True, "评估有效期不早于评估日期"),
    ("facilities", "closed_on", "opened_on", True, "停业日期不早于开业日期"),
    # library tables
    ("fact_service_event", "ended_at", "started_at", True, "服务结束时间不早于开始时间"),
    ("fact_assessment", "valid_until", "assessment_date", True, "评估有效期不早于评估日期"),
    ("dim_facility", "closed_on", "opened_on", True, "停业日期不早于开业日期"),
)
# Blood pressure pairs (systolic, diastolic): staged readings and the library's daily means.
BLOOD_PRESSURE_PAIRS: tuple[tuple[str, str], ...] = (
    ("systolic", "diastolic"),
    ("systolic_mean", "diastolic_mean"),
)
# Daily vital-sign summaries: min <= mean <= max per measure (library fact_vitals_daily).
SUMMARY_MEASURES: tuple[str, ...] = ("heart_rate",)
# The elder status that carries a death date (code of the elder_status list), and the living one.
DECEASED = "DECEASED"
ACTIVE = "ACTIVE"

Related = Mapping[str, pl.DataFrame]
"""Other staged tables a cross-table rule reads, by table name (e.g. ``facilities``)."""


@dataclass(frozen=True)
class QualityRule:
    """One expectation with its family, severity class and the columns that explain a failure."""

    id: str
    family: Family
    expectation: Any  # a gx.expectations.Expectation (GX ships no type stubs)
    zh: str
    columns: tuple[str, ...] = ()
    guards_library: bool = False
    # Derived columns this rule validates: name -> Polars expression over the staged row.
    derived: Mapping[str, pl.Expr] = field(default_factory=dict)
    # Cross-table rules: the staged tables they need, and how they derive their columns from them.
    needs: tuple[str, ...] = ()
    derive_related: Callable[[pl.DataFrame, Related], pl.DataFrame] | None = None

    @property
    def severity(self) -> Literal["ERROR", "WARN"]:
        return "ERROR" if self.guards_library else "WARN"

    def meta(self) -> dict[str, Any]:
        return {
            "rule_id": self.id,
            "family": self.family,
            "guards_library": self.guards_library,
            "severity": self.severity,
            "zh": self.zh,
            "columns": list(self.columns),
        }


# ------------------------------------------------------------------ helpers


def delivery_end() -> pl.Expr:
    """The first instant after the delivery day: no event time may reach it."""
    return (pl.col("_delivery_date") + pl.duration(days=1)).cast(pl.Datetime("us"))


AS_OF = "_as_of"
"""Library and mart frames carry the build's as-of date in this column (added by the loader)."""


def as_of_end() -> pl.Expr:
    """The first instant after the library's as-of date: no event date may reach it."""
    return (pl.col(AS_OF) + pl.duration(days=1)).cast(pl.Datetime("us"))


def _as_date(col: str, table: Table) -> pl.Expr:
    c = pl.col(col)
    return c.dt.date() if table.column(col).type == "timestamp" else c


def age_on(birth: pl.Expr, on: pl.Expr) -> pl.Expr:
    """Whole years between two dates (birthday reached or not)."""
    before_birthday = (on.dt.month().cast(pl.Int32) * 100 + on.dt.day().cast(pl.Int32)) < (
        birth.dt.month().cast(pl.Int32) * 100 + birth.dt.day().cast(pl.Int32)
    )
    return on.dt.year().cast(pl.Int32) - birth.dt.year().cast(pl.Int32) - before_birthday.cast(pl.Int32)


# ------------------------------------------------------------------ domain rules


def identity_rules(table: Table) -> list[QualityRule]:
    """The resident ID agrees with the declared birth date and sex (staging only flags a mismatch)."""
    names = set(table.column_names)
    if "id_number" not in names or table.column("id_number").semantic != "resident_id":
        return []
    out = []
    if "birth_date" in names:
        out.append(
            QualityRule(
                id="consistency.id_birth_date",
                family="consistency",
                # As a gap in days, so a masked example (birth dates show year and month) still shows it.
                expectation=E.ExpectColumnValuesToBeBetween(
                    column="_dq_birth_gap_days", min_value=0, max_value=0
                ),
                zh="身份证号码推导的出生日期与登记的出生日期一致",
                columns=("id_number", "id_birth_date", "birth_date"),
                derived={
                    "_dq_birth_gap_days": (pl.col("birth_date") - pl.col("id_birth_date")).dt.total_days()
                },
            )
        )
    if "sex" in names and table.column("sex").codelist == "sex":
        out.append(
            QualityRule(
                id="consistency.id_sex",
                family="consistency",
                expectation=E.ExpectColumnPairValuesToBeEqual(
                    column_A="id_sex", column_B="sex", ignore_row_if="either_value_is_missing"
                ),
                zh="身份证号码推导的性别与登记的性别一致",
                columns=("id_number", "id_sex", "sex"),
            )
        )
    return out


def age_rules(table: Table) -> list[QualityRule]:
    """Elders are 60+ on the event date (master tables: on the delivery date)."""
    names = set(table.column_names)
    if "birth_date" not in names or table.name in NOT_ELDERS:
        return []
    birth = (
        pl.coalesce(pl.col("birth_date"), pl.col("id_birth_date"))
        if "id_number" in names
        else pl.col("birth_date")
    )
    event = table.event_time_columns[0] if table.event_time_columns else None
    on = _as_date(event, table) if event else pl.col("_delivery_date")
    return [
        QualityRule(
            id="plausibility.age_60_plus",
            family="plausibility",
            expectation=E.ExpectColumnValuesToBeBetween(
                column="_dq_age_years", min_value=ELDER_MIN_AGE, max_value=MAX_PLAUSIBLE_AGE
            ),
            zh=f"老年人在{'事件' if event else '交付'}日期已满 {ELDER_MIN_AGE} 周岁"
            f"（且不超过 {MAX_PLAUSIBLE_AGE} 岁）",
            columns=("birth_date", event or "_delivery_date"),
            derived={"_dq_age_years": age_on(birth, on)},
        )
    ]


def screening_rules(table: AnyTable) -> list[QualityRule]:
    """Screening scores inside their instrument's range (the contract's 0-30 covers all three)."""
    names = set(table.column_names)
    if not {"instrument", "score"} <= names or table.column("instrument").codelist != "screening_instrument":
        return []
    return [
        QualityRule(
            id=f"plausibility.instrument_range.{code}",
            family="plausibility",
            expectation=E.ExpectColumnValuesToBeBetween(
                column="score", min_value=lo, max_value=hi, row_condition=RowColumn("instrument") == code
            ),
            zh=f"{code} 得分在 {lo}-{hi} 之间",
            columns=("instrument", "score"),
            # A score outside its instrument's scale corrupts screening positives downstream.
            guards_library=True,
        )
        for code, (lo, hi) in INSTRUMENT_RANGES.items()
    ]


def vital_sign_rules(table: AnyTable) -> list[QualityRule]:
    """Vital signs physiologically plausible beyond each column's contract range: systolic above
    diastolic; in daily summaries min <= mean <= max."""
    names = set(table.column_names)
    out = [
        QualityRule(
            id="plausibility.systolic_above_diastolic",
            family="plausibility",
            expectation=E.ExpectColumnPairValuesAToBeGreaterThanB(
                column_A=systolic, column_B=diastolic, ignore_row_if="either_value_is_missing"
            ),
            zh="收缩压高于舒张压" if systolic == "systolic" else "平均收缩压高于平均舒张压",
            columns=(systolic, diastolic),
        )
        for systolic, diastolic in BLOOD_PRESSURE_PAIRS
        if {systolic, diastolic} <= names
    ]
    for measure in SUMMARY_MEASURES:
        low, mean, high = f"{measure}_min", f"{measure}_mean", f"{measure}_max"
        if not {low, mean, high} <= names:
            continue
        for upper, lower, zh in ((mean, low, "平均值不低于最低值"), (high, mean, "最高值不低于平均值")):
            out.append(
                QualityRule(
                    id=f"consistency.summary_order.{upper}_ge_{lower}",
                    family="consistency",
                    expectation=E.ExpectColumnPairValuesAToBeGreaterThanB(
                        column_A=upper, column_B=lower, or_equal=True, ignore_row_if="either_value_is_missing"
                    ),
                    zh=f"{table.column(upper).zh}：{zh}",
                    columns=(low, mean, high),
                )
            )
    return out


def ordered_pair_rules(table: AnyTable) -> list[QualityRule]:
    out = []
    for name, later, earlier, or_equal, zh in ORDERED_PAIRS:
        if name != table.name:
            continue
        out.append(
            QualityRule(
                id=f"consistency.order.{later}_after_{earlier}",
                family="consistency",
                expectation=E.ExpectColumnPairValuesAToBeGreaterThanB(
                    column_A=later,
                    column_B=earlier,
                    or_equal=or_equal,
                    ignore_row_if="either_value_is_missing",
                ),
                zh=zh,
                columns=(earlier, later),
            )
        )
    return out


def ltci_rules(table: Table) -> list[QualityRule]:
    """LTCI visits: the declared duration matches start/end, and the visit starts on its service date."""
    if not {"start_time", "end_time", "duration_minutes", "service_date"} <= set(table.column_names):
        return []
    gap = (
        ((pl.col("end_time") - pl.col("start_time")).dt.total_minutes() - pl.col("duration_minutes"))
        .abs()
        .cast(pl.Int64)
    )
    return [
        QualityRule(
            id="consistency.duration_matches_times",
            family="consistency",
            expectation=E.ExpectColumnValuesToBeBetween(
                column="_dq_duration_gap_minutes", min_value=0, max_value=DURATION_TOLERANCE_MINUTES
            ),
            zh=f"服务时长与起止时间相符（误差不超过 {DURATION_TOLERANCE_MINUTES} 分钟）",
            columns=("start_time", "end_time", "duration_minutes"),
            derived={"_dq_duration_gap_minutes": gap},
        ),
        QualityRule(
            id="consistency.starts_on_service_date",
            family="consistency",
            expectation=E.ExpectColumnPairValuesToBeEqual(
                column_A="service_date", column_B="_dq_start_date", ignore_row_if="either_value_is_missing"
            ),
            zh="服务开始时间落在服务日期当天",
            columns=("service_date", "start_time"),
            derived={"_dq_start_date": pl.col("start_time").dt.date()},
        ),
    ]


def assessment_rules(table: AnyTable) -> list[QualityRule]:
    if not {"assessment_date", "valid_until"} <= set(table.column_names):
        return []
    return [
        QualityRule(
            id="plausibility.assessment_valid_two_years",
            family="plausibility",
            expectation=E.ExpectColumnValuesToBeBetween(
                column="_dq_valid_days", min_value=0, max_value=ASSESSMENT_MAX_VALID_DAYS
            ),
            zh="统一需求评估结果有效期不超过两年",
            columns=("assessment_date", "valid_until"),
            derived={"_dq_valid_days": (pl.col("valid_until") - pl.col("assessment_date")).dt.total_days()},
        )
    ]


def meal_money_rules(table: Table) -> list[QualityRule]:
    if not {"amount", "subsidy", "self_paid"} <= set(table.column_names):
        return []
    gap = (pl.col("amount") - pl.col("subsidy") - pl.col("self_paid")).abs()
    return [
        QualityRule(
            id="consistency.amount_is_subsidy_plus_self_paid",
            family="consistency",
            expectation=E.ExpectColumnValuesToBeBetween(
                column="_dq_amount_gap", min_value=0, max_value=MONEY_TOLERANCE_YUAN
            ),
            zh="消费金额 = 补贴金额 + 自付金额",
            columns=("amount", "subsidy", "self_paid"),
            derived={"_dq_amount_gap": gap},
        )
    ]


def elder_status_rules(
    table: AnyTable,
    registry: Registry,
    *,
    end: pl.Expr | None = None,
    end_column: str = "_delivery_date",
) -> list[QualityRule]:
    """A death date exactly when the status says deceased, and never after the delivery
    (library: the as-of date, ``end=as_of_end(), end_column=AS_OF``)."""
    names = set(table.column_names)
    if not {"status", "death_date"} <= names or table.column("status").codelist != "elder_status":
        return []
    assert DECEASED in registry.codelist("elder_status").codes()
    staged = end is None
    when = "交付日期" if staged else "数据截止日"
    end_name = "_dq_delivery_end" if staged else "_dq_as_of_end"
    return [
        QualityRule(
            id="consistency.deceased_has_death_date",
            family="consistency",
            expectation=E.ExpectColumnValuesToNotBeNull(
                column="death_date", row_condition=RowColumn("status") == DECEASED
            ),
            zh="状态为死亡的记录有死亡日期",
            columns=("status", "death_date"),
        ),
        QualityRule(
            id="consistency.living_has_no_death_date",
            family="consistency",
            expectation=E.ExpectColumnValuesToBeNull(
                column="death_date", row_condition=RowColumn("status") != DECEASED
            ),
            zh="状态不是死亡的记录没有死亡日期",
            columns=("status", "death_date"),
        ),
        QualityRule(
            id="timeliness.not_future.death_date",
            family="timeliness",
            expectation=E.ExpectColumnPairValuesAToBeGreaterThanB(
                column_A=end_name, column_B="death_date", ignore_row_if="either_value_is_missing"
            ),
            zh=f"死亡日期不晚于{when}",
            columns=("death_date", end_column),
            derived={end_name: delivery_end() if end is None else end},
        ),
    ]


# ------------------------------------------------------------------ cross-table: meals at meal points

MEAL_POINT = "MEAL_POINT"
UNREGISTERED = "UNREGISTERED"


def latest_facilities(facilities: pl.DataFrame) -> pl.DataFrame:
    """One row per facility: its latest delivered version."""
    return facilities.sort("_delivery_date", "_source_file", "_row_number").unique(
        "facility_id", keep="last", maintain_order=True
    )


def _meal_point_facts(df: pl.DataFrame, related: Related) -> pl.DataFrame:
    facilities = related.get("facilities")
    if facilities is None:
        return df.with_columns(
            _dq_meal_point_type=pl.lit(None, pl.String),
            _dq_meal_point_closed_on=pl.lit(None, pl.Date),
            _dq_meal_date=pl.col("meal_time").dt.date(),
        )
    points = latest_facilities(facilities).select(
        pl.col("facility_id").alias("meal_point_id"),
        pl.col("facility_type").alias("_dq_meal_point_type"),
        pl.col("closed_on").alias("_dq_meal_point_closed_on"),
    )
    return df.join(points, on="meal_point_id", how="left", maintain_order="left").with_columns(
        _dq_meal_point_type=pl.col("_dq_meal_point_type").fill_null(UNREGISTERED),
        _dq_meal_date=pl.col("meal_time").dt.date(),
    )


def meal_point_rules(table: Table) -> list[QualityRule]:
    """Meals are taken at registered meal points, before the point closed (reads staged facilities)."""
    if not {"meal_point_id", "meal_time"} <= set(table.column_names):
        return []
    return [
        QualityRule(
            id="conformance.meal_point_registered",
            family="conformance",
            expectation=E.ExpectColumnValuesToBeInSet(column="_dq_meal_point_type", value_set=[MEAL_POINT]),
            zh="助餐点编号是设施登记中的助餐点",
            columns=("meal_point_id",),
            needs=("facilities",),
            derive_related=_meal_point_facts,
        ),
        QualityRule(
            id="consistency.meal_point_open",
            family="consistency",
            expectation=E.ExpectColumnPairValuesAToBeGreaterThanB(
                column_A="_dq_meal_point_closed_on",
                column_B="_dq_meal_date",
                ignore_row_if="either_value_is_missing",
            ),
            zh="就餐日期早于助餐点停业日期（停业后不应再有就餐）",
            columns=("meal_point_id", "meal_time"),
            needs=("facilities",),
            derive_related=_meal_point_facts,
        ),
    ]


def domain_rules(table: Table, registry: Registry) -> list[QualityRule]:
    """Every hand-written rule that applies to ``table`` (decided from its columns)."""
    return [
        *identity_rules(table),
        *age_rules(table),
        *screening_rules(table),
        *vital_sign_rules(table),
        *ordered_pair_rules(table),
        *ltci_rules(table),
        *assessment_rules(table),
        *meal_money_rules(table),
        *elder_status_rules(table, registry),
        *meal_point_rules(table),
    ]


# ------------------------------------------------------------------ library and mart tables


def resident_id_birth_date() -> pl.Expr:
    """The birth date written in an 18-digit resident ID (digits 7-14)."""
    return pl.col("id_number").str.slice(6, 8).str.to_date("%Y%m%d", strict=False)


def library_identity_rules(table: AnyTable) -> list[QualityRule]:
    """The golden record's birth date is the one its resident ID says (survivorship derives it)."""
    names = set(table.column_names)
    if not {"id_number", "birth_date"} <= names or table.column("id_number").semantic != "resident_id":
        return []
    return [
        QualityRule(
            id="consistency.id_birth_date",
            family="consistency",
            expectation=E.ExpectColumnValuesToBeBetween(
                column="_dq_birth_gap_days", min_value=0, max_value=0
            ),
            zh="身份证号码推导的出生日期与出生日期一致",
            columns=("id_number", "birth_date"),
            derived={"_dq_birth_gap_days": (pl.col("birth_date") - resident_id_birth_date()).dt.total_days()},
        )
    ]


def library_age_rules(table: AnyTable) -> list[QualityRule]:
    """Living elders of the golden record are 60+ (and at most 120) on the as-of date."""
    names = set(table.column_names)
    if not {"age", "status"} <= names or table.column("status").codelist != "elder_status":
        return []
    return [
        QualityRule(
            id="plausibility.age_60_plus",
            family="plausibility",
            expectation=E.ExpectColumnValuesToBeBetween(
                column="age",
                min_value=ELDER_MIN_AGE,
                max_value=MAX_PLAUSIBLE_AGE,
                row_condition=RowColumn("status") == ACTIVE,
            ),
            zh=f"在世在册老人年满 {ELDER_MIN_AGE} 周岁（且不超过 {MAX_PLAUSIBLE_AGE} 岁）",
            columns=("status", "age", "birth_date"),
        )
    ]


def library_domain_rules(table: DerivedTable, registry: Registry) -> list[QualityRule]:
    """The hand-written rules GX checks on one library or mart table alone.

    Rules that need another table (served while alive: the golden record's death
    date; reconciliation with staged counts; keys known to the golden record) are
    SQL in :mod:`quality.library_checks`.
    """
    return [
        *library_identity_rules(table),
        *library_age_rules(table),
        *screening_rules(table),
        *vital_sign_rules(table),
        *ordered_pair_rules(table),
        *assessment_rules(table),
        *elder_status_rules(table, registry, end=as_of_end(), end_column=AS_OF),
    ]
