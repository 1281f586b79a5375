"""Role connections: the only way dashboards and the CLI read governed data.

:func:`open_role_connection` returns a :class:`RoleConnection` for one user in one role:

1. an in-memory DuckDB connection gets the warehouse's views in an in-memory catalogue
   ``rb_wh`` (from the DDL the build publishes: :mod:`rainbow.warehouse`), so it works while
   a build holds the warehouse's write lock;
2. the keyed functions the role's operators need are registered with the keys in a
   Python closure (``keyed_hash``: ``$RAINBOW_HASH_KEY``; ``pseudonym``: the marts'
   ``$RAINBOW_PSEUDONYM_KEY``), and the Parquet keys of encrypted zones are added;
3. the role's views are created in the in-memory schema ``role_view`` (nothing is
   written to the warehouse; the view SQL holds no secret, only function names);
4. the connection is sandboxed: file access only under the role's zone directories,
   no extension loading, and the configuration locked so SQL cannot undo it.

Queries go through :meth:`RoleConnection.query`: checked by :mod:`masking.sql_guard`
(only the role's views, no table functions, no internal functions), run, and written
to the audit log with the user, role, views read and row count - refusals included.
The raw DuckDB connection stays private: code that bypasses ``query`` bypasses the audit.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from types import TracebackType
from typing import Any

import duckdb
import polars as pl
import pyarrow as pa

from masking.audit import AuditEvent, AuditLog, Outcome
from masking.encryption import is_encrypted_table, register_encrypted_table
from masking.operators import INTERNAL_PREFIX, KEYED_HASH_FUNCTION, PSEUDONYM_FUNCTION, literal, quote
from masking.policy import Policy, load_policy
from masking.pseudonym import register_pseudonym_function
from masking.role_views import BaseColumns, ViewPlan, normalise_street, plan_role_views
from masking.secrets import ENCRYPTION_KEY, HASH_KEY, PSEUDONYM_KEY, load_secret, require_secret
from masking.sql_guard import AccessDenied, check_query
from rainbow.settings import Lake
from rainbow.warehouse import load_views, views_path
from schemas import load_registry
from schemas.registry import Registry

log = logging.getLogger(__name__)

WAREHOUSE_ALIAS = "rb_wh"
ENCRYPTED_PREFIX = f"{INTERNAL_PREFIX}enc_"
_NO_EXTENSIONS = {
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "allow_community_extensions": False,
}

__all__ = ["AccessDenied", "RoleConnection", "audited_query", "open_role_connection"]


def _base_columns(con: duckdb.DuckDBPyConnection, plans_zones: set[str]) -> BaseColumns:
    rows = con.execute(
        "SELECT schema_name, table_name, column_name, data_type FROM duckdb_columns() "
        "WHERE database_name = ? ORDER BY schema_name, table_name, column_index",
        [WAREHOUSE_ALIAS],
    ).fetchall()
    out: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for schema, table, column, dtype in rows:
        if schema in plans_zones:
            out.setdefault((schema, table), []).append((column, dtype))
    return out


def _role_zones(plans: list[ViewPlan]) -> set[str]:
    return {s.split(".", 1)[0] for p in plans for s in p.sources}


def _register_encrypted(
    con: duckdb.DuckDBPyConnection,
    lake: Lake,
    plans: list[ViewPlan],
    base: dict[tuple[str, str], list[tuple[str, str]] | None],
) -> dict[tuple[str, str], str]:
    """Register every encrypted table the views read that the warehouse has no view for (a
    lake whose build has not published its views yet) as an Arrow dataset (key from the
    environment); returns (zone, table) -> registered name and updates ``base``. Tables with
    a warehouse view read it: :func:`rainbow.warehouse.load_views` registered its source."""
    sources = sorted({tuple(s.split(".", 1)) for p in plans for s in p.sources})
    encrypted = [(z, t) for z, t in sources if (z, t) not in base and is_encrypted_table(lake, z, t)]
    if not encrypted:
        return {}
    master = load_secret(lake, ENCRYPTION_KEY, create=False)
    if master is None:
        raise PermissionError(
            f"{ENCRYPTION_KEY.env} is not set: cannot read the encrypted tables {encrypted}"
        )
    refs: dict[tuple[str, str], str] = {}
    for zone, table in encrypted:
        name = f"{ENCRYPTED_PREFIX}{zone}__{table}"
        try:
            register_encrypted_table(con, name, lake, zone, table, master)
        except (OSError, pa.ArrowException) as exc:
            raise PermissionError(
                f"cannot decrypt {zone}.{table} with the key from {ENCRYPTION_KEY.env} (was it rotated?)"
            ) from exc
        described = con.execute(f"DESCRIBE {quote(name)}").fetchall()
        base[(zone, table)] = [(str(r[0]), str(r[1])) for r in described]
        refs[(zone, table)] = name
    return refs


class RoleConnection:
    """One user's sandboxed, audited connection to the role views (see module docstring)."""

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        lake: Lake,
        *,
        role: str,
        user: str,
        street: str | None,
        k: int,
        schema: str,
        plans: list[ViewPlan],
        other_streets: dict[str, str],
    ) -> None:
        self._con = con
        self.lake = lake
        self.role = role
        self.user = user
        self.street = street
        self.k = k
        self.schema = schema
        self._plans = {p.name: p for p in plans}
        self._other_streets = other_streets
        self._audit = AuditLog(lake)

    # -- what the role sees ----------------------------------------------------------
    def tables(self) -> list[str]:
        """The role's views (row-level tables first, then aggregates)."""
        return list(self._plans)

    def plan(self, view: str) -> ViewPlan:
        return self._plans[view]

    def columns(self, view: str) -> list[tuple[str, str]]:
        """(name, DuckDB type) of a view's columns."""
        if view not in self._plans:
            raise AccessDenied(f"{view} is not one of this role's views")
        rows = self._con.execute(
            "SELECT column_name, data_type FROM duckdb_columns() "
            "WHERE database_name = 'memory' AND schema_name = ? AND table_name = ? ORDER BY column_index",
            [self.schema, view],
        ).fetchall()
        return [(str(n), str(t)) for n, t in rows]

    # -- queries ---------------------------------------------------------------------
    def query(self, sql: str, params: Sequence[Any] | None = None) -> pl.DataFrame:
        """Run one checked SELECT over the role's views and audit it; AccessDenied if refused."""
        try:
            checked = check_query(
                sql, schema=self.schema, views=self._plans, other_streets=self._other_streets
            )
        except AccessDenied as exc:
            self._log(sql, (), None, "refused", str(exc))
            raise
        try:
            frame = self._con.sql(checked.sql, params=list(params) if params is not None else None).pl()
        except duckdb.Error as exc:
            self._log(checked.sql, checked.views, None, "error", f"{type(exc).__name__}: {exc}")
            raise
        self._log(checked.sql, checked.views, frame.height, "ok", None)
        return frame

    def _log(
        self, sql: str, views: Sequence[str], rows: int | None, outcome: Outcome, detail: str | None
    ) -> None:
        sources = [s for v in views for s in self._plans[v].sources]
        self._audit.record(
            AuditEvent(
                user_id=self.user,
                role=self.role,
                street=self.street,
                action="query",
                datasets=tuple(views),
                sources=tuple(sources),
                row_count=rows,
                outcome=outcome,
                detail=detail,
                statement=sql,
            )
        )

    # -- lifetime --------------------------------------------------------------------
    def close(self) -> None:
        self._con.close()

    def __enter__(self) -> RoleConnection:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def audited_query(con: RoleConnection, sql: str, params: Sequence[Any] | None = None) -> pl.DataFrame:
    """``con.query(sql, params)``: the checked, audited way to read role data."""
    return con.query(sql, params)


