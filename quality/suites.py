"""Expectation suites generated from the contracts plus the domain rules: staged, library and marts.

:func:`rules_for` lists a table's :class:`~quality.rules.QualityRule` objects;
:func:`suite_for` turns them into a ``gx.ExpectationSuite`` whose every
expectation carries its rule id, family and severity in ``meta``. A staged
(source) table's rules come from :func:`contract_rules` and
:func:`quality.rules.domain_rules`; a library or mart table's from
:func:`derived_contract_rules` and :func:`quality.rules.library_domain_rules`.

From the contract (every one guards the library: staging promises it, so a
failure means staging or a contract is broken):

* conformance: every column exists, each with its contract type; code-list columns
  hold codes (staged values are codes, not labels); resident IDs, mobiles and
  phones are in their normalised form;
* completeness: required columns are not null;
* uniqueness: the primary key (and each other ``unique`` column) is unique;
  for event tables within a delivery day, as staging de-duplicates them;
* plausibility: numbers inside the contract ``range``;
* timeliness: event-time columns are not after their delivery day.

Library and mart tables (:class:`~schemas.contract.DerivedTable`: no delivery,
no lineage columns) get the same families from their contract: columns, types,
required and key columns not null, code lists, normalised IDs and phones,
ranges, the key unique over the batch, and the required dates of fact tables
not after the build's as-of date (the ``_as_of`` column the loader adds). All
guard downstream assets (ERROR).
"""

from __future__ import annotations

from assets.staging.stage import derived_identity as carries_derived_identity
from quality._gx import E, gx
from quality.rules import (
    AS_OF,
    AnyTable,
    QualityRule,
    as_of_end,
    delivery_end,
    domain_rules,
    library_domain_rules,
)
from schemas.contract import Column, DerivedTable, Table
from schemas.registry import Registry

# The pandas dtype (its scalar type, as GX compares it) a staged Polars column arrives as
# (see quality.runner.ge_frame: integer columns holding nulls become pandas' nullable Int64).
PANDAS_TYPES: dict[str, str] = {
    "string": "str",
    "integer": "int64",
    "decimal": "float64",
    "date": "datetime64",
    "timestamp": "datetime64",
    "boolean": "bool",
}
FORMATS: dict[str, tuple[str, str]] = {
    "resident_id": (r"^\d{17}[\dX]$", "18 位身份证号码（末位数字或 X）"),
    "mobile_phone": (r"^1[3-9]\d{9}$", "11 位手机号码"),
    "phone": (r"^(?:1[3-9]\d{9}|021-\d{8})$", "11 位手机号码或 021-XXXXXXXX 固话"),
}
# Staged columns every table has (besides its contract columns) that rules read.
LINEAGE = ("_source_file", "_row_number", "_delivery_date")


def derived_identity(table: AnyTable) -> list[str]:
    """``id_birth_date`` / ``id_sex``: staged tables with a resident ID carry them (library tables not)."""
    return ["id_birth_date", "id_sex"] if isinstance(table, Table) and carries_derived_identity(table) else []


def resolve_table(registry: Registry, table: AnyTable | str) -> AnyTable:
    """A table by name: a source (staged) table, else a library or mart table."""
    if not isinstance(table, str):
        return table
    try:
        return registry.table(table)
    except KeyError:
        return registry.derived(table)


def zone_of(table: AnyTable) -> str:
    """``staged`` for a source table, ``derived`` for a library or mart table (suite names)."""
    return "staged" if isinstance(table, Table) else "derived"


def _column_rules(table: AnyTable, col: Column, registry: Registry) -> list[QualityRule]:
    out = [
        QualityRule(
            id=f"conformance.type.{col.name}",
            family="conformance",
            expectation=E.ExpectColumnValuesToBeOfType(column=col.name, type_=PANDAS_TYPES[col.type]),
            zh=f"{col.zh}（{col.name}）类型为 {col.type}",
            columns=(col.name,),
            guards_library=True,
        )
    ]
    if not col.nullable or (isinstance(table, DerivedTable) and col.name in table.primary_key):
        out.append(
            QualityRule(
                id=f"completeness.not_null.{col.name}",
                family="completeness",
                expectation=E.ExpectColumnValuesToNotBeNull(column=col.name),
                zh=f"必填字段 {col.zh}（{col.name}）不为空",
                columns=(col.name,),
                guards_library=True,
            )
        )
    if col.codelist:
        codelist = registry.codelist(col.codelist)
        out.append(
            QualityRule(
                id=f"conformance.codelist.{col.name}",
                family="conformance",
                expectation=E.ExpectColumnValuesToBeInSet(
                    column=col.name, value_set=sorted(codelist.codes())
                ),
                zh=f"{col.zh}（{col.name}）取值属于码表「{codelist.zh}」",
                columns=(col.name,),
                guards_library=True,
            )
        )
    if col.semantic in FORMATS:
        regex, what = FORMATS[col.semantic]
        out.append(
            QualityRule(
                id=f"conformance.format.{col.name}",
                family="conformance",
                expectation=E.ExpectColumnValuesToMatchRegex(column=col.name, regex=regex),
                zh=f"{col.zh}（{col.name}）为标准化的{what}",
                columns=(col.name,),
                guards_library=True,
            )
        )
    if col.range:
        lo, hi = col.range
        out.append(
            QualityRule(
                id=f"plausibility.range.{col.name}",
                family="plausibility",
                expectation=E.ExpectColumnValuesToBeBetween(column=col.name, min_value=lo, max_value=hi),
                zh=f"{col.zh}（{col.name}）在 {lo:g}-{hi:g} 之间",
                columns=(col.name,),
                guards_library=True,
            )
        )
    if col.name in table.event_time_columns:
        out.append(
            QualityRule(
                id=f"timeliness.not_future.{col.name}",
                family="timeliness",
                expectation=E.ExpectColumnPairValuesAToBeGreaterThanB(
                    column_A="_dq_delivery_end", column_B=col.name, ignore_row_if="either_value_is_missing"
                ),
                zh=f"{col.zh}（{col.name}）不晚于交付日期（无未来时间）",
                columns=(col.name, "_delivery_date"),
                guards_library=True,
                derived={"_dq_delivery_end": delivery_end()},
            )
        )
    return out


