"""Base tables stay out of reach: the SQL guard refuses, and the DuckDB sandbox backs it up."""

from __future__ import annotations

import duckdb
import pytest

from masking.access import AccessDenied, open_role_connection
from masking.sql_guard import check_query
from tests.access.access_fixtures import A, AccessLake

VIEWS = {"dim_elder", "fact_service_event"}


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM rb_wh.library.dim_elder",
        "SELECT * FROM library.dim_elder",
        "SELECT * FROM staged.district_registry",
        "SELECT * FROM temp.role_view.dim_elder",
        "SELECT * FROM role_view.dim_caregiver",
        "SELECT * FROM dim_caregiver",
        "SELECT * FROM read_parquet('/lake/library/dim_elder/data.parquet')",
        "SELECT * FROM '/lake/library/dim_elder/data.parquet'",
        "SELECT * FROM query('SELECT * FROM rb_wh.library.dim_elder')",
        "SELECT * FROM glob('/lake/*')",
        "SELECT * FROM duckdb_views()",
        "SELECT * FROM information_schema.tables",
        "SELECT * FROM role_view.dim_elder AS d, LATERAL read_csv(d.name)",
        "SELECT _rb_keyed_hash('13812341234')",
        "SELECT _rb_pseudonym('E00000001')",
        "SELECT current_setting('allowed_directories')",
        "SELECT 1; SELECT 2",
        "DELETE FROM role_view.dim_elder",
        "CREATE TABLE x AS SELECT * FROM role_view.dim_elder",
        "COPY (SELECT * FROM role_view.dim_elder) TO '/tmp/out.csv'",
        "ATTACH '/tmp/other.duckdb' AS o",
        "SET enable_external_access = true",
        "PRAGMA add_parquet_key('k', 'AAAA')",
        "INSTALL httpfs",
        "DESCRIBE role_view.dim_elder",
        "WITH x AS (SELECT * FROM rb_wh.library.dim_elder) SELECT * FROM x",
        "SELECT (SELECT max(name) FROM rb_wh.library.dim_elder) FROM role_view.dim_elder",
        "not sql at all ((",
    ],
)
def test_when_statement_reaches_beyond_the_role_views_then_refused(sql: str) -> None:
    with pytest.raises(AccessDenied):
        check_query(sql, schema="role_view", views=VIEWS)


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM role_view.dim_elder",
        "SELECT street, count(*) FROM dim_elder GROUP BY ALL",
        "FROM dim_elder SELECT name LIMIT 5",
        "WITH s AS (SELECT * FROM fact_service_event) SELECT count(*) FROM s JOIN dim_elder USING (elder_key)"
        " WHERE s.street IS NOT NULL",
        "SELECT * FROM dim_elder UNION ALL SELECT * FROM dim_elder",
        "SELECT x FROM unnest([1, 2]) AS t(x)",
    ],
)
def test_when_query_reads_only_role_views_then_allowed(sql: str) -> None:
    checked = check_query(sql, schema="role_view", views=VIEWS)
    assert set(checked.views) <= VIEWS


def test_street_staff_naming_another_street_is_refused_and_base_tables_too(access_lake: AccessLake) -> None:
    with open_role_connection(access_lake.lake, "street_staff", "guard-1", street=A) as con:
        for sql in (
            "SELECT * FROM dim_elder WHERE street = '310110006000'",
            "SELECT * FROM dim_elder WHERE street IN ('平凉路街道')",
        ):
            with pytest.raises(AccessDenied, match="own street"):
                con.query(sql)
        with pytest.raises(AccessDenied, match="not one of this role's views"):
            con.query("SELECT * FROM rb_wh.library.dim_elder")
        # the decrypting source behind library.dim_elder is registered on this connection too
        source = access_lake.lake.library / "dim_elder" / "data.parquet"
        with pytest.raises(AccessDenied, match="not one of this role's views"):
            con.query(f'SELECT * FROM "enc:{source}"')
        with pytest.raises(AccessDenied):
            con.query("SELECT * FROM dim_caregiver")  # not visible to street staff
        assert con.query("SELECT count(*) AS n FROM dim_elder WHERE street = ?", [A])["n"][0] == 7


def test_sandbox_holds_even_without_the_guard(access_lake: AccessLake) -> None:
    """Code that bypasses ``query`` still cannot read files outside the role's zones or unlock it."""
    lake = access_lake.lake
    with open_role_connection(lake, "analyst", "guard-2") as con:
        raw = con._con  # private on purpose: this is what the guard normally stands in front of
        with pytest.raises(duckdb.PermissionException):
            raw.sql(f"SELECT * FROM read_parquet('{lake.raw / 'probe.parquet'}')").fetchall()
        with pytest.raises(duckdb.PermissionException):
            raw.sql(
                f"SELECT * FROM read_parquet('{lake.staged / 'district_registry' / '*.parquet'}')"
            ).fetchall()
        with pytest.raises(duckdb.InvalidInputException, match="locked"):
            raw.execute("SET enable_external_access = true")
        with pytest.raises(duckdb.PermissionException):
            raw.execute(f"ATTACH '{lake.root / 'other.duckdb'}' AS other")
        # the keys are bound in Python closures: no SQL text on the connection holds them
        ddl = " ".join(
            r[0] for r in raw.execute("SELECT sql FROM duckdb_views() WHERE NOT internal").fetchall()
        )
        assert "_rb_pseudonym" in ddl
        assert bytes(range(32)).hex() not in ddl and bytes(range(100, 132)).hex() not in ddl
    # the warehouse file is never attached (its views are rebuilt in memory): nothing can write it,
    # and a build holding its write lock does not stop role connections
    with open_role_connection(lake, "steward", "guard-3") as con:
        paths = [r[0] for r in con._con.execute("SELECT path FROM duckdb_databases()").fetchall()]
        assert str(lake.warehouse) not in paths


def test_third_party_can_query_nothing(access_lake: AccessLake) -> None:
    with open_role_connection(access_lake.lake, "third_party", "guard-4") as con:
        assert con.tables() == []
        with pytest.raises(AccessDenied):
            con.query("SELECT * FROM dim_elder")
        with pytest.raises(AccessDenied):
            con.query("SELECT * FROM rb_wh.library.dim_elder")
        with pytest.raises(duckdb.Error):  # not even attached
            con._con.sql("SELECT * FROM rb_wh.library.dim_elder").fetchall()


def test_role_connections_work_while_a_build_holds_the_warehouse_lock(access_lake: AccessLake) -> None:
    import subprocess
    import sys

    lake = access_lake.lake
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import duckdb, time; c = duckdb.connect({str(lake.warehouse)!r}); "
         "print('locked', flush=True); time.sleep(30)"],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with open_role_connection(lake, "street_staff", "guard-5", street="310110001000") as con:
            rows = con.query("SELECT street FROM dim_elder")
        assert rows.height > 0 and set(rows["street"]) == {"310110001000"}
    finally:
        holder.kill()
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()
