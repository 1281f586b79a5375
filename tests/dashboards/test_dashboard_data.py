"""The dashboards' data layer: every query through the role connection, audited; street staff
reach their own street's rows only (enforced by the role views, not by the pages)."""

from __future__ import annotations

from datetime import datetime

import polars as pl
import pytest

from dashboards import queries
from dashboards.access import Db
from dashboards.lineage import CatalogueLineage, split_ref, to_dot
from dashboards.navigation import PAGES, default_page, pages_for
from masking.audit import AuditLog
from rainbow.settings import Lake
from rainbow.warehouse import open_reader
from schemas import load_registry
from tests.dashboards.support import (
    OTHER_STREET,
    STAFF_MARTS,
    STAFF_STREET,
    session_for,
    staff_marts_connector,
)


def _public_tables() -> set[str]:
    registry = load_registry()
    public = {t.name for _, t in registry.tables() if t.sensitivity == "public"}
    return public | {t.name for _, t in registry.derived_tables() if t.sensitivity == "public"}


def test_street_staff_views_hold_their_own_street_only(lake: Lake) -> None:
    with Db(lake, session_for("staff_013")) as db:
        filtered = 0
        for view in sorted(db.views()):
            columns = db.query(f"SELECT * FROM {view} LIMIT 0").columns
            if "street" not in columns or view in _public_tables():
                continue
            streets = set(db.query(f"SELECT DISTINCT street FROM {view}")["street"].to_list())
            assert streets <= {STAFF_STREET}, (view, streets)
            filtered += bool(streets)
        assert filtered >= 3  # elders, services, devices ... of 长白新村 are there


def test_the_same_query_as_another_street_worker_returns_the_other_street(lake: Lake) -> None:
    sql = "SELECT street, count(*) AS n FROM dim_elder GROUP BY street"
    with Db(lake, session_for("staff_013")) as mine, Db(lake, session_for("staff_001")) as theirs:
        a, b = mine.query(sql), theirs.query(sql)
    assert a["street"].to_list() == [STAFF_STREET] and b["street"].to_list() == [OTHER_STREET]
    reader = open_reader(lake)
    truth = dict(reader.sql("SELECT street, count(*) FROM library.dim_elder GROUP BY street").fetchall())
    assert a["n"].item() == truth[STAFF_STREET] and b["n"].item() == truth[OTHER_STREET]


def test_street_staff_cannot_reach_another_street_by_sql(lake: Lake) -> None:
    with Db(lake, session_for("staff_013")) as db:
        by_param = db.query("SELECT count(*) AS n FROM dim_elder WHERE street = ?", [OTHER_STREET])
        assert by_param["n"].item() == 0
        for sql in (
            f"SELECT * FROM dim_elder WHERE street = '{OTHER_STREET}'",  # another street named
            "SELECT * FROM dim_elder WHERE street = '定海路街道'",
            "SELECT * FROM library.dim_elder",  # the base table behind the view
            "SELECT * FROM read_parquet('library/dim_elder/*.parquet')",
            "DELETE FROM dim_elder",
        ):
            with pytest.raises(PermissionError):
                db.query(sql)


@pytest.mark.parametrize("figure", ["kpi", "portrait", "alerts", "elders", "services"])
def test_street_staff_figures_are_their_streets(lake: Lake, figure: str) -> None:
    """What the KPI, portrait and alert pages ask for, as a street worker: own street only."""
    with Db(lake, session_for("staff_013")) as db:
        needs = {
            "kpi": "kpi_values",
            "portrait": "elder_portrait",
            "alerts": "safety_alerts",
            "elders": "dim_elder",
            "services": "fact_service_event",
        }[figure]
        if not db.has(needs):
            pytest.skip(f"masking/policies.yaml gives street_staff no {needs} view")
        if figure == "kpi":
            frame = queries.kpi_month(db, queries.kpi_months(db)[0])
            streets = set(frame["area_code"].to_list())
        elif figure == "portrait":
            frame = queries.portrait_keys(db)
            streets = set(frame["street"].to_list())
        elif figure == "alerts":
            frame = queries.alert_rows(db)
            streets = set(frame["street"].to_list())
        elif figure == "elders":
            frame = queries.elders_by(db, "age_band")
            streets = set(frame["street"].to_list())
        else:
            frame = queries.services_by_month(db)
            streets = {STAFF_STREET} if frame.height else set()
            everyone = queries.services_by_month(Db(lake, session_for("steward")))
            assert frame["events"].sum() < everyone["events"].sum()
    assert streets == {STAFF_STREET}


