"""Building library tables in DuckDB: SQL files -> Parquet -> ``library.*`` views.

Every library table is declared in ``schemas/library/*.yaml``. A table with
``build: sql`` is one SELECT in ``assets/library/sql/<name>.sql`` over the
``staged.*`` and ``library.*`` views; :func:`build_sql_table` runs it with the
build's as-of date bound to the DuckDB variable ``as_of`` and writes
``library/<name>/data.parquet`` atomically. Its columns must be exactly the
contract's, in order, or the build fails (:class:`ContractMismatch`).

The as-of date is the latest delivery date in the staged zone, never the wall
clock, so a rebuild of the same deliveries gives the same tables.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from assets.ingest.views import empty_select, ensure_views, parquet_select
from assets.library.golden import (
    AFFECTED_LINKS_TABLE,
    AFFECTED_TABLE,
    CHAR_TABLE,
    attribute_order_sql,
    provenance_sql,
    source_tables,
    tie_break_attributes,
)
from assets.library.mei import KEY_CHANGES, table_path
from assets.staging.stage import staged_dir
from masking.encryption import ROW_GROUP_ROWS
from rainbow.io import atomic_path
from rainbow.parquet import (
    copy_batches,
    file_metadata,
    glob_files,
    open_writer,
    parquet_file,
    read_frame,
    row_count,
    write_batches,
    write_frame,
)
from rainbow.settings import Lake
from rainbow.warehouse import connect_warehouse, joins_as_written
from schemas.contract import DerivedTable
from schemas.registry import Registry

SQL_DIR = Path(__file__).with_name("sql")
# Contract column type -> the DuckDB types a built column may have.
DUCK_TYPES = {
    "string": {"VARCHAR"},
    "integer": {"INTEGER", "BIGINT", "SMALLINT", "HUGEINT"},
    "decimal": {"DOUBLE", "FLOAT"},
    "date": {"DATE"},
    "timestamp": {"TIMESTAMP"},
    "boolean": {"BOOLEAN"},
}
POLARS_TYPES: dict[str, pl.DataType] = {
    "string": pl.String(),
    "integer": pl.Int64(),
    "decimal": pl.Float64(),
    "date": pl.Date(),
    "timestamp": pl.Datetime("us"),
    "boolean": pl.Boolean(),
}


class ContractMismatch(RuntimeError):
    """A built table's columns or types differ from its contract."""


def sql_path(table: DerivedTable | str) -> Path:
    return SQL_DIR / f"{table if isinstance(table, str) else table.name}.sql"


@functools.cache
def table_sql(name: str) -> str:
    """The SELECT that builds a ``build: sql`` library table."""
    return sql_path(name).read_text(encoding="utf-8")


def contract_schema(table: DerivedTable) -> dict[str, pl.DataType]:
    return {c.name: POLARS_TYPES[c.type] for c in table.columns}


def as_of_date(lake: Lake, registry: Registry) -> str | None:
    """The latest delivery date over every staged table (ISO), or None when nothing is staged.

    Read from the ``_delivery_date`` statistics of the staged files, newest first (a
    partitioned table's day folders sort by date: its newest file holding rows decides),
    not by scanning rows: every library step binds it, and a scan of a year of staged rows
    through the decrypting datasets cost 0.9 s a step at 10,000 elders.
    """
    from assets.partitions import is_partitioned
    from assets.staging.stage import staged_dir

    best: date | None = None
    for _, table in registry.tables():
        for path in reversed(glob_files(staged_dir(lake, table) / "**" / "*.parquet")):
            latest = _max_delivery_date(path, lake)
            if latest is None:
                continue
            best = latest if best is None else max(best, latest)
            if is_partitioned(table):
                break
    return best.isoformat() if best is not None else None


def _max_delivery_date(path: Path, lake: Lake) -> date | None:
    """The largest ``_delivery_date`` of one file: its row groups' statistics, else its column."""
    with parquet_file(path, lake) as f:
        meta = f.metadata
        leaves = [meta.schema.column(j).path for j in range(meta.num_columns)]
        if "_delivery_date" not in leaves or meta.num_rows == 0:
            return None
        j = leaves.index("_delivery_date")
        found: list[date] = []
        for i in range(meta.num_row_groups):
            group = meta.row_group(i)
            stats = group.column(j).statistics
            if group.num_rows == 0:
                continue
            if stats is None or not stats.has_min_max:  # no statistics written: read the column
                value = pc.max(f.read(columns=["_delivery_date"]).column(0)).as_py()
                return value if isinstance(value, date) else None
            found.append(stats.max)
        return max(found, default=None)


