"""The lake's Parquet writer: dictionary encoding where values repeat, none where they are
nearly all distinct (floats, row hashes, the source row number); the values read back the same."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

from rainbow.parquet import dictionary_columns, open_writer, read_frame
from rainbow.settings import Lake

DICTIONARY = {"PLAIN_DICTIONARY", "RLE_DICTIONARY"}


def test_floats_hashes_and_the_row_number_are_written_without_a_dictionary(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    n = 50_000
    frame = pl.DataFrame(
        {
            "meter_id": [f"SB{i % 300:08d}" for i in range(n)],
            "read_at": pl.datetime_range(
                pl.datetime(2026, 11, 1), pl.datetime(2026, 11, 1, 23), "1h", eager=True
            ).gather([i % 24 for i in range(n)]),
            "reading_m3": [i * 0.001 for i in range(n)],
            "signal": [-(i % 40) for i in range(n)],
            "_row_number": list(range(n)),
            "row_hash": pl.Series(range(n), dtype=pl.UInt64).hash(seed=1),
            "_flags": [["A"] if i % 7 == 0 else [] for i in range(n)],
        }
    )
    path = lake.marts / "probe" / "data.parquet"
    path.parent.mkdir(parents=True)
    table = frame.to_arrow()
    assert dictionary_columns(table.schema) == ["meter_id", "read_at", "signal", "_flags.list.element"]
    with open_writer(path, table.schema, lake) as writer:
        writer.write_table(table)
    meta = pq.ParquetFile(path).metadata.row_group(0)
    encodings = {
        meta.column(i).path_in_schema.split(".")[0]: set(meta.column(i).encodings)
        for i in range(meta.num_columns)
    }
    assert not encodings["reading_m3"] & DICTIONARY
    assert not encodings["_row_number"] & DICTIONARY
    assert not encodings["row_hash"] & DICTIONARY
    for repeated in ("meter_id", "read_at", "signal", "_flags"):
        assert encodings[repeated] & DICTIONARY, repeated
    assert read_frame(path, lake).equals(frame)
