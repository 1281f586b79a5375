"""Column-level lineage of the SQL that builds library and mart tables (and KPI formulas).

Two layers:

* :func:`query_lineage` reads one ``SELECT`` (DuckDB dialect) with sqlglot and a
  schema from the contracts and says, for every output column, which
  ``(zone.table, column)`` it *reads* - through CTEs, derived tables, scalar and
  correlated subqueries, joins, set operations, window functions, aggregates,
  DuckDB lambdas and ``*`` expansion - and which columns decide *which rows*
  there are (``WHERE``, ``JOIN ... ON``/``USING``, ``GROUP BY``, ``HAVING``,
  ``QUALIFY``, ``DISTINCT ON``, ``ORDER BY`` under ``LIMIT``, semi-join
  subqueries), kept apart as the query's *conditions*.
* :class:`LineageGraph` joins the per-table lineages (SQL files discovered at run
  time, the declared mapping of Python-built tables in ``python_lineage.yaml``,
  the staging step raw -> staged, KPI formulas) and answers transitively:
  :meth:`LineageGraph.trace` ("where does this KPI come from": the origin
  columns, staged by default) and :meth:`LineageGraph.impact` ("where does the
  ID number flow": every column downstream).

Edges come in three kinds: ``value`` (the column's value is computed from the
other column), ``key`` (a key computed by identity resolution from the
attributes it matched on - elder_key from names, IDs, phones...) and
``condition`` (a column that filters, joins or groups the rows). Tracing
follows ``value`` edges unless asked for more, so a KPI's origin is what its
number is made of; ``conditions=True`` adds what decided which rows count.

Nothing here touches the lake: the engine is pure (SQL text + schema in,
column sets out) and tested with fixture SQL.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError
from sqlglot.optimizer.qualify import qualify
from sqlglot.optimizer.scope import Scope, build_scope

DIALECT = "duckdb"
EdgeKind = Literal["value", "key", "condition"]
EDGE_KINDS: tuple[EdgeKind, ...] = ("value", "key", "condition")
# Zones in the order data flows through them; ``kpi`` holds KPI formulas, ``ops`` the operational store.
ZONE_ORDER = ("landing", "raw", "staged", "library", "marts", "kpi")
# {zone: {table: {column: SQL type}}}
SchemaDict = Mapping[str, Mapping[str, Mapping[str, str]]]


@dataclass(frozen=True, order=True)
class ColumnRef:
    """One column of one table of one zone, e.g. ``staged.muni_elders.id_number``."""

    zone: str
    table: str
    column: str

    @property
    def qualified_table(self) -> str:
        return f"{self.zone}.{self.table}"

    def __str__(self) -> str:
        return f"{self.zone}.{self.table}.{self.column}"

    @classmethod
    def parse(cls, text: str) -> ColumnRef:
        parts = text.split(".")
        if len(parts) != 3 or not all(parts):
            raise ValueError(f"not a zone.table.column reference: {text!r}")
        return cls(*parts)


class LineageError(ValueError):
    """A statement could not be read at all (not a SELECT, does not parse)."""


@dataclass(frozen=True)
class QueryLineage:
    """What one SELECT reads: per output column, and for the rows as a whole."""

    columns: dict[str, frozenset[ColumnRef]]  # output column -> columns its value is computed from
    conditions: frozenset[ColumnRef]  # columns deciding which rows exist (filters, joins, grouping)
    tables: frozenset[str]  # zone.table of every table read
    unresolved: tuple[str, ...] = ()  # column references that could not be attributed to a table

    @property
    def output_columns(self) -> list[str]:
        return list(self.columns)

    def reads(self) -> frozenset[ColumnRef]:
        """Every column the statement reads, for values or conditions."""
        out: set[ColumnRef] = set(self.conditions)
        for refs in self.columns.values():
            out |= refs
        return frozenset(out)


# ------------------------------------------------------------------ one statement


def parse_select(sql: str, dialect: str = DIALECT) -> exp.Expr:
    """The single query of ``sql`` (a ``CREATE ... AS SELECT`` yields its SELECT)."""
    try:
        statements = [s for s in sqlglot.parse(sql, read=dialect) if s is not None]
    except SqlglotError as exc:
        raise LineageError(f"SQL does not parse: {exc}") from exc
    if len(statements) != 1:
        raise LineageError(f"expected one statement, found {len(statements)}")
    statement = statements[0]
    if isinstance(statement, exp.Create) and isinstance(statement.expression, exp.Query):
        statement = statement.expression
    if not isinstance(statement, exp.Query):
        raise LineageError(f"expected a SELECT, found {statement.key.upper()}")
    return statement


def query_lineage(
    sql: str | exp.Expr,
    schema: SchemaDict,
    dialect: str = DIALECT,
    default_zone: Mapping[str, str] | None = None,
    pivots: Mapping[str, tuple[str, str]] | None = None,
) -> QueryLineage:
    """Column lineage of one SELECT over tables named ``zone.table``.

    ``schema`` gives every table's columns (``{zone: {table: {column: type}}}``)
    so ``*`` expands and unqualified columns resolve. ``default_zone`` maps a
    bare table name (``FROM dim_elder``) to its zone. ``pivots`` names key-value
    tables (``zone.table`` -> (key column, value column)): a read of the value
    column pinned to literal keys resolves to ``value[key]``.
    """
    expression = parse_select(sql, dialect) if isinstance(sql, str) else sql.copy()
    if default_zone:
        # a CTE may share a table's name (``WITH screenings AS (...)``): its references stay bare
        ctes = {cte.alias_or_name for cte in expression.find_all(exp.CTE)}
        for table in expression.find_all(exp.Table):
            if not table.args.get("db") and table.name in default_zone and table.name not in ctes:
                table.set("db", exp.to_identifier(default_zone[table.name]))
    try:
        qualified = qualify(
            expression,
            schema={z: {t: dict(c) for t, c in tables.items()} for z, tables in schema.items()},
            dialect=dialect,
            validate_qualify_columns=False,
            identify=False,
            quote_identifiers=False,
            allow_partial_qualification=True,  # an unknown column is reported, not fatal
        )
        root = build_scope(qualified)
    except SqlglotError as exc:
        raise LineageError(f"cannot qualify the statement: {exc}") from exc
    if root is None:
        raise LineageError("not a query")
    lineage = _Resolver(schema, pivots).lineage(root)
    # tables read: also those whose columns could not be expanded (not in the schema)
    read = {f"{t.db}.{t.name}" for t in qualified.find_all(exp.Table) if t.db and t.name}
    return QueryLineage(
        columns=lineage.columns,
        conditions=lineage.conditions,
        tables=lineage.tables | read,
        unresolved=lineage.unresolved,
    )


class _Resolver:
    """Resolves column references scope by scope down to base tables (memoised per scope)."""

    def __init__(self, schema: SchemaDict, pivots: Mapping[str, tuple[str, str]] | None = None) -> None:
        self.schema = schema
        self.pivots = pivots or {}
        self.unresolved: list[str] = []
        self.tables: set[str] = set()
        self._outputs: dict[int, list[tuple[str, frozenset[ColumnRef]]]] = {}
        self._conditions: dict[int, frozenset[ColumnRef]] = {}
        self._in_progress: set[int] = set()

    def lineage(self, root: Scope) -> QueryLineage:
        outputs = self.outputs(root)
        conditions = self.conditions(root)
        columns: dict[str, frozenset[ColumnRef]] = {}
        for name, refs in outputs:
            columns[name] = columns.get(name, frozenset()) | refs
        return QueryLineage(
            columns=columns,
            conditions=conditions,
            tables=frozenset(self.tables),
            unresolved=tuple(dict.fromkeys(self.unresolved)),
        )

    # -- outputs

    def outputs(self, scope: Scope) -> list[tuple[str, frozenset[ColumnRef]]]:
        """(name, value refs) of each output column of ``scope``, in order."""
        key = id(scope)
        if key in self._outputs:
            return self._outputs[key]
        if key in self._in_progress:  # recursive CTE: its own rows add no new origin
            return []
        self._in_progress.add(key)
        try:
            result = self._compute_outputs(scope)
        finally:
            self._in_progress.discard(key)
        self._outputs[key] = result
        return result

    def _compute_outputs(self, scope: Scope) -> list[tuple[str, frozenset[ColumnRef]]]:
        expression = scope.expression
        if isinstance(expression, exp.SetOperation):
            return self._set_operation_outputs(scope, expression)
        if isinstance(expression, exp.Select):
            return [(sel.alias_or_name, self.refs(scope, _unalias(sel))) for sel in expression.selects]
        # UDTF (UNNEST(...), read_parquet(...), ...): every output reads everything it is built from
        refs = self.refs(scope, expression)
        names = _udtf_columns(expression)
        return [(n, refs) for n in names] or [("*", refs)]

    def _set_operation_outputs(
        self, scope: Scope, expression: exp.SetOperation
    ) -> list[tuple[str, frozenset[ColumnRef]]]:
        branches = scope.set_operation_scopes or [
            s for s in (self._scope_of(scope, expression.left), self._scope_of(scope, expression.right)) if s
        ]
        outs = [self.outputs(b) for b in branches]
        if not outs:
            return []
        by_name = bool(expression.args.get("by_name"))
        if by_name:
            merged: dict[str, frozenset[ColumnRef]] = {}
            for out in outs:
                for name, refs in out:
                    merged[name] = merged.get(name, frozenset()) | refs
            return list(merged.items())
        first = outs[0]
        result = []
        for i, (name, refs) in enumerate(first):
            for other in outs[1:]:
                if i < len(other):
                    refs = refs | other[i][1]
            result.append((name, refs))
        return result

    def _scope_of(self, scope: Scope, node: exp.Expr) -> Scope | None:
        for child in scope.traverse():
            if child.expression is node:
                return child
        return None

    def output(self, scope: Scope, name: str) -> frozenset[ColumnRef] | None:
        for out_name, refs in self.outputs(scope):
            if out_name == name:
                return refs
        expression = scope.expression
        if isinstance(expression, exp.Select) and expression.is_star:
            # an unexpanded star (table not in the schema): pass the name through to the sources
            found: set[ColumnRef] = set()
            for _, source in scope.selected_sources.values():
                hit = self._from_source(source, name)
                if hit:
                    found |= hit
            return frozenset(found) if found else None
        return None

    # -- conditions

    def conditions(self, scope: Scope) -> frozenset[ColumnRef]:
        key = id(scope)
        if key in self._conditions:
            return self._conditions[key]
        self._conditions[key] = frozenset()  # recursion guard
        expression = scope.expression
        found: set[ColumnRef] = set()
        if isinstance(expression, exp.SetOperation):
            for branch in scope.set_operation_scopes:
                found |= self.conditions(branch)
        elif isinstance(expression, exp.Select):
            for arg in ("where", "group", "having", "qualify"):
                node = expression.args.get(arg)
                if node is not None:
                    found |= self.refs(scope, node)
            for join in expression.args.get("joins") or []:
                on = join.args.get("on")
                if on is not None:
                    found |= self.refs(scope, on)
                for ident in join.args.get("using") or []:
                    found |= self._using(scope, ident.name)
            distinct = expression.args.get("distinct")
            if isinstance(distinct, exp.Distinct) and distinct.args.get("on") is not None:
                found |= self.refs(scope, distinct.args["on"])
            order = expression.args.get("order")
            if order is not None and expression.args.get("limit") is not None:
                found |= self.refs(scope, order)
            for _, source in scope.selected_sources.values():
                if isinstance(source, Scope):
                    found |= self.conditions(source)
        result = frozenset(found)
        self._conditions[key] = result
        return result

    def _using(self, scope: Scope, name: str) -> set[ColumnRef]:
        out: set[ColumnRef] = set()
        for _, source in scope.selected_sources.values():
            out |= self._from_source(source, name) or set()
        return out

    # -- expressions

    def refs(self, scope: Scope, node: exp.Expr) -> frozenset[ColumnRef]:
        """Every base-table column ``node`` reads in ``scope`` (nested queries: all they read)."""
        found: set[ColumnRef] = set()
        stack: list[tuple[exp.Expr, frozenset[str]]] = [(node, frozenset())]
        while stack:
            current, lambda_vars = stack.pop()
            if current is not node and isinstance(current, exp.Query):
                child = self._child_scope(scope, current)
                if child is not None:
                    found |= self._everything(child)
                continue
            if isinstance(current, exp.Lambda):
                params = frozenset(e.name for e in current.expressions)
                stack.append((current.this, lambda_vars | params))
                continue
            if isinstance(current, exp.Column):
                if not current.table and current.name in lambda_vars:
                    continue
                found |= self.column(scope, current)
                continue
            for child_node in current.iter_expressions():
                stack.append((child_node, lambda_vars))
        # a key-value read pinned to its keys: the key column only selected the value
        for qualified, (key, value) in self.pivots.items():
            if any(r.qualified_table == qualified and r.column.startswith(f"{value}[") for r in found):
                zone, _, table = qualified.partition(".")
                found.discard(ColumnRef(zone, table, key))
        return frozenset(found)

    def _everything(self, scope: Scope) -> frozenset[ColumnRef]:
        out: set[ColumnRef] = set(self.conditions(scope))
        for _, refs in self.outputs(scope):
            out |= refs
        return frozenset(out)

    def _child_scope(self, scope: Scope, query: exp.Expr) -> Scope | None:
        while isinstance(query, exp.Subquery):
            query = query.this
        for child in (*scope.subquery_scopes, *scope.derived_table_scopes, *scope.udtf_scopes):
            if child.expression is query:
                return child
        return self._scope_of(scope, query)

    def column(self, scope: Scope, column: exp.Column) -> frozenset[ColumnRef]:
        name = column.name
        table = column.table
        if not table:
            return self._unqualified(scope, column)
        current: Scope | None = scope
        while current is not None:
            source = current.sources.get(table)
            if source is not None:
                found = self._from_source(source, name)
                if found is None:
                    self.unresolved.append(f"{table}.{name}")
                    return frozenset()
                if isinstance(source, exp.Table):
                    pivot = self.pivots.get(f"{source.db}.{source.name}")
                    if pivot is not None and name == pivot[1]:
                        keys = _pivot_keys(scope, column, pivot[0])
                        if keys:
                            return frozenset(ColumnRef(source.db, source.name, f"{name}[{k}]") for k in keys)
                return found
            current = current.parent
        self.unresolved.append(f"{table}.{name}")
        return frozenset()

    def _unqualified(self, scope: Scope, column: exp.Column) -> frozenset[ColumnRef]:
        name = column.name
        expression = scope.expression
        # an output alias used in DISTINCT ON / ORDER BY / GROUP BY of the same SELECT
        if isinstance(expression, exp.Select):
            for sel in expression.selects:
                if sel.alias_or_name == name and not any(n is column for n in sel.walk()):
                    return self.refs(scope, _unalias(sel))
        self.unresolved.append(name)
        return frozenset()

    def _from_source(self, source: exp.Table | Scope, name: str) -> frozenset[ColumnRef] | None:
        if isinstance(source, Scope):
            return self.output(source, name)
        zone = source.db
        table = source.name
        if not zone or not table:
            return None
        self.tables.add(f"{zone}.{table}")
        known = self.schema.get(zone, {}).get(table)
        if known is not None and name not in known:
            return None
        return frozenset({ColumnRef(zone, table, name)})


def _literal_keys(condition: exp.Expr, table: str, key: str) -> list[str]:
    """String literals ``condition`` pins ``table.key`` to (``=`` or ``IN``, under ``AND``)."""
    keys: list[str] = []
    conjuncts = list(condition.flatten()) if isinstance(condition, exp.And) else [condition]
    for c in conjuncts:
        c = c.unnest()
        if isinstance(c, exp.Where):
            keys += _literal_keys(c.this, table, key)
        elif isinstance(c, exp.EQ):
            col, lit = (c.this, c.expression) if isinstance(c.this, exp.Column) else (c.expression, c.this)
            if _is_key(col, table, key) and isinstance(lit, exp.Literal) and lit.is_string:
                keys.append(lit.this)
        elif isinstance(c, exp.In) and _is_key(c.this, table, key):
            values = c.expressions
            if values and all(isinstance(v, exp.Literal) and v.is_string for v in values):
                keys += [v.this for v in values]
    return keys


def _is_key(node: exp.Expr, table: str, key: str) -> bool:
    return isinstance(node, exp.Column) and node.name == key and node.table in ("", table)


def _pivot_keys(scope: Scope, column: exp.Column, key: str) -> list[str]:
    """The keys a read of a key-value table's value column is restricted to, if any:
    an aggregate's ``FILTER (WHERE key = '...')``, a ``CASE WHEN key = '...' THEN value``,
    or the scope's ``WHERE key = '...'``."""
    node: exp.Expr | None = column
    while node is not None and node is not scope.expression:
        parent = node.parent
        if isinstance(parent, exp.Filter) and node is parent.this:
            keys = _literal_keys(parent.expression, column.table, key)
            if keys:
                return keys
        if isinstance(parent, exp.If) and node is parent.args.get("true"):
            keys = _literal_keys(parent.this, column.table, key)
            if keys:
                return keys
        node = parent
    where = scope.expression.args.get("where") if isinstance(scope.expression, exp.Select) else None
    return _literal_keys(where.this, column.table, key) if where is not None else []


