"""benchmarks.nightly: which earlier run a scaling ratio is taken against, and the target verdicts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from benchmarks import common
from benchmarks.nightly import earlier, print_targets


def _rec(
    elders: int, rows: int, full_s: float, *, machine: str = "x86_64 2 cpu", enc: bool = True
) -> dict[str, Any]:
    return {
        "elders": elders, "days": 30, "commit": "abc1234", "machine": machine, "landing_rows": rows,
        "full_s": full_s, "full_ok": True, "full_peak_mb": 900, "incremental_peak_mb": 800,
        "full_vs_floor": 41.7, "incremental_share": 0.546, "encrypted_at_rest": enc,
    }  # fmt: skip


def test_the_scaling_base_is_the_earlier_run_nearest_a_quarter_of_the_data(tmp_path: Path) -> None:
    results = tmp_path / "results.jsonl"
    lines = [
        _rec(2_000, 120_000, 40.0),
        _rec(25_000, 1_500_000, 200.0),  # a quarter of 6 M rows: this one
        _rec(50_000, 3_000_000, 300.0),
        _rec(25_000, 1_500_000, 1.0, machine="arm64 8 cpu"),  # another machine
        _rec(25_000, 1_500_000, 1.0, enc=False),  # another setting
        _rec(100_000, 6_000_000, 500.0),  # not smaller
    ]
    results.write_text("\n".join(json.dumps(r) for r in lines) + "\nnot json\n", encoding="utf-8")
    base = earlier(results, _rec(100_000, 6_000_000, 900.0))
    assert base is not None and base["elders"] == 25_000 and base["full_s"] == 200.0
    assert earlier(tmp_path / "missing.jsonl", _rec(1, 1, 1.0)) is None


def test_target_verdicts(monkeypatch: pytest.MonkeyPatch) -> None:
    out = Console(record=True, width=200)

    def to_out(*args: Any, **kwargs: Any) -> None:
        common.print_table(*args, **{**kwargs, "out": out})

    monkeypatch.setattr("benchmarks.nightly.print_table", to_out)
    record = _rec(100_000, 6_000_000, 900.0)
    print_targets(record, _rec(25_000, 1_500_000, 200.0))
    text = out.export_text()
    assert "4.50x time" in text and "allowed 4.50x" in text
    lines = {line.split("│")[1].strip(): line for line in text.splitlines() if line.count("│") >= 3}
    assert "not met" not in lines["peak memory < 8 GiB"] and "met" in lines["peak memory < 8 GiB"]
    assert "not met" in lines["full build <= 4x floor (a)"]
    assert "not met" in lines["one new day <= 2% of full"]
    scaling = next(v for k, v in lines.items() if k.startswith("scaling vs"))
    assert "not met" not in scaling  # exactly 4.5x at 4x the data


def test_every_bench_period_ends_on_the_sample_s_last_day_in_the_past() -> None:
    from datetime import date

    from benchmarks.nightly import BENCH_END, bench_config
    from sample_data.config import GeneratorConfig

    assert bench_config(10_000, 30, 1).start == GeneratorConfig().start  # 30-day caches stay valid
    year = bench_config(10_000, 365, 1)
    assert year.end == BENCH_END < date.today() and year.start == date(2025, 12, 1)
    assert len(year.period()) == 365


def test_a_step_peak_names_the_code_running() -> None:
    """The sampler names the innermost frames of this repository's code on the main thread
    (``module:function:line``), the way each step's ``peak_at`` is recorded."""
    import threading

    from benchmarks.nightly import _where

    seen: list[str] = []
    ready, done = threading.Event(), threading.Event()

    def sampler() -> None:
        ready.wait()
        seen.append(_where(threading.main_thread().ident))
        done.set()

    def holding_the_peak() -> None:
        ready.set()
        assert done.wait(10)

    thread = threading.Thread(target=sampler)
    thread.start()
    holding_the_peak()
    thread.join()
    assert seen[0].endswith(
        f"test_bench_targets:holding_the_peak:{holding_the_peak.__code__.co_firstlineno + 2}"
    )
    assert seen[0].count(" > ") == 1  # the test and the helper: nothing outside the repository
    assert _where(None) == ""
