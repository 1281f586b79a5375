"""Readers: one tiny delivery per format, exact values and row numbers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import xlsxwriter

from assets.ingest.readers import EXTRA, ROW_NUMBER, Delivered, ReadError, read_delivery
from rainbow.settings import Lake
from schemas import load_registry
from schemas.contract import Table


def table(name: str) -> Table:
    return load_registry().table(name)


def headers(t: Table) -> list[str]:
    return [c.source for c in t.columns]


def col(df: pl.DataFrame, name: str) -> list[str | None]:
    return df.get_column(name).to_list()


def test_when_csv_is_gbk_then_it_decodes_as_gb18030_and_keeps_text(tmp_path: Path) -> None:
    t = table("meal_transactions")
    rows = [
        "T001,C9001,张三, 310110194503021234 ,P01,长者食堂,2024/11/5 11:30:00,午餐,15.00,10,5.00,敬老卡",
        "T002,,李四,,P01,控江路长者食堂,2024/11/5 17:05:00,晚餐,12.5,,12.5,",
    ]
    path = tmp_path / "meal_txn_20241105.csv"
    path.write_bytes(("\r\n".join([",".join(headers(t)), *rows]) + "\r\n").encode("gbk"))

    d = read_delivery(path, t)

    assert d.encoding == "gb18030"
    assert d.header_row == 1
    assert d.rows.columns == [*t.column_names, EXTRA, ROW_NUMBER]
    assert all(dtype == pl.String for name, dtype in d.rows.schema.items() if name != ROW_NUMBER)
    assert col(d.rows, "transaction_id") == ["T001", "T002"]
    assert col(d.rows, "name") == ["张三", "李四"]
    assert col(d.rows, "id_number") == [" 310110194503021234 ", None]  # no trimming; empty -> null
    assert col(d.rows, "senior_card_no") == ["C9001", None]
    assert col(d.rows, "amount") == ["15.00", "12.5"]  # text exactly as delivered
    assert col(d.rows, "meal_time") == ["2024/11/5 11:30:00", "2024/11/5 17:05:00"]
    assert col(d.rows, "payment_method") == ["敬老卡", None]
    assert col(d.rows, ROW_NUMBER) == [1, 2]
    assert col(d.rows, EXTRA) == [None, None]
    assert d.broken.height == 0
    assert d.records_seen == 2


def test_when_csv_has_a_bom_then_the_first_header_still_matches(tmp_path: Path) -> None:
    t = table("screenings")
    row = "S1,王五,310,男,1940-01-01,小学,2024年11月5日,MMSE,24,轻度认知障碍,延吉社区卫生服务中心,赵医生,复诊"
    path = tmp_path / "screenings_20241105.csv"
    path.write_bytes(("\n".join([",".join(headers(t)), row]) + "\n").encode("utf-8-sig"))

    d = read_delivery(path, t)

    assert d.encoding == "utf-8-sig"
    assert col(d.rows, "screening_id") == ["S1"]  # "\ufeff筛查编号" would not have matched
    assert col(d.rows, "screening_date") == ["2024年11月5日"]
    assert d.missing_columns == ()
    assert d.extra_columns == ()


def test_when_csv_rows_are_ragged_then_they_are_broken_and_the_rest_survives(tmp_path: Path) -> None:
    t = table("device_returns")
    text = (
        "合同编号,归还日期,归还网点编号,辅具状况,归还原因,新增列\n"  # no column missing, one unknown
        "C1,2024-01-02,P1,良好,康复,x\n"  # row 1
        "\n"  # row 2: blank, keeps its position
        'C2,2024-01-03,"P""2\n第二行",,,\n'  # row 3: quoted newline and quote
        "C3,2024-01-04\n"  # row 4: short
        'C4,2024-01-05,"P4,好,坏,\n'  # row 5: stray quote
        "C5,2024-01-06,P5,良好,去世,\n"  # row 6: recovered after the stray quote
        "C6,2024-01-06,P5,良好,去世,,,zz\n"  # row 7: surplus field with content
        "C7,2024-01-07,P7,良好,去世,,\n"  # row 8: surplus empty field is harmless
    )
    path = tmp_path / "returns_20240102.csv"
    path.write_text(text, encoding="utf-8")

    d = read_delivery(path, t)

    assert d.encoding == "utf-8"
    assert col(d.rows, "contract_id") == ["C1", "C2", "C5", "C7"]
    assert col(d.rows, ROW_NUMBER) == [1, 3, 6, 8]
    assert col(d.rows, "rental_point_id")[1] == 'P"2\n第二行'
    assert json.loads(col(d.rows, EXTRA)[0] or "") == {"新增列": "x"}
    assert col(d.rows, EXTRA)[1:] == [None, None, None]
    assert d.extra_columns == ("新增列",)
    assert col(d.broken, ROW_NUMBER) == [4, 5, 7]
    assert col(d.broken, "_raw_text") == [
        "C3,2024-01-04",
        'C4,2024-01-05,"P4,好,坏,',
        "C6,2024-01-06,P5,良好,去世,,,zz",
    ]
    assert all(col(d.broken, "_error"))
    assert d.records_seen == 7


def test_when_a_csv_column_is_missing_then_it_is_null_and_reported(tmp_path: Path) -> None:
    t = table("device_returns")
    path = tmp_path / "returns_20240103.csv"
    path.write_text("合同编号,归还日期,辅具状况,归还原因\nC1,2024-01-02,良好,康复\n", encoding="utf-8")

    d = read_delivery(path, t)

    assert d.missing_columns == ("rental_point_id",)
    assert col(d.rows, "rental_point_id") == [None]
    assert col(d.rows, "condition") == ["良好"]


def test_when_no_row_carries_the_contract_headers_then_read_error(tmp_path: Path) -> None:
    path = tmp_path / "returns_20240104.csv"
    path.write_text("a,b,c\n1,2,3\n", encoding="utf-8")
    with pytest.raises(ReadError, match="no header row"):
        read_delivery(path, table("device_returns"))


def test_when_xlsx_has_a_title_row_then_the_header_is_found_and_serial_dates_read_as_integers(
    tmp_path: Path,
) -> None:
    t = table("care_bed_contracts")  # the contract says no title row: the file has one anyway
    path = tmp_path / "contracts_202411.xlsx"
    wb = xlsxwriter.Workbook(str(path))
    ws = wb.add_worksheet("签约信息")
    ws.merge_range(0, 0, 0, 5, "杨浦区家庭照护床位签约信息（2024年11月）")
    ws.write_row(1, 0, [*headers(t), "备注"])
    ws.write_row(
        2, 0, ["B001", "赵六", "310110194001011234", "13800000000", "控江路1弄2号301室", "控江路街道"]
    )
    ws.write_string(2, 6, "照护三级")
    ws.write_string(2, 7, "P01")
    ws.write_number(2, 8, 45238)  # Excel serial date written as a number
    ws.write_string(2, 9, "2025-11-06")
    ws.write_string(2, 10, "履约中")
    # row 3 (sheet row 4) left blank
    ws.write_string(4, 0, "B002")
    ws.write_number(4, 8, 45239.5)
    ws.write_string(4, len(t.columns), "补签")
    wb.close()

    d = read_delivery(path, t)

    assert d.encoding == "xlsx"
    assert d.header_row == 2
    assert any("title row" in n for n in d.notes)
    assert col(d.rows, "contract_id") == ["B001", "B002"]
    assert col(d.rows, ROW_NUMBER) == [1, 3]
    assert col(d.rows, "signed_on") == ["45238", "45239.5"]
    assert col(d.rows, "ends_on") == ["2025-11-06", None]
    assert col(d.rows, "id_number") == ["310110194001011234", None]
    assert col(d.rows, EXTRA) == [None, json.dumps({"备注": "补签"}, ensure_ascii=False)]
    assert d.broken.height == 0


def test_when_json_dump_then_records_are_read_with_literal_numbers(tmp_path: Path) -> None:
    t = table("muni_assessments")
    records = (
        '[{"pgbh": "A1", "sfzh": "310110194001011234", "xm": "钱七", "pgrq": "2024-11-05", '
        '"pglx": "首次评估", "pgdj": "照护二级", "yxqz": 20261104, "pgjg": "", "fs": 72.50},'
        ' ["not", "an", "object"],'
        ' {"pgbh": "A3", "xm": "孙八", "pgrq": null, "pgdj": "照护四级", "ext": {"k": [1, 2]}}]'
    )
    path = tmp_path / "assessments_20241105.json"
    path.write_text(
        f'{{"code": 0, "msg": "ok", "data": {{"total": 4, "records": {records}}}}}', encoding="utf-8"
    )

    d = read_delivery(path, t)

    assert col(d.rows, "assessment_id") == ["A1", "A3"]
    assert col(d.rows, ROW_NUMBER) == [1, 3]
    assert col(d.rows, "valid_until") == ["20261104", None]  # a number kept as its text
    assert col(d.rows, "assessor_org") == [None, None]  # "" -> null
    assert col(d.rows, "assessment_date") == ["2024-11-05", None]
    assert col(d.rows, EXTRA) == ['{"fs": "72.50"}', '{"ext": "{\\"k\\":[1,2]}"}']
    assert d.extra_columns == ("fs", "ext")
    assert col(d.broken, ROW_NUMBER) == [2]
    assert d.declared_total == 4
    assert any("total=4" in n for n in d.notes)
    assert d.records_seen == 3


def test_when_json_dump_reports_an_error_code_then_read_error(tmp_path: Path) -> None:
    path = tmp_path / "assessments_20241106.json"
    path.write_text('{"code": 500, "msg": "服务器内部错误", "data": null}', encoding="utf-8")
    with pytest.raises(ReadError, match="code=500"):
        read_delivery(path, table("muni_assessments"))


def test_when_a_jsonl_line_is_truncated_then_it_is_broken_and_the_rest_survives(tmp_path: Path) -> None:
    t = table("wristband_events")
    lines = [
        '{"eid": "E1", "imei": "861234", "ts": "2024-11-05T08:00:00+08:00", "type": "SOS", "lat": 31.2901}',
        '{"eid": "E2", "imei": "861235", "ts": "2024-11-05T08:0',  # truncated mid-way
        "",
        '{"eid": "E3", "imei": "861236", "ts": "2024-11-05T09:00:00+08:00", "type": "跌倒", "lng": 121.5}',
    ]
    path = tmp_path / "events_20241105.jsonl"
    data = ("\n".join(lines) + "\n").encode("utf-8")
    data += '{"eid": "E4", "type": "电子围栏越界"'.encode()[:-5] + b"\n"  # truncated inside a character
    path.write_bytes(data)

    d = read_delivery(path, t)

    assert col(d.rows, "event_id") == ["E1", "E3"]
    assert col(d.rows, ROW_NUMBER) == [1, 4]
    assert col(d.rows, "lat") == ["31.2901", None]
    assert col(d.rows, "lon") == [None, "121.5"]
    assert col(d.rows, "event_type") == ["SOS", "跌倒"]
    assert col(d.broken, ROW_NUMBER) == [2, 5]
    assert col(d.broken, "_raw_text")[0] == lines[1]
    assert d.missing_columns == ()
    assert d.encoding == "utf-8"
    assert d.records_seen == 4


def test_the_column_wise_csv_path_reads_exactly_what_the_record_path_reads(
    sample_lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every generated CSV delivery (planted faults included: ragged rows, stray quotes, blank
    lines, extra columns) read both ways gives the same rows, broken rows and layout."""
    from assets.ingest import readers
    from assets.ingest.raw import discover_files

    csvs = [
        (path, table)
        for _, table in load_registry().tables()
        for path, _ in discover_files(sample_lake, table).files
        if path.suffix.lower() == ".csv"
    ]
    assert len(csvs) > 50
    fast_used = 0
    original = readers._plain_csv_body
    for path, table in csvs:
        both = []
        for fast in (True, False):
            if fast:
                monkeypatch.setattr(readers, "_plain_csv_body", original)
            else:
                monkeypatch.setattr(readers, "_plain_csv_body", lambda *args: None)
            both.append(readers.read_csv(path, table))
        args = _fast_args(path, table)
        fast_used += readers._is_plain(args[0]) and original(*args) is not None
        _assert_same(both[0], both[1], path)
    assert fast_used > len(csvs) // 2  # the column-wise path carries most files