def _unalias(node: exp.Expr) -> exp.Expr:
    return node.this if isinstance(node, exp.Alias) else node


def _udtf_columns(expression: exp.Expr) -> list[str]:
    alias = expression.args.get("alias")
    if isinstance(alias, exp.TableAlias):
        return [c.name for c in alias.columns]
    return []


# ------------------------------------------------------------------ the graph


@dataclass
class TableLineage:
    """How one table's columns come about: one hop, to the tables it reads."""

    table: str  # zone.table
    origin: Literal["sql", "python", "staging", "kpi", "none"]
    columns: dict[str, dict[EdgeKind, frozenset[ColumnRef]]] = field(default_factory=dict)
    conditions: frozenset[ColumnRef] = frozenset()
    source: str = ""  # the SQL file, the mapping file, ...
    sql: str = ""
    problems: list[str] = field(default_factory=list)

    def deps(self, column: str, kinds: Iterable[EdgeKind] = ("value",)) -> frozenset[ColumnRef]:
        entry = self.columns.get(column, {})
        out: set[ColumnRef] = set()
        for kind in kinds:
            if kind == "condition":
                out |= self.conditions | entry.get("condition", frozenset())
            else:
                out |= entry.get(kind, frozenset())
        return frozenset(out)

    def upstream_tables(self) -> list[str]:
        tables = {r.qualified_table for e in self.columns.values() for refs in e.values() for r in refs}
        tables |= {r.qualified_table for r in self.conditions}
        return sorted(tables - {self.table})


