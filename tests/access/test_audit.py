"""Every query through a role view and every export writes one audit row with the right counts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from masking.access import AccessDenied, audited_query, open_role_connection
from masking.audit import AuditLog, record_export
from tests.access.access_fixtures import A, AccessLake


def test_each_query_writes_one_audit_row(access_lake: AccessLake) -> None:
    lake = access_lake.lake
    before = datetime.now(UTC) - timedelta(seconds=1)
    with open_role_connection(lake, "street_staff", "audit-staff-1", street=A) as con:
        con.query("SELECT * FROM dim_elder")
        audited_query(con, "SELECT e.elder_key FROM dim_elder e JOIN fact_service_event s USING (elder_key)")
        with pytest.raises(AccessDenied):
            con.query("SELECT * FROM rb_wh.library.dim_elder")
        with pytest.raises(Exception, match="Binder Error"):
            con.query("SELECT no_such_column FROM dim_elder")
    log = AuditLog(lake).read("audit-staff-1")
    assert log.height == 4
    assert log["role"].to_list() == ["street_staff"] * 4
    assert log["street"].to_list() == [A] * 4
    assert log["action"].to_list() == ["query"] * 4
    assert log["datasets"].to_list() == ["dim_elder", "dim_elder,fact_service_event", "", "dim_elder"]
    assert log["sources"][0] == "library.dim_elder"
    assert log["sources"][1] == "library.dim_elder,library.fact_service_event"
    assert log["row_count"].to_list() == [7, 14, None, None]
    assert log["outcome"].to_list() == ["ok", "ok", "refused", "error"]
    assert "not one of this role's views" in log["detail"][2]
    assert "rb_wh.library.dim_elder" in log["statement"][2]
    at = [datetime.fromisoformat(t) for t in log["at"]]
    assert all(before <= t <= datetime.now(UTC) for t in at) and at == sorted(at)


def test_aggregate_queries_are_audited_with_their_source(access_lake: AccessLake) -> None:
    with open_role_connection(access_lake.lake, "leadership", "audit-lead-1") as con:
        con.query("SELECT * FROM agg_elders_by_street_age_band")
    log = AuditLog(access_lake.lake).read("audit-lead-1")
    assert log.select("datasets", "sources", "row_count").rows() == [
        ("agg_elders_by_street_age_band", "library.dim_elder", 3)
    ]


def test_exports_are_audited(access_lake: AccessLake) -> None:
    record_export(
        access_lake.lake,
        user_id="audit-export-1",
        role="third_party",
        dataset="elder_services_open",
        row_count=1234,
        recipient="fudan-univ",
        package="exports/fudan-univ/2026-11/",
    )
    log = AuditLog(access_lake.lake).read("audit-export-1")
    assert log.select("action", "datasets", "row_count", "outcome", "detail").rows() == [
        ("export", "elder_services_open", 1234, "ok", "recipient=fudan-univ")
    ]
    with pytest.raises(ValueError, match="user"):
        record_export(access_lake.lake, user_id="", role="steward", dataset="x", row_count=0)