def _fast_args(path: Path, table: Table) -> tuple[str, int, Table, list[str]]:
    """The arguments read_csv hands the column-wise path (header found by the record path)."""
    from assets.ingest import readers

    text, _ = readers.decode_text(path.read_bytes())
    lines = readers._split_lines(text)
    for i, rec in enumerate(readers.csv.reader(lines[: readers.HEADER_SCAN_ROWS])):
        if readers.find_header([rec], table) == 0:
            return text, i + 1, table, rec
    raise AssertionError(f"no header in {path}")


def _same_delivery(path: Path, t: Table) -> int:
    """Reads ``path`` with and without the fast path for flat lines; both must agree exactly."""
    from assets.ingest.readers import read_jsonl

    fast, slow = read_jsonl(path, t), read_jsonl(path, t, fast=False)
    assert fast.rows.equals(slow.rows), path
    assert fast.broken.equals(slow.broken), path
    assert (fast.encoding, fast.extra_columns, fast.missing_columns) == (
        slow.encoding,
        slow.extra_columns,
        slow.missing_columns,
    ), path
    return fast.rows.height


def test_flat_json_lines_read_by_polars_equal_the_json_parsers_rows(tmp_path: Path) -> None:
    """Every kind of line the fast path must leave to the parser (or read the parser's way)."""
    t = table("wristband_events")
    lines = [
        '{"eid":"E1","imei":"861234","ts":"2024-11-05T08:00:00+08:00","type":"SOS","lat":31.2901,"lng":121.50}',
        '{"eid":"E2","imei":"861234","ts":"2024-11-05T08:00:00+08:00","type":"跌倒","lat":null,"lng":""}',
        '{"eid":"E3","type":"null","lat":-0.0,"lng":1.5E+2,"imei":true}',  # keys out of order, one missing
        '{"eid": "E4", "imei": "861235"}',  # whitespace: the parser's
        '{"eid":"E5","note":"extra key","imei":"1"}',  # a key outside the contract
        '{"eid":"E6","eid":"E6b"}',  # a key twice: the parser keeps the last
        '{"eid":"E\\u0037","imei":"a\\"b"}',  # escapes
        '{"eid":"E8","lat":01}',  # not JSON (leading zero)
        '{"eid":"E9","lat":NaN}',  # the parser's constant
        '{"eid":"E10","loc":{"lat":1}}',  # nested
        '["E11"]',  # not an object
        "{}",
        '{"eid":"E13","imei":"tab\there"}',  # a control character inside a string: invalid JSON
        "\u3000",  # a full-width space is not blank to bytes.strip()
        "   ",
        '{"eid":"E16","imei":"861236","ts":"2024-11-05T09:00:00+08:00"}\r',
        '{"eid":"E17","lat":31.29}{"eid":"E18"}',
        '{"eid":"","imei":"长者","type":"电子围栏越界"}',
    ]
    path = tmp_path / "events_20241105.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert _same_delivery(path, t) == 12  # E9: the parser takes NaN
    # a file with a GBK line is read by the parser throughout; a BOM is kept out of the first key
    path.write_bytes(
        "\n".join(lines[:3]).encode("utf-8") + b"\n" + '{"eid":"G1","type":"跌倒"}'.encode("gbk")
    )
    assert _same_delivery(path, t) == 4
    path.write_bytes(b"\xef\xbb\xbf" + "\n".join(lines).encode("utf-8"))
    assert _same_delivery(path, t) == 12  # E9: the parser takes NaN
    # the first line sets the key order the one-regex path reads: another order, a key outside
    # the contract, a line that is no object - the same rows every time
    for first in (2, 4, 10, 3):
        path.write_text("\n".join([lines[first], *lines[:first], *lines[first + 1 :]]), encoding="utf-8")
        assert _same_delivery(path, t) == 12, first