def open_role_connection(
    lake: Lake,
    role: str,
    user: str,
    street: str | None = None,
    k: int | None = None,
    *,
    policy: Policy | None = None,
    registry: Registry | None = None,
) -> RoleConnection:
    """A sandboxed connection exposing exactly ``role``'s views in ``role_view.*``.

    ``street`` (code, Chinese name or alias) is required for street staff; ``k`` overrides
    the policy's small-cell threshold for aggregate views.
    """
    if not user or not user.strip():
        raise ValueError("a role connection needs the user's id (for the audit log)")
    policy = policy or load_policy()
    registry = registry or load_registry()
    rp = policy.role(role)
    k = policy.settings.k if k is None else k
    code: str | None = None
    other_streets: dict[str, str] = {}
    if rp.row_filter is not None:
        if not street:
            raise ValueError(f"role {role} needs the user's street")
        code = normalise_street(registry, street)
        streets = registry.codelist("street")
        names = {v.code: v.zh for v in streets.values}
        other_streets = {s: names[c] for s, c in streets.lookup().items() if c != code}

    con = duckdb.connect(":memory:", config=dict(_NO_EXTENSIONS))
    try:
        schema = policy.settings.view_schema
        contract_plans = plan_role_views(policy, registry, role, street=code, k=k)
        zones = _role_zones(contract_plans)
        # The warehouse file is locked while a build writes it: its views are rebuilt from the
        # published DDL (rainbow.warehouse) in an in-memory catalogue over the same Parquet files.
        attached = bool(zones) and views_path(lake).exists()
        if attached:
            con.execute(f"ATTACH ':memory:' AS {WAREHOUSE_ALIAS}")
            con.execute(f"USE {WAREHOUSE_ALIAS}")
            try:
                load_views(con, lake)  # registers the decrypting sources of the restricted zones
            except (OSError, pa.ArrowException) as exc:
                raise PermissionError(
                    f"cannot decrypt the warehouse's tables with the key from {ENCRYPTION_KEY.env} "
                    "(is it set? was it rotated?)"
                ) from exc
            con.execute("USE memory")
        base = dict(_base_columns(con, zones)) if attached else {}
        refs = _register_encrypted(con, lake, contract_plans, base)
        plans = plan_role_views(
            policy, registry, role, street=code, k=k, catalog=WAREHOUSE_ALIAS, base=base, refs=refs
        )
        functions = set().union(*(p.functions for p in plans)) if plans else set()
        if "keyed_hash" in functions:
            register_pseudonym_function(
                con, require_secret(lake, HASH_KEY), policy.settings.hash_purpose, KEYED_HASH_FUNCTION
            )
        if "pseudonym" in functions:
            register_pseudonym_function(
                con,
                require_secret(lake, PSEUDONYM_KEY),
                policy.settings.pseudonym_purpose,
                PSEUDONYM_FUNCTION,
            )
        con.execute(f"CREATE SCHEMA {quote(schema)}")
        for p in plans:
            con.execute(f"CREATE VIEW {quote(schema)}.{quote(p.name)} AS {p.sql}")
        con.execute(f"SET search_path = 'memory.{schema}'")
        dirs = ", ".join(literal(str(lake.root / z) + "/") for z in sorted(zones))
        con.execute(f"SET allowed_directories = [{dirs}]")
        con.execute("SET allowed_paths = []")
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
    except BaseException:
        con.close()
        raise
    return RoleConnection(
        con,
        lake,
        role=role,
        user=user.strip(),
        street=code,
        k=k,
        schema=schema,
        plans=plans,
        other_streets=other_streets,
    )
