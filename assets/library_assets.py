"""Dagster assets of the library zone (养老主题库): the master elder index and the six data sets.

Thin wrappers over :mod:`assets.library.mei` (identity resolution),
:mod:`assets.library.golden` (survivorship) and :mod:`assets.library.build`
(one SQL file per table). Every library asset is unpartitioned and reads every
partition of the staged tables it depends on (its contract's ``upstream``).

Checks: ``library_contract`` (blocking) - columns, types, primary key unique and
not null, required columns filled; ``library_reconciles`` (blocking) on
``elder_links`` (one link per person-bearing staged row) and
``fact_service_event`` (one event per staged row of each programme).
"""

import warnings
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import dagster as dg
import duckdb

from assets.library.build import (
    as_of_date,
    bind_as_of,
    build_provenance,
    build_sql_table,
    create_library_views,
)
from assets.library.identity import elder_tables
from assets.library.mei import MEI_TABLES, build_mei, table_path
from assets.staged_assets import staged_asset_key
from assets.staging.stage import create_staged_views
from pipelines.resources import LakeResource
from quality.library_checks import evaluate, library_rules
from schemas import load_registry
from schemas.contract import Column, Dataset, DerivedTable
from schemas.registry import Registry

GROUP = "library"
SHANGHAI = ZoneInfo("Asia/Shanghai")
SERVICE_SOURCES = (
    "meal_transactions",
    "milk_deliveries",
    "device_rentals",
    "care_bed_visits",
    "muni_ltci_services",
    "timebank_transactions",
)


def library_asset_key(name: str) -> dg.AssetKey:
    return dg.AssetKey(["library", name])


def upstream_key(registry: Registry, name: str) -> dg.AssetKey:
    return staged_asset_key(name) if registry.zone_of(name) == "staged" else library_asset_key(name)


def _owner(dataset: Dataset, table: DerivedTable) -> str:
    return f"team:{dataset.table_owner(table)}"


def _tags(dataset: Dataset, table: DerivedTable) -> dict[str, str]:
    return {
        "zone": "library",
        "dataset": dataset.name,
        "pii": "yes" if any(c.pii != "none" for c in table.columns) else "no",
        "open_data": table.open_data,
        "sensitivity": table.sensitivity,
        "table_kind": table.kind,
    }


def _column_text(c: Column) -> str:
    parts = (c.zh, f"个人信息分类 {c.pii}", f"代码表 {c.codelist}" if c.codelist else "", c.description)
    return "；".join(p for p in parts if p)


def column_schema(table: DerivedTable) -> dg.TableSchema:
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                name=c.name,
                type=c.type,
                description=_column_text(c),
                constraints=dg.TableColumnConstraints(nullable=c.nullable, unique=c.unique),
                tags={"pii": c.pii},
            )
            for c in table.columns
        ]
    )


def _spec(registry: Registry, dataset: Dataset, table: DerivedTable, deps: list[dg.AssetKey]) -> dg.AssetSpec:
    return dg.AssetSpec(
        key=library_asset_key(table.name),
        deps=deps,
        group_name=GROUP,
        kinds={"duckdb", "parquet", "sql" if table.build == "sql" else "python"},
        owners=[_owner(dataset, table)],
        tags=_tags(dataset, table),
        description=(
            f"{table.zh}（养老主题库·{dataset.zh}）：{table.description}\n\n"
            f"{table.en} (library / {dataset.en}). Grain: {table.grain}."
        ),
        metadata={
            "dagster/column_schema": column_schema(table),
            "dagster/table_name": f"library.{table.name}",
            "owner_department": dataset.table_owner(table),
            "dataset": f"{dataset.zh}（{dataset.name}）",
            "open_data": table.open_data,
            "primary_key": dg.MetadataValue.json(table.primary_key),
        },
    )


def prepare_warehouse(con: duckdb.DuckDBPyConnection, lake: LakeResource, registry: Registry) -> str:
    """Views of every staged and library table (typed and empty where nothing is there yet),
    the as-of date bound to ``as_of``; returns the as-of date."""
    for _, t in registry.tables():
        create_staged_views(con, lake.lake, t)
    create_library_views(con, lake.lake, registry)
    as_of = _as_of(con, registry)
    bind_as_of(con, as_of)
    return as_of


def _as_of(con: duckdb.DuckDBPyConnection, registry: Registry) -> str:
    """The latest staged delivery date; with nothing staged yet, today in Shanghai (tables are empty)."""
    return as_of_date(con, registry) or datetime.now(SHANGHAI).date().isoformat()


