"""Column lineage: the sqlglot engine on fixture SQL, and the lake's graph from contracts + code."""

from __future__ import annotations

from pathlib import Path

import pytest

from catalog.graph import KpiFormula, build_lineage_graph, contract_schema, load_kpi_formulas
from catalog.lineage import ColumnRef, LineageError, LineageGraph, query_lineage
from schemas import load_registry

REG = load_registry()
SCHEMA = {
    "staged": {
        "a": {"id": "VARCHAR", "x": "BIGINT", "d": "DATE"},
        "b": {"id": "VARCHAR", "y": "BIGINT"},
    },
    "library": {"kv": {"k": "VARCHAR", "attr": "VARCHAR", "value": "VARCHAR"}},
}


def refs(*names: str) -> frozenset[ColumnRef]:
    return frozenset(ColumnRef.parse(n) for n in names)


def test_when_ctes_joins_windows_and_aggregates_then_each_output_reads_its_columns() -> None:
    q = query_lineage(
        """
        WITH latest AS (
            SELECT a.*, row_number() OVER (PARTITION BY a.id ORDER BY a.d DESC) AS rn FROM staged.a AS a
        )
        SELECT l.id, sum(l.x + b.y) AS total, count(*) FILTER (WHERE b.y > 0) AS positive, count(*) AS n
        FROM latest AS l LEFT JOIN staged.b AS b ON b.id = l.id
        WHERE l.rn = 1
        GROUP BY l.id
        """,
        SCHEMA,
    )
    assert q.columns == {
        "id": refs("staged.a.id"),
        "total": refs("staged.a.x", "staged.b.y"),
        "positive": refs("staged.b.y"),
        "n": frozenset(),
    }
    # join keys, the window's partition and order (through rn = 1) and the grouping decide the rows
    assert q.conditions == refs("staged.a.id", "staged.a.d", "staged.b.id")
    assert q.tables == {"staged.a", "staged.b"} and not q.unresolved


def test_when_star_union_and_subqueries_then_lineage_expands_them() -> None:
    star = query_lineage("SELECT * EXCLUDE (d) FROM staged.a", SCHEMA)
    assert star.columns == {"id": refs("staged.a.id"), "x": refs("staged.a.x")}
    union = query_lineage("SELECT id, x AS v FROM staged.a UNION ALL SELECT id, y FROM staged.b", SCHEMA)
    assert union.columns == {"id": refs("staged.a.id", "staged.b.id"), "v": refs("staged.a.x", "staged.b.y")}
    correlated = query_lineage(
        "SELECT a.id, (SELECT max(b.y) FROM staged.b AS b WHERE b.id = a.id) AS top FROM staged.a AS a "
        "WHERE a.id IN (SELECT id FROM staged.b)",
        SCHEMA,
    )
    assert correlated.columns["top"] == refs("staged.b.y", "staged.b.id", "staged.a.id")
    assert correlated.conditions == refs("staged.a.id", "staged.b.id")


def test_when_a_lambda_names_a_parameter_then_it_is_not_a_column() -> None:
    q = query_lineage("SELECT list_transform([a.x], lambda v: v + 1) AS xs FROM staged.a AS a", SCHEMA)
    assert q.columns == {"xs": refs("staged.a.x")} and not q.unresolved


def test_when_a_column_does_not_exist_then_it_is_reported_unresolved() -> None:
    assert query_lineage("SELECT a.nope FROM staged.a AS a", SCHEMA).unresolved == ("a.nope",)
    with pytest.raises(LineageError):
        query_lineage("DELETE FROM staged.a", SCHEMA)