def test_the_samples_wristband_deliveries_read_the_same_with_and_without_the_fast_path(
    sample_lake: Lake,
) -> None:
    files = sorted((sample_lake.landing / "wristband").glob("*.jsonl"))
    assert len(files) >= 60
    rows = sum(
        _same_delivery(f, table("wristband_vitals" if "vitals" in f.name else "wristband_events"))
        for f in files
    )
    assert rows > 10_000
    # and most lines were the fast path's
    from assets.ingest.readers import _flat_lines, _line_keys, _ordered_lines

    lines = pl.DataFrame({"line": files[0].read_text(encoding="utf-8").splitlines()}).with_row_index(
        "lineno", offset=1
    )
    kind = table("wristband_events" if "events" in files[0].name else "wristband_vitals")
    flat, _, _ = _flat_lines(lines, kind)
    assert flat.height > 0.9 * lines.height
    ordered, _, order = _ordered_lines(lines, kind)  # in the delivering system's one key order
    assert ordered is not None and ordered.height > 0.9 * lines.height
    assert order == _line_keys(lines["line"][-1])


def _both_sheet_paths(
    path: Path, t: Table, monkeypatch: pytest.MonkeyPatch
) -> tuple[Delivered, Delivered, bool]:
    """``path`` read by the column-wise sheet path and by the row-by-row path; whether the
    column-wise path took it."""
    from assets.ingest import readers

    original = readers._sheet_body
    took: list[bool] = []

    def noting(*args: Any) -> Any:
        out = original(*args)
        took.append(out is not None)
        return out

    monkeypatch.setattr(readers, "_sheet_body", noting)
    fast = readers.read_xlsx(path, t)
    monkeypatch.setattr(readers, "_sheet_body", lambda *args: None)
    slow = readers.read_xlsx(path, t)
    monkeypatch.setattr(readers, "_sheet_body", original)
    return fast, slow, took == [True]


