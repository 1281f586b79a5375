"""Quality scorecards, their history, and source-system health.

* :func:`record_results` appends validation outcomes to the history under
  ``<lake>/marts/quality_history/results/<table>/<partition>/<run date>.parquet``:
  one file per (table, partition, run date), written atomically, so re-running
  the same day replaces that day's row set (idempotent) and earlier days stay
  (trends). ``partition`` is the delivery day, a range ``first..last`` for a
  backfill validated as one batch, or ``all`` for an unpartitioned table.
* :func:`scorecard` scores each batch per dimension (the six rule families) and
  rates it green/amber/red against ``quality/thresholds.yaml``;
  :func:`system_scorecard` rolls the latest batch of every table up to its
  source system - or, for library and mart tables, to their data set
  (``library.health``, ``marts.portraits``: :func:`owner_of`).
* :func:`source_health` reads the ingest ledger: delivery freshness against
  each table's declared frequency, volume against the trailing median, and
  systems gone silent (僵尸系统: every table silent for several intervals).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from statistics import median
from typing import Any

import polars as pl
import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from assets.ingest.ledger import ledger_dir, read_ledger
from quality.rules import FAMILIES
from quality.runner import QualityResult
from rainbow.io import atomic_path
from rainbow.settings import Lake
from schemas.registry import Registry

THRESHOLDS_PATH = Path(__file__).with_name("thresholds.yaml")
HISTORY_DIR = "quality_history"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Band(_Model):
    green: float
    amber: float


class FreshnessSettings(_Model):
    interval_days: dict[str, int]
    grace_days: dict[str, int]
    zombie_after_intervals: int = 3


class VolumeSettings(_Model):
    trailing_days: int = 7
    min_history_days: int = 3
    min_median_rows: int = 10
    low_ratio: float = 0.5
    high_ratio: float = 2.0


class CheckSettings(_Model):
    per_day_partitions: int = Field(default=1, ge=0)
    latest_partitions: int = Field(default=1, ge=1)
    # older days of a run are validated together in batches of at most this many delivered rows
    max_batch_rows: int = Field(default=2_000_000, ge=1)
    # library / mart tables validated by their newest month of this date column (else whole)
    derived_batches: dict[str, str] = Field(default_factory=dict)
    # library / mart batches of at least this many rows: GX sees only rows not known to pass
    changed_rows_above: int = Field(default=20_000, ge=0)
    # GX validates a bigger frame in slices of about this many rows (0: whole), outcomes unchanged
    gx_slice_rows: int = Field(default=2_000_000, ge=0)
    # an event table's batches validated at once, on threads with a GX context each (at most
    # rainbow.workers.workers()); dated lists and library tables one at a time (their memory)
    parallel_batches: int = Field(default=2, ge=1)


class ReportSettings(_Model):
    history_partitions: int = 30


class Thresholds(_Model):
    dimensions: dict[str, Band]
    overrides: dict[str, dict[str, Band]] = Field(default_factory=dict)
    freshness: FreshnessSettings
    volume: VolumeSettings = VolumeSettings()
    checks: CheckSettings = CheckSettings()
    report: ReportSettings = ReportSettings()

    @model_validator(mode="after")
    def _every_family(self) -> Thresholds:
        families = set(FAMILIES)
        named = set(self.dimensions) | {f for o in self.overrides.values() for f in o}
        if set(self.dimensions) != families or not named <= families:
            raise ValueError(f"dimensions must name exactly the rule families {sorted(families)}")
        return self

    def band(self, table: str, family: str) -> Band:
        return self.overrides.get(table, {}).get(family) or self.dimensions[family]

    def status(self, table: str, family: str, score: float | None) -> str | None:
        if score is None:
            return None
        band = self.band(table, family)
        return "green" if score >= band.green else "amber" if score >= band.amber else "red"


def load_thresholds(path: Path | str | None = None) -> Thresholds:
    return _load_thresholds(str(path or THRESHOLDS_PATH))


@functools.cache
def _load_thresholds(path: str) -> Thresholds:
    return Thresholds.model_validate(yaml.safe_load(Path(path).read_text(encoding="utf-8")))


# ------------------------------------------------------------------ history

HISTORY_SCHEMA: dict[str, pl.DataType] = {
    "run_date": pl.Date(),
    "run_at": pl.Datetime("us", "UTC"),
    "run_id": pl.String(),
    "system": pl.String(),
    "table": pl.String(),
    "partition": pl.String(),
    "rows": pl.Int64(),
    "rule_id": pl.String(),
    "family": pl.String(),
    "severity": pl.String(),
    "expectation_type": pl.String(),
    "rule_zh": pl.String(),
    "evaluated": pl.Boolean(),
    "success": pl.Boolean(),
    "element_count": pl.Int64(),
    "unexpected_count": pl.Int64(),
    "unexpected_percent": pl.Float64(),
    "score": pl.Float64(),
    "observed": pl.String(),
    "note": pl.String(),
    "examples_json": pl.String(),  # masked example rows (quality.redact)
}


def owner_of(registry: Registry, table: str) -> str:
    """What a table's scores roll up to: its source system, or ``library.<data set>`` /
    ``marts.<data set>`` for a library or mart table."""
    try:
        return registry.system_of(table).name
    except KeyError:
        dataset = registry.dataset_of(table)
        return f"{dataset.zone}.{dataset.name}"


def owner_zh(registry: Registry, owner: str) -> str:
    """Chinese name of a source system or of a library / mart data set (``主题库·健康档案``)."""
    zone, _, name = owner.partition(".")
    if name and zone in ("library", "marts"):
        prefix = "主题库" if zone == "library" else "专题集市"
        return next(f"{prefix}·{d.zh}" for d in registry.datasets if d.zone == zone and d.name == name)
    return registry.system(owner).zh


def table_zh(registry: Registry, table: str) -> str:
    try:
        return registry.table(table).zh
    except KeyError:
        return registry.derived(table).zh


def history_dir(lake: Lake) -> Path:
    return lake.marts / HISTORY_DIR


def results_path(lake: Lake, table: str, partition: str, run_date: date) -> Path:
    return history_dir(lake) / "results" / table / partition / f"{run_date.isoformat()}.parquet"


def results_frame(
    results: Iterable[QualityResult],
    registry: Registry,
    *,
    run_date: date,
    run_at: datetime,
    run_id: str | None = None,
) -> pl.DataFrame:
    rows = []
    for res in results:
        system = owner_of(registry, res.table)
        for o in res.outcomes:
            rows.append(
                {
                    "run_date": run_date,
                    "run_at": run_at,
                    "run_id": run_id,
                    "system": system,
                    "table": res.table,
                    "partition": res.partition or "all",
                    "rows": res.rows,
                    "rule_id": o.rule_id,
                    "family": o.family,
                    "severity": o.severity,
                    "expectation_type": o.expectation_type,
                    "rule_zh": o.zh,
                    "evaluated": o.evaluated,
                    "success": o.success,
                    "element_count": o.element_count,
                    "unexpected_count": o.unexpected_count,
                    "unexpected_percent": o.unexpected_percent,
                    "score": o.score,
                    "observed": o.observed,
                    "note": o.note,
                    "examples_json": json.dumps(list(o.examples), ensure_ascii=False) if o.examples else None,
                }
            )
    return pl.DataFrame(rows, schema=HISTORY_SCHEMA)


def record_results(
    lake: Lake,
    registry: Registry,
    results: Iterable[QualityResult],
    *,
    run_date: date,
    run_at: datetime | None = None,
    run_id: str | None = None,
) -> list[Path]:
    """Write each result to its (table, partition, run date) file, replacing an earlier write."""
    run_at = run_at or datetime.now(UTC)
    written = []
    for res in results:
        frame = results_frame([res], registry, run_date=run_date, run_at=run_at, run_id=run_id)
        path = results_path(lake, res.table, res.partition or "all", run_date)
        with atomic_path(path) as tmp:
            frame.write_parquet(tmp)
        written.append(path)
    return written


def is_daily(partition: str) -> bool:
    """A delivery day (``YYYY-MM-DD``) or a backfill's range of days (``first..last``); not ``all``
    (a whole table) nor a month (``YYYY-MM``, the batches of big library facts)."""
    return len(partition) == 10 or ".." in partition


def is_daily_expr(column: str = "partition") -> pl.Expr:
    """:func:`is_daily` as a Polars expression."""
    return (pl.col(column).str.len_chars() == 10) | pl.col(column).str.contains("..", literal=True)


def read_history(lake: Lake, newest_partitions: int | None = None) -> pl.DataFrame:
    """Recorded outcomes: all of them, or per table only the newest ``newest_partitions`` batches.

    A table validated by day keeps the latest run of each of its newest days; a
    table validated whole (or by month) keeps its newest runs, one per run date,
    so its trend is night by night.
    """
    root = history_dir(lake) / "results"
    if newest_partitions is None:
        files = sorted(root.glob("*/*/*.parquet"))
    else:
        files = []
        for table in sorted(p for p in root.glob("*") if p.is_dir()):
            parts = sorted(p for p in table.iterdir() if p.is_dir())
            for part in [p for p in parts if is_daily(p.name)][-newest_partitions:]:
                files += sorted(part.glob("*.parquet"))[-1:]
            runs = [f for p in parts if not is_daily(p.name) for f in p.glob("*.parquet")]
            files += sorted(runs, key=lambda f: (f.stem, f.parent.name))[-newest_partitions:]
    if not files:
        return pl.DataFrame(schema=HISTORY_SCHEMA)
    return pl.concat([_history_file(f) for f in files], how="vertical_relaxed").cast(
        pl.Schema(HISTORY_SCHEMA)
    )


# history file -> ((size, mtime_ns, inode), its rows): every check of a build re-renders the
# report from the same files, only the one it just wrote is new
_HISTORY_FILES: dict[Path, tuple[tuple[int, int, int], pl.DataFrame]] = {}
_HISTORY_FILES_MAX = 20_000


def _history_file(path: Path) -> pl.DataFrame:
    st = path.stat()
    sig = (st.st_size, st.st_mtime_ns, st.st_ino)
    hit = _HISTORY_FILES.get(path)
    if hit is not None and hit[0] == sig:
        return hit[1]
    if len(_HISTORY_FILES) >= _HISTORY_FILES_MAX:
        _HISTORY_FILES.clear()
    frame = pl.read_parquet(path)
    _HISTORY_FILES[path] = (sig, frame)
    return frame


# ------------------------------------------------------------------ scores

BATCH = ["run_date", "system", "table", "partition"]


def scorecard(history: pl.DataFrame, thresholds: Thresholds) -> pl.DataFrame:
    """One row per batch (run date, system, table, partition) and dimension: score and status."""
    evaluated = history.filter(pl.col("evaluated"))
    card = (
        evaluated.group_by([*BATCH, "family"])
        .agg(
            rows=pl.col("rows").first(),
            rules=pl.len(),
            failed=(~pl.col("success")).sum(),
            failed_error=((~pl.col("success")) & (pl.col("severity") == "ERROR")).sum(),
            unexpected=pl.col("unexpected_count").sum(),
            score=pl.col("score").mean(),
        )
        .sort([*BATCH, "family"])
    )
    status = [thresholds.status(t, f, s) for t, f, s in card.select("table", "family", "score").iter_rows()]
    return card.with_columns(status=pl.Series(status, dtype=pl.String))


def latest_batches(history: pl.DataFrame) -> pl.DataFrame:
    """The outcomes of the latest run of every (table, partition)."""
    if history.is_empty():
        return history
    last = history.group_by("table", "partition").agg(pl.col("run_date").max().alias("_last"))
    return (
        history.join(last, on=["table", "partition"])
        .filter(pl.col("run_date") == pl.col("_last"))
        .drop("_last")
    )


def latest_partition_per_table(history: pl.DataFrame) -> pl.DataFrame:
    """Per table, the outcomes of its newest batch: the newest partition, in its latest run.

    A backfill's range label (``first..last``) sorts before the per-day label of its last day.
    """
    latest = latest_batches(history)
    if latest.is_empty():
        return latest
    newest = latest.group_by("table").agg(
        pl.col("partition").sort_by(["partition", "run_at"]).last().alias("_newest")
    )
    return latest.join(newest, on="table").filter(pl.col("partition") == pl.col("_newest")).drop("_newest")


def system_scorecard(history: pl.DataFrame, thresholds: Thresholds) -> pl.DataFrame:
    """Per source system and dimension: the mean score over its tables' newest batches."""
    per_table = scorecard(latest_partition_per_table(history), thresholds)
    card = (
        per_table.group_by("system", "family")
        .agg(tables=pl.col("table").n_unique(), failed=pl.col("failed").sum(), score=pl.col("score").mean())
        .sort("system", "family")
    )
    band_status = [thresholds.status("", f, s) for f, s in card.select("family", "score").iter_rows()]
    return card.with_columns(status=pl.Series(band_status, dtype=pl.String))


