"""Contract expectations for library tables, evaluated in DuckDB over ``library.*``.

Generated from each table's contract (schemas/library/*.yaml): primary key
unique and complete, required columns filled, code-list membership, numeric
ranges - plus domain rules that need the master elder index:

- elders are 60+ (age on the as-of date, living elders with a known birth date);
- service events only for elders alive on the service date;
- no future service, assessment or screening dates (after the as-of date);
- every person-bearing staged row is linked (elder_links reconciles with staged);
- every staged row of a programme is one service event (fact_service_event reconciles).

Each rule is one SQL count of offending rows plus up to three example keys
(never a name, ID or phone: keys and codes only).
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from assets.library.identity import elder_tables
from schemas.contract import DerivedTable
from schemas.registry import Registry

SERVICE_SOURCES = {
    "meal_transactions": "MEAL_AID",
    "milk_deliveries": "LOVE_MILK",
    "device_rentals": "DEVICE_RENTAL",
    "care_bed_visits": "FAMILY_CARE_BED",
    "muni_ltci_services": "LTCI_HOME_CARE",
    "timebank_transactions": "TIME_BANK",
}


@dataclass(frozen=True)
class LibraryRule:
    name: str
    family: str  # conformance | completeness | uniqueness | plausibility | consistency
    severity: str  # ERROR blocks downstream, WARN does not
    description: str
    # SELECT returning the offending rows' example key (first column); counted in full
    offending_sql: str


@dataclass(frozen=True)
class LibraryOutcome:
    rule: LibraryRule
    unexpected: int
    examples: list[str]

    @property
    def passed(self) -> bool:
        return self.unexpected == 0


def _key(table: DerivedTable) -> str:
    return " || '|' || ".join(f"CAST({k} AS VARCHAR)" for k in table.primary_key)


def contract_rules(table: DerivedTable, registry: Registry) -> list[LibraryRule]:
    t = f"{registry.zone_of(table.name)}.{table.name}"
    key = _key(table)
    rules = [
        LibraryRule(
            "primary_key_unique",
            "uniqueness",
            "ERROR",
            f"主键 {table.primary_key} 唯一",
            f"SELECT k FROM (SELECT {key} AS k, count(*) AS n FROM {t} GROUP BY 1) WHERE n > 1",
        )
    ]
    for c in table.columns:
        if not c.nullable or c.name in table.primary_key:
            rules.append(
                LibraryRule(
                    f"{c.name}_not_null",
                    "completeness",
                    "ERROR",
                    f"{c.zh}（{c.name}）必填",
                    f"SELECT {key} FROM {t} WHERE {c.name} IS NULL",
                )
            )
        if c.codelist:
            values = sorted(registry.codelist(c.codelist).codes())
            codes = ", ".join("'" + v.replace("'", "''") + "'" for v in values)
            rules.append(
                LibraryRule(
                    f"{c.name}_in_codelist",
                    "conformance",
                    "ERROR",
                    f"{c.zh}（{c.name}）取值属于代码表 {c.codelist}",
                    f"SELECT {key} FROM {t} WHERE {c.name} IS NOT NULL AND {c.name} NOT IN ({codes})",
                )
            )
        if c.range:
            lo, hi = c.range
            rules.append(
                LibraryRule(
                    f"{c.name}_in_range",
                    "plausibility",
                    "WARN",
                    f"{c.zh}（{c.name}）在 [{lo:g}, {hi:g}] 之内",
                    f"SELECT {key} FROM {t} WHERE {c.name} IS NOT NULL "
                    f"AND ({c.name} < {lo} OR {c.name} > {hi})",
                )
            )
    return rules


def domain_rules(table: DerivedTable, registry: Registry) -> list[LibraryRule]:
    as_of = "CAST(getvariable('as_of') AS DATE)"
    rules: list[LibraryRule] = []
    if table.name == "dim_elder":
        rules.append(
            LibraryRule(
                "elders_are_60_plus",
                "plausibility",
                "WARN",
                "在世老人年满60周岁",
                "SELECT elder_key FROM library.dim_elder "
                "WHERE status = 'ACTIVE' AND age IS NOT NULL AND age < 60",
            )
        )
    if table.name == "fact_service_event":
        rules.append(
            LibraryRule(
                "served_while_alive",
                "consistency",
                "WARN",
                "服务日期老人在世（未死亡）",
                "SELECT s.service_event_id FROM library.fact_service_event AS s "
                "JOIN library.dim_elder AS e ON e.elder_key = s.elder_key "
                "WHERE e.death_date IS NOT NULL AND s.service_date > e.death_date",
            )
        )
        counts = " UNION ALL ".join(
            f"SELECT '{src}' AS source_table, count(*) AS n FROM staged.{src}" for src in SERVICE_SOURCES
        )
        rules.append(
            LibraryRule(
                "reconciles_with_staged",
                "consistency",
                "ERROR",
                "每个项目：标准化层行数 = 服务事件数",
                f"SELECT s.source_table FROM ({counts}) AS s LEFT JOIN (SELECT source_table, count(*) AS n "
                "FROM library.fact_service_event GROUP BY 1) AS f USING (source_table) "
                "WHERE s.n <> coalesce(f.n, 0)",
            )
        )
    for col in ("service_date", "assessment_date", "screening_date"):
        if col in table.column_names:
            rules.append(
                LibraryRule(
                    f"{col}_not_future",
                    "plausibility",
                    "ERROR",
                    f"{col} 不晚于数据截止日",
                    f"SELECT {_key(table)} FROM {registry.zone_of(table.name)}.{table.name} "
                    f"WHERE {col} > {as_of}",
                )
            )
    if table.name == "elder_links":
        counts = " UNION ALL ".join(
            f"SELECT '{t.name}' AS source_table, count(*) AS n FROM staged.{t.name}"
            for t in elder_tables(registry)
        )
        rules.append(
            LibraryRule(
                "reconciles_with_staged",
                "consistency",
                "ERROR",
                "每张含老人记录的标准化表：行数 = 关联记录数",
                f"SELECT s.source_table FROM ({counts}) AS s LEFT JOIN (SELECT source_table, count(*) AS n "
                "FROM library.elder_links GROUP BY 1) AS l USING (source_table) "
                "WHERE s.n <> coalesce(l.n, 0)",
            )
        )
    return rules


def library_rules(table: DerivedTable, registry: Registry) -> list[LibraryRule]:
    return contract_rules(table, registry) + domain_rules(table, registry)


def evaluate(con: duckdb.DuckDBPyConnection, rules: list[LibraryRule]) -> list[LibraryOutcome]:
    out = []
    for rule in rules:
        row = con.execute(f"SELECT count(*) FROM ({rule.offending_sql})").fetchone()
        n = int(row[0]) if row else 0
        sample = con.execute(f"SELECT * FROM ({rule.offending_sql}) LIMIT 3").fetchall() if n else []
        examples = [str(r[0]) for r in sample]
        out.append(LibraryOutcome(rule, n, examples))
    return out
