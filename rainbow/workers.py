"""Independent units of a step (a delivery date, a landing file) on a few threads, in order.

The heavy event steps are loops over units that share nothing but the disk: staging a
day's parts, reading a landing file into its raw part. Each unit spends much of its time
in code that releases the GIL (Polars, PyArrow's Parquet encryption and compression,
hashing), and a good part in Python that holds it, so one unit at a time leaves the
second core of this machine idle. :func:`ordered_map` runs ``workers()`` units at once
and hands back their results in input order, holding at most ``workers()`` units in
flight (memory: that many units' frames, not the whole input).

``$RAINBOW_WORKERS`` (default: the number of CPUs, at most 2) sets the width; 1 runs the
units one after another in the calling thread, exactly as a plain loop would.

When the threads are done, :func:`release_memory` hands the heap's free pages back to the OS:
glibc gives every thread its own heap arena and keeps what was freed in it, so a step's
threads left ~350 MB resident that later steps (the master elder index near 8 GiB) counted
against them (12 days of district water validated two at a time: 1,136 MB resident after,
784 MB after ``malloc_trim``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import queue
import threading
from collections import deque
from collections.abc import Callable, Generator, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

WORKERS_ENV = "RAINBOW_WORKERS"
MAX_DEFAULT_WORKERS = 2  # measured on this 2-core machine; more threads than cores only contend

T = TypeVar("T")
R = TypeVar("R")


def workers() -> int:
    """Units run at once: ``$RAINBOW_WORKERS``, else the CPUs (at most 2); at least 1."""
    value = os.environ.get(WORKERS_ENV, "").strip()
    if value:
        try:
            n = int(value)
        except ValueError as exc:
            raise ValueError(f"{WORKERS_ENV} must be a whole number, got {value!r}") from exc
        return max(n, 1)
    return max(min(os.cpu_count() or 1, MAX_DEFAULT_WORKERS), 1)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    try:
        return getattr(ctypes.CDLL(name), "malloc_trim", None) if name else None
    except OSError:
        return None


def release_memory() -> bool:
    """Return free heap pages to the OS (glibc's ``malloc_trim``); whether the C library could
    trim (False elsewhere than glibc). No ``gc.collect()``: the frames are freed by reference
    counting, and a full collection per call cost the test suite ~20% of its staging tests."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


def ordered_map(
    fn: Callable[[T], R], items: Iterable[T], *, width: int | None = None
) -> Generator[R, None, None]:
    """``fn(item)`` for each item, yielded in the items' order, at most ``width`` (default
    :func:`workers`) running at once. The first exception (in input order) is raised when its
    result is due; units not started by then are not started, those running are waited for."""
    n = width if width is not None else workers()
    if n <= 1:
        for item in items:
            yield fn(item)
        return
    pending: deque[Future[R]] = deque()
    source = iter(items)
    with ThreadPoolExecutor(max_workers=n, thread_name_prefix="rainbow-unit") as pool:
        try:
            for item in source:
                pending.append(pool.submit(fn, item))
                if len(pending) >= n:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()
    release_memory()  # after the pool's threads are joined


_DONE = object()


def read_ahead(items: Iterable[T], *, depth: int = 1) -> Generator[T, None, None]:
    """The items of ``items`` in order, produced on a background thread up to ``depth`` items
    ahead of the consumer: the next block of work is prepared while this one is used. Only the
    background thread advances ``items`` (its generator may keep state such as caches). With
    :func:`workers` at 1 it is plain iteration. An exception of ``items`` is raised where its
    item would have come; closing the iterator early stops the producer after its current item."""
    if workers() <= 1:
        yield from items
        return
    slots: queue.Queue[tuple[object, BaseException | None]] = queue.Queue(maxsize=max(depth, 1))
    stop = threading.Event()

    def put(entry: tuple[object, BaseException | None]) -> bool:
        while not stop.is_set():
            try:
                slots.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((item, None)):
                    return
            put((_DONE, None))
        except BaseException as exc:  # handed to the consumer
            put((_DONE, exc))

    producer = threading.Thread(target=produce, name="rainbow-read-ahead", daemon=True)
    producer.start()
    try:
        while True:
            item, error = slots.get()
            if error is not None:
                raise error
            if item is _DONE:
                return
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        producer.join()
        release_memory()