def test_every_query_and_refusal_is_audited(lake: Lake) -> None:
    log = AuditLog(lake)
    before = log.read("staff_013").height
    with Db(lake, session_for("staff_013")) as db:
        db.query("SELECT count(*) FROM dim_elder")
        db.query("SELECT count(*) FROM fact_service_event")
        with pytest.raises(PermissionError):
            db.query("SELECT * FROM library.dim_elder")
        db.audit_read("file:marts/catalog/catalog.json", 3)
    rows = log.read("staff_013").tail(log.read("staff_013").height - before)
    assert rows["outcome"].to_list() == ["ok", "ok", "refused", "ok"]
    assert rows["role"].unique().to_list() == ["street_staff"]
    assert rows["street"].unique().to_list() == [STAFF_STREET]
    assert rows["datasets"].to_list()[:2] == ["dim_elder", "fact_service_event"]
    assert rows["datasets"][3] == "file:marts/catalog/catalog.json"


def test_leadership_sees_aggregates_with_small_cells_suppressed(lake: Lake) -> None:
    with Db(lake, session_for("leader")) as leader, Db(lake, session_for("steward")) as steward:
        assert not leader.has("elder_portrait") and not leader.has("dim_elder")
        agg = queries.elders_by(leader, "age_band")
        full = queries.elders_by(steward, "age_band")
    assert agg.height and agg["elders"].null_count() > 0  # cells under k are not shown
    shown = agg.drop_nulls("elders").join(full, on=["street", "age_band"], suffix="_full")
    assert shown.height and (shown["elders"] == shown["elders_full"]).all()
    assert shown["elders"].min() >= 5  # type: ignore[operator]


def test_portrait_queries_are_denied_without_the_view(lake: Lake) -> None:
    with Db(lake, session_for("leader")) as db, pytest.raises(PermissionError):
        queries.portrait_keys(db)
    with Db(lake, session_for("analyst")) as db, pytest.raises(PermissionError):
        queries.elders_by_name(db, "王")  # names: stewards only


def test_alert_states_and_open_bands() -> None:
    collapsed = pl.DataFrame(
        {
            "alert_id": ["A", "B", "C"],
            "detected_at": [
                datetime(2026, 12, 5, 22, 30),
                datetime(2026, 12, 5, 2),
                datetime(2026, 12, 1, 2),
            ],
            "episode_end": [datetime(2026, 12, 5, 22), datetime(2026, 12, 5, 3), datetime(2026, 12, 1, 3)],
            "last_hour": ["2026-12-05T22", "2026-12-05T03", "2026-12-01T03"],
        }
    )
    states = pl.DataFrame(
        {
            "alert_id": ["B"],
            "state": ["ACKNOWLEDGED"],
            "acknowledged_by": ["staff_013"],
            "acknowledged_at": ["2026-12-05T04:00:00"],
            "acknowledged_note": ["已电话联系"],
            "closed_by": [None],
            "closed_at": [None],
            "closed_note": [None],
            "updated_at": ["2026-12-05T04:00:00"],
        },
        schema_overrides={"closed_by": pl.String, "closed_at": pl.String, "closed_note": pl.String},
    )
    out = queries.with_states(collapsed, states, auto_close_hours=72).sort("alert_id")
    assert out["state"].to_list() == ["OPEN", "ACKNOWLEDGED", "CLOSED"]
    assert out["state_by"].to_list() == [None, "staff_013", "system"]
    assert out["open_band"].to_list() == ["1小时内", "6-24小时", "3天以上"]
    assert out["open_hours"].to_list() == [0.5, 21.0, 117.0]


