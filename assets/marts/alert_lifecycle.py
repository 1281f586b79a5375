"""Alert lifecycle (告警处置): OPEN -> ACKNOWLEDGED -> CLOSED, kept in the operational store.

Who acknowledged or closed an alert, when and with what note is written by
dashboards and the CLI at any time, so it lives in ``rainbow.ops.OpsStore``
(SQLite, WAL), never in the Parquet mart. Two tables:

* ``alert_state``: the current state of every alert someone has touched (an alert
  without a row is OPEN);
* ``alert_transitions``: every transition (from, to, user, time, note), append-only.

:func:`current_alerts` collapses the mart's hourly rows to one row per alert and
joins the state at read time; an OPEN or ACKNOWLEDGED alert whose episode ended
more than ``auto_close_after_hours`` before the newest alert hour reads as CLOSED
by the system (not written back: a person may still close it with a note).
"""

from __future__ import annotations

from datetime import datetime, timedelta

import polars as pl

from assets.marts.alert_rules import SEVERITY_RANK, AlertRules, load_rules
from assets.marts.alerts import HOUR_FORMAT, mart_dir, read_alerts
from rainbow.ops import OpsStore
from rainbow.settings import Lake

OPEN, ACKNOWLEDGED, CLOSED = "OPEN", "ACKNOWLEDGED", "CLOSED"
STATES = (OPEN, ACKNOWLEDGED, CLOSED)
# allowed transitions: state -> states it may move to
TRANSITIONS: dict[str, tuple[str, ...]] = {OPEN: (ACKNOWLEDGED, CLOSED), ACKNOWLEDGED: (CLOSED,), CLOSED: ()}
SYSTEM_USER = "system"

DDL = (
    """CREATE TABLE IF NOT EXISTS alert_state (
        alert_id TEXT PRIMARY KEY,
        state TEXT NOT NULL CHECK (state IN ('OPEN', 'ACKNOWLEDGED', 'CLOSED')),
        acknowledged_by TEXT, acknowledged_at TEXT, acknowledged_note TEXT,
        closed_by TEXT, closed_at TEXT, closed_note TEXT,
        updated_at TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS alert_transitions (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        alert_id TEXT NOT NULL,
        from_state TEXT NOT NULL,
        to_state TEXT NOT NULL,
        user TEXT NOT NULL,
        at TEXT NOT NULL,
        note TEXT NOT NULL DEFAULT ''
    )""",
    "CREATE INDEX IF NOT EXISTS alert_transitions_alert ON alert_transitions (alert_id, seq)",
)

STATE_SCHEMA: dict[str, pl.DataType] = {
    "alert_id": pl.String(),
    "state": pl.String(),
    "acknowledged_by": pl.String(),
    "acknowledged_at": pl.String(),
    "acknowledged_note": pl.String(),
    "closed_by": pl.String(),
    "closed_at": pl.String(),
    "closed_note": pl.String(),
    "updated_at": pl.String(),
}
TRANSITION_SCHEMA: dict[str, pl.DataType] = {
    "seq": pl.Int64(),
    "alert_id": pl.String(),
    "from_state": pl.String(),
    "to_state": pl.String(),
    "user": pl.String(),
    "at": pl.String(),
    "note": pl.String(),
}


class AlertLifecycleError(ValueError):
    """An acknowledgement or closure that cannot be recorded."""


class UnknownAlert(AlertLifecycleError):
    """No alert with this id in the mart."""


class InvalidTransition(AlertLifecycleError):
    """The alert's current state does not allow the requested one."""


def ensure_tables(lake: Lake) -> OpsStore:
    store = OpsStore(lake)
    store.ensure(*DDL)
    return store


def _known(lake: Lake, alert_id: str) -> bool:
    files = sorted(mart_dir(lake).glob("hour=*/data.parquet"))
    if not files:
        return False
    found = (
        pl.scan_parquet(files, hive_partitioning=False)
        .filter(pl.col("alert_id") == alert_id)
        .select(pl.len())
        .collect()
        .item()
    )
    return bool(found)


def _transition(lake: Lake, alert_id: str, to_state: str, user: str, note: str, at: datetime | None) -> None:
    if not user or not user.strip():
        raise AlertLifecycleError("a user is required to acknowledge or close an alert")
    if not _known(lake, alert_id):
        raise UnknownAlert(f"no alert {alert_id!r} in marts/safety_alerts")
    when = (at or datetime.now()).isoformat(timespec="seconds")
    store = ensure_tables(lake)
    # one IMMEDIATE transaction: read the state and write the change without a race
    with store.connect() as con:
        row = con.execute("SELECT state FROM alert_state WHERE alert_id = ?", (alert_id,)).fetchone()
        current = row[0] if row else OPEN
        if to_state not in TRANSITIONS[current]:
            allowed = "、".join(TRANSITIONS[current]) or "无（已关闭）"
            raise InvalidTransition(
                f"alert {alert_id} is {current}: it cannot become {to_state} "
                f"(告警当前状态{current}，不能变为{to_state}；允许：{allowed})"
            )
        prefix = "acknowledged" if to_state == ACKNOWLEDGED else "closed"
        con.execute(
            f"""INSERT INTO alert_state (alert_id, state, {prefix}_by, {prefix}_at, {prefix}_note, updated_at)
                VALUES (?, ?, ?, ?, ?, ?)
                ON CONFLICT (alert_id) DO UPDATE SET state = excluded.state,
                    {prefix}_by = excluded.{prefix}_by, {prefix}_at = excluded.{prefix}_at,
                    {prefix}_note = excluded.{prefix}_note, updated_at = excluded.updated_at""",
            (alert_id, to_state, user, when, note, when),
        )
        con.execute(
            "INSERT INTO alert_transitions (alert_id, from_state, to_state, user, at, note) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (alert_id, current, to_state, user, when, note),
        )


