"""The pages' data: SQL over the role's views, through :class:`dashboards.access.Db` only.

Every function takes the session's ``Db`` and names role views (``kpi_values``,
``elder_portrait``, ...) bare: the role connection resolves them in ``role_view`` and
refuses anything else. A view the role does not have raises ``PermissionError``
(:class:`masking.access.AccessDenied`) - pages show "no permission" - unless the
function says it falls back to another view (e.g. aggregates for leadership).
Street staff get their own street's rows because their views hold no other rows;
nothing here filters by the user's street for protection.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

import polars as pl

from dashboards.access import Db

AGE_BANDS_OPEN = (  # how long an alert has been open
    (1, "1小时内"),
    (6, "1-6小时"),
    (24, "6-24小时"),
    (72, "1-3天"),
    (None, "3天以上"),
)
AGE_BAND_ORDER = [label for _, label in AGE_BANDS_OPEN]


class Denied(PermissionError):
    """The role has none of the views a figure needs."""


def _require(db: Db, *views: str) -> None:
    missing = [v for v in views if not db.has(v)]
    if missing:
        raise Denied(f"角色 {db.session.role} 没有视图 {', '.join(missing)}")


# --------------------------------------------------------------------------- KPIs


def kpi_months(db: Db) -> list[date]:
    """Months with KPI values, newest first."""
    _require(db, "kpi_values")
    frame = db.query("SELECT DISTINCT month FROM kpi_values ORDER BY month DESC")
    return [m for m in frame["month"].to_list() if m is not None]


def kpi_month(db: Db, month: date) -> pl.DataFrame:
    """Every KPI and area of one month (district and streets the role sees)."""
    _require(db, "kpi_values")
    return db.query(
        "SELECT kpi_id, kpi_name_zh, level, area_code, street, area_name, month, period_end, "
        "CAST(value AS DOUBLE) AS value, value_text, unit, CAST(target AS DOUBLE) AS target, "
        "target_type, direction, status, status_zh, as_of "
        "FROM kpi_values WHERE month = ? ORDER BY kpi_id, level, area_code",
        [month],
    )


def kpi_history(db: Db, kpi_id: str) -> pl.DataFrame:
    """One KPI over every month, per area."""
    _require(db, "kpi_values")
    return db.query(
        "SELECT kpi_id, kpi_name_zh, level, area_code, area_name, month, CAST(value AS DOUBLE) AS value, "
        "value_text, unit, CAST(target AS DOUBLE) AS target, status, status_zh "
        "FROM kpi_values WHERE kpi_id = ? ORDER BY month, area_code",
        [kpi_id],
    )


# --------------------------------------------------------------------------- elders and portraits


def elders_by(db: Db, column: str, street: str | None = None) -> pl.DataFrame:
    """(street, <column>, elders) of living elders: from the portraits, the leadership
    aggregates (small cells suppressed) or the elder dimension, whichever the role has.

    ``column`` is ``age_band``, ``care_level`` or ``living_arrangement``.
    """
    if column not in ("age_band", "care_level", "living_arrangement"):
        raise ValueError(column)
    where, params = ("AND street = ?", [street]) if street else ("", [])
    if db.has("elder_portrait"):
        return db.query(
            f"SELECT street, {column}, count(*) AS elders FROM elder_portrait "
            f"WHERE status = 'ACTIVE' {where} GROUP BY ALL ORDER BY ALL",
            params,
        )
    aggregate = f"agg_elders_by_street_{column}"
    if db.has(aggregate):
        return db.query(
            f"SELECT street, {column}, CAST(elders AS BIGINT) AS elders FROM {aggregate} "
            f"WHERE TRUE {where} ORDER BY ALL",
            params,
        )
    if db.has("dim_elder"):
        return db.query(
            f"SELECT street, {column}, count(*) AS elders FROM dim_elder "
            f"WHERE status = 'ACTIVE' {where} GROUP BY ALL ORDER BY ALL",
            params,
        )
    raise Denied("no elder view")


def segments(db: Db, street: str | None = None) -> pl.DataFrame:
    """(street, vitality_segment, vitality_segment_zh, elders) of living elders."""
    _require(db, "elder_portrait")
    where, params = ("AND street = ?", [street]) if street else ("", [])
    return db.query(
        "SELECT street, vitality_segment, vitality_segment_zh, count(*) AS elders FROM elder_portrait "
        f"WHERE status = 'ACTIVE' AND vitality_segment IS NOT NULL {where} GROUP BY ALL ORDER BY ALL",
        params,
    )


def risk_tag_counts(db: Db, street: str | None = None) -> pl.DataFrame:
    _require(db, "elder_risk_tags")
    where, params = ("WHERE street = ?", [street]) if street else ("", [])
    return db.query(
        "SELECT tag, tag_zh, severity, count(DISTINCT elder_pseudonym) AS elders FROM elder_risk_tags "
        f"{where} GROUP BY ALL ORDER BY elders DESC, tag",
        params,
    )


def portrait_keys(
    db: Db, street: str | None = None, tag: str | None = None, limit: int = 500
) -> pl.DataFrame:
    """Pseudonymous keys with a few attributes, elders with risk tags first."""
    _require(db, "elder_portrait")
    conditions, params = ["status = 'ACTIVE'"], []
    if street:
        conditions.append("street = ?")
        params.append(street)
    if tag:
        conditions.append("list_contains(string_split(coalesce(risk_tags, ''), ','), ?)")
        params.append(tag)
    return db.query(
        "SELECT elder_pseudonym, street, age_band, sex, vitality_segment_zh, risk_tag_count, risk_tags "
        f"FROM elder_portrait WHERE {' AND '.join(conditions)} "
        f"ORDER BY risk_tag_count DESC, elder_pseudonym LIMIT {int(limit)}",
        params,
    )


def portrait(db: Db, pseudonym: str) -> dict[str, object] | None:
    _require(db, "elder_portrait")
    rows = db.query("SELECT * FROM elder_portrait WHERE elder_pseudonym = ?", [pseudonym]).to_dicts()
    return rows[0] if rows else None


def portrait_tags(db: Db, pseudonym: str) -> pl.DataFrame:
    _require(db, "elder_risk_tags")
    return db.query(
        "SELECT tag_zh, severity, evidence FROM elder_risk_tags WHERE elder_pseudonym = ? ORDER BY tag",
        [pseudonym],
    )


def portrait_scenarios(db: Db, pseudonym: str) -> pl.DataFrame:
    _require(db, "elder_scenarios")
    return db.query(
        "SELECT scenario_id, scenario_name FROM elder_scenarios "
        "WHERE elder_pseudonym = ? ORDER BY scenario_id",
        [pseudonym],
    )


def elders_by_name(db: Db, name: str, limit: int = 50) -> pl.DataFrame:
    """Golden records whose name contains ``name`` (the steward's unmasked view only)."""
    _require(db, "dim_elder")
    if db.session.role != "steward":
        raise Denied("只有数据管理员可以按姓名查找")
    return db.query(
        "SELECT elder_key, name, sex, age, age_band, street, committee, living_arrangement, status, "
        "care_level "
        f"FROM dim_elder WHERE contains(name, ?) ORDER BY name, elder_key LIMIT {int(limit)}",
        [name],
    )


# --------------------------------------------------------------------------- services, facilities


def services_by_month(db: Db, street: str | None = None) -> pl.DataFrame:
    """(month, programme, events, elders) from the service facts or the leadership aggregate."""
    where, params = ("AND street = ?", [street]) if street else ("", [])
    if db.has("fact_service_event"):
        person = "elder_key" if "elder_key" in db.columns("fact_service_event") else "elder_pseudonym"
        return db.query(
            "SELECT date_trunc('month', service_date) AS month, programme, count(*) AS events, "
            f"count(DISTINCT {person}) AS elders FROM fact_service_event "
            f"WHERE service_date IS NOT NULL {where} GROUP BY ALL ORDER BY ALL",
            params,
        )
    if db.has("agg_services_by_street_programme_month"):
        return db.query(
            "SELECT month, programme, CAST(sum(events) AS BIGINT) AS events, "
            "CAST(sum(elders) AS BIGINT) AS elders "
            f"FROM agg_services_by_street_programme_month WHERE TRUE {where} GROUP BY ALL ORDER BY ALL",
            params,
        )
    raise Denied("no service view")


def facilities(db: Db, street: str | None = None) -> pl.DataFrame:
    _require(db, "dim_facility")
    where, params = ("WHERE street = ?", [street]) if street else ("", [])
    return db.query(
        "SELECT facility_id, facility_name, facility_type, street, address, beds, status, "
        "CAST(lat AS DOUBLE) AS lat, CAST(lon AS DOUBLE) AS lon, last_listed, days_since_listed "
        f"FROM dim_facility {where} ORDER BY street, facility_type, facility_name",
        params,
    )


# --------------------------------------------------------------------------- alerts


def alert_rows(db: Db, street: str | None = None) -> pl.DataFrame:
    """The hourly alert rows the role sees (collapse them with ``alert_lifecycle.collapse``)."""
    _require(db, "safety_alerts")
    where, params = ("WHERE street = ?", [street]) if street else ("", [])
    return db.query(
        "SELECT alert_id, hour, alert_type, severity, elder_pseudonym, street, device_kind, device_id, "
        "detected_at, episode_start, episode_end, hits, new_alert, evidence, rules_version "
        f"FROM safety_alerts {where}",
        params,
    )


def with_states(alerts: pl.DataFrame, states: pl.DataFrame, auto_close_hours: int | None) -> pl.DataFrame:
    """Collapsed alerts + their lifecycle state (``state``, ``state_by``, ``state_at``,
    ``state_note``), auto-closing as :func:`assets.marts.alert_lifecycle.current_alerts` does;
    plus ``open_hours`` and ``open_band`` (how long it has been open) at the newest hour's end."""
    from assets.marts.alert_lifecycle import CLOSED, OPEN, SYSTEM_USER
    from assets.marts.alerts import HOUR_FORMAT

    if alerts.is_empty():
        return alerts.with_columns(
            state=pl.lit(None, pl.String),
            state_by=pl.lit(None, pl.String),
            state_at=pl.lit(None, pl.String),
            state_note=pl.lit(None, pl.String),
            open_hours=pl.lit(None, pl.Float64),
            open_band=pl.lit(None, pl.String),
        )
    as_of = datetime.strptime(str(alerts["last_hour"].max()), HOUR_FORMAT) + timedelta(hours=1)
    out = alerts.join(states, on="alert_id", how="left").with_columns(pl.col("state").fill_null(OPEN))
    auto = pl.lit(False)
    if auto_close_hours is not None:
        auto = (pl.col("state") != CLOSED) & (
            pl.col("episode_end") + timedelta(hours=auto_close_hours) < as_of
        )
    closed = pl.col("state") == CLOSED
    out = out.with_columns(auto_closed=auto).with_columns(
        state=pl.when(pl.col("auto_closed")).then(pl.lit(CLOSED)).otherwise(pl.col("state")),
        state_by=pl.when(pl.col("auto_closed"))
        .then(pl.lit(SYSTEM_USER))
        .when(closed)
        .then(pl.col("closed_by"))
        .otherwise(pl.col("acknowledged_by")),
        state_at=pl.when(closed).then(pl.col("closed_at")).otherwise(pl.col("acknowledged_at")),
        state_note=pl.when(pl.col("auto_closed"))
        .then(pl.lit(f"事件结束超过{auto_close_hours}小时，系统自动关闭"))
        .when(closed)
        .then(pl.col("closed_note"))
        .otherwise(pl.col("acknowledged_note")),
        open_hours=((pl.lit(as_of) - pl.col("detected_at")).dt.total_seconds() / 3600).round(1),
    )
    band = pl.lit(AGE_BANDS_OPEN[-1][1])
    for limit, label in reversed(AGE_BANDS_OPEN[:-1]):
        band = pl.when(pl.col("open_hours") < limit).then(pl.lit(label)).otherwise(band)
    return out.with_columns(open_band=band).sort("detected_at", "alert_id", descending=[True, False])


# --------------------------------------------------------------------------- steward review queue


def review_queue(db: Db, status: str | None = "OPEN", limit: int = 200) -> pl.DataFrame:
    _require(db, "match_review_queue")
    where, params = ("WHERE status = ?", [status]) if status else ("", [])
    return db.query(
        f"SELECT * FROM match_review_queue {where} "
        f"ORDER BY match_probability DESC, pair_id LIMIT {int(limit)}",
        params,
    )
