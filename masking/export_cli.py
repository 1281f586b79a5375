"""``rainbow export --agreement FILE``: build a recipient's open-data package.

Registered by ``rainbow/cli.py`` as the ``export`` command. Exit codes: 0 written, 2 refused
(agreement malformed, non-open dataset, expired, unknown column, direct identifier in clear,
k out of reach, dataset not built), 1 leak gate failed (nothing written).
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Annotated

import typer

from masking.agreement import AgreementError
from masking.export import ExportError, LeakError, build_package
from masking.release import ReleaseError
from rainbow.settings import LAKE_ROOT_ENV, Lake

EXIT_REFUSED = 2
EXIT_LEAK = 1


def export_command(
    agreement: Annotated[
        Path,
        typer.Option(
            "--agreement", help="Agreement YAML (数据共享协议): recipient, datasets, period, expiry, k."
        ),
    ],
    lake: Annotated[
        Path | None,
        typer.Option("--lake", help=f"Lake root (default: ${LAKE_ROOT_ENV} or ./data).", show_default=False),
    ] = None,
    today: Annotated[
        str | None,
        typer.Option(
            "--today", help="Check expiry against this date (YYYY-MM-DD; default: today in Shanghai)."
        ),
    ] = None,
) -> None:
    """Build an open-data export package (开放数据包) for the agreement's recipient."""
    the_lake = Lake(lake.expanduser().resolve()) if lake else Lake.from_env()
    try:
        day = date.fromisoformat(today) if today else None
    except ValueError as exc:
        typer.echo(f"--today 应写作 YYYY-MM-DD / --today must be YYYY-MM-DD: {today}", err=True)
        raise typer.Exit(EXIT_REFUSED) from exc
    try:
        package = build_package(the_lake, agreement, day)
    except AgreementError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(EXIT_REFUSED) from exc
    except ReleaseError as exc:
        typer.echo(f"无法达到 k-匿名，拒绝导出 / cannot reach k-anonymity, export refused: {exc}", err=True)
        raise typer.Exit(EXIT_REFUSED) from exc
    except ExportError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(EXIT_REFUSED) from exc
    except LeakError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(EXIT_LEAK) from exc
    typer.echo(f"导出包已写出 / package written: {package.path}")
    for name, rows in package.rows.items():
        typer.echo(f"  {name:<28} {rows:>9,} rows")
    typer.echo(f"  files: {len(package.manifest['files']) + 1} (manifest.json lists SHA-256 of each)")
