"""Ground truth written beside the landing zone (``<lake>/truth/``), never read by the pipeline.

Tables (Parquet, one folder each, written in parts so memory stays bounded):
- persons: the true population.
- files: every delivered file (table, path, delivery date, rows, encoding, sha256, duplicate_of).
- links: the true person behind every person-bearing delivered row (file, row number).
- faults: every injected fault (file, row, column, kind, severity, reason code, true and delivered value).
- fault_exposure: (tests only) how many cells could have carried each fault kind, and at what rate.
- incidents: planted incidents (SOS, falls, water inactivity, ...), with person and time window.
- pii_in_notes: where PII was planted in free-text notes (file, row, column, entity, span).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from rainbow.io import atomic_path

TRUTH_SCHEMAS: dict[str, dict[str, Any]] = {
    "files": {
        "table": pl.String,
        "source_file": pl.String,
        "delivery_date": pl.Date,
        "rows": pl.Int64,
        "format": pl.String,
        "encoding": pl.String,
        "sha256": pl.String,
        "duplicate_of": pl.String,
    },
    "links": {
        "table": pl.String,
        "source_file": pl.String,
        "row_number": pl.Int64,
        "person_id": pl.String,
        "role": pl.String,
    },
    "faults": {
        "table": pl.String,
        "source_file": pl.String,
        "row_number": pl.Int64,
        "column": pl.String,
        "kind": pl.String,
        "severity": pl.String,
        "reason": pl.String,
        "original": pl.String,
        "delivered": pl.String,
    },
    "fault_exposure": {
        "table": pl.String,
        "kind": pl.String,
        "eligible": pl.Int64,
        "rate": pl.Float64,
    },
    "incidents": {
        "incident_id": pl.String,
        "kind": pl.String,
        "person_id": pl.String,
        "device_id": pl.String,
        "start": pl.Datetime("us"),
        "end": pl.Datetime("us"),
        "detail": pl.String,
    },
    "pii_in_notes": {
        "table": pl.String,
        "source_file": pl.String,
        "row_number": pl.Int64,
        "column": pl.String,
        "entity_type": pl.String,
        "start": pl.Int64,
        "end": pl.Int64,
        "value": pl.String,
    },
}

FLUSH_ROWS = 250_000


class TruthWriter:
    """Buffers truth rows per table and flushes numbered Parquet parts."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._buffers: dict[str, list[pl.DataFrame]] = {k: [] for k in TRUTH_SCHEMAS}
        self._sizes: dict[str, int] = dict.fromkeys(TRUTH_SCHEMAS, 0)
        self._parts: dict[str, int] = dict.fromkeys(TRUTH_SCHEMAS, 0)

    def add(self, name: str, rows: pl.DataFrame | list[dict[str, Any]]) -> None:
        schema = TRUTH_SCHEMAS[name]
        if isinstance(rows, list):
            if not rows:
                return
            frame = pl.DataFrame(rows, schema=schema)
        else:
            if rows.height == 0:
                return
            frame = rows.select([pl.col(c).cast(t) for c, t in schema.items()])
        self._buffers[name].append(frame)
        self._sizes[name] += frame.height
        if self._sizes[name] >= FLUSH_ROWS:
            self._flush(name)

    def _flush(self, name: str) -> None:
        if not self._buffers[name]:
            return
        frame = pl.concat(self._buffers[name], how="vertical")
        self._parts[name] += 1
        out = self.root / name / f"part-{self._parts[name]:05d}.parquet"
        with atomic_path(out) as tmp:
            frame.write_parquet(tmp, compression="zstd", statistics=False)
        self._buffers[name] = []
        self._sizes[name] = 0

    def write_frame(self, name: str, frame: pl.DataFrame) -> None:
        """A whole truth table at once (e.g. persons)."""
        out = self.root / f"{name}.parquet"
        with atomic_path(out) as tmp:
            frame.write_parquet(tmp, compression="zstd", statistics=False)

    def close(self) -> None:
        for name in TRUTH_SCHEMAS:
            self._flush(name)
            # An empty table still gets one (empty) part, so readers always find a schema.
            if self._parts[name] == 0:
                self._buffers[name] = [pl.DataFrame(schema=TRUTH_SCHEMAS[name])]
                self._parts[name] = 0
                frame = self._buffers[name][0]
                out = self.root / name / "part-00001.parquet"
                with atomic_path(out) as tmp:
                    frame.write_parquet(tmp, compression="zstd", statistics=False)
                self._buffers[name] = []


def read_truth(root: Path, name: str) -> pl.DataFrame:
    """Read one truth table (tests and benchmarks only; the pipeline never does)."""
    single = root / f"{name}.parquet"
    if single.exists():
        return pl.read_parquet(single)
    return pl.read_parquet(root / name / "*.parquet")