def acknowledge(lake: Lake, alert_id: str, user: str, note: str = "", at: datetime | None = None) -> None:
    """OPEN -> ACKNOWLEDGED (someone is on it). Raises :class:`InvalidTransition` otherwise."""
    _transition(lake, alert_id, ACKNOWLEDGED, user, note, at)


def close(lake: Lake, alert_id: str, user: str, note: str = "", at: datetime | None = None) -> None:
    """OPEN or ACKNOWLEDGED -> CLOSED (handled; the note says how). Raises on a closed alert."""
    _transition(lake, alert_id, CLOSED, user, note, at)


def alert_states(lake: Lake) -> pl.DataFrame:
    """Every alert someone has acknowledged or closed, with who/when/note."""
    store = ensure_tables(lake)
    return store.query(f"SELECT {', '.join(STATE_SCHEMA)} FROM alert_state", schema=STATE_SCHEMA)


def alert_history(lake: Lake, alert_id: str) -> pl.DataFrame:
    """The transitions of one alert, oldest first."""
    store = ensure_tables(lake)
    return store.query(
        f"SELECT {', '.join(TRANSITION_SCHEMA)} FROM alert_transitions WHERE alert_id = ? ORDER BY seq",
        (alert_id,),
        schema=TRANSITION_SCHEMA,
    )


def collapse(rows: pl.DataFrame) -> pl.DataFrame:
    """One row per alert from its hourly rows: first detection, whole episode, highest
    severity, the latest hour's evidence."""
    inverse = {v: k for k, v in SEVERITY_RANK.items()}
    return (
        rows.sort("hour")
        .group_by("alert_id")
        .agg(
            pl.col("alert_type").first(),
            pl.col("severity")
            .replace_strict(SEVERITY_RANK, return_dtype=pl.Int64)
            .max()
            .replace_strict(inverse, return_dtype=pl.String),
            pl.col("elder_pseudonym").last(),
            pl.col("street").last(),
            pl.col("device_kind").last(),
            pl.col("device_id").last(),
            pl.col("detected_at").min(),
            pl.col("episode_start").min(),
            pl.col("episode_end").max(),
            pl.col("hits").sum(),
            pl.col("evidence").last(),
            pl.col("hour").first().alias("first_hour"),
            pl.col("hour").last().alias("last_hour"),
            pl.len().cast(pl.Int64).alias("hours"),
            pl.col("rules_version").last(),
        )
        .sort("detected_at", "alert_id")
    )


def current_alerts(
    lake: Lake, rules: AlertRules | None = None, as_of: datetime | None = None
) -> pl.DataFrame:
    """Every alert of the mart with its lifecycle state (``state``, ``state_by``, ``state_at``,
    ``state_note``, ``auto_closed``), newest first.

    ``as_of`` (default: the end of the newest alert hour) drives auto-closing.
    """
    rules = rules or load_rules()
    alerts = collapse(read_alerts(lake))
    states = alert_states(lake)
    out = alerts.join(states, on="alert_id", how="left").with_columns(pl.col("state").fill_null(OPEN))
    if as_of is None and alerts.height:
        as_of = datetime.strptime(str(alerts["last_hour"].max()), HOUR_FORMAT) + timedelta(hours=1)
    auto = pl.lit(False)
    after = timedelta(hours=rules.auto_close_after_hours or 0)
    if rules.auto_close_after_hours is not None and as_of is not None:
        auto = (pl.col("state") != CLOSED) & (pl.col("episode_end") + after < as_of)
    out = out.with_columns(auto_closed=auto)
    human_by = (
        pl.when(pl.col("state") == CLOSED).then(pl.col("closed_by")).otherwise(pl.col("acknowledged_by"))
    )
    human_at = (
        pl.when(pl.col("state") == CLOSED).then(pl.col("closed_at")).otherwise(pl.col("acknowledged_at"))
    )
    human_note = (
        pl.when(pl.col("state") == CLOSED).then(pl.col("closed_note")).otherwise(pl.col("acknowledged_note"))
    )
    auto_note = f"事件结束超过{rules.auto_close_after_hours}小时，系统自动关闭"
    return out.with_columns(
        state=pl.when(pl.col("auto_closed")).then(pl.lit(CLOSED)).otherwise(pl.col("state")),
        state_by=pl.when(pl.col("auto_closed")).then(pl.lit(SYSTEM_USER)).otherwise(human_by),
        state_at=pl.when(pl.col("auto_closed"))
        .then((pl.col("episode_end") + after).dt.strftime("%Y-%m-%dT%H:%M:%S"))
        .otherwise(human_at),
        state_note=pl.when(pl.col("auto_closed")).then(pl.lit(auto_note)).otherwise(human_note),
    ).sort("detected_at", "alert_id", descending=[True, False])
