"""Each role sees exactly what its policy allows, with the masked values the operators promise."""

from __future__ import annotations

from datetime import date

import pytest

from masking.access import RoleConnection, open_role_connection
from masking.policy import load_policy
from masking.pseudonym import pseudonym
from masking.role_views import expected_columns
from masking.scrub import find_pii
from schemas import load_registry
from tests.access.access_fixtures import PSEUDO, A, AccessLake, B


def _open(al: AccessLake, role: str, street: str | None = None, k: int | None = None) -> RoleConnection:
    return open_role_connection(al.lake, role, f"test-{role}", street=street, k=k)


def _seen(con: RoleConnection) -> dict[str, list[str]]:
    return {t: [c for c, _ in con.columns(t)] for t in con.tables()}


@pytest.mark.parametrize("role", ["steward", "street_staff", "leadership", "analyst", "third_party"])
def test_each_role_sees_exactly_the_views_and_columns_of_its_policy(
    access_lake: AccessLake, role: str
) -> None:
    street = A if role == "street_staff" else None
    expected = expected_columns(load_policy(), load_registry(), role, street=street)
    if role == "steward":  # steward keeps the base's undeclared lineage columns
        expected["district_registry"] = [*expected["district_registry"], "_source_file"]
    with _open(access_lake, role, street) as con:
        assert _seen(con) == expected
        # nothing else lives in the connection's own catalogue
        views = con._con.execute(
            "SELECT schema_name, view_name FROM duckdb_views() "
            "WHERE database_name = 'memory' AND NOT internal"
        ).fetchall()
        assert sorted(v for s, v in views if s == "role_view") == sorted(expected)
        assert {s for s, _ in views} <= {"role_view"}


def test_visible_tables_per_role_by_hand(access_lake: AccessLake) -> None:
    with _open(access_lake, "street_staff", "定海路") as con:
        assert con.tables() == [
            "dim_elder",
            "elder_life_events",
            "elder_devices",
            "dim_facility",
            "fact_service_event",
            "reconciliation_issues",
            "dim_volunteer",
            "safety_alerts",
            "kpi_values",
            "elder_portrait",
            "elder_risk_tags",
            "elder_scenarios",
        ]
    with _open(access_lake, "leadership") as con:
        assert con.tables() == [
            "kpi_values",
            "dim_facility",
            "agg_elders_by_street_age_band",
            "agg_elders_by_street_care_level",
            "agg_elders_by_street_living_arrangement",
            "agg_services_by_street_programme_month",
        ]
    with _open(access_lake, "third_party") as con:
        assert con.tables() == []
    with _open(access_lake, "analyst") as con:
        assert "match_review_queue" not in con.tables() and "elder_links" not in con.tables()
        assert [c for c, _ in con.columns("dim_elder")] == [
            "elder_pseudonym", "sex", "birth_date", "age", "age_band", "residence_address", "street",
            "hukou_type", "living_arrangement", "status", "death_date", "moved_out_date", "care_level",
            "care_level_assessed_on", "care_level_valid_until", "platform_elder_id", "in_municipal_registry",
            "in_district_registry", "source_tables", "records", "first_seen", "last_seen",
        ]  # fmt: skip


def test_street_staff_see_their_own_streets_elders_with_masked_contacts(access_lake: AccessLake) -> None:
    with _open(access_lake, "street_staff", "310110001000") as con:
        elders = con.query("SELECT * FROM role_view.dim_elder ORDER BY elder_key")
        assert set(elders["street"]) == {A} and elders.height == 7
        first = elders.row(0, named=True)
        assert first["name"] == "张三丰"  # they know and visit their elders
        assert first["phone"] == "138****1234"
        assert first["id_number"] == "3101101948********"
        assert first["residence_address"] == "上海市杨浦区控江路1000弄1号101室"  # staff visit their elders
        assert first["senior_card_no"] == "******0001"
        assert elders.row(1, named=True)["phone"] == "021-****5678"
        # tables without a street column are filtered through the elder's street
        events = con.query("SELECT elder_key FROM elder_life_events")
        assert events["elder_key"].to_list() == ["E00000001"]
        services = con.query("SELECT DISTINCT street FROM fact_service_event")
        assert services["street"].to_list() == [A]
        assert con.query("SELECT name, phone FROM dim_volunteer").rows() == [
            ("张*", "139****1111")
        ]  # other people
        # the public facility registry is not filtered
        assert con.query("SELECT count(*) AS n FROM dim_facility")["n"][0] == 2
        # asking for another street's rows finds nothing - or is refused when it names the street
        assert con.query("SELECT * FROM dim_elder WHERE street <> ?", [A]).height == 0


def test_other_street_staff_see_the_other_rows(access_lake: AccessLake) -> None:
    with _open(access_lake, "street_staff", "平凉路街道") as con:
        elders = con.query("SELECT elder_key, street FROM dim_elder")
        assert set(elders["street"]) == {B} and elders.height == 5
        assert con.query("SELECT * FROM elder_life_events")["elder_key"].to_list() == ["E00000012"]


