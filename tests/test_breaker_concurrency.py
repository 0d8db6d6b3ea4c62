"""One breaker, many real threads and tasks: exact counts, one trip per crossing, no lock held."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
from cache_support import PATIENCE, EventLog

from resilient import BreakerState, breaker
from resilient.events import BreakerOpened
from resilient.exceptions import CircuitOpenError

THREADS = 16
OUTCOMES = 10_000
_names = itertools.count()


def in_threads(work: Callable[[int], Any], threads: int = THREADS) -> list[Any]:
    """Run work(0) .. work(threads - 1) in that many threads at once; return their results."""
    start = threading.Barrier(threads)

    def begin(number: int) -> Any:
        start.wait(PATIENCE)
        return work(number)

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(begin, range(threads)))


@pytest.mark.parametrize(
    "window", [THREADS * OUTCOMES, timedelta(hours=1)], ids=["count window", "time window"]
)
def test_no_outcome_is_lost_under_sixteen_threads(window: int | timedelta) -> None:
    """16 threads x 10,000 calls, every third failing: the window holds exactly every outcome."""
    brk = breaker(
        f"exact-{next(_names)}", window=window, minimum_calls=THREADS * OUTCOMES, failure_rate=1.0
    )

    @brk
    def call(number: int) -> None:
        if number % 3 == 0:
            raise ConnectionError

    def work(_: int) -> int:
        failed = 0
        for number in range(OUTCOMES):
            try:
                call(number)
            except ConnectionError:
                failed += 1
        return failed

    failures = sum(in_threads(work))
    stats = brk.stats()
    assert (stats.calls, stats.failures) == (THREADS * OUTCOMES, failures)
    assert stats.state is BreakerState.CLOSED


def test_each_threshold_crossing_trips_once(log: EventLog) -> None:
    """16 threads failing at once open the breaker exactly once per round, however they race."""
    brk = breaker(f"once-{next(_names)}", failure_rate=0.5, window=100, minimum_calls=50)

    @brk
    def call() -> None:
        raise ConnectionError

    def work(_: int) -> tuple[int, int]:
        ran = refused = 0
        for _ in range(500):
            try:
                call()
            except ConnectionError:
                ran += 1
            except CircuitOpenError:
                refused += 1
        return ran, refused

    for round_ in range(1, 11):
        results = in_threads(work)
        assert sum(ran + refused for ran, refused in results) == THREADS * 500
        assert sum(ran for ran, _ in results) >= 50
        assert brk.state is BreakerState.OPEN
        assert len(log.of(BreakerOpened)) == round_
        brk.close()


def test_the_guarded_function_runs_in_every_thread_at_once() -> None:
    """Sixteen calls meet inside the function: the breaker never serialises them."""
    brk = breaker(f"parallel-{next(_names)}")
    inside = threading.Barrier(THREADS)

    @brk
    def call() -> str:
        inside.wait(PATIENCE)  # breaks (BrokenBarrierError) unless all 16 are in here at once
        return brk.state.value  # and the breaker can be read from inside

    assert in_threads(lambda _: call()) == ["closed"] * THREADS


def test_the_guarded_coroutine_runs_in_every_task_at_once() -> None:
    """Two hundred awaiting calls meet inside the coroutine at once."""
    brk = breaker(f"tasks-{next(_names)}")

    async def main() -> list[str]:
        inside = asyncio.Barrier(200)

        @brk
        async def call() -> str:
            async with asyncio.timeout(PATIENCE):
                await inside.wait()
            return "met"

        return await asyncio.gather(*(call() for _ in range(200)))

    assert asyncio.run(main()) == ["met"] * 200


def test_probes_never_exceed_half_open_calls_under_fifty_threads() -> None:
    """Fifty threads hammer the open-to-half-open edge: at most three probes ever run at once."""
    brk = breaker(
        f"probes-{next(_names)}",
        failure_rate=None,
        consecutive_failures=1,
        open_for=0.002,
        half_open_calls=3,
    )
    running = peak = probes = 0
    lock = threading.Lock()

    @brk
    def probe() -> None:
        # it always fails, so after the first trip every admitted call is a probe
        nonlocal running, peak, probes
        with lock:
            running += 1
            probes += 1
            peak = max(peak, running)
        time.sleep(0.0005)  # noqa: TID251 - a real call takes real time
        with lock:
            running -= 1
        raise ConnectionError

    with pytest.raises(ConnectionError):
        probe()  # the first trip

    def work(_: int) -> None:
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            with contextlib.suppress(ConnectionError, CircuitOpenError):
                probe()

    in_threads(work, threads=50)
    assert probes > 100  # the edge was crossed many times
    assert peak <= 3
