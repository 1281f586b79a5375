"""Helpers of the dashboard tests: the test users, AppTest shortcuts, lake relocation."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

import dashboards
from dashboards.access import Session
from dashboards.common import SESSION_KEY
from rainbow.parquet import register_sources
from rainbow.settings import Lake
from rainbow.warehouse import connect_warehouse, publish_views

APP = Path(dashboards.__file__).resolve().parent / "app.py"
PASSWORD = "correct-horse-42"
STAFF_STREET = "310110013000"  # 长白新村街道
OTHER_STREET = "310110001000"  # 定海路街道
# username, role, street
USERS = (
    ("steward", "steward", None),
    ("leader", "leadership", None),
    ("analyst", "analyst", None),
    ("staff_013", "street_staff", STAFF_STREET),
    ("staff_001", "street_staff", OTHER_STREET),
    ("fudan", "third_party", None),
)


def relocate(source: Lake, copy: Lake) -> None:
    """Point the copied warehouse's views (absolute Parquet paths) at the copy's files."""
    con = connect_warehouse(copy)
    try:
        views = con.execute(
            "SELECT sql FROM duckdb_views() WHERE NOT internal AND sql IS NOT NULL "
            "AND database_name = current_database()"  # not the registered encrypted sources
        ).fetchall()
        moved = [
            sql.replace(str(source.root), str(copy.root)).replace("CREATE VIEW", "CREATE OR REPLACE VIEW", 1)
            for (sql,) in views
            if str(source.root) in sql
        ]
        register_sources(con, copy, moved)
        for sql in moved:
            con.execute(sql)
        publish_views(con, copy)
    finally:
        con.close()


def session_for(username: str) -> Session:
    for name, role, street in USERS:
        if name == username:
            display = {"street_staff": "街道工作人员"}.get(role, role)
            recipient = "fudan_sph" if role == "third_party" else None
            return Session(name, display, role, street, recipient)
    raise KeyError(username)


def app_as(username: str | None) -> AppTest:
    """The app, run once, logged in as ``username`` (None: logged out)."""
    at = AppTest.from_file(str(APP), default_timeout=120)
    if username is not None:
        at.session_state[SESSION_KEY] = session_for(username)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def texts(at: AppTest) -> str:
    """Every text the page shows (titles, headers, markdown, captions, messages, metrics)."""
    parts: list[str] = []
    for group in (
        at.title,
        at.header,
        at.subheader,
        at.markdown,
        at.caption,
        at.info,
        at.warning,
        at.error,
        at.success,
    ):
        parts += [str(e.value) for e in group]
    parts += [f"{m.label} {m.value}" for m in at.metric]
    return "\n".join(parts)


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: str(m.value) for m in at.metric}


# The marts the dashboards show street staff once masking/policies.yaml grants them (row-filtered
# to the user's street by the policy's street filter like every street_staff view).
STAFF_MARTS = ("kpi_values", "elder_portrait", "elder_risk_tags", "elder_scenarios", "safety_alerts")


def staff_marts_policy() -> object:
    """The project's policy with :data:`STAFF_MARTS` added to street_staff's reads."""
    import yaml

    from masking.policy import POLICY_PATH, Policy

    data = yaml.safe_load(POLICY_PATH.read_text(encoding="utf-8"))
    data["roles"]["street_staff"]["reads"].append({"zone": "marts", "tables": list(STAFF_MARTS)})
    return Policy.model_validate(data)


def staff_marts_connector(lake: Lake, session: Session) -> object:
    """A role connection under :func:`staff_marts_policy` (for ``dashboards.access.set_connector``)."""
    from masking.access import open_role_connection

    return open_role_connection(
        lake,
        session.role,
        session.username,
        street=session.street,
        policy=staff_marts_policy(),  # type: ignore[arg-type]
    )