def test_leadership_sees_aggregates_with_cells_under_k_null(access_lake: AccessLake) -> None:
    with _open(access_lake, "leadership") as con:
        bands = con.query("SELECT street, age_band, elders FROM agg_elders_by_street_age_band")
        # A x 75-79 (2) is under k; A x 80-84 (5) would give it back as A's street total (7, the KPI
        # 在册老年人数) minus 5, so it is suppressed too (complementary); E12 is deceased
        assert bands.rows() == [(A, "75-79", None), (A, "80-84", None), (B, "60-64", None)]
        services = con.query("SELECT * FROM agg_services_by_street_programme_month ORDER BY street")
        # B's 4 elders are under k; A's 7 would give them back from the district's meal-aid total
        assert services.rows() == [
            (A, "MEAL_AID", date(2026, 11, 1), None, None, None),
            (B, "MEAL_AID", date(2026, 11, 1), None, None, None),
        ]
        kpis = con.query(
            "SELECT street, unit, value, value_text FROM kpi_values ORDER BY kpi_id DESC, street"
        )
        assert kpis.rows() == [(A, "人", None, None), (B, "人", 12.0, "12"), (A, "%", 2.5, "2.5%")]
    # k is a setting: with k = 2 the two-elder cell shows (and no cell needs protecting)
    with _open(access_lake, "leadership", k=2) as con:
        bands = con.query("SELECT street, age_band, elders FROM agg_elders_by_street_age_band")
        assert bands.rows() == [(A, "75-79", 2), (A, "80-84", 5), (B, "60-64", 4)]
        services = con.query("SELECT street, elders FROM agg_services_by_street_programme_month")
        assert services.rows() == [(A, 7), (B, 4)]


def test_analyst_sees_pseudonymous_generalised_rows_without_direct_identifiers(
    access_lake: AccessLake,
) -> None:
    with _open(access_lake, "analyst") as con:
        e = con.query("SELECT * FROM dim_elder WHERE elder_pseudonym = ?", [pseudonym("E00000001", PSEUDO)])
        row = e.row(0, named=True)
        assert row["age"] == "80-84"
        assert row["birth_date"] == date(1948, 5, 1)
        assert row["residence_address"] == "定海路街道"
        assert not {"name", "phone", "id_number", "senior_card_no", "committee"} & set(e.columns)
        # the pseudonym joins the marts' portraits
        joined = con.query("SELECT count(*) AS n FROM dim_elder JOIN elder_portrait USING (elder_pseudonym)")
        assert joined["n"][0] == 12
        services = con.query("SELECT started_at, service_date FROM fact_service_event LIMIT 1")
        assert services.row(0) == (date(2026, 11, 1), date(2026, 11, 1))
        devices = con.query("SELECT * FROM elder_devices")
        assert "fence_lat" not in devices.columns and devices["device_id"].to_list() == ["D1"]
        # no value of any visible table is a direct identifier (the public facility registry
        # is open data: its phone numbers are the facilities' own)
        registry = load_registry()
        for table in con.tables():
            if registry.derived(table).sensitivity == "public":
                continue
            frame = con.query(f"SELECT * FROM {table}")
            for column in frame.columns:
                for value in frame[column].cast(str).drop_nulls().unique():
                    assert find_pii(value) == [], (table, column, value)


def test_steward_sees_everything_unmasked(access_lake: AccessLake) -> None:
    with _open(access_lake, "steward") as con:
        e = con.query("SELECT name, phone, id_number FROM dim_elder WHERE elder_key = 'E00000001'")
        assert e.row(0) == ("张三丰", "13812341234", "310110194805121234")
        staged = con.query("SELECT name, _source_file FROM district_registry")
        assert staged.row(0) == ("孙小美", "registry_a.xlsx")
        # a table never built is an empty view with the contract's columns
        empty = con.query("SELECT * FROM fact_vitals_daily")
        assert empty.height == 0 and "heart_rate_mean" in empty.columns


def test_when_warehouse_missing_then_views_are_empty_but_typed(tmp_path: object) -> None:
    from pathlib import Path

    from rainbow.settings import Lake

    lake = Lake(Path(str(tmp_path)) / "lake")
    with open_role_connection(lake, "analyst", "a1") as con:
        assert con.query("SELECT * FROM dim_elder").height == 0
        assert "elder_pseudonym" in con.query("SELECT * FROM dim_elder").columns


def test_when_user_or_street_missing_then_no_connection(access_lake: AccessLake) -> None:
    with pytest.raises(ValueError, match="user"):
        open_role_connection(access_lake.lake, "analyst", " ")
    with pytest.raises(ValueError, match="street"):
        open_role_connection(access_lake.lake, "street_staff", "s1")
    with pytest.raises(ValueError, match="unknown role"):
        open_role_connection(access_lake.lake, "admin", "s1")
