"""The dashboards' one door to governed data: every page query runs as the logged-in user.

A page never opens DuckDB itself. It asks :func:`open_db` for a :class:`Db` bound to the
session (user, role, street) and runs SQL over the role's views (``role_view.<table>``)
with :meth:`Db.query`. Each query goes through a *role connection*
(:func:`masking.access.open_role_connection`): the role's policy decides which views
exist, which columns are masked and - for street staff - which rows (their own street)
are there at all; the connection checks the SQL and writes one audit row per query
(also for refused ones). Filtering happens in those views, not in the pages: hiding a
widget is never what keeps a street worker from another street's elders.

Files that are not tables (the catalogue's JSON, the quality history, export manifests)
are read with :meth:`Db.audit_read` recorded in the same audit log.

A page run opens one role connection (on its first query) and the app closes it when
the run ends (:func:`close_run_dbs`), so the dashboards hold nothing open between two
clicks. :data:`CONNECTOR` is the one switch to another connection factory.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import duckdb
import polars as pl

from dashboards.auth import ROLES, User, street_names
from rainbow.settings import Lake


class RoleConnection(Protocol):
    """What the dashboards need of a role connection (``masking.access.RoleConnection``)."""

    def tables(self) -> list[str]: ...

    def columns(self, view: str) -> list[tuple[str, str]]: ...

    def query(self, sql: str, params: Sequence[Any] | None = None) -> pl.DataFrame: ...

    def close(self) -> None: ...


Connector = Callable[[Lake, "Session"], RoleConnection]


class DataUnavailable(RuntimeError):
    """The lake cannot be read right now (not built yet, or busy); the message is Chinese."""


@dataclass(frozen=True)
class Session:
    """The logged-in user as the data layer sees it."""

    username: str
    display_name: str
    role: str
    street: str | None = None
    recipient: str | None = None

    @classmethod
    def from_user(cls, user: User) -> Session:
        return cls(user.username, user.display_name, user.role, user.street, user.recipient)

    @property
    def role_zh(self) -> str:
        return ROLES.get(self.role, self.role)

    @property
    def street_zh(self) -> str | None:
        return street_names().get(self.street, self.street) if self.street else None


def masking_connector(lake: Lake, session: Session) -> RoleConnection:
    """The policy's role connection for ``session`` (masking.access)."""
    from masking.access import open_role_connection

    return open_role_connection(lake, session.role, session.username, street=session.street)


CONNECTOR: list[Connector] = [masking_connector]  # the switch: replace element 0


def set_connector(connector: Connector) -> Connector:
    """Use ``connector`` for every later query; returns the previous one."""
    previous = CONNECTOR[0]
    CONNECTOR[0] = connector
    return previous


def _unavailable(exc: BaseException) -> DataUnavailable:
    text = str(exc)
    if "lock" in text.lower():
        return DataUnavailable("数据仓库正在被夜间流水线写入，暂时无法读取。请稍后刷新页面。")
    return DataUnavailable(f"数据暂时无法读取：{text.splitlines()[0] if text else type(exc).__name__}")


class Db:
    """One session's governed access to the lake (see the module docstring).

    The role connection is opened on the first query and kept for the rest of the page
    run; :meth:`close` (or the end of a ``with`` block) closes it. Pages get theirs from
    :func:`open_db`, and the app closes every connection its run opened.
    """

    def __init__(self, lake: Lake, session: Session, connector: Connector | None = None) -> None:
        self.lake = lake
        self.session = session
        self._connector = connector
        self._con: RoleConnection | None = None

    def _connection(self) -> RoleConnection:
        if self._con is None:
            connector = self._connector or CONNECTOR[0]
            try:
                self._con = connector(self.lake, self.session)
            except (duckdb.Error, OSError) as exc:
                raise _unavailable(exc) from exc
        return self._con

    def close(self) -> None:
        if self._con is not None:
            con, self._con = self._con, None
            con.close()

    def __enter__(self) -> Db:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def views(self) -> frozenset[str]:
        """The role's views (names without the ``role_view.`` schema)."""
        return frozenset(self._connection().tables())

    def columns(self, view: str) -> list[str]:
        """The column names of one of the role's views (as masked and renamed for the role)."""
        return [name for name, _ in self._connection().columns(view)]

    def has(self, *views: str) -> bool:
        available = self.views()
        return all(v in available for v in views)

    def query(self, sql: str, params: Sequence[Any] | None = None) -> pl.DataFrame:
        """One audited SELECT over the role's views. Raises ``AccessDenied`` (a PermissionError)
        when the policy refuses it and :class:`DataUnavailable` when the lake cannot be read."""
        con = self._connection()
        try:
            return con.query(sql, params)
        except duckdb.IOException as exc:
            raise _unavailable(exc) from exc

    def audit_read(self, dataset: str, rows: int | None, detail: str | None = None) -> None:
        """Record a read of a non-table resource (``file:marts/catalog/catalog.json``, ...)."""
        from masking.audit import AuditEvent, AuditLog

        AuditLog(self.lake).record(
            AuditEvent(
                user_id=self.session.username,
                role=self.session.role,
                street=self.session.street,
                action="query",
                datasets=(dataset,),
                sources=(dataset,),
                row_count=rows,
                detail=detail,
                statement=None,
            )
        )


_RUN = threading.local()


def open_db(lake: Lake, session: Session) -> Db:
    """A :class:`Db` for this script run, closed by :func:`close_run_dbs` when the run ends."""
    db = Db(lake, session)
    if not hasattr(_RUN, "dbs"):
        _RUN.dbs = []
    _RUN.dbs.append(db)
    return db


def close_run_dbs() -> None:
    """Close every connection :func:`open_db` gave out in this thread (the app calls it
    after each page run, also when the page stopped or asked for a rerun)."""
    dbs: list[Db] = getattr(_RUN, "dbs", [])
    while dbs:
        with contextlib.suppress(Exception):
            dbs.pop().close()


def audit_login(lake: Lake, username: str, role: str, ok: bool, street: str | None = None) -> None:
    """A login attempt in the audit log (``login`` dataset; refused when the password was wrong)."""
    from masking.audit import AuditEvent, AuditLog

    AuditLog(lake).record(
        AuditEvent(
            user_id=username or "(empty)",
            role=role or "unknown",
            street=street,
            action="query",
            datasets=("dashboard:login",),
            row_count=None,
            outcome="ok" if ok else "refused",
            detail="登录成功" if ok else "用户名或密码错误",
        )
    )