def bind_as_of(con: duckdb.DuckDBPyConnection, as_of: str) -> None:
    con.execute(f"SET VARIABLE as_of = DATE '{as_of}'")


def check_columns(table: DerivedTable, described: list[tuple[str, str]]) -> None:
    names = [n for n, _ in described]
    if names != table.column_names:
        raise ContractMismatch(
            f"library.{table.name}: built columns {names} differ from the contract {table.column_names}"
        )
    bad = [
        f"{n} is {t}, contract says {table.column(n).type}"
        for n, t in described
        if t.split("(")[0] not in DUCK_TYPES[table.column(n).type]
    ]
    if bad:
        raise ContractMismatch(f"library.{table.name}: " + "; ".join(bad))


def write_select(
    con: duckdb.DuckDBPyConnection, lake: Lake, table: DerivedTable, select: str, path: Path
) -> int:
    """Run ``select``, check it against the contract, write it to ``path`` atomically; returns rows."""
    rel = con.sql(select)
    check_columns(table, list(zip(rel.columns, [str(t) for t in rel.types], strict=True)))
    with atomic_path(path) as tmp:
        write_batches(con.sql(select).to_arrow_reader(ROW_GROUP_ROWS), tmp, lake)
    return row_count(path, lake)


def library_view_statement(lake: Lake, table: DerivedTable) -> str:
    """``library.<table>`` over its Parquet (typed and empty until it is built)."""
    schema = contract_schema(table)
    if table.name == KEY_CHANGES:
        parts = list((lake.library / KEY_CHANGES).glob("run=*/data.parquet"))
        glob = lake.library / KEY_CHANGES / "run=*" / "data.parquet"
        select = parquet_select(glob, schema) if parts else empty_select(schema)
    else:
        path = table_path(lake, table.name)
        select = parquet_select(path, schema) if path.exists() else empty_select(schema)
    return f'CREATE OR REPLACE VIEW library."{table.name}" AS {select}'


def create_library_view(con: duckdb.DuckDBPyConnection, lake: Lake, table: DerivedTable) -> None:
    statement = library_view_statement(lake, table)
    ensure_views(con, lake, "library", "CREATE SCHEMA IF NOT EXISTS library", [statement])


def create_library_views(con: duckdb.DuckDBPyConnection, lake: Lake, registry: Registry) -> None:
    """Every library view, each rewritten only when it changed (a rebuild leaves the file alone)."""
    statements = [library_view_statement(lake, t) for _, t in registry.derived_tables("library")]
    ensure_views(con, lake, "library", "CREATE SCHEMA IF NOT EXISTS library", statements)


def build_sql_table(con: duckdb.DuckDBPyConnection, lake: Lake, table: DerivedTable, as_of: str) -> int:
    """Build one ``build: sql`` table; returns its row count."""
    bind_as_of(con, as_of)
    rows = write_select(con, lake, table, table_sql(table.name), table_path(lake, table.name))
    create_library_view(con, lake, table)
    return rows


PROVENANCE_CHUNK_ELDERS = 100_000
# footer key of the provenance table and its inputs cache: the state both were written for
PROVENANCE_STATE = "rainbow.provenance_state"
PROVENANCE_PARTS = "rainbow.provenance_parts"
# the district-wide character counts the table was computed with ([attribute, ch, people], ...)
PROVENANCE_CHARS = "rainbow.provenance_chars"
CHAR_ROWS_TABLE = "_provenance_char_rows"
PREVIOUS_CHARS_TABLE = "_provenance_previous_chars"
INPUTS_TABLE = "_provenance_inputs"
PREVIOUS_INPUTS_TABLE = "_provenance_previous_inputs"
NEW_ROWS_TABLE = "_provenance_new"
CHANGED_TABLE = "_provenance_changed"
# above this share of elders to recompute, the whole table is rebuilt
PROVENANCE_INCREMENTAL_MAX_SHARE = 0.5


