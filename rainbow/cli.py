"""The ``rainbow`` command line: generate, build, link, ui."""

from __future__ import annotations

import time
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table as RichTable

from rainbow.io import atomic_path
from rainbow.settings import LAKE_ROOT_ENV, Lake, lake_root

if TYPE_CHECKING:
    import polars as pl

app = typer.Typer(
    help="Rainbow Bridge (彩虹桥) elder data lakehouse for Yangpu District.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console()

LakeOption = Annotated[
    Path | None,
    typer.Option("--lake", help=f"Lake root (default: ${LAKE_ROOT_ENV} or ./data).", show_default=False),
]


def _lake(path: Path | None) -> Lake:
    return Lake(path.resolve()) if path else Lake(lake_root())


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n:,.1f} TB"


@app.command()
def generate(
    elders: Annotated[int, typer.Option(help="Number of elders (district scale: 400,000).", min=10)] = 2_000,
    days: Annotated[int, typer.Option(help="Days of deliveries.", min=1, max=3_660)] = 30,
    seed: Annotated[int, typer.Option(help="Random seed: same seed, byte-identical output.")] = 20261101,
    start: Annotated[str, typer.Option(help="First day of the period (YYYY-MM-DD).")] = "2026-11-01",
    force: Annotated[bool, typer.Option("--force", help="Replace existing landing and truth data.")] = False,
    estimate_only: Annotated[
        bool, typer.Option("--estimate", help="Print rows and bytes per source at this scale; write nothing.")
    ] = False,
    lake: LakeOption = None,
) -> None:
    """Generate synthetic source-system deliveries (生成模拟数据) into landing/ and the truth into truth/."""
    from sample_data.config import GeneratorConfig

    cfg = GeneratorConfig(elders=elders, days=days, seed=seed, start=date.fromisoformat(start))
    if estimate_only:
        from sample_data.estimate import estimate

        with console.status("calibrating on a small sample ..."):
            rows = estimate(cfg)
        table = RichTable(
            title=f"Estimate: {elders:,} elders x {days} days (extrapolated from a calibration run)"
        )
        for col in ("system", "table", "frequency", "rows", "bytes"):
            table.add_column(col, justify="right" if col in ("rows", "bytes") else "left")
        for r in rows:
            table.add_row(r.system, r.table, r.frequency, f"{r.rows:,}", _human(r.bytes))
        table.add_row("total", "", "", f"{sum(r.rows for r in rows):,}", _human(sum(r.bytes for r in rows)))
        console.print(table)
        return
    from sample_data.generate import generate as run_generate

    target = _lake(lake)
    t0 = time.perf_counter()
    with Progress(
        TextColumn("[bold]生成 generating"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("days"),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        task = progress.add_task("days", total=days)
        try:
            report = run_generate(
                cfg,
                target,
                overwrite=force,
                progress=lambda done, _total: progress.update(task, completed=done),
            )
        except FileExistsError as exc:
            console.print(f"[red]{exc}[/red]")
            raise typer.Exit(2) from exc
    console.print(
        f"wrote {report.files:,} files, {sum(report.rows.values()):,} rows, "
        f"{_human(sum(report.bytes.values()))} into {target.landing} in {time.perf_counter() - t0:.1f} s"
    )


@app.command()
def build(
    lake: LakeOption = None,
    elders: Annotated[int, typer.Option(help="Sample size generated when landing/ is empty.")] = 2_000,
    days: Annotated[int, typer.Option(help="Sample days generated when landing/ is empty.")] = 30,
) -> None:
    """Run the nightly build (夜间构建) through Dagster; generates the default sample if landing/ is empty."""
    target = _lake(lake)
    if not target.landing.exists() or not any(target.landing.iterdir()):
        console.print(f"landing/ is empty: generating the default sample ({elders:,} elders x {days} days)")
        generate(elders=elders, days=days, lake=target.root)
    from pipelines.instance import run_nightly

    t0 = time.perf_counter()
    ok = run_nightly(target)
    console.print(f"nightly build {'succeeded' if ok else 'FAILED'} in {time.perf_counter() - t0:.1f} s")
    if not ok:
        raise typer.Exit(1)


def _read_table(path: Path) -> pl.DataFrame:
    """A CSV (UTF-8, with or without BOM, or GBK; every column as text) or Parquet file."""
    import io

    import polars as pl  # imported here: the CLI starts fast

    from assets.ingest.readers import decode_text

    if path.suffix.lower() in (".parquet", ".pq"):
        return pl.read_parquet(path)
    text, _ = decode_text(path.read_bytes())
    return pl.read_csv(io.StringIO(text), infer_schema=False)


@app.command()
def link(
    input_path: Annotated[
        Path,
        typer.Option(
            "--input",
            exists=True,
            dir_okay=False,
            help="Person records, CSV or Parquet: record_id, source, name, sex, birth_date, id_number, "
            "other_id, phone, address, street (any may be missing or empty; raw forms are normalised).",
        ),
    ],
    output_path: Annotated[
        Path,
        typer.Option(
            "--output", dir_okay=False, help="record_id, elder_key, match_probability (.csv or .parquet)."
        ),
    ],
    previous: Annotated[
        Path | None,
        typer.Option(
            exists=True, dir_okay=False, help="An earlier output (record_id, elder_key): its keys are kept."
        ),
    ] = None,
    decisions: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            dir_okay=False,
            help="Steward decisions: record_id_l, record_id_r, decision (match / no_match).",
        ),
    ] = None,
) -> None:
    """Link person records to elders (身份识别): which records are the same elder."""
    from assets.library.identity import link_records

    suffix = output_path.suffix.lower()
    if suffix not in (".csv", ".parquet", ".pq"):
        console.print(f"[red]--output must end in .csv or .parquet, not {suffix or 'nothing'}[/red]")
        raise typer.Exit(2)
    t0 = time.perf_counter()
    result = link_records(
        _read_table(input_path),
        previous=_read_table(previous) if previous else None,
        decisions=_read_table(decisions) if decisions else None,
    )
    out = result.assignments.select("record_id", "elder_key", "match_probability")
    output_path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(output_path) as tmp:
        if suffix == ".csv":
            out.write_csv(tmp)
        else:
            out.write_parquet(tmp)
    console.print(
        f"linked {out.height:,} records to {out['elder_key'].n_unique():,} elders "
        f"({result.review_pairs.height:,} pairs for review) in {time.perf_counter() - t0:.1f} s "
        f"-> {output_path}"
    )


