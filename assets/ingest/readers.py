"""Read one landing delivery into text columns named by the contract.

Pure functions, no Dagster. Every reader returns a :class:`Delivered`:

* ``rows``: one row per delivered data row, every contract column as ``pl.String``
  under its canonical name, then ``_extra`` (JSON text of any field the contract
  does not know, ``null`` when there is none) and ``_row_number``;
* ``broken``: rows that could not be parsed (``_row_number``, ``_raw_text``,
  ``_error``), so ``records_seen == rows.height + broken.height`` always.

Values are kept as delivered text: nothing is trimmed or converted, except that
an empty value becomes ``null`` in every format. Header cells are matched to the
contract's ``source`` after stripping surrounding whitespace.

``_row_number`` is 1-based: for CSV and XLSX the position of the row after the
header row (blank rows are skipped but keep their position), for JSON dumps the
position in the records array, for JSON lines the physical line number.
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fastexcel
import polars as pl

from rainbow.parquet import ROW_NUMBER_COLUMN
from schemas.contract import Table

ROW_NUMBER = ROW_NUMBER_COLUMN
EXTRA = "_extra"
RAW_TEXT = "_raw_text"
ERROR = "_error"

BROKEN_SCHEMA: dict[str, pl.DataType] = {ROW_NUMBER: pl.Int64(), RAW_TEXT: pl.String(), ERROR: pl.String()}

# How far down a sheet / file the header row is looked for.
HEADER_SCAN_ROWS = 30

_UTF8_BOM = b"\xef\xbb\xbf"


class ReadError(ValueError):
    """A delivery cannot be read at all (undecodable, no header row, not JSON...)."""


@dataclass(frozen=True)
class Delivered:
    """What one delivered file holds, as text."""

    rows: pl.DataFrame
    broken: pl.DataFrame
    # "utf-8", "utf-8-sig", "gb18030" (a superset of GBK); "xlsx" for workbooks.
    encoding: str
    # 1-based row (XLSX: sheet row; CSV: record) of the header; None for JSON.
    header_row: int | None = None
    # Headers / keys found that the contract does not declare (kept in ``_extra``).
    extra_columns: tuple[str, ...] = ()
    # Contract columns (canonical names) the file does not carry (all null).
    missing_columns: tuple[str, ...] = ()
    # JSON dumps: ``total`` declared next to the records array.
    declared_total: int | None = None
    # Anything a steward should know (title rows differing from the contract, ...).
    notes: tuple[str, ...] = field(default=())

    @property
    def records_seen(self) -> int:
        return self.rows.height + self.broken.height


# --------------------------------------------------------------------------- helpers


def rows_schema(table: Table) -> dict[str, pl.DataType]:
    """Schema of :attr:`Delivered.rows` for ``table``."""
    schema: dict[str, pl.DataType] = {c.name: pl.String() for c in table.columns}
    schema[EXTRA] = pl.String()
    schema[ROW_NUMBER] = pl.Int64()
    return schema


def decode_text(data: bytes) -> tuple[str, str]:
    """Decode delivered bytes: UTF-8 (with or without BOM) strictly, else GB18030."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    else:
        return text, "utf-8-sig" if data.startswith(_UTF8_BOM) else "utf-8"
    try:
        return data.decode("gb18030"), "gb18030"
    except UnicodeDecodeError as exc:
        raise ReadError(f"neither UTF-8 nor GB18030/GBK text: {exc}") from exc


def _clean(value: str | None) -> str | None:
    return value if value else None


def find_header(rows: Sequence[Sequence[str | None]], table: Table) -> int | None:
    """Index of the first row whose cells hold at least half of the contract's source headers."""
    sources = {c.source for c in table.columns}
    need = max(1, math.ceil(len(sources) / 2))
    for i, row in enumerate(rows[:HEADER_SCAN_ROWS]):
        found = {cell.strip() for cell in row if cell} & sources
        if len(found) >= need:
            return i
    return None


@dataclass(frozen=True)
class _Layout:
    """Where each delivered column goes: contract column or ``_extra``."""

    targets: list[tuple[str, str]]  # per delivered position: ("col", name) or ("extra", key)
    extra_columns: tuple[str, ...]
    missing_columns: tuple[str, ...]


