"""rainbow.workers: units on a few threads, results in input order, bounded in flight."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from rainbow import workers as workers_module
from rainbow.workers import WORKERS_ENV, ordered_map, read_ahead, release_memory, workers


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


def test_read_ahead_produces_on_another_thread_at_most_depth_items_ahead(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(WORKERS_ENV, "2")
    produced: list[tuple[int, str]] = []

    def items() -> Iterator[int]:
        for i in range(20):
            produced.append((i, threading.current_thread().name))
            yield i

    ahead = read_ahead(items(), depth=1)
    assert next(ahead) == 0
    time.sleep(0.05)
    assert len(produced) <= 3  # the item handed back, one queued, one being made
    assert list(ahead) == list(range(1, 20))
    assert {name for _, name in produced} == {"rainbow-read-ahead"}


def test_read_ahead_raises_the_producers_error_in_place_and_stops_when_closed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(WORKERS_ENV, "2")

    def failing() -> Iterator[int]:
        yield 1
        yield 2
        raise RuntimeError("day 3 unreadable")

    got: list[int] = []
    with pytest.raises(RuntimeError, match="day 3"):
        for i in read_ahead(failing()):
            got.append(i)
    assert got == [1, 2]

    produced: list[int] = []

    def endless() -> Iterator[int]:
        i = 0
        while True:
            produced.append(i)
            yield i
            i += 1

    ahead = read_ahead(endless(), depth=2)
    assert [next(ahead) for _ in range(3)] == [0, 1, 2]
    ahead.close()  # joins the producer
    stopped_at = len(produced)
    time.sleep(0.05)
    assert len(produced) == stopped_at <= 6
    assert not [t for t in threading.enumerate() if t.name == "rainbow-read-ahead"]


def test_read_ahead_with_one_worker_iterates_in_the_calling_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(WORKERS_ENV, "1")
    names: list[str] = []

    def items() -> Iterator[int]:
        for i in range(3):
            names.append(threading.current_thread().name)
            yield i

    assert list(read_ahead(items())) == [0, 1, 2]
    assert set(names) == {threading.current_thread().name}


def test_the_threads_free_pages_go_back_to_the_os_when_the_units_are_done(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert release_memory()  # glibc here: malloc_trim is found and runs
    calls: list[str] = []
    def released() -> bool:
        calls.append("released")
        return True

    monkeypatch.setattr(workers_module, "release_memory", released)
    results = ordered_map(lambda i: i, range(4), width=2)
    assert list(results) == [0, 1, 2, 3]
    assert calls == ["released"]
    monkeypatch.setenv(WORKERS_ENV, "2")
    assert list(read_ahead(iter(range(3)))) == [0, 1, 2]
    assert calls == ["released", "released"]