def uniqueness_rules(table: AnyTable, scope: list[str] | None = None) -> list[QualityRule]:
    """The primary key (within ``scope`` columns, e.g. the delivery day) and every other ``unique``
    column (only when the key is not scoped: a scoped table may repeat values across batches)."""
    key, scope = list(table.primary_key), scope or []
    out: list[QualityRule] = []
    if key:
        scoped = [*key, *scope]
        out.append(
            QualityRule(
                id="uniqueness.primary_key",
                family="uniqueness",
                expectation=E.ExpectColumnValuesToBeUnique(column=key[0])
                if len(scoped) == 1
                else E.ExpectCompoundColumnsToBeUnique(column_list=scoped),
                zh=f"主键（{', '.join(key)}）唯一" + ("（同一交付日内）" if scope else ""),
                columns=tuple(key),
                guards_library=True,
            )
        )
    for col in table.columns:
        if col.unique and [col.name] != key and not scope:
            out.append(
                QualityRule(
                    id=f"uniqueness.unique.{col.name}",
                    family="uniqueness",
                    expectation=E.ExpectColumnValuesToBeUnique(column=col.name),
                    zh=f"{col.zh}（{col.name}）唯一",
                    columns=(col.name,),
                    guards_library=True,
                )
            )
    return out


def contract_rules(table: Table, registry: Registry) -> list[QualityRule]:
    """Rules generated from the contract alone."""
    columns = [*table.column_names, *derived_identity(table), *LINEAGE]
    out = [
        QualityRule(
            id="conformance.columns",
            family="conformance",
            # One expectation for all columns: GX's cost is mostly per expectation, not per row.
            expectation=E.ExpectTableColumnsToMatchSet(column_set=columns, exact_match=False),
            zh="契约字段、派生身份字段与血缘字段齐全",
            guards_library=True,
        )
    ]
    for col in table.columns:
        out.extend(_column_rules(table, col, registry))
    # Staging de-duplicates keys within each delivery date: a later day may resend an event, and
    # full lists (monthly facilities, caregivers, meters, ...) keep one snapshot per delivery. The
    # key is unique within a delivery date, so a batch of several days or snapshots stays checkable.
    out.extend(uniqueness_rules(table, scope=["_delivery_date"]))
    return out


def not_future_columns(table: DerivedTable) -> list[str]:
    """The dates a library fact records (required date / timestamp columns of a ``fact`` table):
    none may lie after the build's as-of date."""
    if table.kind != "fact":
        return []
    return [c.name for c in table.columns if not c.nullable and c.type in ("date", "timestamp")]


def derived_contract_rules(table: DerivedTable, registry: Registry) -> list[QualityRule]:
    """Rules generated from a library or mart table's contract (every one guards downstream: ERROR)."""
    out = [
        QualityRule(
            id="conformance.columns",
            family="conformance",
            expectation=E.ExpectTableColumnsToMatchSet(column_set=table.column_names, exact_match=False),
            zh="契约字段齐全",
            guards_library=True,
        )
    ]
    for col in table.columns:
        out.extend(_column_rules(table, col, registry))
    for name in not_future_columns(table):
        col = table.column(name)
        out.append(
            QualityRule(
                id=f"timeliness.not_future.{name}",
                family="timeliness",
                expectation=E.ExpectColumnPairValuesAToBeGreaterThanB(
                    column_A="_dq_as_of_end", column_B=name, ignore_row_if="either_value_is_missing"
                ),
                zh=f"{col.zh}（{name}）不晚于数据截止日（无未来日期）",
                columns=(name, AS_OF),
                guards_library=True,
                derived={"_dq_as_of_end": as_of_end()},
            )
        )
    out.extend(uniqueness_rules(table))
    return out


def rules_for(table: AnyTable, registry: Registry) -> list[QualityRule]:
    """Every rule of a table: generated from its contract, then the domain rules."""
    if isinstance(table, DerivedTable):
        rules = [*derived_contract_rules(table, registry), *library_domain_rules(table, registry)]
    else:
        rules = [*contract_rules(table, registry), *domain_rules(table, registry)]
    ids = [r.id for r in rules]
    duplicated = {i for i in ids if ids.count(i) > 1}
    if duplicated:
        raise ValueError(f"{table.name}: duplicate rule ids {sorted(duplicated)}")
    return rules


def suite_for(table: AnyTable | str, registry: Registry) -> gx.ExpectationSuite:
    """The table's expectation suite; each expectation's ``meta`` names its rule and family."""
    t = resolve_table(registry, table)
    expectations = []
    for rule in rules_for(t, registry):
        expectation = rule.expectation.copy(deep=True)
        expectation.meta = rule.meta()
        expectations.append(expectation)
    return gx.ExpectationSuite(
        name=f"{zone_of(t)}.{t.name}", expectations=expectations, meta={"table": t.name}
    )