def test_when_a_key_value_table_is_read_for_one_key_then_lineage_names_that_key() -> None:
    q = query_lineage(
        "SELECT kv.k, max(kv.value) FILTER (WHERE kv.attr = 'phone') AS phone, "
        "max(CASE WHEN kv.attr = 'name' THEN kv.value END) AS name, max(kv.value) AS anything "
        "FROM library.kv AS kv GROUP BY kv.k",
        SCHEMA,
        pivots={"library.kv": ("attr", "value")},
    )
    assert q.columns["phone"] == refs("library.kv.value[phone]")
    assert q.columns["name"] == refs("library.kv.value[name]")
    assert q.columns["anything"] == refs("library.kv.value")


# ------------------------------------------------------------------ a known KPI, end to end

FACT_SCREENING_SQL = """
WITH s AS (
    SELECT t.*, row_number() OVER (PARTITION BY t.screening_id ORDER BY t._delivery_date DESC) AS rn
    FROM staged.screenings AS t
)
SELECT
    s.screening_id,
    l.elder_key,
    s.screening_date,
    s.instrument,
    s.score,
    s.education,
    s.result,
    CASE
        WHEN s.instrument = 'AD8' THEN s.score >= 2
        WHEN s.instrument = 'MMSE' THEN s.score <= CASE s.education WHEN 'ILLITERATE' THEN 17
                                                   WHEN 'PRIMARY' THEN 20 ELSE 24 END
        ELSE s.score < 26
    END AS suspected_impairment,
    s.screening_org,
    l.record_id
FROM s
LEFT JOIN library.elder_links AS l
    ON l.source_table = 'screenings' AND l.source_file = s._source_file AND l.row_number = s._row_number
WHERE s.rn = 1
"""
KPI = KpiFormula(
    id="suspected_impairment_share",
    sql="""
    SELECT '310110000000' AS area, m.month AS month,
           100.0 * count(DISTINCT s.elder_key) FILTER (WHERE s.suspected_impairment)
                 / nullif(count(DISTINCT s.elder_key), 0) AS value
    FROM kpi_months AS m
    JOIN library.fact_screening AS s ON s.screening_date BETWEEN m.month_start AND m.month_end
    GROUP BY m.month
    """,
)


@pytest.fixture(scope="module")
def fixture_graph(tmp_path_factory: pytest.TempPathFactory) -> LineageGraph:
    sql_dir = tmp_path_factory.mktemp("sql")
    (sql_dir / "fact_screening.sql").write_text(FACT_SCREENING_SQL, encoding="utf-8")
    return build_lineage_graph(REG, sql_dirs={"library": sql_dir, "marts": sql_dir / "none"}, kpis=[KPI])


def test_known_kpi_resolves_to_exactly_its_source_columns(fixture_graph: LineageGraph) -> None:
    assert fixture_graph.tables["library.fact_screening"].problems == []
    value = fixture_graph.trace(f"kpi.{KPI.id}", "value")
    assert value == refs(
        "library.elder_links.elder_key",  # a generated key: its origin is the master elder index
        "staged.screenings.score",
        "staged.screenings.instrument",
        "staged.screenings.education",
    )
    with_rows = fixture_graph.trace(f"kpi.{KPI.id}", "value", conditions=True)
    engine = {r for r in with_rows if r.zone == "engine"}
    assert with_rows - engine == value | refs("staged.screenings.screening_date")
    assert {r.table for r in engine} == {"kpi_months"}
    # following the key edges shows what identity resolution matched on
    keyed = fixture_graph.trace(f"kpi.{KPI.id}", "value", keys=True)
    assert ColumnRef("staged", "screenings", "id_number") in keyed
    assert ColumnRef("library", "elder_links", "elder_key") not in keyed


def test_missing_sql_file_is_reported_not_raised(fixture_graph: LineageGraph) -> None:
    problems = fixture_graph.tables["library.fact_assessment"].problems
    assert len(problems) == 1 and problems[0].startswith("SQL file missing")