def test_page_lists_per_role() -> None:
    titles = {
        role: [p.title for p in pages_for(role)]
        for role in ("steward", "street_staff", "leadership", "analyst", "third_party")
    }
    assert titles["steward"] == [p.title for p in PAGES]
    assert titles["street_staff"] == [
        "指标看板",
        "街道详情",
        "设施与告警地图",
        "老年人画像",
        "安全告警",
        "数据目录",
    ]
    assert titles["leadership"] == [
        "指标看板",
        "街道详情",
        "设施与告警地图",
        "老年人画像",
        "数据质量",
        "数据目录",
    ]
    assert titles["analyst"] == [
        "指标看板",
        "街道详情",
        "设施与告警地图",
        "老年人画像",
        "安全告警",
        "数据质量",
        "数据目录",
    ]
    assert titles["third_party"] == ["开放数据"]
    assert default_page("leadership").module == "kpi"  # type: ignore[union-attr]
    assert default_page("third_party").module == "exports"  # type: ignore[union-attr]


def test_column_lineage_graph_from_the_catalogue() -> None:
    catalog = {
        "datasets": [
            {
                "id": "staged.muni",
                "name_zh": "市级老人",
                "columns": [{"name": "name", "zh": "姓名", "upstream": []}],
            },
            {
                "id": "library.prov",
                "name_zh": "属性来源",
                "columns": [{"name": "value", "upstream": ["staged.muni.name", "staged.muni.sex"]}],
            },
            {
                "id": "library.dim_elder",
                "name_zh": "老人",
                "columns": [
                    {
                        "name": "name",
                        "zh": "姓名",
                        "upstream": ["library.prov.value[name]"],
                        "downstream": ["marts.x.name"],
                    }
                ],
            },
        ],
        "kpis": [],
    }
    lineage = CatalogueLineage(catalog)
    assert split_ref("library.prov.value[name]") == ("library.prov", "value", "name")
    assert lineage.upstream("library.prov.value[name]") == ["staged.muni.name"]  # the key's own source
    graph = lineage.trace("library.dim_elder.name")
    assert graph.nodes == {"library.dim_elder.name", "library.prov.value[name]", "staged.muni.name"}
    dot = to_dot(graph, lineage, "library.dim_elder.name", lineage.downstream("library.dim_elder.name"))
    assert dot.startswith("digraph lineage {") and dot.count("->") == 3
    assert 'label="library.dim_elder\\n老人"' in dot and "姓名" in dot and "#ffd54f" in dot


@pytest.mark.parametrize("figure", ["kpi", "portrait", "risk_tags", "alerts"])
def test_granted_marts_still_hold_only_the_staff_members_street(lake: Lake, figure: str) -> None:
    """Under a policy granting street staff the marts (as issue #9 asks), the same page queries
    return their own street only: the policy's street filter, not the pages, does it."""
    db = Db(lake, session_for("staff_013"), connector=staff_marts_connector)  # type: ignore[arg-type]
    everyone = Db(lake, session_for("steward"))
    with db, everyone:
        assert db.has(*STAFF_MARTS)
        if figure == "kpi":
            month = queries.kpi_months(db)[0]
            mine, all_rows = queries.kpi_month(db, month), queries.kpi_month(everyone, month)
            column = "area_code"
        elif figure == "portrait":
            mine, all_rows = (
                queries.portrait_keys(db, limit=100_000),
                queries.portrait_keys(everyone, limit=100_000),
            )
            column = "street"
        elif figure == "risk_tags":
            mine = db.query("SELECT * FROM elder_risk_tags")
            all_rows = everyone.query("SELECT * FROM elder_risk_tags")
            column = "street"
        else:
            mine, all_rows = queries.alert_rows(db), queries.alert_rows(everyone)
            column = "street"
    assert set(mine[column].to_list()) == {STAFF_STREET}
    assert mine.height == all_rows.filter(pl.col(column) == STAFF_STREET).height