def elder_key_ranges(
    con: duckdb.DuckDBPyConnection, per_range: int, source: str = "library.elder_links"
) -> list[tuple[str, str]]:
    """[lo, hi) ranges of the elder keys in ``source``, ``per_range`` elders each, covering every key."""
    keys = [
        str(r[0])
        for r in con.execute(
            f"SELECT elder_key FROM (SELECT DISTINCT elder_key FROM {source} "
            "WHERE elder_key IS NOT NULL) ORDER BY elder_key"
        ).fetchall()
    ]
    starts = keys[::per_range] or [""]
    starts[0] = ""  # below every key
    ends = [*starts[1:], "\U0010ffff"]  # above every key
    return list(zip(starts, ends, strict=True))


def provenance_cache(lake: Lake) -> Path:
    """``library/_cache/provenance/inputs.parquet``: per elder, a digest of its linked records."""
    return lake.library / "_cache" / "provenance" / "inputs.parquet"


@dataclass(frozen=True)
class ProvenanceBuild:
    rows: int
    mode: str  # full | incremental | unchanged
    elders: int  # elders with linked records
    recomputed: int  # elders whose rows were computed in this run
    reason: str  # why the mode (for the run log)


@dataclass(frozen=True)
class _Inputs:
    """What ``elder_attribute_provenance`` was computed from (the temp table :data:`INPUTS_TABLE`
    holds the per-elder digests)."""

    sql: str
    chars: str
    digests: str
    parts: dict[str, list[int]]
    # the character counts themselves were kept (loaded into PREVIOUS_CHARS_TABLE)
    char_counts: bool = False

    @property
    def token(self) -> str:
        state = [self.sql, self.chars, self.digests, sorted(self.parts.items())]
        return hashlib.sha256(json.dumps(state).encode()).hexdigest()[:32]


def _staged_parts(lake: Lake) -> dict[str, list[int]]:
    """Every staged part of the candidate tables: path relative to the lake -> [size, mtime_ns]."""
    root = lake.root.resolve()
    out: dict[str, list[int]] = {}
    for table in source_tables():
        for part in glob_files(staged_dir(lake, table) / "**" / "*.parquet"):
            st = part.stat()
            out[part.resolve().relative_to(root).as_posix()] = [st.st_size, st.st_mtime_ns]
    return out


# Per elder, an order-free digest of its linked record ids: the count and two 64-bit XORs of
# hashes (a set changed by chance to the same 128 bits is out of reach). Its hash aggregate holds
# 720,000 fixed-size states at 400,000 x 365 (83 MB, 1.7 s) where the sorted string_agg of
# 16.8 M ids it replaces peaked at 4.8 GB in 11.4 s.
INPUTS_SQL = (
    "SELECT elder_key, count(*)::VARCHAR || ':' || bit_xor(hash(record_id))::VARCHAR || ':' "
    "|| bit_xor(hash(record_id, 'rainbow'))::VARCHAR AS inputs FROM library.elder_links "
    "WHERE elder_key IS NOT NULL GROUP BY elder_key"
)


def _current_inputs(con: duckdb.DuckDBPyConnection, lake: Lake, registry: Registry) -> _Inputs:
    con.execute(f"CREATE OR REPLACE TEMP TABLE {INPUTS_TABLE} AS {INPUTS_SQL}")

    def digest(sql: str) -> str:
        rows = con.execute(f"SELECT md5(coalesce(string_agg(v, '|' ORDER BY v), '')) FROM ({sql})").fetchall()
        return str(rows[0][0])

    # the digests are DuckDB hashes: another DuckDB version may hash otherwise (a full build)
    what = [provenance_sql(registry, part="subset"), INPUTS_SQL, duckdb.__version__]
    return _Inputs(
        sql=hashlib.sha256(json.dumps(what).encode()).hexdigest()[:32],
        chars=digest(f"SELECT attribute || ':' || ch || ':' || people AS v FROM {CHAR_TABLE}"),
        digests=digest(f"SELECT elder_key || ':' || inputs AS v FROM {INPUTS_TABLE}"),
        parts=_staged_parts(lake),
    )


