"""@cached on the memory backend: stale-while-revalidate, stale-if-error, early refresh."""

from __future__ import annotations

import asyncio
import threading

import pytest
from cache_support import PATIENCE, EventLog, run

from resilient import (
    CacheStatus,
    cache_status,
    cached,
)
from resilient.events import CacheRefreshed, CacheStaleServed
from resilient.testing import FakeClock

# --- stale-while-revalidate --------------------------------------------------------------------


def test_stale_value_is_served_while_exactly_one_refresh_runs(
    clock: FakeClock, log: EventLog
) -> None:
    """Past ttl, callers get the stale value at once while one background refresh runs."""
    release = threading.Event()
    started: list[int] = []

    @cached(ttl=10, stale_ttl=20, name="version")
    def version() -> int:
        started.append(1)
        if len(started) > 1:
            assert release.wait(PATIENCE)  # the refresh is slow
        return len(started)

    assert version() == 1
    clock.advance(15)
    for _ in range(10):
        assert version() == 1
        assert cache_status() is CacheStatus.STALE
    release.set()
    log.wait_for(CacheRefreshed)
    assert len(started) == 2
    assert version() == 2
    assert cache_status() is CacheStatus.HIT
    assert len(started) == 2
    assert [event.reason for event in log.of(CacheStaleServed)] == ["refreshing"] * 10
    [refreshed] = log.of(CacheRefreshed)
    assert (refreshed.policy, refreshed.outcome, refreshed.error_type) == (
        "version",
        "success",
        None,
    )


def test_async_stale_value_is_served_while_exactly_one_refresh_runs(
    clock: FakeClock, log: EventLog
) -> None:
    """Async callers get the stale value while one refresh task runs, then the new value."""
    release = asyncio.Event()
    started: list[int] = []

    @cached(ttl=10, stale_ttl=20)
    async def version() -> int:
        started.append(1)
        if len(started) > 1:
            await release.wait()
        return len(started)

    async def main() -> list[tuple[int, CacheStatus | None]]:
        seen = [(await version(), cache_status())]
        clock.advance(15)
        for _ in range(10):
            seen.append((await version(), cache_status()))
            await asyncio.sleep(0)  # the refresh task gets to run, and waits
        assert len(started) == 2
        release.set()
        await log.settle(CacheRefreshed)
        seen.append((await version(), cache_status()))
        return seen

    assert run(main()) == [
        (1, CacheStatus.MISS),
        *[(1, CacheStatus.STALE)] * 10,
        (2, CacheStatus.HIT),
    ]
    assert len(started) == 2


def test_stale_value_is_served_only_until_stale_ttl_ends(clock: FakeClock) -> None:
    """A value past ttl + stale_ttl is gone: the caller waits for a fresh one (a miss)."""
    runs: list[int] = []

    @cached(ttl=10, stale_ttl=5)
    def version() -> int:
        runs.append(1)
        return len(runs)

    version()
    clock.advance(15)
    assert version() == 2
    assert cache_status() is CacheStatus.MISS


def test_refresh_failure_keeps_serving_the_stale_value(clock: FakeClock, log: EventLog) -> None:
    """stale-if-error: while refreshes fail the stale value is served until stale_ttl ends."""
    failing = threading.Event()
    runs: list[int] = []

    @cached(ttl=10, stale_ttl=20)
    def rates() -> str:
        runs.append(1)
        if failing.is_set():
            raise ConnectionError("rates service down")
        return f"rates{len(runs)}"

    assert rates() == "rates1"
    failing.set()
    for step, moment in enumerate((15.0, 20.0, 29.999), start=1):
        clock.advance(moment - clock.monotonic())
        assert rates() == "rates1"
        assert cache_status() is CacheStatus.STALE
        log.wait_for(CacheRefreshed, count=step)
    assert [(event.outcome, event.error_type) for event in log.of(CacheRefreshed)] == [
        ("failure", "ConnectionError")
    ] * 3
    clock.advance(30.0 - clock.monotonic())
    with pytest.raises(ConnectionError, match="rates service down"):
        rates()
    failing.clear()
    assert rates() == "rates6"  # the first run, three refreshes, the failed miss, this one
    assert cache_status() is CacheStatus.MISS


def test_async_refresh_failure_keeps_serving_the_stale_value(
    clock: FakeClock, log: EventLog
) -> None:
    """Async stale-if-error: the stale value until stale_ttl ends, then the error."""
    failing = False

    @cached(ttl=10, stale_ttl=20)
    async def rates() -> str:
        if failing:
            raise ConnectionError("rates service down")
        return "rates"

    async def main() -> None:
        nonlocal failing
        assert await rates() == "rates"
        failing = True
        clock.advance(15)
        assert await rates() == "rates"
        await log.settle(CacheRefreshed)
        clock.advance(14.999)
        assert await rates() == "rates"
        assert cache_status() is CacheStatus.STALE
        await log.settle(CacheRefreshed, count=2)
        clock.advance(0.001)
        with pytest.raises(ConnectionError):
            await rates()

    run(main())
    assert [event.outcome for event in log.of(CacheRefreshed)] == ["failure", "failure"]


def test_stale_value_after_a_failed_refresh_says_so(clock: FakeClock, log: EventLog) -> None:
    """A stale value served after the last refresh failed is reported as 'refresh_failed'."""
    failing = threading.Event()

    @cached(ttl=10, stale_ttl=20)
    def rates() -> str:
        if failing.is_set():
            raise ConnectionError("down")
        return "rates"

    rates()
    failing.set()
    clock.advance(15)
    rates()
    log.wait_for(CacheRefreshed)
    clock.advance(1)
    rates()
    assert [event.reason for event in log.of(CacheStaleServed)] == [
        "refreshing",
        "refresh_failed",
    ]


# --- early refresh -----------------------------------------------------------------------------


def test_an_expensive_value_is_refreshed_just_before_it_expires(
    clock: FakeClock, log: EventLog
) -> None:
    """Right before expiry a costly value is refreshed in the background; callers still hit."""
    runs: list[int] = []

    @cached(ttl=100)
    def report() -> int:
        clock.advance(1.0)  # computing it takes a second
        runs.append(1)
        return len(runs)

    assert report() == 1  # stored at t=1, fresh until t=101
    clock.advance(50)
    assert report() == 1
    assert log.of(CacheRefreshed) == []
    clock.advance(50 - 1e-9)  # a nanosecond before expiry: a refresh is all but certain
    assert report() == 1
    assert cache_status() is CacheStatus.HIT
    log.wait_for(CacheRefreshed)
    assert report() == 2
    assert cache_status() is CacheStatus.HIT
    assert len(runs) == 2


def test_early_refresh_zero_waits_for_expiry(clock: FakeClock, log: EventLog) -> None:
    """With early_refresh=0 a value is served untouched until ttl, then computed on a miss."""
    runs: list[int] = []

    @cached(ttl=100, early_refresh=0)
    def report() -> int:
        clock.advance(1.0)
        runs.append(1)
        return len(runs)

    report()
    clock.advance(100 - 1e-9)
    assert report() == 1
    assert cache_status() is CacheStatus.HIT
    clock.advance(1e-9)
    assert report() == 2
    assert cache_status() is CacheStatus.MISS
    assert log.of(CacheRefreshed) == []