def _layout(headers: Sequence[str | None], table: Table) -> _Layout:
    by_source = {c.source: c.name for c in table.columns}
    taken: set[str] = set()
    extra_keys: set[str] = set()
    targets: list[tuple[str, str]] = []
    extras: list[str] = []
    for i, raw in enumerate(headers):
        header = (raw or "").strip()
        name = by_source.get(header)
        if name is not None and name not in taken:
            taken.add(name)
            targets.append(("col", name))
            continue
        key = header or f"_col{i + 1}"
        n = 2
        while key in extra_keys:  # a repeated header keeps every copy
            key = f"{header or f'_col{i + 1}'}#{n}"
            n += 1
        extra_keys.add(key)
        targets.append(("extra", key))
        extras.append(key)
    missing = tuple(c.name for c in table.columns if c.name not in taken)
    return _Layout(targets, tuple(extras), missing)


def _extra_json(values: dict[str, str]) -> str | None:
    return json.dumps(values, ensure_ascii=False) if values else None


def _frame(
    table: Table, columns: dict[str, list[str | None]], extra: list[str | None], rownum: list[int]
) -> pl.DataFrame:
    n = len(rownum)
    data: dict[str, Any] = {c.name: columns.get(c.name, [None] * n) for c in table.columns}
    data[EXTRA] = extra
    data[ROW_NUMBER] = rownum
    return pl.DataFrame(data, schema=rows_schema(table))


def _broken_frame(broken: list[tuple[int, str, str]]) -> pl.DataFrame:
    return pl.DataFrame(broken, schema=BROKEN_SCHEMA, orient="row")


def _tabular(
    table: Table,
    headers: Sequence[str | None],
    body: Iterator[tuple[int, Sequence[str | None], str | None, str | None]],
) -> tuple[pl.DataFrame, pl.DataFrame, _Layout]:
    """Turn ``(row_number, cells, raw_text, error)`` data rows into rows/broken frames.

    A row with an ``error`` is broken. So is a row with more cells than the header
    when the surplus cells hold anything (typically an unquoted comma shifting
    every later value), and, when ``raw_text`` is given (CSV), a row with fewer
    cells than the header: a short record cannot be placed. XLSX rows (no
    ``raw_text``) are simply padded. An unknown column that is empty on every
    row carries nothing and is dropped (trailing empty sheet columns, a
    trailing comma on every line).
    """
    layout = _layout(headers, table)
    width = len(headers)
    kept: list[tuple[int, Sequence[str | None]]] = []
    broken: list[tuple[int, str, str]] = []
    for rownum, cells, raw, error in body:
        text = raw if raw is not None else json.dumps(list(cells), ensure_ascii=False)
        if error is None and len(cells) > width and any(cells[width:]):
            error = f"{len(cells)} fields, the header has {width}"
        if error is None and len(cells) < width and raw is not None:
            error = f"{len(cells)} fields, the header has {width}"
        if error is not None:
            broken.append((rownum, text, error))
        else:
            kept.append((rownum, cells))

    columns: dict[str, list[str | None]] = {}
    extra_cols: dict[str, list[str | None]] = {}
    for pos, (kind, name) in enumerate(layout.targets):
        values = [_clean(cells[pos]) if pos < len(cells) else None for _, cells in kept]
        if kind == "col":
            columns[name] = values
        elif any(v is not None for v in values):
            extra_cols[name] = values
    extra: list[str | None] = []
    for i in range(len(kept)):
        found: dict[str, str] = {}
        for k, v in extra_cols.items():
            value = v[i]
            if value is not None:
                found[k] = value
        extra.append(_extra_json(found))
    rows = _frame(table, columns, extra, [r for r, _ in kept])
    extra_names = tuple(k for k in layout.extra_columns if k in extra_cols)
    return rows, _broken_frame(broken), _Layout(layout.targets, extra_names, layout.missing_columns)


# --------------------------------------------------------------------------- CSV