def _previous_inputs(con: duckdb.DuckDBPyConnection, lake: Lake, path: Path) -> _Inputs | None:
    """The inputs the table on disk was computed from (loaded into :data:`PREVIOUS_INPUTS_TABLE`),
    or None when the table or its cache is missing, unreadable or of another state."""
    cache = provenance_cache(lake)
    if not (path.exists() and cache.exists()):
        return None
    try:
        table_state = file_metadata(path, lake).get(PROVENANCE_STATE)
        meta = file_metadata(cache, lake)
        state = json.loads(meta[PROVENANCE_STATE])
        if table_state != state["token"]:
            return None
        counts = json.loads(meta[PROVENANCE_CHARS]) if PROVENANCE_CHARS in meta else None
        chars = (
            pl.DataFrame(
                counts, schema={"attribute": pl.String, "ch": pl.String, "people": pl.Int64}, orient="row"
            )
            if counts is not None
            else None
        )
        previous = _Inputs(
            state["sql"],
            state["chars"],
            state["digests"],
            json.loads(meta[PROVENANCE_PARTS]),
            char_counts=counts is not None,
        )
        if previous.token != state["token"]:
            return None
        frame = read_frame(cache, lake).to_arrow()
    except (OSError, ValueError, KeyError, TypeError, pl.exceptions.PolarsError, pa.ArrowException):
        return None
    if chars is not None:
        con.register("_provenance_chars_arrow", chars.to_arrow())
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {PREVIOUS_CHARS_TABLE} AS SELECT * FROM _provenance_chars_arrow"
        )
        con.unregister("_provenance_chars_arrow")
    con.register("_provenance_previous_arrow", frame)
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {PREVIOUS_INPUTS_TABLE} AS SELECT * FROM _provenance_previous_arrow"
    )
    con.unregister("_provenance_previous_arrow")
    return previous


def _affected_elders(
    con: duckdb.DuckDBPyConnection, lake: Lake, now: _Inputs, previous: _Inputs
) -> tuple[int, str]:
    """Fill :data:`AFFECTED_TABLE` with the elders whose rows may differ from the table on disk:
    a changed set of linked records (new, gone or moved records, new elders), records in a
    staged part rewritten since (a corrected re-delivery: same records, other values), and,
    when the district-wide character counts changed, every elder choosing between several
    spellings of a tie-broken attribute. Returns (elders, why)."""
    changed = (
        f"SELECT i.elder_key FROM {INPUTS_TABLE} AS i LEFT JOIN {PREVIOUS_INPUTS_TABLE} AS p "
        "USING (elder_key) WHERE p.inputs IS DISTINCT FROM i.inputs"
    )
    con.execute(f"CREATE OR REPLACE TEMP TABLE {CHANGED_TABLE} AS {changed}")
    pieces = [f"SELECT elder_key FROM {CHANGED_TABLE}"]
    reasons = [f"{_count(con, CHANGED_TABLE)} with other linked records"]
    rewritten = [r for r, sig in now.parts.items() if r in previous.parts and previous.parts[r] != sig]
    root = lake.root.resolve()
    prefixes = {f"{staged_dir(lake, t).resolve().relative_to(root).as_posix()}/": t for t in source_tables()}
    files = pl.DataFrame(schema={"_source_file": pl.String, "source_table": pl.String})
    if rewritten:
        files = pl.concat(
            [
                read_frame(lake.root / rel, lake, columns=["_source_file"])
                .unique()
                .select(pl.col("_source_file").cast(pl.String), source_table=pl.lit(table))
                for rel in rewritten
                for prefix, table in prefixes.items()
                if rel.startswith(prefix)
            ]
            or [files]
        )
        pieces.append(
            "SELECT l.elder_key FROM library.elder_links AS l JOIN _provenance_rewritten AS f "
            "ON l.source_table = f.source_table AND l.source_file = f._source_file"
        )
        reasons.append(f"{len(rewritten)} staged parts rewritten")
    if now.chars != previous.chars and previous.char_counts:
        con.execute(f"CREATE OR REPLACE TEMP TABLE {REORDERED_TABLE} AS {_reordered_sql()}")
        pieces.append(f"SELECT elder_key FROM {REORDERED_TABLE}")
        flipped = _count(con, REORDERED_TABLE)
        reasons.append(f"character counts changed: {flipped} elders whose spellings they order otherwise")
    elif now.chars != previous.chars:
        listed = ", ".join(f"'{a}'" for a in tie_break_attributes()) or "NULL"
        pieces.append(
            "SELECT elder_key FROM library.elder_attribute_provenance "
            f"WHERE attribute IN ({listed}) AND candidates > 1 "
            f"AND elder_key IN (SELECT elder_key FROM {INPUTS_TABLE})"
        )
        reasons.append("character counts changed: elders with several spellings")
    con.register("_provenance_rewritten", files.to_arrow())
    try:
        union = " UNION ".join(pieces)
        con.execute(f"CREATE OR REPLACE TEMP TABLE {AFFECTED_TABLE} AS SELECT elder_key FROM ({union})")
    finally:
        con.unregister("_provenance_rewritten")
    return _count(con, AFFECTED_TABLE), "; ".join(reasons)