@app.command()
def catalog(
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Output directory (default: <lake>/marts/catalog/).", show_default=False),
    ] = None,
    lake: Annotated[
        Path | None,
        typer.Option("--lake", help="Lake root (default: $RAINBOW_LAKE_ROOT or ./data).", show_default=False),
    ] = None,
) -> None:
    """Write the data resource catalogue (数据资源目录): JSON, Parquet tables and a searchable site."""
    from catalog.cli import catalog_command

    catalog_command(out=out, lake=lake)


@app.command()
def export(
    agreement: Annotated[
        Path, typer.Option("--agreement", exists=True, dir_okay=False, help="Agreement YAML (数据共享协议).")
    ],
    lake: LakeOption = None,
    today: Annotated[str | None, typer.Option("--today", help="YYYY-MM-DD (default: today).")] = None,
) -> None:
    """Build an open-data export package (开放数据包) for an agreement's recipient."""
    from masking.export_cli import export_command

    export_command(agreement=agreement, lake=lake, today=today)


@app.command("rotate-key")
def rotate_key(
    zone: Annotated[
        list[str] | None,
        typer.Option(help="Restricted zone to re-encrypt (raw, staged, library); default: all three."),
    ] = None,
    lake: LakeOption = None,
    encrypt_plain: Annotated[
        bool, typer.Option(help="Also encrypt files still in plain text (a lake built before encryption).")
    ] = False,
) -> None:
    """Re-encrypt the restricted zones from the old master key to $RAINBOW_ENCRYPTION_KEY (密钥轮换).

    The old key is $RAINBOW_ENCRYPTION_KEY_OLD, else the lake's development key file.
    """
    import os

    from masking.encryption import RESTRICTED_ZONES, rotate_zone_key
    from masking.secrets import ENCRYPTION_KEY, parse_secret, secret_path

    the_lake = _lake(lake)
    dev_file = secret_path(the_lake, ENCRYPTION_KEY)
    old_text = os.environ.get("RAINBOW_ENCRYPTION_KEY_OLD")
    where = "RAINBOW_ENCRYPTION_KEY_OLD"
    if not old_text and dev_file.exists():
        old_text, where = dev_file.read_text(encoding="ascii"), str(dev_file)
    new_text = os.environ.get("RAINBOW_ENCRYPTION_KEY")
    if not old_text or not new_text:
        console.print(
            "[red]set RAINBOW_ENCRYPTION_KEY (the new key) and RAINBOW_ENCRYPTION_KEY_OLD (the current one; "
            "a lake with a development key file needs no OLD)[/red]"
        )
        raise typer.Exit(2)
    old = parse_secret(old_text, where)
    new = parse_secret(new_text, "RAINBOW_ENCRYPTION_KEY")
    zones = zone or list(RESTRICTED_ZONES)
    for z in zones:
        if z not in RESTRICTED_ZONES:
            console.print(
                f"[red]{z} is not an encrypted zone; expected one of {', '.join(RESTRICTED_ZONES)}[/red]"
            )
            raise typer.Exit(2)
    for z in zones:
        result = rotate_zone_key(the_lake, z, old, new, encrypt_plain=encrypt_plain)
        console.print(
            f"{z}: {len(result.rotated)} re-encrypted, {len(result.already_new)} already under the new key, "
            f"{len(result.encrypted_now)} encrypted now, {len(result.plain)} plain left alone"
        )
    if where == str(dev_file):
        dev_file.unlink()  # the environment holds the key from now on
        console.print(f"removed the development key {dev_file}: keep RAINBOW_ENCRYPTION_KEY set from now on")


