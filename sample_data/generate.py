"""Orchestrate a generation: build the world, run every system day by day, write the truth."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rainbow.settings import Lake
from sample_data.config import GeneratorConfig
from sample_data.deliver import GenContext
from sample_data.systems.base import System
from sample_data.truth import TruthWriter
from sample_data.world import build_world
from schemas import load_registry


def system_classes() -> list[type[System]]:
    from sample_data.systems.monitoring import SmartMeters, Wristbands
    from sample_data.systems.programmes import (
        CareBeds,
        CognitiveScreening,
        DeviceRental,
        LoveMilk,
        MealAid,
        TimeBank,
    )
    from sample_data.systems.providers import Caregivers, Facilities
    from sample_data.systems.registries import DistrictPlatform, MunicipalPlatform

    return [
        Facilities,
        Caregivers,
        MunicipalPlatform,
        DistrictPlatform,
        MealAid,
        LoveMilk,
        DeviceRental,
        CareBeds,
        CognitiveScreening,
        TimeBank,
        Wristbands,
        SmartMeters,
    ]


@dataclass(frozen=True)
class GenerationReport:
    files: int
    rows: dict[str, int]
    bytes: dict[str, int]


def generate(
    cfg: GeneratorConfig,
    lake: Lake,
    *,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> GenerationReport:
    """Write every source system's deliveries for the period into ``lake.landing``
    and the ground truth into ``lake.truth``. Same config, byte-identical output."""
    for folder in (lake.landing, lake.truth):
        if folder.exists() and any(folder.iterdir()):
            if not overwrite:
                raise FileExistsError(f"{folder} is not empty; pass overwrite=True (--force) to replace it")
            shutil.rmtree(folder)
    lake.landing.mkdir(parents=True, exist_ok=True)
    truth = TruthWriter(lake.truth)
    ctx = GenContext(cfg=cfg, registry=load_registry(), landing=lake.landing, truth=truth)
    world = build_world(cfg)
    truth.write_frame("persons", world.people.drop("idx", "street_idx"))
    systems = [cls(ctx, world) for cls in system_classes()]
    days = cfg.period()
    for i, day in enumerate(days):
        for system in systems:
            system.on_day(day)
        if progress:
            progress(i + 1, len(days))
    for system in systems:
        system.finish()
    truth.close()
    _write_manifest(lake.truth / "generator.txt", cfg)
    return GenerationReport(files=len(ctx.files_written), rows=ctx.rows_written, bytes=ctx.bytes_written)


def _write_manifest(path: Path, cfg: GeneratorConfig) -> None:
    path.write_text(
        f"elders={cfg.elders}\ndays={cfg.days}\nseed={cfg.seed}\nstart={cfg.start.isoformat()}\n",
        encoding="utf-8",
    )