def _assert_same(a: Delivered, b: Delivered, path: Path) -> None:
    assert a.rows.equals(b.rows), path
    assert a.broken.equals(b.broken), path
    assert (a.header_row, a.extra_columns, a.missing_columns, a.notes) == (
        b.header_row,
        b.extra_columns,
        b.missing_columns,
        b.notes,
    ), path


def test_the_column_wise_sheet_path_reads_exactly_what_the_row_path_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    t = table("care_bed_contracts")
    names = headers(t)
    path = tmp_path / "contracts_202411.xlsx"
    wb = xlsxwriter.Workbook(str(path))
    ws = wb.add_worksheet("签约信息")
    ws.write_string(0, 0, "杨浦区家庭照护床位签约信息")
    # a contract column left out, an unknown column empty on every row, a repeated header
    layout = [*names[:4], "空列", *names[5:], names[1]]
    ws.write_row(1, 0, layout)
    ws.write_row(2, 0, ["B001", "赵六", "310110194001011234", "13800000000", "", "控江路街道"])
    ws.write_number(2, 8 - 1, 45238)
    # row 3 blank; row 4 only empty strings and spaces
    ws.write_row(4, 0, ["", "", " "])
    ws.write_string(5, 0, "B002")
    ws.write_number(5, 3, 13900000000)
    ws.write_string(6, len(layout) - 1, "重复表头")  # a value under the repeated header: _extra
    wb.close()

    fast, slow, took = _both_sheet_paths(path, t, monkeypatch)
    assert not took  # the repeated header holds a value: the row-by-row path builds _extra
    _assert_same(fast, slow, path)

    wb = xlsxwriter.Workbook(str(path))
    ws = wb.add_worksheet("签约信息")
    ws.write_string(0, 0, "杨浦区家庭照护床位签约信息")
    ws.write_row(1, 0, layout)
    ws.write_row(2, 0, ["B001", "赵六", "310110194001011234", "13800000000", "", "控江路街道"])
    ws.write_number(2, 7, 45238.5)
    ws.write_row(4, 0, ["", "", " "])
    ws.write_string(5, 0, "B002")
    ws.write_number(5, 3, 13900000000)
    wb.close()

    fast, slow, took = _both_sheet_paths(path, t, monkeypatch)
    assert took
    _assert_same(fast, slow, path)
    assert col(fast.rows, ROW_NUMBER) == [1, 3, 4]  # the blank row keeps its number, is no row
    assert col(fast.rows, "contract_id") == ["B001", None, "B002"]
    assert col(fast.rows, "id_number")[2] is None and fast.missing_columns
    assert col(fast.rows, "phone") == ["13800000000", None, "13900000000"]
    assert fast.extra_columns == () and col(fast.rows, EXTRA) == [None, None, None]


def test_every_generated_workbook_reads_the_same_by_columns_and_by_rows(
    sample_lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    from assets.ingest.raw import discover_files

    books = [
        (path, t)
        for _, t in load_registry().tables()
        for path, _ in discover_files(sample_lake, t).files
        if path.suffix.lower() == ".xlsx"
    ]
    assert len(books) >= 10
    taken = 0
    for path, t in books:
        fast, slow, took = _both_sheet_paths(path, t, monkeypatch)
        _assert_same(fast, slow, path)
        assert fast.rows.height > 0, path
        taken += took
    assert taken > len(books) // 2
