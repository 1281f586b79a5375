"""Shared benchmark plumbing: cached generated lakes, child-process measurement, tables."""

from __future__ import annotations

import multiprocessing as mp
import resource
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from rainbow.settings import Lake
from sample_data.config import GeneratorConfig
from sample_data.generate import generate

console = Console()


@dataclass(frozen=True)
class Measured:
    seconds: float
    peak_mb: float
    result: Any


def cached_landing(cache: Path, cfg: GeneratorConfig) -> Lake:
    """A generated lake for this config, generated once and reused by later runs."""
    since = "" if cfg.start == GeneratorConfig().start else f"-from{cfg.start:%Y%m%d}"
    lake = Lake(cache / f"lake-{cfg.elders}x{cfg.days}-s{cfg.seed}{since}")
    stamp = lake.truth / "generator.txt"
    if not stamp.exists():
        console.print(
            f"generating {cfg.elders:,} elders x {cfg.days} days into {lake.root} (cached for next time)"
        )
        t0 = time.perf_counter()
        generate(cfg, lake, overwrite=True)
        console.print(f"  generated in {time.perf_counter() - t0:.1f} s")
    return lake


def _child(fn: Callable[..., Any], args: tuple[Any, ...], queue: Any) -> None:
    t0 = time.perf_counter()
    try:
        result = fn(*args)
    except BaseException:
        queue.put(traceback.format_exc())
        raise
    seconds = time.perf_counter() - t0
    queue.put(Measured(seconds, _peak_kb() / 1024, result))


def _peak_kb() -> int:
    """This process's peak RSS. ``ru_maxrss`` survives ``execve``, so a child spawned by a big
    parent would report the parent's peak; the kernel's ``VmHWM`` belongs to this image only."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def measure(fn: Callable[..., Any], *args: Any) -> Measured:
    """Run ``fn(*args)`` in a fresh process: wall time and that process's peak RSS."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(fn, args, queue))
    proc.start()
    out = queue.get()
    proc.join()
    if not isinstance(out, Measured):
        raise RuntimeError(f"benchmark child failed:\n{out}")
    return out


def print_table(title: str, columns: list[str], rows: list[list[str]], out: Console = console) -> None:
    table = Table(title=title)
    for i, c in enumerate(columns):
        table.add_column(c, justify="left" if i == 0 else "right")
    for r in rows:
        table.add_row(*r)
    out.print(table)