def _kinds(conditions: bool, keys: bool) -> tuple[EdgeKind, ...]:
    return ("value", *(("key",) if keys else ()), *(("condition",) if conditions else ()))


@dataclass
class LineageGraph:
    """Per-table lineage of every zone, traversable both ways."""

    tables: dict[str, TableLineage] = field(default_factory=dict)
    zones: dict[str, str] = field(default_factory=dict)  # bare table name -> zone (contracts)
    _reverse_cache: dict[tuple[EdgeKind, ...], dict[ColumnRef, set[ColumnRef]]] = field(
        default_factory=dict, repr=False
    )

    def add(self, lineage: TableLineage) -> None:
        self.tables[lineage.table] = lineage
        self._reverse_cache.clear()

    def qualify(self, table: str) -> str:
        """``dim_elder`` -> ``library.dim_elder`` (a ``zone.table`` stays as it is)."""
        if "." in table:
            return table
        if table in self.zones:
            return f"{self.zones[table]}.{table}"
        raise KeyError(f"unknown table {table!r}")

    def ref(self, table: str, column: str) -> ColumnRef:
        zone, name = self.qualify(table).split(".", 1)
        return ColumnRef(zone, name, column)

    def upstream(self, ref: ColumnRef, kinds: Iterable[EdgeKind] = ("value",)) -> frozenset[ColumnRef]:
        lineage = self.tables.get(ref.qualified_table)
        return lineage.deps(ref.column, kinds) if lineage else frozenset()

    def trace(
        self,
        table: str,
        column: str,
        *,
        conditions: bool = False,
        keys: bool = False,
        until: str = "staged",
    ) -> set[ColumnRef]:
        """The origin columns of ``table.column``: where following its lineage ends.

        It ends in the ``until`` zone (``staged`` by default; ``raw`` goes one hop
        further) or at a column with no upstream (generated there: a constant, a
        build timestamp, an elder_key when ``keys`` is off, ...). ``conditions``
        adds the columns ``table`` itself filters, joins and groups on (each traced
        by value): "which rows count" for a KPI. Conditions of the tables further
        up are not followed - every join on elder_key would pull in the whole
        identity resolution.
        """
        start = self.ref(table, column)
        kinds = _kinds(False, keys)
        stop = ZONE_ORDER.index(until) if until in ZONE_ORDER else 0
        origins: set[ColumnRef] = set()
        seen: set[ColumnRef] = set()
        seeds = set(self.upstream(start, _kinds(conditions, keys)))
        todo = list(seeds) or [start]
        while todo:
            ref = todo.pop()
            if ref in seen:
                continue
            seen.add(ref)
            zone_rank = ZONE_ORDER.index(ref.zone) if ref.zone in ZONE_ORDER else -1
            ups = self.upstream(ref, kinds) if zone_rank > stop else frozenset()
            if ups:
                todo.extend(ups)
            else:
                origins.add(ref)
        return origins

    def impact(
        self, table: str, column: str, *, conditions: bool = False, keys: bool = False
    ) -> set[ColumnRef]:
        """Every column downstream of ``table.column`` ("where does the ID number flow")."""
        start = self.ref(table, column)
        reverse = self._reverse(_kinds(conditions, keys))
        reached: set[ColumnRef] = set()
        todo = [start]
        while todo:
            ref = todo.pop()
            for nxt in reverse.get(ref, ()):
                if nxt not in reached:
                    reached.add(nxt)
                    todo.append(nxt)
        reached.discard(start)
        return reached

    def _reverse(self, kinds: tuple[EdgeKind, ...]) -> dict[ColumnRef, set[ColumnRef]]:
        if kinds in self._reverse_cache:
            return self._reverse_cache[kinds]
        reverse: dict[ColumnRef, set[ColumnRef]] = {}
        self._reverse_cache[kinds] = reverse
        for lineage in self.tables.values():
            zone, name = lineage.table.split(".", 1)
            for column in lineage.columns:
                target = ColumnRef(zone, name, column)
                for dep in lineage.deps(column, kinds):
                    reverse.setdefault(dep, set()).add(target)
        return reverse

    def tree(self, table: str, column: str, depth: int = 8, kinds: Iterable[EdgeKind] = ("value",)) -> dict:
        """Nested ``{ref: {upstream ref: {...}}}`` for rendering (cycle-safe, depth-limited)."""
        kinds = tuple(kinds)

        def walk(ref: ColumnRef, level: int, path: frozenset[ColumnRef]) -> dict[str, Any]:
            if level >= depth:
                return {}
            return {
                str(up): walk(up, level + 1, path | {up})
                for up in sorted(self.upstream(ref, kinds))
                if up not in path
            }

        start = self.ref(table, column)
        return walk(start, 0, frozenset({start}))

    def downstream_tables(self, table: str) -> list[str]:
        qualified = self.qualify(table)
        return sorted(t for t, lin in self.tables.items() if qualified in lin.upstream_tables())

    def problems(self) -> list[str]:
        return [f"{t}: {p}" for t, lin in sorted(self.tables.items()) for p in lin.problems]


