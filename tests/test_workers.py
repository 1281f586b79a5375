"""rainbow.workers: units on a few threads, results in input order, bounded in flight."""

from __future__ import annotations

import threading
import time

import pytest

from rainbow.workers import WORKERS_ENV, ordered_map, workers


class Gauge:
    """How many calls run at once (the most seen), and on which threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = 0
        self.most = 0
        self.threads: set[str] = set()

    def __call__(self, item: int) -> int:
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)
            self.threads.add(threading.current_thread().name)
        time.sleep(0.02 * (item % 3))  # later items often finish first
        with self.lock:
            self.now -= 1
        return item * item


def test_results_come_in_input_order_with_at_most_width_units_running() -> None:
    gauge = Gauge()
    assert list(ordered_map(gauge, range(12), width=3)) == [i * i for i in range(12)]
    assert gauge.most == 3
    assert threading.current_thread().name not in gauge.threads


def test_width_one_is_a_plain_loop_in_the_calling_thread() -> None:
    gauge = Gauge()
    assert list(ordered_map(gauge, range(5), width=1)) == [0, 1, 4, 9, 16]
    assert gauge.most == 1
    assert gauge.threads == {threading.current_thread().name}


def test_units_are_not_started_ahead_of_a_slow_consumer() -> None:
    started: list[int] = []

    def note(item: int) -> int:
        started.append(item)
        return item

    results = ordered_map(note, range(100), width=2)
    assert next(results) == 0
    time.sleep(0.05)
    assert len(started) <= 3  # the one handed back, and at most two in flight
    results.close()


def test_the_first_failure_in_input_order_is_raised_and_later_units_are_not_started() -> None:
    started: list[int] = []

    def unit(item: int) -> int:
        started.append(item)
        if item in (3, 5):
            time.sleep(0.05 if item == 3 else 0)
            raise ValueError(f"unit {item}")
        return item

    got: list[int] = []
    with pytest.raises(ValueError, match="unit 3"):
        for r in ordered_map(unit, range(50), width=2):
            got.append(r)
    assert got == [0, 1, 2]
    assert max(started) <= 5


def test_width_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(WORKERS_ENV, "3")
    assert workers() == 3
    monkeypatch.setenv(WORKERS_ENV, "0")
    assert workers() == 1
    monkeypatch.setenv(WORKERS_ENV, "two")
    with pytest.raises(ValueError, match=WORKERS_ENV):
        workers()
    monkeypatch.delenv(WORKERS_ENV)
    assert 1 <= workers() <= 2