def test_contract_mismatch_and_unknown_columns_are_problems(tmp_path: Path) -> None:
    (tmp_path / "fact_screening.sql").write_text(
        "SELECT s.screening_id, s.no_such_column, 1 AS extra FROM staged.screenings AS s", encoding="utf-8"
    )
    graph = build_lineage_graph(REG, sql_dirs={"library": tmp_path}, kpis=[])
    problems = " | ".join(graph.tables["library.fact_screening"].problems)
    assert "s.no_such_column" in problems
    assert "declared columns the SQL does not produce" in problems
    assert "SQL columns the contract does not declare: no_such_column, extra" in problems


# ------------------------------------------------------------------ the lake's own graph


@pytest.fixture(scope="module")
def graph() -> LineageGraph:
    return build_lineage_graph(REG)


def test_the_lake_graph_has_no_lineage_problems(graph: LineageGraph) -> None:
    """Contracts, SQL files, SQL generators, python_lineage.yaml and KPI formulas agree: the
    graph `rainbow catalog` reports from (no lake needed) has no problem at all."""
    assert graph.problems() == []
    for dataset, table in REG.derived_tables():
        lineage = graph.tables[f"{dataset.zone}.{table.name}"]
        assert lineage.origin != "none", table.name
        assert set(table.column_names) <= set(lineage.columns), table.name
    # a SQL fragment composed by code (assets/marts/sql/fragments/) is not a table
    assert "marts.elder_portrait_base" not in graph.tables


def test_the_portrait_marts_have_sql_lineage(graph: LineageGraph) -> None:
    for name in ("elder_portrait", "elder_risk_tags", "elder_scenarios"):
        assert graph.tables[f"marts.{name}"].sql, name  # read with sqlglot, not declared by hand
    assert graph.upstream(ColumnRef("marts", "elder_portrait", "elder_pseudonym")) == refs(
        "library.dim_elder.elder_key"
    )
    screened = graph.trace("marts.elder_portrait", "last_screening_date")
    assert screened == refs("staged.screenings.screening_date")
    assert graph.trace("marts.elder_risk_tags", "street") <= graph.trace("library.dim_elder", "street")


def test_every_library_table_has_lineage_without_problems(graph: LineageGraph) -> None:
    problems = [p for p in graph.problems() if p.startswith("library.")]
    assert problems == []
    for _, table in REG.derived_tables("library"):
        lineage = graph.tables[f"library.{table.name}"]
        assert set(table.column_names) <= set(lineage.columns), table.name


# cognitive_screening_coverage (schemas/kpis.yaml): 100 * screened / elders, per area and month.
# Its value is a count of elder keys: the screened elders' keys (library.fact_screening.elder_key
# = the master elder index's elder_links.elder_key, a generated key: an origin unless keys=True).
COVERAGE_VALUE = refs("library.elder_links.elder_key")
# Which rows count (traced by value through library SQL to staged columns):
COVERAGE_ROWS = refs(
    # kpi_months / kpi_areas: the months and areas computed (build parameters)
    "engine.kpi_months.month",
    "engine.kpi_months.month_end",
    "engine.kpi_areas.area",
    "engine.kpi_areas.street",
    # screened within 12 months of the month end: fact_screening.screening_date
    "staged.screenings.screening_date",
    # aged 60+: dim_elder.birth_date = survivorship birth_date (validated_id over muni_elders,
    # district_registry, screenings: the declared date and the one encoded in the resident ID)
    "staged.muni_elders.birth_date",
    "staged.muni_elders.id_birth_date",
    "staged.district_registry.birth_date",
    "staged.district_registry.id_birth_date",
    "staged.screenings.birth_date",
    "staged.screenings.id_birth_date",
    # living at month end: dim_elder.status / death_date / moved_out_date (municipal registry's
    # latest record; moved out = the first MOVED_OUT record's updated_at)
    "staged.muni_elders.status",
    "staged.muni_elders.death_date",
    "staged.muni_elders.updated_at",
    # registered: in_municipal_registry / in_district_registry = which source tables linked
    "library.elder_links.source_table",
    # the elder's area: dim_elder.street = survivorship street (trusted_source, eight sources)
    "staged.district_registry.street",
    "staged.muni_elders.street",
    "staged.care_bed_contracts.street",
    "staged.water_meters.street",
    "staged.wristband_devices.street",
    "staged.milk_deliveries.street",
    "staged.timebank_transactions.street",
    "staged.district_hotline.street",
)