@app.command()
def audit(
    lake: LakeOption = None,
    user: Annotated[str | None, typer.Option(help="Only this user's rows.")] = None,
    last: Annotated[int, typer.Option(help="How many of the latest rows to show.")] = 50,
) -> None:
    """Show the audit log (审计日志): who read or exported which dataset, when, how many rows."""
    import polars as pl

    from masking.audit import AuditLog

    log = AuditLog(_lake(lake)).read(user)
    with pl.Config(tbl_rows=last, tbl_cols=12, fmt_str_lengths=40):
        console.print(log.tail(last).drop("statement", strict=False))


user_app = typer.Typer(help="Dashboard users (看板用户): hashed credentials, roles and streets.")
app.add_typer(user_app, name="user")


@user_app.command("add")
def user_add(
    username: Annotated[str, typer.Argument(help="Login name.")],
    role: Annotated[str, typer.Option(help="steward, street_staff, leadership, analyst or third_party.")],
    street: Annotated[str | None, typer.Option(help="Street code or Chinese name (street_staff).")] = None,
    display_name: Annotated[str | None, typer.Option(help="Name shown in the dashboards.")] = None,
    recipient: Annotated[str | None, typer.Option(help="Export recipient id (third_party).")] = None,
    lake: LakeOption = None,
) -> None:
    """Add or replace a dashboard user; the password is prompted for and stored as a scrypt hash."""
    from dashboards.auth import add_user, default_users_path

    password = typer.prompt("password / 密码", hide_input=True, confirmation_prompt=True)
    path = default_users_path(_lake(lake))
    add_user(path, username, role, password, street=street, display_name=display_name, recipient=recipient)
    console.print(f"user {username} ({role}) saved in {path}")


@user_app.command("remove")
def user_remove(username: Annotated[str, typer.Argument()], lake: LakeOption = None) -> None:
    """Remove a dashboard user."""
    from dashboards.auth import default_users_path, remove_user

    removed = remove_user(default_users_path(_lake(lake)), username)
    console.print(f"user {username} {'removed' if removed else 'not found'}")
    raise typer.Exit(0 if removed else 1)


@app.command()
def bench(
    elders: Annotated[int, typer.Option(help="Elders in the data set (district scale: 400000).")] = 10_000,
    days: Annotated[int, typer.Option(help="Days of deliveries (a year: 365).")] = 30,
    seed: Annotated[int, typer.Option(help="Generator seed.")] = 20261101,
    cache: Annotated[Path, typer.Option(help="Where generated data sets are cached.")] = Path(".bench"),
    keep_full: Annotated[
        bool, typer.Option(help="Keep a copy of the lake after the full build (for --reuse-full).")
    ] = False,
    reuse_full: Annotated[
        bool, typer.Option(help="Start from the kept full build and measure a new day only.")
    ] = False,
    settle: Annotated[
        bool,
        typer.Option(help="Run one night with nothing new first, so the new day measures the steady state."),
    ] = False,
) -> None:
    """Benchmark the nightly build (性能基准): per asset time/rows/peak memory, floors, incremental day."""
    from benchmarks.nightly import bench as run_bench

    record = run_bench(elders, days, seed, cache, keep_full=keep_full, reuse_full=reuse_full, settle=settle)
    raise typer.Exit(0 if record["full_ok"] else 1)


@app.command()
def ui(
    lake: LakeOption = None,
    dagster_port: Annotated[int, typer.Option(help="Dagster UI port.")] = 3000,
    streamlit_port: Annotated[int, typer.Option(help="Streamlit dashboards port.")] = 8501,
) -> None:
    """Start the Dagster UI and the Streamlit dashboards on 127.0.0.1 (Ctrl-C stops both)."""
    from rainbow.ui import run_ui

    raise typer.Exit(run_ui(_lake(lake), dagster_port=dagster_port, streamlit_port=streamlit_port))


if __name__ == "__main__":
    app()
