"""Dagster assets of the marts zone: elder portraits (服务画像) and KPI indicators (评价指标).

Thin wrappers over :func:`assets.marts.portraits.build_portraits` (elder_portrait,
elder_risk_tags, elder_scenarios in one step) and
:func:`assets.marts.kpis.build_kpis` (kpi_values, monthly history). Marts carry
pseudonymous keys only; a blocking ``mart_contract`` check per table applies the
contract rules and proves no column holds a direct identifier.
"""

from datetime import date
from typing import Any

import dagster as dg

from assets.library_assets import library_asset_key, prepare_warehouse, upstream_key, validate_contract
from assets.marts.kpis import build_kpis
from assets.marts.portraits import build_portraits
from catalog import dagster_meta as meta
from pipelines.resources import LakeResource
from quality.checks import derived_check_result
from schemas import load_registry
from schemas.contract import Dataset, DerivedTable
from schemas.registry import Registry

GROUP = "marts"
PORTRAIT_TABLES = ("elder_portrait", "elder_risk_tags", "elder_scenarios")


def mart_asset_key(name: str) -> dg.AssetKey:
    return dg.AssetKey(["marts", name])


def _spec(registry: Registry, dataset: Dataset, table: DerivedTable, deps: list[dg.AssetKey]) -> dg.AssetSpec:
    """Owners, kinds, tags and metadata (column schema and column lineage from the lineage
    graph) from :func:`catalog.dagster_meta.spec_fields`."""
    return dg.AssetSpec(
        key=mart_asset_key(table.name),
        deps=deps,
        group_name=GROUP,
        description=(
            f"{table.zh}（专题集市·{dataset.zh}）：{table.description}\n\n"
            f"{table.en} (marts / {dataset.en}). Grain: {table.grain}. Pseudonymous keys only."
        ),
        **meta.spec_fields(table.name, GROUP, registry),
    )


def _json(stats: dict[str, Any]) -> dict[str, Any]:
    plain = (int, float, str, bool, type(None))
    return {k: (v if isinstance(v, plain) else str(v)) for k, v in stats.items()}


def build_portrait_asset(registry: Registry) -> dg.AssetsDefinition:
    portrait = registry.derived("elder_portrait")
    deps = [upstream_key(registry, u) for u in portrait.upstream]
    specs = [_spec(registry, registry.dataset_of(n), registry.derived(n), deps) for n in PORTRAIT_TABLES]

    def _portraits(context: dg.AssetExecutionContext, lake: LakeResource) -> Any:
        with lake.warehouse() as con:
            as_of = date.fromisoformat(prepare_warehouse(con, lake, registry))
            stats = build_portraits(lake.lake, con, as_of=as_of)
            counts = {
                n: int(con.execute(f"SELECT count(*) FROM marts.{n}").fetchone()[0])  # type: ignore[index]
                for n in PORTRAIT_TABLES
            }
        context.log.info(f"portraits: {stats}")
        for name in PORTRAIT_TABLES:
            yield dg.MaterializeResult(
                asset_key=mart_asset_key(name),
                metadata={"dagster/row_count": counts[name], "stats": dg.MetadataValue.json(_json(stats))},
            )

    return dg.multi_asset(specs=specs, name="elder_portraits", can_subset=False)(_portraits)