# ------------------------------------------------------------------ building a table's lineage


def sql_table_lineage(
    table: str,
    sql: str,
    schema: SchemaDict,
    declared_columns: list[str] | None = None,
    default_zone: Mapping[str, str] | None = None,
    source: str = "",
    origin: Literal["sql", "python", "kpi"] = "sql",
    pivots: Mapping[str, tuple[str, str]] | None = None,
) -> TableLineage:
    """One table built by one SELECT; problems (unparseable SQL, columns the contract does not
    declare or the SQL does not produce, references to unknown columns) are recorded, not raised."""
    lineage = TableLineage(table=table, origin=origin, source=source, sql=sql)
    try:
        q = query_lineage(sql, schema, default_zone=default_zone, pivots=pivots)
    except LineageError as exc:
        lineage.problems.append(str(exc))
        return lineage
    lineage.columns = {c: {"value": refs} for c, refs in q.columns.items()}
    lineage.conditions = q.conditions
    if q.unresolved:
        lineage.problems.append("unresolved column references: " + ", ".join(q.unresolved))
    unknown = sorted(t for t in q.tables if _lookup(schema, t) is None)
    if unknown:
        lineage.problems.append("reads tables not in the contracts: " + ", ".join(unknown))
    if declared_columns is not None:
        produced = set(q.columns)
        missing = [c for c in declared_columns if c not in produced]
        extra = [c for c in q.columns if c not in set(declared_columns)]
        if missing:
            lineage.problems.append("declared columns the SQL does not produce: " + ", ".join(missing))
        if extra:
            lineage.problems.append("SQL columns the contract does not declare: " + ", ".join(extra))
    return lineage


def _lookup(schema: SchemaDict, qualified: str) -> Mapping[str, str] | None:
    zone, _, name = qualified.partition(".")
    return schema.get(zone, {}).get(name)


def iter_sql_files(directory: Path) -> Iterator[tuple[str, Path]]:
    """``(table, path)`` of every ``<table>.sql`` in ``directory`` (none when it does not exist).

    Only the directory itself: SQL in its subfolders (``fragments/``) is composed into
    statements by code and is not a table."""
    if directory.is_dir():
        for path in sorted(directory.glob("*.sql")):
            yield path.stem, path