def build_mei_asset(registry: Registry) -> dg.AssetsDefinition:
    # all three come out of one step, which reads every person-bearing staged table
    deps = [staged_asset_key(t.name) for t in elder_tables(registry)]
    specs = [_spec(registry, registry.dataset_of(n), registry.derived(n), deps) for n in MEI_TABLES]

    def _mei(context: dg.AssetExecutionContext, lake: LakeResource) -> Any:
        result = build_mei(lake.lake, registry, datetime.now(UTC).replace(tzinfo=None))
        with lake.warehouse() as con:
            prepare_warehouse(con, lake, registry)
        context.log.info(f"master elder index: {result.stats}")
        stats = {k: (float(v) if isinstance(v, float) else int(v)) for k, v in result.stats.items()}
        yield dg.MaterializeResult(
            asset_key=library_asset_key("elder_links"),
            metadata={
                "dagster/row_count": result.links.height,
                "elders": int(result.stats["elders"]),
                "link_methods": dg.MetadataValue.json(
                    {str(k): int(v) for k, v in result.links.group_by("link_method").len().iter_rows()}
                ),
                "linkage_stats": dg.MetadataValue.json(stats),
            },
        )
        yield dg.MaterializeResult(
            asset_key=library_asset_key("match_review_queue"),
            metadata={
                "dagster/row_count": result.review.height,
                "open_pairs": int(result.stats["review_open"]),
                "decided_pairs": int(result.stats["review_decided"]),
            },
        )
        yield dg.MaterializeResult(
            asset_key=library_asset_key("elder_key_changes"),
            metadata={
                "changes_this_run": result.changes.height,
                "merged_keys": int(result.stats["merged_keys"]),
                "changes": dg.MetadataValue.json(
                    {str(k): int(v) for k, v in result.changes.group_by("change").len().iter_rows()}
                ),
            },
        )

    return dg.multi_asset(specs=specs, name="master_elder_index", can_subset=False)(_mei)


def build_table_asset(registry: Registry, dataset: Dataset, table: DerivedTable) -> dg.AssetsDefinition:
    deps = [upstream_key(registry, u) for u in table.upstream]
    spec = _spec(registry, dataset, table, deps)

    def _build(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
        with lake.warehouse() as con:
            as_of = prepare_warehouse(con, lake, registry)
            if table.name == "elder_attribute_provenance":
                rows = build_provenance(con, lake.lake, registry)
            else:
                rows = build_sql_table(con, lake.lake, table, as_of)
        context.log.info(f"library.{table.name}: {rows} rows (as of {as_of})")
        return dg.MaterializeResult(
            asset_key=spec.key,
            metadata={
                "dagster/row_count": rows,
                "as_of": as_of,
                "path": dg.MetadataValue.path(str(table_path(lake.lake, table.name))),
            }
        )

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)
        return dg.multi_asset(specs=[spec], name=f"library__{table.name}")(_build)


def build_library_check(registry: Registry, table: DerivedTable) -> dg.AssetChecksDefinition:
    rules = library_rules(table, registry)

    @dg.asset_check(
        asset=library_asset_key(table.name),
        name="library_contract",
        blocking=True,
        description=(
            "契约检查：主键唯一且完整、必填字段、代码表、取值范围，以及领域规则（年满60周岁、在世服务、"
            "无未来日期、与标准化层行数对账）。ERROR 规则失败即阻断下游。"
            "Contract and domain rules of the library table; failing ERROR rules block downstream assets."
        ),
    )
    def _check(lake: LakeResource) -> dg.AssetCheckResult:
        with lake.warehouse() as con:
            prepare_warehouse(con, lake, registry)
            outcomes = evaluate(con, rules)
        failed = [o for o in outcomes if not o.passed]
        errors = [o for o in failed if o.rule.severity == "ERROR"]
        return dg.AssetCheckResult(
            passed=not failed,
            severity=dg.AssetCheckSeverity.ERROR if errors else dg.AssetCheckSeverity.WARN,
            metadata={
                "rules": len(outcomes),
                "failed_rules": len(failed),
                "unexpected": dg.MetadataValue.json({o.rule.name: o.unexpected for o in failed}),
                "examples": dg.MetadataValue.json({o.rule.name: o.examples for o in failed}),
                "failures": dg.MetadataValue.md(
                    "\n".join(
                        [
                            "| 规则 rule | 维度 | 级别 | 异常行数 | 说明 |",
                            "|---|---|---|---:|---|",
                            *[
                                f"| {o.rule.name} | {o.rule.family} | {o.rule.severity} | {o.unexpected} "
                                f"| {o.rule.description} |"
                                for o in failed
                            ],
                        ]
                    )
                    if failed
                    else f"全部 {len(outcomes)} 条规则通过 (all rules pass)"
                ),
            },
        )

    return _check


def build_library_assets(
    registry: Registry | None = None,
) -> tuple[list[dg.AssetsDefinition], list[dg.AssetChecksDefinition]]:
    reg = registry or load_registry()
    assets = [build_mei_asset(reg)]
    for dataset, table in reg.derived_tables("library"):
        if table.name in MEI_TABLES:
            continue
        assets.append(build_table_asset(reg, dataset, table))
    checks = [build_library_check(reg, t) for _, t in reg.derived_tables("library")]
    return assets, checks
