"""``rainbow catalog``: write the data resource catalogue (JSON, Parquet, static HTML site).

Registered in ``rainbow/cli.py`` with ``app.command("catalog")(catalog_command)``.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Annotated

import typer

from catalog.build import build_catalog, default_out_dir, write_catalog
from catalog.scenarios import ScenarioError
from rainbow.settings import LAKE_ROOT_ENV, Lake


def catalog_command(
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Output directory (default: <lake>/marts/catalog/).", show_default=False),
    ] = None,
    lake: Annotated[
        Path | None,
        typer.Option("--lake", help=f"Lake root (default: ${LAKE_ROOT_ENV} or ./data).", show_default=False),
    ] = None,
) -> None:
    """Write the catalogue of every zone: catalog.json, Parquet tables and a searchable HTML site."""
    the_lake = Lake(lake.expanduser().resolve()) if lake else Lake.from_env()
    try:
        catalog = build_catalog(the_lake)
    except ScenarioError as exc:
        typer.echo(f"场景库校验失败 / scenario catalogue invalid:\n{exc}", err=True)
        raise typer.Exit(2) from exc
    target = write_catalog(the_lake, out or default_out_dir(the_lake), catalog=catalog)
    built = Counter(d.zone for d in catalog.datasets if d.exists)
    total = Counter(d.zone for d in catalog.datasets)
    typer.echo(
        f"catalogue: {len(catalog.datasets)} datasets, {len(catalog.scenarios)} scenarios, "
        f"{len(catalog.kpis)} KPIs -> {target}"
    )
    for zone, n in total.items():
        typer.echo(f"  {zone:<11} {built.get(zone, 0):>3} / {n:<3} present")
    for warning in catalog.warnings:
        typer.echo(f"  warning: {warning}")
    if catalog.problems:
        typer.echo(f"  lineage problems ({len(catalog.problems)}):")
        for p in catalog.problems:
            typer.echo(f"    {p}")
    typer.echo(f"  open {target / 'index.html'}")
