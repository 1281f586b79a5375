"""The persistent Dagster instance under the lake, and the nightly run from the command line.

``ensure_dagster_home`` writes ``<lake>/dagster_home/dagster.yaml`` (telemetry
off, SQLite storage, logs and artifacts under that home); ``run_nightly`` runs
the ``nightly_build`` job in this process against that instance, so the run,
its materialisations and check results show in ``dagster dev`` started with
the same ``DAGSTER_HOME`` afterwards.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import dagster as dg
import yaml
from rich.console import Console
from rich.table import Table as RichTable

from pipelines.jobs import NIGHTLY_BUILD
from rainbow.io import write_bytes_atomic
from rainbow.settings import Lake


def dagster_yaml(home: Path) -> dict[str, Any]:
    """Instance settings for a local, single-machine deployment rooted at ``home``."""
    return {
        "telemetry": {"enabled": False},
        "nux": {"enabled": False},
        "storage": {"sqlite": {"base_dir": str(home / "storage")}},
        "local_artifact_storage": {
            "module": "dagster._core.storage.root",
            "class": "LocalArtifactStorage",
            "config": {"base_dir": str(home)},
        },
        "compute_logs": {
            "module": "dagster._core.storage.local_compute_log_manager",
            "class": "LocalComputeLogManager",
            "config": {"base_dir": str(home / "logs")},
        },
        # DuckDB takes one writer at a time and the machine is small: one run at a time.
        "run_queue": {"max_concurrent_runs": 1},
    }


def ensure_dagster_home(lake: Lake) -> Path:
    """Create ``<lake>/dagster_home/dagster.yaml`` (rewritten only when its content differs)."""
    home = lake.dagster_home.resolve()
    home.mkdir(parents=True, exist_ok=True)
    text = "# Written by pipelines.instance.ensure_dagster_home; edits are overwritten.\n" + yaml.safe_dump(
        dagster_yaml(home), sort_keys=False, allow_unicode=True
    )
    target = home / "dagster.yaml"
    if not target.exists() or target.read_text(encoding="utf-8") != text:
        write_bytes_atomic(target, text.encode("utf-8"))
    return home


def _progress_hooks(console: Console) -> set[dg.HookDefinition]:
    @dg.success_hook(name="rich_progress_success")
    def _ok(context: dg.HookContext) -> None:
        console.print(f"[green]✓[/] {context.step_key}")

    @dg.failure_hook(name="rich_progress_failure")
    def _failed(context: dg.HookContext) -> None:
        err = context.op_exception
        console.print(f"[red]✗[/] {context.step_key}: {type(err).__name__ if err else 'failed'}: {err}")

    return {_ok, _failed}


def _meta_value(metadata: dict[str, Any], key: str) -> str:
    value = metadata.get(key)
    return "" if value is None else str(getattr(value, "value", value))


def _summary(result: dg.ExecuteInProcessResult) -> RichTable:
    table = RichTable(title="nightly_build")
    for col in ("asset", "files", "duplicates", "rows", "broken", "total rows"):
        table.add_column(col, justify="left" if col == "asset" else "right")
    for event in result.get_asset_materialization_events():
        mat = event.materialization
        md = dict(mat.metadata)
        table.add_row(
            mat.asset_key.to_user_string(),
            _meta_value(md, "files_ingested"),
            _meta_value(md, "duplicates_skipped"),
            _meta_value(md, "rows_ingested"),
            _meta_value(md, "broken_rows"),
            _meta_value(md, "dagster/row_count"),
        )
    return table


def run_nightly(lake: Lake, console: Console | None = None) -> bool:
    """Run ``nightly_build`` in this process on the lake's persistent instance.

    Sets ``DAGSTER_HOME`` to ``<lake>/dagster_home``. Returns True when the run
    succeeded and no asset check failed with severity ERROR.
    """
    from pipelines.definitions import build_definitions  # builds the code location: not at import

    console = console or Console()
    home = ensure_dagster_home(lake)
    os.environ["DAGSTER_HOME"] = str(home)
    defs = build_definitions(lake_root=str(lake.root))
    job = defs.resolve_job_def(NIGHTLY_BUILD).with_hooks(_progress_hooks(console))
    console.print(f"nightly_build on {lake.root} (DAGSTER_HOME={home})")
    with dg.DagsterInstance.get() as instance:
        result = job.execute_in_process(
            instance=instance,
            raise_on_error=False,
            # step logs stay in the instance (UI); the console shows progress lines only
            run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
        )
    failed_checks = [
        ev
        for ev in result.get_asset_check_evaluations()
        if not ev.passed and ev.severity == dg.AssetCheckSeverity.ERROR
    ]
    for ev in failed_checks:
        console.print(f"[red]check failed[/] {ev.asset_key.to_user_string()} {ev.check_name}")
    console.print(_summary(result))
    ok = result.success and not failed_checks
    console.print(f"run {result.run_id}: {'[green]success[/]' if ok else '[red]failure[/]'}")
    return ok