def test_a_real_kpi_resolves_to_exactly_its_source_columns(graph: LineageGraph) -> None:
    kpi = "kpi.cognitive_screening_coverage"
    assert graph.tables[kpi].problems == []
    assert graph.trace(kpi, "value") == COVERAGE_VALUE
    assert graph.trace(kpi, "value", conditions=True) == COVERAGE_VALUE | COVERAGE_ROWS
    # the KPI mart: its value column, read for one KPI, has exactly that KPI's lineage
    assert graph.trace("marts.kpi_values", "value[cognitive_screening_coverage]") == COVERAGE_VALUE
    assert graph.upstream(ColumnRef("marts", "kpi_values", "value")) == {
        ColumnRef("kpi", k.id, "value") for k in load_kpi_formulas() or []
    }


def test_the_id_number_reaches_the_golden_record_and_no_mart(graph: LineageGraph) -> None:
    flows = graph.impact("staged.muni_elders", "id_number")
    assert ColumnRef("library", "dim_elder", "id_number") in flows
    # marts hold no direct identifier: the ID's value flows into no mart column and no KPI
    assert {r for r in flows if r.zone in ("marts", "kpi")} == set()
    assert {r.zone for r in flows} == {"library"}


def test_where_the_id_number_comes_from_and_flows(graph: LineageGraph) -> None:
    from assets.library.golden import load_rules, source_column

    sources = load_rules().attributes["id_number"].sources
    expected = {ColumnRef("staged", *source_column(s, "id_number")) for s in sources}
    assert graph.trace("dim_elder", "id_number") == expected
    flows = graph.impact("muni_elders", "id_number")
    assert ColumnRef("library", "dim_elder", "id_number") in flows
    # the golden record's pivot keeps attributes apart: the ID does not flow into the name
    assert ColumnRef("library", "dim_elder", "name") not in flows
    assert ColumnRef("library", "match_review_queue", "id_number_l") in flows


def test_staged_columns_come_from_their_raw_columns(graph: LineageGraph) -> None:
    assert graph.trace("muni_elders", "id_number", until="raw") == refs("raw.muni_elders.id_number")
    assert graph.upstream(ColumnRef("staged", "muni_elders", "id_birth_date")) == refs(
        "raw.muni_elders.id_number"
    )


def test_python_lineage_mapping_resolves(graph: LineageGraph) -> None:
    schema = contract_schema(REG)
    for lineage in graph.tables.values():
        if lineage.origin != "python":
            continue
        for column, kinds in lineage.columns.items():
            for deps in kinds.values():
                for ref in deps:
                    if ref.zone == "ops":
                        continue
                    if ref.zone == "kpi":  # a KPI formula's output column
                        assert ref.column in graph.tables[ref.qualified_table].columns, (lineage.table, ref)
                        continue
                    assert ref.column.split("[")[0] in schema[ref.zone][ref.table], (
                        lineage.table,
                        column,
                        ref,
                    )


def test_kpi_formulas_over_declared_tables_resolve(graph: LineageGraph) -> None:
    formulas = load_kpi_formulas()
    if formulas is None:
        pytest.skip("schemas/kpis.yaml does not exist yet")
    schema = contract_schema(REG)
    for kpi in formulas:
        lineage = graph.tables[f"kpi.{kpi.id}"]
        declared = all(
            t.split(".", 1)[1] in schema.get(t.split(".", 1)[0], {}) for t in lineage.upstream_tables()
        )
        if not declared:
            continue
        assert lineage.problems == [], kpi.id
        assert graph.trace(f"kpi.{kpi.id}", "value", conditions=True), kpi.id