def _split_lines(text: str, first: int | None = None) -> list[str]:
    """Physical lines, each keeping its line end (only ``\\n`` ends a line); the ``first`` few
    only when given."""
    if first is not None:
        head = text.split("\n", first)
        return [p + "\n" for p in head[:-1]] + ([head[-1]] if len(head) <= first and head[-1] else [])
    parts = text.split("\n")
    lines = [p + "\n" for p in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    return lines


def _is_plain(text: str) -> bool:
    """Every record is one physical line: no quote, NUL or lone carriage return anywhere (the
    usual machine export)."""
    returns = text.count("\r")
    return '"' not in text and "\x00" not in text and (returns == 0 or returns == text.count("\r\n"))


def _csv_records(lines: list[str]) -> Generator[tuple[int, int, list[str]], int | None, None]:
    """Yield ``(first line index, end line index, fields)`` per CSV record.

    Send a line index to resume parsing there (used to re-read the lines a
    stray quote swallowed into one record).
    """
    pos = 0
    while pos < len(lines):
        reader = csv.reader(lines[pos:], strict=False)
        prev = 0
        restart: int | None = None
        for rec in reader:
            start, end = pos + prev, pos + reader.line_num
            prev = reader.line_num
            restart = yield start, end, rec
            if restart is not None:
                break
        if restart is None:
            return
        pos = restart


def _plain_csv_body(
    text: str, header_record: int, table: Table, header: list[str]
) -> tuple[pl.DataFrame, pl.DataFrame, _Layout] | None:
    """What :func:`_tabular` makes of the records after the header (the first
    ``header_record`` lines), computed by Polars on whole columns, for a file where every
    record is one physical line (:func:`_is_plain`, which the caller checked). None when a
    column beyond the contract holds a value (``_extra`` JSON): the record-by-record path then
    reads it, with the same result."""
    layout = _layout(header, table)
    width = len(header)
    parts = text.split("\n")
    if not parts[-1]:  # no line after the last line end
        parts.pop()
    body = pl.Series("line", parts[header_record:], dtype=pl.String).str.strip_chars_end("\r\n")
    frame = pl.DataFrame(
        {
            ROW_NUMBER: pl.int_range(1, body.len() + 1, eager=True, dtype=pl.Int64),
            RAW_TEXT: body,
            "_cells": body.str.split(","),
        }
    ).with_columns(_n=pl.col("_cells").list.len())
    # a record of empty fields only (a blank line, or only commas) keeps its number, is no row
    frame = frame.filter(pl.col(RAW_TEXT).str.replace_all(",", "", literal=True) != "")
    surplus = pl.col("_cells").list.slice(width).list.eval(pl.element() != "").list.any()
    frame = frame.with_columns(
        pl.when(pl.col("_n") < width)
        .then(pl.format("{} fields, the header has {}", pl.col("_n"), pl.lit(width)))
        .when((pl.col("_n") > width) & surplus)
        .then(pl.format("{} fields, the header has {}", pl.col("_n"), pl.lit(width)))
        .alias(ERROR)
    )
    broken = (
        frame.filter(pl.col(ERROR).is_not_null()).select(list(BROKEN_SCHEMA)).cast(pl.Schema(BROKEN_SCHEMA))
    )
    kept = frame.filter(pl.col(ERROR).is_null())
    cells = [
        pl.col("_cells").list.get(pos, null_on_oob=True).replace("", None).alias(f"_{pos}")
        for pos in range(width)
    ]
    kept = kept.select(ROW_NUMBER, *cells)
    extra = [f"_{pos}" for pos, (kind, _) in enumerate(layout.targets) if kind == "extra"]
    if extra and kept.select(pl.any_horizontal(pl.col(c).is_not_null().any() for c in extra)).item():
        return None  # values outside the contract: _extra JSON, built record by record
    position = {name: pos for pos, (kind, name) in enumerate(layout.targets) if kind == "col"}
    rows = kept.select(
        *[
            (pl.col(f"_{position[c.name]}") if c.name in position else pl.lit(None, pl.String)).alias(c.name)
            for c in table.columns
        ],
        pl.lit(None, pl.String).alias(EXTRA),
        pl.col(ROW_NUMBER),
    )
    return (
        rows.cast(pl.Schema(rows_schema(table))),
        broken,
        _Layout(layout.targets, (), layout.missing_columns),
    )


def read_csv(path: Path, table: Table) -> Delivered:
    """Read a CSV delivery (UTF-8, UTF-8 with BOM or GBK/GB18030).

    Parsed with the standard library's csv module rather than Polars: Polars
    pads a short record with nulls and reads a blank line as a row of nulls, so
    it cannot tell which records were ragged, and a ragged record must go to
    ``broken``, not be silently repaired. A ragged record spanning several
    physical lines (a stray quote) is broken at its first line only and parsing
    resumes on the next line, so one bad quote cannot swallow the rest of a file.
    """
    text, encoding = decode_text(path.read_bytes())
    csv.field_size_limit(1 << 30)
    plain = _is_plain(text)  # the header is found in the first lines, the body split by Polars
    lines = _split_lines(text, HEADER_SCAN_ROWS if plain else None)
    records = _csv_records(lines)

    header: list[str] | None = None
    header_record = 0
    for _, _, rec in records:
        header_record += 1
        if find_header([rec], table) == 0:
            header = rec
            break
        if header_record >= HEADER_SCAN_ROWS:
            break
    if header is None:
        raise ReadError(
            f"no header row with the contract's source headers in the first {HEADER_SCAN_ROWS} records "
            f"(expected e.g. {[c.source for c in table.columns[:4]]})"
        )
    width = len(header)

    def body() -> Iterator[tuple[int, Sequence[str | None], str | None, str | None]]:
        rownum = 0
        item = next(records, None)
        while item is not None:
            start, end, rec = item
            rownum += 1
            if not any(rec):  # blank line (or only empty fields): keeps its position, is no row
                item = next(records, None)
                continue
            ragged = len(rec) < width or (len(rec) > width and any(rec[width:]))
            if ragged and end - start > 1:
                yield rownum, rec, lines[start].rstrip("\r\n"), "unbalanced quote or ragged multi-line record"
                try:
                    item = records.send(start + 1)
                except StopIteration:
                    item = None
                continue
            yield rownum, rec, "".join(lines[start:end]).rstrip("\r\n"), None
            item = next(records, None)

    fast = _plain_csv_body(text, header_record, table, header) if plain else None
    if fast is None and plain:  # read record by record after all: every line, past the header
        lines = _split_lines(text)
        records = _csv_records(lines)
        for _ in range(header_record):
            next(records)
    rows, broken, layout = fast if fast is not None else _tabular(table, header, body())
    notes = [f"{header_record - 1} line(s) above the header row"] if header_record > 1 else []
    return Delivered(
        rows=rows,
        broken=broken,
        encoding=encoding,
        header_row=header_record,
        extra_columns=layout.extra_columns,
        missing_columns=layout.missing_columns,
        notes=tuple(notes),
    )


# --------------------------------------------------------------------------- XLSX


def _sheet_body(
    frame: pl.DataFrame, header_index: int, table: Table, headers: list[str | None]
) -> tuple[pl.DataFrame, pl.DataFrame, _Layout] | None:
    """What :func:`_tabular` makes of a sheet's rows below its header, computed by Polars on
    whole columns. A sheet row has as many cells as the header row, so no row is broken; an
    empty cell is null, a row of empty cells no row (its number is kept). None when a column
    beyond the contract holds a value (``_extra`` JSON): the row-by-row path then reads it,
    with the same result."""
    layout = _layout(headers, table)
    cells = [f"_{pos}" for pos in range(frame.width)]
    body = (
        frame.slice(header_index + 1)
        .select(
            pl.col(c).cast(pl.String).replace("", None).alias(cells[pos])
            for pos, c in enumerate(frame.columns)
        )
        .with_row_index(ROW_NUMBER, offset=1)
        .with_columns(pl.col(ROW_NUMBER).cast(pl.Int64))
    )
    kept = body.filter(pl.any_horizontal(pl.col(c).is_not_null() for c in cells)) if cells else body.clear()
    extra = [cells[pos] for pos, (kind, _) in enumerate(layout.targets) if kind == "extra"]
    if extra and kept.select(pl.any_horizontal(pl.col(c).is_not_null().any() for c in extra)).item():
        return None
    position = {name: pos for pos, (kind, name) in enumerate(layout.targets) if kind == "col"}
    rows = kept.select(
        *[
            (pl.col(cells[position[c.name]]) if c.name in position else pl.lit(None, pl.String)).alias(c.name)
            for c in table.columns
        ],
        pl.lit(None, pl.String).alias(EXTRA),
        pl.col(ROW_NUMBER),
    )
    return (
        rows.cast(pl.Schema(rows_schema(table))),
        _broken_frame([]),
        _Layout(layout.targets, (), layout.missing_columns),
    )


def read_xlsx(path: Path, table: Table) -> Delivered:
    """Read an XLSX delivery: every cell as text, header row found by content.

    Numeric cells come out as Excel shows them in General format (an integral
    number without ".0", so an Excel serial date reads "45238").
    """
    try:
        reader = fastexcel.read_excel(str(path))
    except Exception as exc:  # fastexcel raises its own error classes
        raise ReadError(f"not a readable workbook: {exc}") from exc

    notes: list[str] = []
    chosen: tuple[str, pl.DataFrame, int] | None = None
    for sheet in reader.sheet_names:
        try:
            frame = reader.load_sheet(sheet, header_row=None, skip_rows=0, dtypes="string").to_polars()
        except Exception as exc:  # a corrupt sheet: fastexcel raises its own error classes
            raise ReadError(f"sheet {sheet!r} cannot be read: {exc}") from exc
        if frame.height == 0:
            continue
        if chosen is not None:
            notes.append(f"sheet {sheet!r} not read ({frame.height} rows)")
            continue
        head = [list(r) for r in frame.head(HEADER_SCAN_ROWS).iter_rows()]
        idx = find_header(head, table)
        if idx is not None:
            chosen = (sheet, frame, idx)
        else:
            notes.append(f"sheet {sheet!r} has no header row, not read ({frame.height} rows)")
    if chosen is None:
        raise ReadError(
            f"no sheet has a header row with the contract's source headers in its first {HEADER_SCAN_ROWS} "
            f"rows (sheets: {reader.sheet_names})"
        )
    sheet, frame, idx = chosen
    if idx != table.delivery.title_rows:
        notes.append(
            f"header found on sheet row {idx + 1}; the contract says {table.delivery.title_rows} title row(s)"
        )
    headers = list(frame.row(idx))

    def body() -> Iterator[tuple[int, Sequence[str | None], str | None, str | None]]:
        for n, cells in enumerate(frame.slice(idx + 1).iter_rows(), start=1):
            if any(cells):
                yield n, cells, None, None

    columnwise = _sheet_body(frame, idx, table, headers)
    rows, broken, layout = columnwise if columnwise is not None else _tabular(table, headers, body())
    return Delivered(
        rows=rows,
        broken=broken,
        encoding="xlsx",
        header_row=idx + 1,
        extra_columns=layout.extra_columns,
        missing_columns=layout.missing_columns,
        notes=tuple(notes),
    )


# --------------------------------------------------------------------------- JSON


class _Number(str):
    """A JSON number kept as its literal text ("72.50" stays "72.50")."""


def _dump(value: Any) -> str:
    """Compact JSON of a parsed value, numbers written back as their literal text."""
    if isinstance(value, _Number):
        return str(value)
    if isinstance(value, dict):
        return (
            "{" + ",".join(f"{json.dumps(k, ensure_ascii=False)}:{_dump(v)}" for k, v in value.items()) + "}"
        )
    if isinstance(value, list):
        return "[" + ",".join(_dump(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)


def _json_text(value: Any) -> str | None:
    """A parsed JSON value as delivered text: strings and numbers as they are, the rest as JSON."""
    if value is None or value == "":
        return None
    if isinstance(value, str):  # _Number included
        return str(value)
    return _dump(value)


def _loads(text: str) -> Any:
    return json.loads(text, parse_float=_Number, parse_int=_Number, parse_constant=_Number)


class _Records:
    """Accumulates JSON objects into contract columns plus ``_extra``."""

    def __init__(self, table: Table) -> None:
        self.table = table
        self.by_source = {c.source: c.name for c in table.columns}
        self.columns: dict[str, list[str | None]] = {c.name: [] for c in table.columns}
        self.extra: list[str | None] = []
        self.rownum: list[int] = []
        self.broken: list[tuple[int, str, str]] = []
        self.seen_sources: set[str] = set()
        self.extra_keys: dict[str, None] = {}

    def add(self, rownum: int, obj: Any, raw: str | None = None) -> None:
        if not isinstance(obj, dict):
            text = raw if raw is not None else _dump(obj)
            self.broken.append((rownum, text, f"record is a JSON {type(obj).__name__}, not an object"))
            return
        extra: dict[str, str] = {}
        row: dict[str, str | None] = {}
        for key, value in obj.items():
            name = self.by_source.get(key)
            if name is not None:
                self.seen_sources.add(key)
                row[name] = _json_text(value)
            else:
                self.extra_keys.setdefault(key)
                extra_text = _json_text(value)
                if extra_text is not None:
                    extra[key] = extra_text
        for c in self.table.columns:
            self.columns[c.name].append(row.get(c.name))
        self.extra.append(_extra_json(extra))
        self.rownum.append(rownum)

    def missing(self, rows: int | None = None) -> tuple[str, ...]:
        """Contract columns no record carried (none when no record was read: ``rows``, by
        default the records added here)."""
        if not (len(self.rownum) if rows is None else rows):
            return ()
        return tuple(c.name for c in self.table.columns if c.source not in self.seen_sources)


def read_json_dump(path: Path, table: Table) -> Delivered:
    """Read an API dump ``{"code": 0, "msg": "ok", "data": {"total": N, "records": [...]}}``."""
    text, encoding = decode_text(path.read_bytes())
    try:
        doc = _loads(text)
    except json.JSONDecodeError as exc:
        raise ReadError(f"not valid JSON: {exc}") from exc
    if isinstance(doc, dict) and "code" in doc and str(doc["code"]) != "0":
        raise ReadError(f"the API dump reports failure: code={doc['code']} msg={doc.get('msg')}")
    records_path = table.delivery.records_path or "records"
    node: Any = doc
    parent: Any = None
    for part in records_path.split("."):
        if not isinstance(node, dict) or part not in node:
            raise ReadError(f"no {records_path!r} in the JSON dump")
        parent, node = node, node[part]
    if not isinstance(node, list):
        raise ReadError(f"{records_path!r} is a JSON {type(node).__name__}, not an array")
    declared: int | None = None
    if isinstance(parent, dict) and "total" in parent:
        try:
            declared = int(str(parent["total"]))
        except ValueError:
            declared = None
    acc = _Records(table)
    for i, obj in enumerate(node, start=1):
        acc.add(i, obj)
    notes = []
    if declared is not None and declared != len(node):
        notes.append(f"dump declares total={declared} but holds {len(node)} records")
    return Delivered(
        rows=_frame(table, acc.columns, acc.extra, acc.rownum),
        broken=_broken_frame(acc.broken),
        encoding=encoding,
        extra_columns=tuple(acc.extra_keys),
        missing_columns=acc.missing(),
        declared_total=declared,
        notes=tuple(notes),
    )


# A JSON line the fast path reads: one flat object, no whitespace, strings without escapes or
# control characters, numbers as JSON spells them, keys all of the contract (checked per table).
_FLAT_STRING = r'"[^"\\\x00-\x1f]*"'
_FLAT_VALUE = rf"(?:{_FLAT_STRING}|-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?|true|false|null)"
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_]+")
_ASCII_SPACE = " \t\n\r\x0b\x0c"  # what bytes.strip() strips


def _flat_lines(lines: pl.DataFrame, table: Table) -> tuple[pl.DataFrame, pl.DataFrame, set[str]]:
    """(rows read by Polars, lines left for the JSON parser, contract keys the rows carry) of the
    non-blank ``lines`` (``line``, ``lineno``). A line is read here only when the JSON parser
    would read it the same: a flat object of the contract's keys, each at most once, values
    plain (see the patterns above); its values come out as :func:`_json_text` gives them. (A
    district day of wristband vitals, 130,000 lines, takes 1.5 s through the parser.)"""
    keys = [c.source for c in table.columns]
    if not keys or not all(_PLAIN_KEY.fullmatch(k) for k in keys):
        return pl.DataFrame(schema=rows_schema(table)), lines, set()
    ordered, lines, order = _ordered_lines(lines, table)
    flat, rest, seen = _unordered_flat_lines(lines, table)
    if ordered is not None and ordered.height:
        flat = pl.concat([ordered, flat]) if flat.height else ordered
        seen |= set(order)
    return flat, rest, seen


def _line_keys(line: str) -> list[str]:
    return re.findall(r'[{,]"([A-Za-z0-9_]+)":', line)


def _ordered_lines(lines: pl.DataFrame, table: Table) -> tuple[pl.DataFrame | None, pl.DataFrame, list[str]]:
    """(rows, lines left, their key order) for the lines that are flat objects with the keys of
    the first line, in its order (a system writes its keys in one order): one regex checks them
    and reads all their values, where :func:`_unordered_flat_lines` runs a check, a count per key
    and an extraction per column (a district day of wristband vitals, 135,000 lines: read_jsonl
    0.41 -> 0.32 s). Same values, same checks."""
    keys = {c.source for c in table.columns}
    first = lines["line"][0] if lines.height else ""
    order = _line_keys(first)
    if not order or len(set(order)) != len(order) or not set(order) <= keys:
        return None, lines, []
    pattern = "^\\{" + ",".join(f'"{k}":(?P<_t{i}>{_FLAT_VALUE})' for i, k in enumerate(order)) + "\\}$"
    read = lines.with_columns(pl.col("line").str.extract_groups(pattern).struct.unnest())
    tokens = read.filter(pl.col("_t0").is_not_null())
    if not tokens.height:
        return None, lines, []
    at = {k: i for i, k in enumerate(order)}
    rows = tokens.select(
        *[
            _token_value(pl.col(f"_t{at[c.source]}") if c.source in at else pl.lit(None, pl.String)).alias(
                c.name
            )
            for c in table.columns
        ],
        pl.lit(None, dtype=pl.String).alias(EXTRA),
        pl.col("lineno").alias(ROW_NUMBER),
    )
    rest = read.filter(pl.col("_t0").is_null()).select(lines.columns)
    return rows.cast(pl.Schema(rows_schema(table))), rest, order


def _token_value(token: pl.Expr) -> pl.Expr:
    """A flat line's value token as :func:`_json_text` gives it: null and "" are no value (an
    unquoted token is never empty: the line was checked), a string without its quotes."""
    return (
        pl.when(token.is_in(["null", '""']))
        .then(None)
        .when(token.str.starts_with('"'))
        .then(token.str.strip_prefix('"').str.strip_suffix('"'))
        .otherwise(token)
    )


def _unordered_flat_lines(lines: pl.DataFrame, table: Table) -> tuple[pl.DataFrame, pl.DataFrame, set[str]]:
    """:func:`_flat_lines` for lines of any key order: one check and one count per key, one
    extraction per column."""
    keys = [c.source for c in table.columns]
    pair = rf'"(?:{"|".join(keys)})":{_FLAT_VALUE}'
    flat = pl.col("line").str.contains(rf"^\{{(?:{pair}(?:,{pair})*)?\}}$")
    counts = [
        pl.col("line").str.count_matches(f'"{k}":', literal=True).alias(f"_n{i}") for i, k in enumerate(keys)
    ]
    checked = lines.with_columns(counts).with_columns(
        _flat=pl.all_horizontal(flat, *[pl.col(f"_n{i}") <= 1 for i in range(len(keys))])
    )
    # each value's token first (an expression used several times is evaluated each time)
    fast = checked.filter(pl.col("_flat")).with_columns(
        pl.col("line").str.extract(rf'[{{,]"{c.source}":({_FLAT_STRING}|[^,}}]*)', 1).alias(f"_t{i}")
        for i, c in enumerate(table.columns)
    )
    values = [_token_value(pl.col(f"_t{i}")).alias(c.name) for i, c in enumerate(table.columns)]
    rows = fast.select(
        *values, pl.lit(None, dtype=pl.String).alias(EXTRA), pl.col("lineno").alias(ROW_NUMBER)
    )
    present = fast.select(pl.col(f"_n{i}").sum() for i in range(len(keys))).row(0)
    seen = {k for k, n in zip(keys, present, strict=True) if n}
    rest = checked.filter(~pl.col("_flat")).select("lineno", "line")
    return rows.cast(pl.Schema(rows_schema(table))), rest, seen


def read_jsonl(path: Path, table: Table, *, fast: bool = True) -> Delivered:
    """Read JSON lines; a line that is not a JSON object goes to ``broken``, the rest survives.

    ``fast``: plain lines of a UTF-8 file are read by Polars (:func:`_flat_lines`), the rest by
    the JSON parser; both give the same rows (tested against the parser alone)."""
    data = path.read_bytes()
    encoding = "utf-8"
    if data.startswith(_UTF8_BOM):
        data = data[len(_UTF8_BOM) :]
        encoding = "utf-8-sig"
    acc = _Records(table)
    gb_lines = 0
    numbered: Iterable[tuple[int, bytes]] = enumerate(data.split(b"\n"), start=1)
    flat: pl.DataFrame | None = None
    if fast:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:  # a GBK line somewhere: the parser reads every line
            text = None
        if text is not None:
            lines = (
                pl.DataFrame({"line": text.split("\n")})
                .with_row_index("lineno", offset=1)
                .with_columns(pl.col("line").str.strip_chars_end("\r"))
                .filter(pl.col("line").str.strip_chars(_ASCII_SPACE) != "")
            )
            flat, rest, seen = _flat_lines(lines, table)
            acc.seen_sources.update(seen)
            numbered = ((int(n), line.encode("utf-8")) for n, line in rest.iter_rows())
    for lineno, raw_line in numbered:
        line = raw_line.rstrip(b"\r")
        if not line.strip():
            continue
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            # A GBK line that parses is a GBK line; anything else is shown as
            # (replaced) UTF-8, which is what a truncated UTF-8 line is.
            try:
                obj = _loads(line.decode("gb18030"))
            except (UnicodeDecodeError, json.JSONDecodeError):
                acc.broken.append((lineno, line.decode("utf-8", errors="replace"), f"not UTF-8 text: {exc}"))
                continue
            gb_lines += 1
            acc.add(lineno, obj, raw=line.decode("gb18030"))
            continue
        try:
            obj = _loads(text)
        except json.JSONDecodeError as exc:
            acc.broken.append((lineno, text, f"invalid JSON: {exc}"))
            continue
        acc.add(lineno, obj, raw=text)
    if gb_lines:
        encoding = "gb18030" if gb_lines == len(acc.rownum) else f"{encoding}+gb18030"
    rows = _frame(table, acc.columns, acc.extra, acc.rownum)
    if flat is not None and flat.height:
        rows = pl.concat([flat, rows]).sort(ROW_NUMBER)
    return Delivered(
        rows=rows,
        broken=_broken_frame(acc.broken),
        encoding=encoding,
        extra_columns=tuple(acc.extra_keys),
        missing_columns=acc.missing(rows.height),
    )


# --------------------------------------------------------------------------- dispatch


def read_delivery(path: Path, table: Table) -> Delivered:
    """Read one delivered file of ``table`` according to its contract's format."""
    fmt = table.delivery.format
    if fmt == "csv":
        return read_csv(path, table)
    if fmt == "xlsx":
        return read_xlsx(path, table)
    if fmt == "json_dump":
        return read_json_dump(path, table)
    if fmt == "jsonl":
        return read_jsonl(path, table)
    raise ReadError(f"unsupported delivery format {fmt!r}")