def build_kpi_asset(registry: Registry) -> dg.AssetsDefinition:
    table = registry.derived("kpi_values")
    deps = [upstream_key(registry, u) for u in table.upstream]
    spec = _spec(registry, registry.dataset_of(table.name), table, deps)

    def _kpis(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
        with lake.warehouse() as con:
            as_of = date.fromisoformat(prepare_warehouse(con, lake, registry))
            stats = build_kpis(lake.lake, con, as_of=as_of, registry=registry)
        if stats.get("errors"):
            context.log.warning(f"KPIs without a value because their formula failed: {stats['errors']}")
        return dg.MaterializeResult(
            asset_key=spec.key,
            metadata={
                "dagster/row_count": int(stats.get("rows", 0)),
                "stats": dg.MetadataValue.json(_json(stats)),
            },
        )

    return dg.multi_asset(specs=[spec], name="kpi_values")(_kpis)


def build_mart_check(registry: Registry, table: DerivedTable) -> dg.AssetChecksDefinition:
    """``mart_contract``: the table's GX suite from its contract (as the library's), and no column
    declared a direct identifier; history, report and masked examples as the staged checks."""
    direct = [c.name for c in table.columns if c.pii == "direct_identifier"]

    @dg.asset_check(
        asset=mart_asset_key(table.name),
        name="mart_contract",
        blocking=True,
        description=(
            "契约检查（Great Expectations 套件，由契约生成：字段、类型、必填、代码表、取值范围、主键唯一），"
            "且集市不含直接标识符列。ERROR 规则失败即阻断下游。大表中已通过且内容未变的行不再重复交给 GX。"
            "Contract suite (GX) of the mart table; marts hold no direct identifiers. A big table's rows "
            "already known to pass are not given to GX again (outcomes equal a whole-table run)."
        ),
    )
    def _check(context: dg.AssetCheckExecutionContext, lake: LakeResource) -> dg.AssetCheckResult:
        results, as_of = validate_contract(lake, registry, table, context.log.info)
        return derived_check_result(
            lake.lake,
            registry,
            results,
            run_id=context.run.run_id,
            as_of=as_of,
            blocking_problems={"direct_identifier_columns": direct},
        )

    return _check


def build_catalog_asset(registry: Registry) -> dg.AssetsDefinition:
    """``marts/catalog``: the data resource catalogue, written after every library and mart table."""
    deps = [library_asset_key(t.name) for _, t in registry.derived_tables("library")]
    deps += [mart_asset_key(n) for n in (*PORTRAIT_TABLES, "kpi_values")]
    spec = dg.AssetSpec(
        key=mart_asset_key("catalog"),
        deps=deps,
        group_name=GROUP,
        kinds={"json", "html", "parquet"},
        owners=["team:区民政局（彩虹桥数据管理组）"],
        tags={"zone": "marts", "pii": "no", "open_data": "conditional", "sensitivity": "internal"},
        description=(
            "数据资源目录：各区域数据集（名称、说明、责任部门、更新频率、最近更新、行数、新鲜度、质量分、"
            "个人信息字段、开放类别、可见角色）、字段级血缘、场景库；"
            "输出 JSON、Parquet 与可检索静态网站。\n\n"
            "The data resource catalogue of every zone with column lineage and the scenario catalogue "
            "(catalog.json, Parquet tables, static searchable HTML site under marts/catalog/)."
        ),
    )

    def _catalog(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
        from catalog.build import build_catalog, write_catalog

        catalog = build_catalog(lake.lake, registry)
        target = write_catalog(lake.lake, registry=registry, catalog=catalog)
        for problem in catalog.problems:
            context.log.warning(f"lineage: {problem}")
        missing = [d.id for d in catalog.datasets if d.zone in ("library", "marts") and not d.exists]
        return dg.MaterializeResult(
            asset_key=spec.key,
            check_results=[
                dg.AssetCheckResult(
                    check_name="catalog_complete",
                    passed=not catalog.problems and not missing,
                    severity=dg.AssetCheckSeverity.WARN,
                    metadata={
                        "lineage_problems": dg.MetadataValue.json(list(catalog.problems)[:50]),
                        "declared_but_not_built": dg.MetadataValue.json(missing),
                    },
                )
            ],
            metadata={
                "datasets": len(catalog.datasets),
                "datasets_present": sum(1 for d in catalog.datasets if d.exists),
                "scenarios": len(catalog.scenarios),
                "kpis": len(catalog.kpis),
                "lineage_problems": len(catalog.problems),
                "site": dg.MetadataValue.path(str(target / "index.html")),
            },
        )

    check = dg.AssetCheckSpec(
        "catalog_complete",
        asset=spec.key,
        description=(
            "目录完整：每个库表、集市表均已构建，字段血缘无缺失。"
            "Every library and mart table is built and every column's lineage resolves (WARN otherwise)."
        ),
    )
    return dg.multi_asset(specs=[spec], check_specs=[check], name="data_catalog")(_catalog)


def build_mart_assets(
    registry: Registry | None = None,
) -> tuple[list[dg.AssetsDefinition], list[dg.AssetChecksDefinition]]:
    reg = registry or load_registry()
    assets = [build_portrait_asset(reg), build_kpi_asset(reg), build_catalog_asset(reg)]
    names = [*PORTRAIT_TABLES, "kpi_values"]
    checks = [build_mart_check(reg, reg.derived(n)) for n in names]
    return assets, checks
