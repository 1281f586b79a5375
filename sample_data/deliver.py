"""Turn a system's clean rows into a delivered file, garbled as real systems garble.

A system builder hands over a frame with the contract's canonical columns in
Python types (str, int, float, date, datetime; codes as codes, streets as
street codes) plus ``_person_id`` for person-bearing rows. :func:`deliver`
then renders each value the way that system writes it, injects the faults of
``faults.yaml`` by column semantics, writes the file in the delivery's format
and encoding, and records the truth (links, faults, files, planted PII).
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import xlsxwriter

from rainbow.io import write_bytes_atomic
from sample_data import yangpu
from sample_data.config import GeneratorConfig, load_fault_specs
from sample_data.truth import TruthWriter
from schemas.contract import Column, Table
from schemas.registry import Registry

FULLWIDTH = str.maketrans("0123456789Xx", "０１２３４５６７８９Ｘｘ")
EXCEL_EPOCH = date(1899, 12, 30)
UNPARSEABLE_DATES = ("2026-02-30", "待补", "0000-00-00", "2026-13-05", "19xx-05-01", "/")
UNPARSEABLE_TIMES = ("2026-11-31 25:61:00", "待补", "0000-00-00 00:00:00", "24:00", "--")
UNKNOWN_CODES = ("未知", "其它类", "待定", "9", "X", "??")


def stable_rng(cfg: GeneratorConfig, *parts: object) -> np.random.Generator:
    """A random stream that depends only on the seed and the given names."""
    keys = [cfg.seed] + [zlib.crc32(str(p).encode("utf-8")) for p in parts]
    return np.random.default_rng(keys)


@dataclass
class GenContext:
    cfg: GeneratorConfig
    registry: Registry
    landing: Path
    truth: TruthWriter
    files_written: list[Path] = field(default_factory=list)
    rows_written: dict[str, int] = field(default_factory=dict)
    bytes_written: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class NoteSpans:
    """Planted PII in a free-text column: row index (0-based, before faults) and spans."""

    column: str
    rows: list[int]
    entity_types: list[str]
    starts: list[int]
    ends: list[int]
    values: list[str]


# ---------------------------------------------------------------- rendering


def _render_column(table: Table, col: Column, s: pl.Series) -> pl.Series:
    """Typed values -> the text the source system writes."""
    d = table.delivery
    if s.dtype == pl.Null:
        return s.cast(pl.String)
    if col.type == "date":
        return s.cast(pl.Date).dt.strftime(d.date_forms[0])
    if col.type == "timestamp":
        return s.cast(pl.Datetime("us")).dt.strftime(d.timestamp_form)
    if col.semantic == "street":
        labels = {v.code: v.zh for v in _street_values()}
        return s.replace_strict(labels, default=s, return_dtype=pl.String)
    if col.type == "decimal":
        digits = 6 if col.semantic in ("latitude", "longitude") else 3 if col.semantic == "measure" else 2
        return _fixed_decimals(s, digits)
    return s.cast(pl.String)


def _fixed_decimals(s: pl.Series, digits: int) -> pl.Series:
    """Numbers with a fixed number of decimals (15.00), as accounting systems write them."""
    v = pl.col("v").cast(pl.Float64)
    x = (v.abs() * 10**digits).round().cast(pl.Int64)
    text = pl.format(
        "{}{}.{}",
        pl.when(v < 0).then(pl.lit("-")).otherwise(pl.lit("")),
        x // 10**digits,
        (x % 10**digits).cast(pl.String).str.zfill(digits),
    )
    return pl.DataFrame({"v": s}).select(text.alias(s.name)).to_series()


def _street_values() -> list[Any]:
    from schemas import load_registry

    return load_registry().codelist("street").values


# ---------------------------------------------------------------- faults


@dataclass
class _Fault:
    kind: str
    eligible: Callable[[str], bool]
    apply: Callable[[str, np.random.Generator], str | None]


def _is_mobile(v: str) -> bool:
    return len(v) == 11 and v.isdigit() and v[0] == "1"


def _id_bad_checksum(v: str, rng: np.random.Generator) -> str:
    digits = "0123456789X"
    wrong = [c for c in digits if c != v[-1].upper()]
    return v[:-1] + wrong[int(rng.integers(len(wrong)))]


def _phone_separators(v: str, rng: np.random.Generator) -> str:
    sep = " -"[int(rng.integers(2))]
    return f"{v[:3]}{sep}{v[3:7]}{sep}{v[7:]}"


def _abbrev_address(v: str, rng: np.random.Generator) -> str:
    for prefix in ("上海市杨浦区", "上海市"):
        if v.startswith(prefix):
            return v[len(prefix) :] if rng.random() < 0.6 else "杨浦区" + v[len(prefix) :]
    return v


@functools.cache
def _street_aliases() -> dict[str, tuple[str, ...]]:
    return {sv.zh: tuple(sv.aliases) for sv in _street_values() if sv.aliases and sv.valid_until is None}


def _street_alias(v: str, rng: np.random.Generator) -> str | None:
    aliases = _street_aliases().get(v)
    return aliases[int(rng.integers(len(aliases)))] if aliases else None


_SPLIT_LABELS = {"五角场街道", "长海路街道"}


def _cell_faults(table: Table, col: Column, delivery_date: date) -> list[_Fault]:
    d = table.delivery
    out: list[_Fault] = []
    required_event_time = col.name in table.event_time_columns
    if col.semantic == "resident_id":
        out += [
            _Fault("id_missing", lambda v: True, lambda v, r: None),
            _Fault("id_15_digit", lambda v: v[6:8] == "19", lambda v, r: yangpu.to_15_digit(v)),
            _Fault("id_lowercase_x", lambda v: v.endswith("X"), lambda v, r: v[:-1] + "x"),
            _Fault("id_fullwidth", lambda v: True, lambda v, r: v.translate(FULLWIDTH)),
            _Fault("id_bad_checksum", lambda v: len(v) == 18, _id_bad_checksum),
        ]
    elif col.semantic in ("mobile_phone", "phone"):
        out += [
            _Fault("phone_plus86", _is_mobile, lambda v, r: ("+86 " if r.random() < 0.5 else "+86") + v),
            _Fault("phone_separators", _is_mobile, _phone_separators),
            _Fault("phone_fullwidth", _is_mobile, lambda v, r: v.translate(FULLWIDTH)),
        ]
    elif col.semantic == "person_name":
        out += [
            _Fault(
                "name_homophone",
                lambda v: any(ch in yangpu.homophones() for ch in v),
                yangpu.homophone_variant,
            ),
            _Fault(
                "name_lookalike", lambda v: any(ch in yangpu.LOOKALIKES for ch in v), yangpu.lookalike_variant
            ),
            _Fault("name_padded", lambda v: len(v) == 2, lambda v, r: f"{v[0]}  {v[1]}"),
        ]
    elif col.semantic == "address":
        out.append(_Fault("address_abbrev", lambda v: v.startswith("上海市"), _abbrev_address))
    elif col.semantic == "street":
        out += [
            _Fault("street_old_name", lambda v: v in _SPLIT_LABELS, lambda v, r: yangpu.OLD_WUJIAOCHANG_TOWN),
            _Fault("street_alias", lambda v: v in _street_aliases(), _street_alias),
        ]
    if col.type == "date" and len(d.date_forms) > 1:
        forms = [f for f in d.date_forms[1:] if f != "excel_serial" or d.format == "xlsx"]

        def variant(v: str, r: np.random.Generator, forms: list[str] = forms) -> str | None:
            try:
                parsed = datetime.strptime(v, d.date_forms[0].replace("%-", "%")).date()
            except ValueError:
                return None
            form = forms[int(r.integers(len(forms)))]
            if form == "excel_serial":
                return str((parsed - EXCEL_EPOCH).days)
            return parsed.strftime(form)

        def parses(v: str) -> bool:
            try:
                datetime.strptime(v, d.date_forms[0].replace("%-", "%"))
            except ValueError:
                return False
            return True

        out.append(_Fault("date_variant", parses, variant))
    if required_event_time:

        def future(v: str, r: np.random.Generator, col: Column = col) -> str:
            when = datetime.combine(delivery_date, datetime.min.time()) + timedelta(
                days=int(r.integers(30, 400)), minutes=int(r.integers(0, 1440))
            )
            return when.strftime(d.date_forms[0] if col.type == "date" else d.timestamp_form)

        out.append(_Fault("date_future", lambda v: True, future))
    if not col.nullable and col.type in ("date", "timestamp"):
        pool = UNPARSEABLE_DATES if col.type == "date" else UNPARSEABLE_TIMES
        out.append(_Fault("date_unparseable", lambda v: True, lambda v, r: pool[int(r.integers(len(pool)))]))
    if col.range and col.type in ("integer", "decimal"):
        lo, hi = col.range

        def impossible(
            v: str, r: np.random.Generator, lo: float = lo, hi: float = hi, t: str = col.type
        ) -> str:
            span = hi - lo
            value = hi + span * (0.5 + r.random()) if (lo <= 0 or r.random() < 0.8) else lo - span * 0.5
            if lo < 0 <= hi:
                value = hi + abs(span) * (0.5 + r.random())
            return str(round(value)) if t == "integer" else f"{value:.2f}"

        out.append(_Fault("value_impossible", lambda v: True, impossible))
    if col.codelist:
        out.append(_Fault("code_unknown", lambda v: True, lambda v, r: UNKNOWN_CODES[int(r.integers(6))]))
    if not col.nullable and col.name not in table.primary_key and col.semantic != "identifier":
        out.append(_Fault("missing_required", lambda v: True, lambda v, r: None))
    return out


def _inject_cell_faults(
    ctx: GenContext, table: Table, frame: pl.DataFrame, rng: np.random.Generator, delivery_date: date
) -> tuple[pl.DataFrame, list[dict[str, Any]]]:
    """At most one fault per cell: one uniform draw per cell picks the kind by rate."""
    scale = table.delivery.fault_scale
    faults: list[dict[str, Any]] = []
    specs = load_fault_specs()
    n = frame.height
    new_cols: dict[str, pl.Series] = {}
    for col in table.columns:
        kinds = _cell_faults(table, col, delivery_date)
        if not kinds or n == 0:
            continue
        rates = np.array([ctx.cfg.rate(k.kind) * scale for k in kinds])
        if ctx.cfg.record_exposure:
            present = [v for v in frame[col.name].to_list() if v is not None]
            ctx.truth.add(
                "fault_exposure",
                [
                    {
                        "table": table.name,
                        "kind": k.kind,
                        "eligible": sum(1 for v in present if k.eligible(v)),
                        "rate": float(r),
                    }
                    for k, r in zip(kinds, rates, strict=True)
                ],
            )
        bounds = np.cumsum(rates)
        u = rng.random(n)
        hit = np.nonzero(u < bounds[-1])[0]
        if hit.size == 0:
            continue
        series = frame[col.name]
        values = series.gather(hit).to_list()
        choice = np.searchsorted(bounds, u[hit], side="right")
        changed_idx: list[int] = []
        changed_val: list[str | None] = []
        for i, v, k in zip(hit.tolist(), values, choice.tolist(), strict=True):
            if v is None:
                continue
            fault = kinds[k]
            if not fault.eligible(v):
                continue
            out = fault.apply(v, rng)
            if out == v or (out is None and fault.kind not in ("id_missing", "missing_required")):
                continue
            changed_idx.append(i)
            changed_val.append(out)
            spec = specs[fault.kind]
            faults.append(
                {
                    "row_index": i,
                    "column": col.name,
                    "kind": fault.kind,
                    "severity": spec.severity,
                    "reason": spec.reason,
                    "original": v,
                    "delivered": out,
                }
            )
        if changed_idx:
            new_cols[col.name] = series.scatter(changed_idx, changed_val)
    if new_cols:
        frame = frame.with_columns(list(new_cols.values()))
    return frame, faults


# ---------------------------------------------------------------- writers


def _xlsx_bytes(table: Table, frame: pl.DataFrame, title: str | None, created: datetime) -> bytes:
    buf = io.BytesIO()
    wb = xlsxwriter.Workbook(buf, {"constant_memory": True, "in_memory": True})
    wb.set_properties({"created": created, "author": "export", "title": table.zh})
    ws = wb.add_worksheet("Sheet1")
    row = 0
    ncol = len(table.columns)
    d = table.delivery
    if d.title_rows:
        ws.write_string(0, 0, title or table.zh)
        row = 1
        for extra in range(1, d.title_rows):
            ws.write_string(extra, 0, f"制表日期：{created:%Y-%m-%d}")
            row += 1
    for j, col in enumerate(table.columns):
        ws.write_string(row, j, col.source)
    numeric_cols = {j for j, c in enumerate(table.columns) if c.type in ("integer", "decimal")}
    date_cols = {j for j, c in enumerate(table.columns) if c.type == "date"}
    columns = [frame[c.name].to_list() for c in table.columns]
    for i in range(frame.height):
        r = row + 1 + i
        for j in range(ncol):
            v = columns[j][i]
            if v is None:
                continue
            if j in numeric_cols or (j in date_cols and len(v) == 5 and v.isdigit()):
                try:
                    num = float(v)
                except ValueError:
                    ws.write_string(r, j, v)
                else:
                    ws.write_number(r, j, num)
            else:
                ws.write_string(r, j, v)
    wb.close()
    return buf.getvalue()


def _typed(table: Table, frame: pl.DataFrame) -> list[dict[str, Any]]:
    """Records with JSON numbers where the text is a clean number (as APIs send them)."""
    numeric = {c.name: c.type for c in table.columns if c.type in ("integer", "decimal")}
    keys = [(c.name, c.source) for c in table.columns]
    out = []
    for rec in frame.select([c.name for c in table.columns]).iter_rows(named=True):
        obj: dict[str, Any] = {}
        for name, source in keys:
            v = rec[name]
            if v is not None and name in numeric:
                try:
                    obj[source] = int(v) if numeric[name] == "integer" else float(v)
                except ValueError:
                    obj[source] = v
            else:
                obj[source] = v
        out.append(obj)
    return out


def _jsonl_bytes(
    table: Table, frame: pl.DataFrame, rng: np.random.Generator, rate: float
) -> tuple[bytes, list[int]]:
    """JSON lines; a few lines are cut short as a flaky uplink truncates them."""
    numeric = [c for c in table.columns if c.type in ("integer", "decimal")]
    typed = frame.select(
        [
            (
                pl.col(c.name).cast(pl.Int64 if c.type == "integer" else pl.Float64, strict=False)
                if c in numeric
                else pl.col(c.name)
            ).alias(c.source)
            for c in table.columns
        ]
    )
    buf = io.BytesIO()
    typed.write_ndjson(buf)
    lines = buf.getvalue().split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    cut = np.nonzero(rng.random(len(lines)) < rate)[0].tolist()
    for i in cut:
        line = lines[i]
        lines[i] = line[: max(1, int(len(line) * (0.2 + 0.6 * rng.random())))]
    return (b"\n".join(lines) + b"\n" if lines else b""), cut


def _encode(text: str, encoding: str) -> bytes:
    if encoding == "gbk":
        return text.encode("gb18030")
    if encoding == "utf-8-sig":
        return text.encode("utf-8-sig")
    return text.encode("utf-8")


# ---------------------------------------------------------------- deliver


def _fault_row(
    table: Table,
    source_file: str,
    row_number: int | None,
    kind: str,
    column: str | None = None,
    original: str | None = None,
    delivered: str | None = None,
) -> dict[str, Any]:
    """One truth/faults row; severity and reason code come from faults.yaml."""
    spec = load_fault_specs()[kind]
    return {
        "table": table.name,
        "source_file": source_file,
        "row_number": row_number,
        "column": column,
        "kind": kind,
        "severity": spec.severity,
        "reason": spec.reason,
        "original": original,
        "delivered": delivered,
    }


def deliver(
    ctx: GenContext,
    table: Table,
    frame: pl.DataFrame,
    on: date,
    *,
    street_label: str | None = None,
    title: str | None = None,
    encoding: str | None = None,
    notes: list[NoteSpans] | None = None,
) -> Path:
    """Render, garble, write and record one delivered file of ``table``."""
    d = table.delivery
    rel = d.path.format(date=on, street=street_label or "")
    path = ctx.landing / rel
    rng = stable_rng(ctx.cfg, table.name, on.isoformat(), street_label or "")
    encoding = encoding or d.encoding
    codelists = ctx.registry.codelists

    person = frame["_person_id"] if "_person_id" in frame.columns else None
    rendered = []
    for col in table.columns:
        s = frame[col.name] if col.name in frame.columns else pl.Series(col.name, [None] * frame.height)
        s = _render_column(table, col, s).alias(col.name)
        if col.codelist and col.semantic == "code" and d.format in ("csv", "xlsx"):
            labels = {v.code: v.zh for v in codelists[col.codelist].values}
            s = s.cast(pl.String).replace_strict(labels, default=s.cast(pl.String), return_dtype=pl.String)
        rendered.append(s)
    text = pl.DataFrame(rendered)
    text, faults = _inject_cell_faults(ctx, table, text, rng, on)

    # Row-level: exact duplicate rows appended at the end (event tables).
    dup_rate = ctx.cfg.rate("duplicate_row") * d.fault_scale
    dup_idx: list[int] = []
    if table.kind == "event" and text.height:
        dup_idx = np.nonzero(rng.random(text.height) < dup_rate)[0].tolist()
        if dup_idx:
            text = pl.concat([text, text[dup_idx]])
            if person is not None:
                person = pl.concat([person, person.gather(dup_idx)])
    n_orig = text.height - len(dup_idx)
    if ctx.cfg.record_exposure:
        exposure = [
            {
                "table": table.name,
                "kind": "duplicate_file",
                "eligible": 1,
                "rate": ctx.cfg.rate("duplicate_file"),
            }
        ]
        if table.kind == "event":
            exposure.append(
                {"table": table.name, "kind": "duplicate_row", "eligible": n_orig, "rate": dup_rate}
            )
        if d.format == "jsonl":
            exposure.append(
                {
                    "table": table.name,
                    "kind": "truncated_line",
                    "eligible": text.height,
                    "rate": ctx.cfg.rate("truncated_line") * d.fault_scale,
                }
            )
        ctx.truth.add("fault_exposure", exposure)

    cut_lines: list[int] = []
    if d.format == "csv":
        df = text.rename({c.name: c.source for c in table.columns})
        body = df.write_csv(line_terminator="\r\n" if encoding == "gbk" else "\n", null_value="")
        data = _encode(body, encoding)
    elif d.format == "xlsx":
        created = datetime.combine(on, datetime.min.time()) + timedelta(hours=8)
        data = _xlsx_bytes(table, text, title, created)
    elif d.format == "json_dump":
        assert d.records_path
        records = _typed(table, text)
        payload: dict[str, Any] = {"records": records}
        for key in reversed(d.records_path.split(".")[:-1]):
            payload = {key: {"total": len(records), "pageNo": 1, **payload}}
        doc = {"code": 0, "msg": "成功", "timestamp": f"{on:%Y-%m-%d} 23:59:59", **payload}
        data = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    else:
        data, cut_lines = _jsonl_bytes(table, text, rng, ctx.cfg.rate("truncated_line") * d.fault_scale)
    write_bytes_atomic(path, data)
    ctx.files_written.append(path)
    ctx.rows_written[table.name] = ctx.rows_written.get(table.name, 0) + text.height
    ctx.bytes_written[table.name] = ctx.bytes_written.get(table.name, 0) + len(data)
    sha = hashlib.sha256(data).hexdigest()
    src = rel
    ctx.truth.add(
        "files",
        [
            {
                "table": table.name,
                "source_file": src,
                "delivery_date": on,
                "rows": text.height,
                "format": d.format,
                "encoding": encoding,
                "sha256": sha,
                "duplicate_of": None,
            }
        ],
    )

    # Truth: faults (row numbers are 1-based data rows / records / lines).
    fault_rows = [
        _fault_row(table, src, f["row_index"] + 1, f["kind"], f["column"], f["original"], f["delivered"])
        for f in faults
    ]
    fault_rows += [
        _fault_row(table, src, n_orig + k + 1, "duplicate_row", original=str(i + 1))
        for k, i in enumerate(dup_idx)
    ]
    fault_rows += [_fault_row(table, src, i + 1, "truncated_line") for i in cut_lines]
    ctx.truth.add("faults", fault_rows)

    if person is not None:
        links = pl.DataFrame(
            {"person_id": person.cast(pl.String), "row_number": np.arange(1, text.height + 1)}
        ).filter(pl.col("person_id").is_not_null())
        ctx.truth.add(
            "links",
            links.with_columns(table=pl.lit(table.name), source_file=pl.lit(src), role=pl.lit("subject")),
        )
    for note in notes or []:
        ctx.truth.add(
            "pii_in_notes",
            pl.DataFrame(
                {
                    "row_number": [r + 1 for r in note.rows],
                    "entity_type": note.entity_types,
                    "start": note.starts,
                    "end": note.ends,
                    "value": note.values,
                },
                schema={
                    "row_number": pl.Int64,
                    "entity_type": pl.String,
                    "start": pl.Int64,
                    "end": pl.Int64,
                    "value": pl.String,
                },
            ).with_columns(table=pl.lit(table.name), source_file=pl.lit(src), column=pl.lit(note.column)),
        )

    # File-level: the same bytes delivered again under a browser-style copy name.
    if rng.random() < ctx.cfg.rate("duplicate_file"):
        copy = path.with_name(f"{path.stem}(1){path.suffix}")
        write_bytes_atomic(copy, data)
        ctx.files_written.append(copy)
        ctx.bytes_written[table.name] += len(data)
        copy_rel = str(Path(rel).with_name(copy.name))
        ctx.truth.add(
            "files",
            [
                {
                    "table": table.name,
                    "source_file": copy_rel,
                    "delivery_date": on,
                    "rows": text.height,
                    "format": d.format,
                    "encoding": encoding,
                    "sha256": sha,
                    "duplicate_of": src,
                }
            ],
        )
        ctx.truth.add("faults", [_fault_row(table, copy_rel, None, "duplicate_file", original=src)])
    return path