REORDERED_TABLE = "_provenance_reordered"


def _reordered_sql() -> str:
    """Elders with several spellings of a tie-broken attribute (:data:`CHAR_ROWS_TABLE`) two of
    which the new character counts order otherwise than the previous ones (plausibility: the
    count of a spelling's rarest character, the only way the counts enter the choice). An
    elder whose records did not change has the same spellings as before, so its choice can only
    change if such an order flips."""
    return f"""
        WITH several AS (
            SELECT attribute, elder_key FROM {CHAR_ROWS_TABLE} GROUP BY ALL HAVING count(DISTINCT value) > 1
        ), plaus AS (
            SELECT c.attribute, c.elder_key, c.value,
                   coalesce(min(n.people), 0) AS p_new, coalesce(min(o.people), 0) AS p_old
            FROM {CHAR_ROWS_TABLE} AS c JOIN several USING (attribute, elder_key)
            LEFT JOIN {CHAR_TABLE} AS n USING (attribute, ch)
            LEFT JOIN {PREVIOUS_CHARS_TABLE} AS o USING (attribute, ch)
            GROUP BY ALL
        )
        SELECT DISTINCT a.elder_key FROM plaus AS a JOIN plaus AS b
            ON a.attribute = b.attribute AND a.elder_key = b.elder_key AND a.value < b.value
        WHERE sign(a.p_new - b.p_new) <> sign(a.p_old - b.p_old)"""


def _count(con: duckdb.DuckDBPyConnection, table: str) -> int:
    return int(con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0])  # a table or a (subquery)


def _write_inputs_cache(con: duckdb.DuckDBPyConnection, lake: Lake, now: _Inputs) -> None:
    """:func:`provenance_cache`: each elder's inputs digest, the state and the character counts."""
    state = {"token": now.token, "sql": now.sql, "chars": now.chars, "digests": now.digests}
    inputs = con.sql(f"SELECT elder_key, inputs FROM {INPUTS_TABLE} ORDER BY elder_key").pl()
    counts = con.execute(f"SELECT attribute, ch, people FROM {CHAR_TABLE} ORDER BY ALL").fetchall()
    with atomic_path(provenance_cache(lake)) as tmp:
        write_frame(
            inputs,
            tmp,
            lake,
            metadata={
                PROVENANCE_STATE: json.dumps(state),
                PROVENANCE_PARTS: json.dumps(now.parts),
                PROVENANCE_CHARS: json.dumps([list(r) for r in counts], ensure_ascii=False),
            },
        )


def build_provenance(
    con: duckdb.DuckDBPyConnection,
    lake: Lake,
    registry: Registry,
    *,
    per_range: int = PROVENANCE_CHUNK_ELDERS,
    incremental: bool = True,
    max_share: float = PROVENANCE_INCREMENTAL_MAX_SHARE,
) -> ProvenanceBuild:
    """``library.elder_attribute_provenance`` in ranges of ``per_range`` elders (memory stays
    bounded at district scale: 400,000 elders in one query peaked at 11.9 GB), after the
    district-wide character plausibility is computed once. Same rows, same order as one query.

    Incremental: an elder's rows depend only on its own linked records and on the character
    counts, so when the table on disk and its inputs cache (:func:`provenance_cache`) describe
    one earlier state, only the elders :func:`_affected_elders` finds are computed again and
    the other elders' rows are carried over; the result equals a full build. With no usable
    earlier state, or more than ``max_share`` of the elders affected (a new month's registry
    snapshot names nearly everyone), the whole table is built. Joins build on the side written
    (:func:`~rainbow.warehouse.joins_as_written`)."""
    with joins_as_written(con):
        return _build_provenance(
            con, lake, registry, per_range=per_range, incremental=incremental, max_share=max_share
        )


