"""Which SQL a role connection runs: one read-only query over the role's own views.

DuckDB has no grants: any statement on a connection that can read a role view could
also name the base table behind it. So every statement is parsed with sqlglot and
refused unless it is a single query (SELECT / set operation, CTEs allowed) that

* reads only tables of the role's view schema (qualified ``role_view.x`` or bare ``x``,
  which the connection's search path resolves there) and its own CTEs;
* calls no table function (``read_parquet``, ``query``, ``glob``, ...), no function
  that reads settings or the catalogue, and none of the connection's internal
  (keyed) functions, which would let a guesser hash candidate values;
* (street staff) names no other street's code or name in a literal.

The statement that runs is sqlglot's re-rendering of the parsed tree, so DuckDB executes
exactly what was checked. The DuckDB sandbox of the connection (no file access outside
the role's zones, locked configuration) is the second line behind this one.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError

from masking.operators import INTERNAL_PREFIX

# Function names (lower case) a query may not call; prefixes end with "_" or are whole names.
DENIED_PREFIXES = (
    INTERNAL_PREFIX,
    "read_",
    "duckdb_",
    "pragma_",
    "parquet_",
    "iceberg_",
    "delta_",
    "sqlite_",
    "postgres_",
    "mysql_",
    "json_execute",
    "sniff_",
)
DENIED_FUNCTIONS = {
    "query",
    "query_table",
    "glob",
    "getenv",
    "getvariable",
    "current_setting",
    "which_secret",
    "load_extension",
    "read_blob",
    "read_text",
    "sql_auto_complete",
    "checkpoint",
    "force_checkpoint",
}


class AccessDenied(PermissionError):
    """A statement the role may not run."""


@dataclass(frozen=True)
class CheckedQuery:
    sql: str  # what runs (sqlglot's rendering of the parsed statement)
    views: tuple[str, ...]  # the role views it reads, sorted


def _function_name(f: exp.Func) -> str:
    if isinstance(f, exp.Anonymous):
        return str(f.name).lower()
    return f.sql_name().lower()


def check_query(
    sql: str,
    *,
    schema: str,
    views: Collection[str],
    other_streets: Mapping[str, str] | None = None,
) -> CheckedQuery:
    """The query to run and the views it reads, or :class:`AccessDenied`."""
    try:
        statements = [s for s in sqlglot.parse(sql, read="duckdb") if s is not None]
    except ParseError as exc:
        raise AccessDenied(f"not a query this connection understands: {exc}") from None
    if len(statements) != 1:
        raise AccessDenied(f"exactly one statement allowed, got {len(statements)}")
    tree = statements[0]
    if not isinstance(tree, exp.Query):
        raise AccessDenied(f"only SELECT queries are allowed, not {tree.key.upper()}")
    for node in tree.walk():
        if isinstance(node, exp.Command | exp.DDL | exp.DML):
            raise AccessDenied(f"only SELECT queries are allowed, found {node.key.upper()}")
    ctes = {c.alias_or_name for c in tree.find_all(exp.CTE)}
    read: set[str] = set()
    for t in tree.find_all(exp.Table):
        if not isinstance(t.this, exp.Identifier):
            raise AccessDenied(f"table functions are not allowed: {t.this.sql(dialect='duckdb')}")
        name, db, catalog = t.name, t.db, t.catalog
        if not db and not catalog and name in ctes:
            continue
        if catalog not in ("", "memory") or db not in ("", schema) or name not in views:
            shown = ".".join(p for p in (catalog, db, name) if p)
            raise AccessDenied(f"table {shown} is not one of this role's views ({schema}.*)")
        read.add(name)
    for f in tree.find_all(exp.Func):
        fname = _function_name(f)
        if fname in DENIED_FUNCTIONS or fname.startswith(DENIED_PREFIXES):
            raise AccessDenied(f"function {fname}() is not allowed")
        if isinstance(f.parent, exp.Lateral | exp.From | exp.Join) and not isinstance(f, exp.Unnest):
            raise AccessDenied(f"table functions are not allowed: {fname}()")
    if other_streets:
        for lit in tree.find_all(exp.Literal):
            if lit.is_string and lit.this.strip() in other_streets:
                raise AccessDenied(
                    f"street staff may only query their own street, not {other_streets[lit.this.strip()]}"
                )
    return CheckedQuery(tree.sql(dialect="duckdb"), tuple(sorted(read)))
