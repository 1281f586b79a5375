"""The audit log (审计日志): every query through a role view and every export, in the ops store.

One row per event: when (UTC, ISO 8601), who (user id, role, their street), what
(``query`` or ``export``), which datasets (the role views read, and the base tables
behind them), how many rows were returned or exported, and the outcome (``ok``,
``refused`` with the reason, ``error``). Refused queries are logged too: an attempt to
reach a base table or another street is exactly what an auditor looks for.

The log lives in the operational store (SQLite WAL, :class:`rainbow.ops.OpsStore`), so
dashboards write it while a build runs; the pipeline never rewrites it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import polars as pl

from rainbow.ops import OpsStore
from rainbow.settings import Lake

AUDIT_TABLE = "audit_log"
MAX_STATEMENT_CHARS = 4000
Action = Literal["query", "export"]
Outcome = Literal["ok", "refused", "error"]

DDL = (
    f"""CREATE TABLE IF NOT EXISTS {AUDIT_TABLE} (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at TEXT NOT NULL,
        user_id TEXT NOT NULL,
        role TEXT NOT NULL,
        street TEXT,
        action TEXT NOT NULL CHECK (action IN ('query', 'export')),
        datasets TEXT NOT NULL,
        sources TEXT NOT NULL,
        row_count INTEGER,
        outcome TEXT NOT NULL CHECK (outcome IN ('ok', 'refused', 'error')),
        detail TEXT,
        statement TEXT
    )""",
    f"CREATE INDEX IF NOT EXISTS {AUDIT_TABLE}_at ON {AUDIT_TABLE} (at)",
    f"CREATE INDEX IF NOT EXISTS {AUDIT_TABLE}_user ON {AUDIT_TABLE} (user_id, at)",
)

SCHEMA: dict[str, Any] = {
    "id": pl.Int64,
    "at": pl.String,
    "user_id": pl.String,
    "role": pl.String,
    "street": pl.String,
    "action": pl.String,
    "datasets": pl.String,
    "sources": pl.String,
    "row_count": pl.Int64,
    "outcome": pl.String,
    "detail": pl.String,
    "statement": pl.String,
}


@dataclass(frozen=True)
class AuditEvent:
    user_id: str
    role: str
    action: Action
    datasets: tuple[str, ...]
    row_count: int | None
    outcome: Outcome = "ok"
    street: str | None = None
    sources: tuple[str, ...] = ()
    detail: str | None = None
    statement: str | None = None
    at: datetime = field(default_factory=lambda: datetime.now(UTC))


def _joined(values: Iterable[str]) -> str:
    return ",".join(sorted(set(values)))


class AuditLog:
    """Writes and reads ``audit_log`` in the lake's ops store (table created on first use)."""

    def __init__(self, lake: Lake) -> None:
        self.store = OpsStore(lake)
        self._ready = False

    def _ensure(self) -> None:
        if not self._ready:
            self.store.ensure(*DDL)
            self._ready = True

    def record(self, event: AuditEvent) -> None:
        if not event.user_id:
            raise ValueError("an audit event needs a user")
        self._ensure()
        statement = event.statement[:MAX_STATEMENT_CHARS] if event.statement else None
        self.store.execute(
            f"INSERT INTO {AUDIT_TABLE} (at, user_id, role, street, action, datasets, sources, row_count, "
            "outcome, detail, statement) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                event.at.astimezone(UTC).isoformat(timespec="milliseconds"),
                event.user_id,
                event.role,
                event.street,
                event.action,
                _joined(event.datasets),
                _joined(event.sources),
                event.row_count,
                event.outcome,
                event.detail,
                statement,
            ),
        )

    def read(self, user_id: str | None = None) -> pl.DataFrame:
        """The log (oldest first), optionally of one user."""
        self._ensure()
        where, params = ("WHERE user_id = ?", (user_id,)) if user_id else ("", ())
        return self.store.query(f"SELECT * FROM {AUDIT_TABLE} {where} ORDER BY id", params, schema=SCHEMA)


def record_export(
    lake: Lake,
    *,
    user_id: str,
    role: str,
    dataset: str,
    row_count: int,
    recipient: str | None = None,
    package: str | None = None,
    outcome: Outcome = "ok",
    detail: str | None = None,
) -> None:
    """Log one export: call it once per dataset written into a recipient's package."""
    AuditLog(lake).record(
        AuditEvent(
            user_id=user_id,
            role=role,
            action="export",
            datasets=(dataset,),
            sources=(dataset,),
            row_count=row_count,
            outcome=outcome,
            detail=detail if detail is not None else (f"recipient={recipient}" if recipient else None),
            statement=package,
        )
    )