def _build_provenance(
    con: duckdb.DuckDBPyConnection,
    lake: Lake,
    registry: Registry,
    *,
    per_range: int,
    incremental: bool,
    max_share: float,
) -> ProvenanceBuild:
    table = registry.derived("elder_attribute_provenance")
    path = table_path(lake, table.name)
    temps = (
        CHAR_TABLE,
        CHAR_ROWS_TABLE,
        PREVIOUS_CHARS_TABLE,
        REORDERED_TABLE,
        INPUTS_TABLE,
        PREVIOUS_INPUTS_TABLE,
        CHANGED_TABLE,
        AFFECTED_TABLE,
        AFFECTED_LINKS_TABLE,
        NEW_ROWS_TABLE,
    )
    try:
        # the characters of every candidate spelling once; their counts (char_people) from them
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {CHAR_ROWS_TABLE} AS {provenance_sql(registry, part='char_rows')}"
        )
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {CHAR_TABLE} AS SELECT attribute, ch, "
            f"count(DISTINCT elder_key) AS people FROM {CHAR_ROWS_TABLE} GROUP BY ALL"
        )
        now = _current_inputs(con, lake, registry)
        elders = _count(con, INPUTS_TABLE)
        previous = _previous_inputs(con, lake, path) if incremental else None
        mode, recomputed, reason = "full", elders, "no earlier state" if incremental else "asked for"
        if previous is not None and previous.sql != now.sql:
            reason = "the survivorship query or the inputs digest changed"
        elif previous is not None:
            affected, why = _affected_elders(con, lake, now, previous)
            if affected <= elders * max_share:
                mode, recomputed, reason = "incremental", affected, why
            else:
                reason = f"{affected} of {elders} elders affected ({why})"
        if previous is not None and previous.token == now.token:
            # the very inputs of the table on disk (a rerun): nothing to write, but the character
            # counts a cache of an earlier version lacks (the next new day compares with them)
            if not previous.char_counts:
                _write_inputs_cache(con, lake, now)
            return ProvenanceBuild(row_count(path, lake), "unchanged", elders, 0, "inputs unchanged")
        metadata = {PROVENANCE_STATE: now.token}
        with atomic_path(path) as tmp:
            if mode == "incremental":
                rows = _write_incremental(con, registry, table, tmp, lake, metadata, per_range)
            else:
                rows = _write_ranges(con, registry, table, tmp, lake, metadata, per_range)
        _write_inputs_cache(con, lake, now)
    finally:
        for temp in temps:
            con.execute(f"DROP TABLE IF EXISTS {temp}")
    create_library_view(con, lake, table)
    return ProvenanceBuild(rows, mode, elders, recomputed, reason)


def _check(table: DerivedTable, rel: duckdb.DuckDBPyRelation) -> None:
    check_columns(table, list(zip(rel.columns, [str(t) for t in rel.types], strict=True)))


def _write_ranges(
    con: duckdb.DuckDBPyConnection,
    registry: Registry,
    table: DerivedTable,
    tmp: Path,
    lake: Lake,
    metadata: dict[str, str],
    per_range: int,
) -> int:
    """Every elder, ``per_range`` at a time, in key order."""
    select = provenance_sql(registry, part="range")
    writer: pq.ParquetWriter | None = None
    rows = 0
    for lo, hi in elder_key_ranges(con, per_range):
        con.execute("SET VARIABLE prov_lo = ?", [lo])
        con.execute("SET VARIABLE prov_hi = ?", [hi])
        rel = con.sql(select)
        if writer is None:
            _check(table, rel)
        reader = rel.to_arrow_reader(ROW_GROUP_ROWS)
        if writer is None:
            writer = open_writer(tmp, reader.schema.with_metadata(metadata), lake)
        rows += copy_batches(reader, writer)
    if writer is None:  # no linked elder: an empty, typed table
        write_batches(con.sql(select).to_arrow_reader(ROW_GROUP_ROWS), tmp, lake)
    else:
        writer.close()
    return rows


