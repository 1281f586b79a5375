"""``rainbow export``: the typer command the CLI registers (exit 0 written, 2 refused, 1 leak)."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
import typer
import yaml
from typer.testing import CliRunner

import masking.export as export
from masking.export_cli import EXIT_LEAK, EXIT_REFUSED, export_command
from rainbow.settings import Lake
from tests.exports.export_helpers import AGREEMENTS, SERVICE_EVENTS, make_agreement
from tests.lakefiles import read_parquet

app = typer.Typer()
app.command("export")(export_command)


@app.callback()
def _root() -> None:
    """A group, so the command is invoked as ``export`` like under ``rainbow``."""


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["export", *args])
    return result.exit_code, result.output


def write(tmp_path: Path, **overrides: object) -> Path:
    agreement = make_agreement(SERVICE_EVENTS, **overrides)
    path = tmp_path / "agreement.yaml"
    path.write_text(
        yaml.safe_dump(agreement.model_dump(mode="json", by_alias=True), allow_unicode=True), encoding="utf-8"
    )
    return path


def test_when_expired_then_exit_2_with_both_languages(export_lake: Lake) -> None:
    code, out = run("--agreement", str(AGREEMENTS / "expired_example.yaml"), "--lake", str(export_lake.root))
    assert code == EXIT_REFUSED == 2
    assert "到期" in out and "expired" in out


def test_when_non_open_then_exit_2(export_lake: Lake, tmp_path: Path) -> None:
    path = tmp_path / "a.yaml"
    data = yaml.safe_load((AGREEMENTS / "facility_map_open.yaml").read_text(encoding="utf-8"))
    data["datasets"] = [{"name": "dim_elder", "columns": ["sex"]}]
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    code, out = run("--agreement", str(path), "--lake", str(export_lake.root), "--today", "2026-12-10")
    assert code == 2 and "不予开放" in out and "non-open" in out


def test_when_bad_today_then_exit_2(export_lake: Lake) -> None:
    code, out = run("--agreement", str(AGREEMENTS / "facility_map_open.yaml"), "--today", "12/10/2026")
    assert code == 2 and "YYYY-MM-DD" in out


def test_when_in_force_then_written(export_lake: Lake, tmp_path: Path) -> None:
    path = write(tmp_path)
    code, out = run("--agreement", str(path), "--lake", str(export_lake.root), "--today", "2026-12-10")
    assert code == 0, out
    packages = list((export_lake.exports / "uni_a").iterdir())
    assert len(packages) == 1 and str(packages[0]) in out
    assert read_parquet(packages[0] / "service_events.parquet").height > 0


def test_when_leak_then_exit_1_and_nothing_written(
    export_lake: Lake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = export.read_table

    def planted(lake, zone, contract, columns):  # type: ignore[no-untyped-def]
        frame = real(lake, zone, contract, columns)
        return frame.with_columns(pl.lit("老人电话 13912345678").alias("programme"))

    monkeypatch.setattr(export, "read_table", planted)
    monkeypatch.setenv("RAINBOW_LAKE_ROOT", str(export_lake.root))
    code, out = run("--agreement", str(write(tmp_path)), "--today", "2026-12-10")
    assert code == EXIT_LEAK == 1
    assert "leak gate failed" in out and "13912345678" not in out
    assert not (export_lake.exports / "uni_a").exists()