def system_day_scorecard(history: pl.DataFrame, thresholds: Thresholds) -> pl.DataFrame:
    """Per source system, delivery day and dimension: the mean score over its tables' day batches.

    Each (table, day) counts with its latest run; whole-table and range batches are left out.
    """
    days = latest_batches(history).filter(pl.col("partition").str.len_chars() == 10)
    card = (
        scorecard(days, thresholds)
        .group_by("system", "partition", "family")
        .agg(tables=pl.col("table").n_unique(), failed=pl.col("failed").sum(), score=pl.col("score").mean())
        .sort("system", "partition", "family")
    )
    status = [thresholds.status("", f, s) for f, s in card.select("family", "score").iter_rows()]
    return card.with_columns(status=pl.Series(status, dtype=pl.String))


# ------------------------------------------------------------------ source-system health

HEALTH_SCHEMA: dict[str, pl.DataType] = {
    "as_of": pl.Date(),
    "system": pl.String(),
    "system_zh": pl.String(),
    "table": pl.String(),
    "table_zh": pl.String(),
    "frequency": pl.String(),
    "last_delivery": pl.Date(),
    "days_since": pl.Int64(),
    "late": pl.Boolean(),
    "silent": pl.Boolean(),
    "rows_on_day": pl.Int64(),
    "trailing_median": pl.Float64(),
    "volume_ratio": pl.Float64(),
    "volume_anomaly": pl.Boolean(),
    "system_zombie": pl.Boolean(),
    "status": pl.String(),
}


