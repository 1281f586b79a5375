"""Dagster assets of the library zone (养老主题库): the master elder index and the six data sets.

Thin wrappers over :mod:`assets.library.mei` (identity resolution),
:mod:`assets.library.golden` (survivorship) and :mod:`assets.library.build`
(one SQL file per table). Every library asset is unpartitioned and reads every
partition of the staged tables it depends on (its contract's ``upstream``).

Checks: ``library_contract`` (blocking) per table - the GX suite generated from the
contract plus the cross-table SQL rules of :mod:`quality.library_checks`, including
the reconciliations of ``elder_links`` (one link per person-bearing staged row) and
``fact_service_event`` (one event per staged row of each programme).
"""

import warnings
from collections.abc import Callable
from datetime import UTC, date, datetime
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
from assets.library.mei import MEI_TABLES, build_mei, table_path
from assets.library.records import elder_tables
from assets.staged_assets import staged_asset_key
from assets.staging.stage import create_staged_views
from catalog import dagster_meta as meta
from pipelines.resources import LakeResource
from quality.checks import derived_check_result
from quality.library_checks import (
    cross_table_rules,
    evaluate,
    load_batches,
    rule_reads,
    validate_batches,
)
from quality.runner import QualityResult
from quality.scorecard import load_thresholds
from rainbow.settings import Lake
from rainbow.workers import release_memory
from schemas import load_registry
from schemas.contract import Dataset, DerivedTable
from schemas.registry import Registry

GROUP = "library"
SHANGHAI = ZoneInfo("Asia/Shanghai")


def library_asset_key(name: str) -> dg.AssetKey:
    return dg.AssetKey(["library", name])


def upstream_key(registry: Registry, name: str) -> dg.AssetKey:
    """The asset of any declared table: every asset key is ``[zone, table]`` (staged, library, marts)."""
    return dg.AssetKey([registry.zone_of(name), name])


def column_schema(table: DerivedTable, registry: Registry | None = None) -> dg.TableSchema:
    """The contract's columns (Chinese label, type, PII class, code list, constraints)."""
    return meta.column_schema(table.name, registry=registry)


def _spec(registry: Registry, dataset: Dataset, table: DerivedTable, deps: list[dg.AssetKey]) -> dg.AssetSpec:
    """Owners, kinds, tags and metadata (column schema and column lineage from the lineage
    graph) from :func:`catalog.dagster_meta.spec_fields`."""
    return dg.AssetSpec(
        key=library_asset_key(table.name),
        deps=deps,
        group_name=GROUP,
        description=(
            f"{table.zh}（养老主题库·{dataset.zh}）：{table.description}\n\n"
            f"{table.en} (library / {dataset.en}). Grain: {table.grain}."
        ),
        **meta.spec_fields(table.name, GROUP, registry),
    )


def prepare_warehouse(con: duckdb.DuckDBPyConnection, lake: LakeResource, registry: Registry) -> str:
    """Views of every staged and library table (typed and empty where nothing is there yet),
    the as-of date bound to ``as_of``; returns the as-of date."""
    for _, t in registry.tables():
        create_staged_views(con, lake.lake, t)
    create_library_views(con, lake.lake, registry)
    as_of = _as_of(lake.lake, registry)
    bind_as_of(con, as_of)
    return as_of


def _as_of(lake: Lake, registry: Registry) -> str:
    """The latest staged delivery date; with nothing staged yet, today in Shanghai (tables are empty)."""
    return as_of_date(lake, registry) or datetime.now(SHANGHAI).date().isoformat()


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
                "dagster/row_count": result.link_rows,
                "elders": int(result.stats["elders"]),
                "link_methods": dg.MetadataValue.json(result.link_methods()),
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
        extra: dict[str, Any] = {}
        with lake.warehouse() as con:
            as_of = prepare_warehouse(con, lake, registry)
            if table.name == "elder_attribute_provenance":
                built = build_provenance(con, lake.lake, registry)
                rows = built.rows
                extra = {"build_mode": built.mode, "elders_recomputed": built.recomputed}
                context.log.info(
                    f"provenance: {built.mode} build, {built.recomputed} of {built.elders} elders "
                    f"computed ({built.reason})"
                )
            else:
                rows = build_sql_table(con, lake.lake, table, as_of)
        context.log.info(f"library.{table.name}: {rows} rows (as of {as_of})")
        return dg.MaterializeResult(
            asset_key=spec.key,
            metadata={
                "dagster/row_count": rows,
                "as_of": as_of,
                "path": dg.MetadataValue.path(str(table_path(lake.lake, table.name))),
                **extra,
            },
        )

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)
        return dg.multi_asset(specs=[spec], name=f"library__{table.name}")(_build)


def validate_contract(
    lake: LakeResource, registry: Registry, table: DerivedTable, log: Callable[[str], None]
) -> tuple[list[QualityResult], str]:
    """What a ``library_contract`` / ``mart_contract`` check validates: the table's batches with GX
    (by changed rows when big) and its cross-table SQL rules; with the build's as-of date."""
    with lake.warehouse() as con:
        as_of = prepare_warehouse(con, lake, registry)
        batches = load_batches(con, table, registry, date.fromisoformat(as_of))
        sql = evaluate(con, table, cross_table_rules(table, registry))
    results = validate_batches(
        batches, sql, table, registry, lake=lake.lake, as_of=date.fromisoformat(as_of), log=log
    )
    return results, as_of


def build_library_check(registry: Registry, table: DerivedTable) -> dg.AssetChecksDefinition:
    """``library_contract``: the table's GX suite from its contract and the single-table domain
    rules (:func:`quality.library_checks.load_batches`: whole, or the newest month of a big fact),
    plus the cross-table SQL rules; history, report and masked examples as the staged checks."""
    batched = table.name in load_thresholds().checks.derived_batches

    @dg.asset_check(
        asset=library_asset_key(table.name),
        name="library_contract",
        blocking=True,
        # the cross-table rules' other tables (dim_elder, dim_facility) are built before the check
        additional_deps=[upstream_key(registry, t) for t in rule_reads(table, registry)],
        description=(
            "契约与领域规则（Great Expectations 套件，由契约生成）：字段、类型、必填、代码表、"
            "证件与电话格式、取值范围、主键唯一、事实日期不晚于数据截止日；领域规则（身份证推导出生日期、"
            "年满60周岁、量表得分、体征合理、日期先后）；跨表规则（DuckDB）：服务日期老人在世、助餐点未停业、"
            "老人主键见于黄金记录、与标准化层行数对账。ERROR 规则失败即阻断下游，其余为 WARN。"
            + (
                "校验最新一个月的数据（跨表规则为全表）。"
                if batched
                else "校验整表（已通过且内容未变的行不再重复交给 GX，结果等同整表校验）。"
            )
            + "\n\nContract suite (GX) and domain rules of the library table, plus cross-table SQL rules; "
            "failing ERROR rules block downstream assets, the others warn. "
            + (
                "Validates the newest month (cross-table rules: whole table)."
                if batched
                else "Whole table (GX sees only rows not already known to pass; outcomes equal a "
                "whole-table run)."
            )
        ),
    )
    def _check(context: dg.AssetCheckExecutionContext, lake: LakeResource) -> dg.AssetCheckResult:
        release_memory()  # the elder_links check peaks near the MEI: start from a trimmed heap
        results, as_of = validate_contract(lake, registry, table, context.log.info)
        return derived_check_result(lake.lake, registry, results, run_id=context.run.run_id, as_of=as_of)

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