def _write_incremental(
    con: duckdb.DuckDBPyConnection,
    registry: Registry,
    table: DerivedTable,
    tmp: Path,
    lake: Lake,
    metadata: dict[str, str],
    per_range: int,
) -> int:
    """The affected elders computed again (``per_range`` at a time), the others' rows carried
    over from the table on disk, all in the full build's order."""
    select = provenance_sql(registry, part="subset")
    con.execute("SET VARIABLE prov_lo = ''")  # an empty range: the typed, empty table of new rows
    con.execute("SET VARIABLE prov_hi = ''")
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {AFFECTED_LINKS_TABLE} AS SELECT record_id, source_table, "
        "source_file, row_number, elder_key FROM library.elder_links "
        f"WHERE elder_key IN (SELECT elder_key FROM {AFFECTED_TABLE})"
    )
    _check(table, con.sql(select))
    con.execute(f"CREATE OR REPLACE TEMP TABLE {NEW_ROWS_TABLE} AS {select}")
    if _count(con, AFFECTED_TABLE):
        for lo, hi in elder_key_ranges(con, per_range, source=AFFECTED_TABLE):
            con.execute("SET VARIABLE prov_lo = ?", [lo])
            con.execute("SET VARIABLE prov_hi = ?", [hi])
            con.execute(f"INSERT INTO {NEW_ROWS_TABLE} {select}")
    merged = (
        "SELECT * FROM (SELECT * FROM library.elder_attribute_provenance "
        f"WHERE elder_key IN (SELECT elder_key FROM {INPUTS_TABLE}) "
        f"AND elder_key NOT IN (SELECT elder_key FROM {AFFECTED_TABLE}) "
        f"UNION ALL SELECT * FROM {NEW_ROWS_TABLE}) "
        f"ORDER BY elder_key, {attribute_order_sql()}"
    )
    return write_batches(con.sql(merged).to_arrow_reader(ROW_GROUP_ROWS), tmp, lake, metadata=metadata)


def library_order(registry: Registry) -> list[DerivedTable]:
    """Library tables in dependency order (their contracts' ``upstream``)."""
    tables = {t.name: t for _, t in registry.derived_tables("library")}
    done: list[DerivedTable] = []
    seen: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> None:
        if name in seen or name not in tables:
            return
        if name in path:
            raise ValueError(f"library dependency cycle: {' -> '.join((*path, name))}")
        for up in tables[name].upstream:
            visit(up, (*path, name))
        seen.add(name)
        done.append(tables[name])

    for name in tables:
        visit(name, ())
    return done


def build_library(lake: Lake, registry: Registry, run_at: datetime) -> dict[str, tuple[int, float]]:
    """staged -> library without Dagster (tests, benchmarks): the index, then every table in order.

    Returns rows and seconds per table. The nightly build runs the same
    functions through the library assets.
    """
    import time

    from assets.library.mei import MEI_TABLES, build_mei
    from assets.staging.stage import create_staged_views

    t0 = time.perf_counter()
    mei = build_mei(lake, registry, run_at)
    seconds = time.perf_counter() - t0
    out = {"elder_links": (mei.link_rows, seconds), "match_review_queue": (mei.review.height, 0.0)}
    con = connect_warehouse(lake)
    try:
        for _, t in registry.tables():
            create_staged_views(con, lake, t)
        create_library_views(con, lake, registry)
        as_of = as_of_date(lake, registry) or run_at.date().isoformat()
        bind_as_of(con, as_of)
        for table in library_order(registry):
            if table.name in MEI_TABLES:
                continue
            t0 = time.perf_counter()
            if table.name == "elder_attribute_provenance":
                rows = build_provenance(con, lake, registry).rows
            else:
                rows = build_sql_table(con, lake, table, as_of)
            out[table.name] = (rows, time.perf_counter() - t0)
    finally:
        con.close()
    return out