def _deliveries(lake: Lake, table: str) -> pl.DataFrame:
    """(day, rows) per delivered file of a table: ingested files and resends alike."""
    ledger = read_ledger(lake, table).filter(pl.col("status").is_in(["ingested", "duplicate"]))
    return ledger.select(
        day=pl.coalesce("delivered_date", pl.col("ingested_at").dt.date()),
        rows=pl.when(pl.col("status") == "ingested")
        .then(pl.coalesce("delivered_rows", pl.col("rows").fill_null(0) + pl.col("broken_rows").fill_null(0)))
        .otherwise(0),
    )


_HEALTH_CACHE: dict[tuple[Any, ...], pl.DataFrame] = {}


def _ledger_signature(lake: Lake) -> tuple[tuple[str, int, int], ...]:
    files = sorted(ledger_dir(lake).rglob("*.parquet"))
    return tuple((str(f), f.stat().st_mtime_ns, f.stat().st_size) for f in files)


def source_health(
    lake: Lake, registry: Registry, thresholds: Thresholds, as_of: date | None = None
) -> pl.DataFrame:
    """Per table: freshness, volume and silence, as of a day (default: the lake's latest delivery).

    Cached on the ledger files' names, sizes and mtimes: the checks of one run
    share it until an ingest writes a ledger.
    """
    key = (str(lake.root), id(registry), id(thresholds), as_of, _ledger_signature(lake))
    if key not in _HEALTH_CACHE:
        _HEALTH_CACHE.clear()
        _HEALTH_CACHE[key] = _source_health(lake, registry, thresholds, as_of)
    return _HEALTH_CACHE[key]


def _source_health(
    lake: Lake, registry: Registry, thresholds: Thresholds, as_of: date | None
) -> pl.DataFrame:
    deliveries = {t.name: _deliveries(lake, t.name) for _, t in registry.tables()}
    if as_of is None:
        days = [d for frame in deliveries.values() for d in frame["day"].drop_nulls().to_list()]
        as_of = max(days) if days else datetime.now(UTC).date()
    fresh, vol = thresholds.freshness, thresholds.volume
    rows = []
    for system, table in registry.tables():
        frame = deliveries[table.name].filter(pl.col("day") <= as_of)
        freq = table.delivery.frequency
        interval, grace = fresh.interval_days[freq], fresh.grace_days[freq]
        last = frame["day"].max() if frame.height else None
        since = (as_of - last).days if isinstance(last, date) else None
        late = since is None or since > interval + grace
        silent = since is None or since >= fresh.zombie_after_intervals * interval + grace
        on_day: int | None = None
        trailing: float | None = None
        ratio: float | None = None
        anomaly = False
        if freq in ("hourly", "daily") and isinstance(last, date):
            per_day: dict[date, int] = {}
            for day, n in frame.select("day", "rows").iter_rows():
                per_day[day] = per_day.get(day, 0) + int(n)
            first = min(per_day)
            on_day = per_day.get(as_of, 0)
            window = [as_of - timedelta(days=k) for k in range(1, vol.trailing_days + 1)]
            history = [per_day.get(d, 0) for d in window if d >= first]
            if len(history) >= vol.min_history_days:
                trailing = float(median(history))
                if trailing >= vol.min_median_rows:
                    ratio = on_day / trailing
                    anomaly = ratio < vol.low_ratio or ratio > vol.high_ratio
        rows.append(
            {
                "as_of": as_of,
                "system": system.name,
                "system_zh": system.zh,
                "table": table.name,
                "table_zh": table.zh,
                "frequency": freq,
                "last_delivery": last,
                "days_since": since,
                "late": late,
                "silent": silent,
                "rows_on_day": on_day,
                "trailing_median": trailing,
                "volume_ratio": ratio,
                "volume_anomaly": anomaly,
            }
        )
    health = pl.DataFrame(
        rows, schema={k: v for k, v in HEALTH_SCHEMA.items() if k not in ("system_zombie", "status")}
    )
    health = health.with_columns(system_zombie=pl.col("silent").all().over("system"))
    return health.with_columns(
        status=pl.when(pl.col("system_zombie"))
        .then(pl.lit("僵尸系统"))
        .when(pl.col("silent"))
        .then(pl.lit("已沉默"))
        .when(pl.col("late"))
        .then(pl.lit("延迟交付"))
        .when(pl.col("volume_anomaly"))
        .then(pl.lit("数据量异常"))
        .otherwise(pl.lit("正常"))
    ).select(list(HEALTH_SCHEMA))


def health_path(lake: Lake, as_of: date) -> Path:
    return history_dir(lake) / "source_health" / f"{as_of.isoformat()}.parquet"


def record_source_health(lake: Lake, health: pl.DataFrame) -> Path | None:
    """Write the health table of its as-of day (replacing an earlier write of that day)."""
    if health.is_empty():
        return None
    path = health_path(lake, health["as_of"][0])
    with atomic_path(path) as tmp:
        health.write_parquet(tmp)
    return path


def family_scores(result: QualityResult) -> Mapping[str, float | None]:
    """A single result's score per dimension (mean of its evaluated rules' scores)."""
    out: dict[str, float | None] = {}
    for family in FAMILIES:
        scores = [o.score for o in result.outcomes if o.family == family and o.score is not None]
        out[family] = sum(scores) / len(scores) if scores else None
    return out
