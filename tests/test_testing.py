"""The testing kit: set_testing(), capture_events() and FakeClock."""

from __future__ import annotations

import asyncio
import math
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from resilient import configure, retry, retrying, wait
from resilient.events import Event, RetriesExhausted, RetryScheduled
from resilient.testing import FakeClock, capture_events, set_testing


def attempts_made(**options: Any) -> int:
    """Call a function that always fails under @retry(**options); return how often it ran."""
    calls = 0

    @retry(on=ConnectionError, **options)
    def down() -> None:
        nonlocal calls
        calls += 1
        raise ConnectionError("down")

    with pytest.raises(ConnectionError):
        down()
    return calls


def async_attempts_made(**options: Any) -> int:
    """Like attempts_made(), for an async function."""
    calls = 0

    @retry(on=ConnectionError, **options)
    async def down() -> None:
        nonlocal calls
        calls += 1
        raise ConnectionError("down")

    with pytest.raises(ConnectionError):
        asyncio.run(down())
    return calls


def block_attempts_made(**options: Any) -> int:
    """Run an always-failing retrying() block; return how many attempts it made."""
    calls = 0

    def run() -> None:
        nonlocal calls
        for attempt in retrying(on=ConnectionError, **options):
            with attempt:
                calls += 1
                raise ConnectionError("down")

    with pytest.raises(ConnectionError):
        run()
    return calls


def async_block_attempts_made(**options: Any) -> int:
    """Like block_attempts_made(), with ``async for``."""
    calls = 0

    async def main() -> None:
        nonlocal calls
        async for attempt in retrying(on=ConnectionError, **options):
            with attempt:
                calls += 1
                raise ConnectionError("down")

    with pytest.raises(ConnectionError):
        asyncio.run(main())
    return calls


@pytest.fixture
def testing_off() -> Iterator[None]:
    """Make sure testing mode is off when the test starts, whatever ran before."""
    with set_testing(False):
        yield


# set_testing()


@pytest.mark.usefixtures("testing_off")
def test_set_testing_as_a_call_stays_on_until_turned_off() -> None:
    """A plain set_testing(True) call keeps testing mode on until set_testing(False)."""
    set_testing(True, attempts=2)
    assert attempts_made(attempts=5, wait=wait.none()) == 2
    assert attempts_made(attempts=5, wait=wait.none()) == 2
    set_testing(False)
    assert attempts_made(attempts=5, wait=wait.none()) == 5


@pytest.mark.usefixtures("testing_off")
def test_set_testing_as_a_block_restores_the_previous_mode() -> None:
    """Leaving a set_testing() block restores testing mode as it was before."""
    with set_testing(True, attempts=2):
        assert attempts_made(attempts=5, wait=wait.none()) == 2
    assert attempts_made(attempts=5, wait=wait.none()) == 5


@pytest.mark.usefixtures("testing_off")
def test_nested_set_testing_blocks_restore_each_level() -> None:
    """Nested set_testing() blocks restore mode and attempts level by level."""
    with set_testing(True, attempts=2):
        with set_testing(True, attempts=4):
            assert attempts_made(attempts=5, wait=wait.none()) == 4
            with set_testing(False):
                assert attempts_made(attempts=5, wait=wait.none()) == 5
            assert attempts_made(attempts=5, wait=wait.none()) == 4
        assert attempts_made(attempts=5, wait=wait.none()) == 2
    assert attempts_made(attempts=5, wait=wait.none()) == 5


@pytest.mark.usefixtures("testing_off")
def test_set_testing_block_restores_after_an_exception() -> None:
    """An exception leaving a set_testing() block still restores the previous mode."""
    with pytest.raises(RuntimeError), set_testing(True, attempts=1):
        raise RuntimeError
    assert attempts_made(attempts=3, wait=wait.none()) == 3


@pytest.mark.usefixtures("testing_off")
def test_set_testing_block_restores_a_mode_set_by_a_call() -> None:
    """A block inside a plain set_testing(True) call returns to that call's mode."""
    set_testing(True, attempts=3)
    with set_testing(False):
        assert attempts_made(attempts=5, wait=wait.none()) == 5
    assert attempts_made(attempts=5, wait=wait.none()) == 3


@pytest.mark.usefixtures("testing_off")
@pytest.mark.parametrize("attempts", [0, -1])
def test_set_testing_refuses_fewer_than_one_attempt(attempts: int) -> None:
    """set_testing(attempts=N) with N < 1 raises ValueError and changes nothing."""
    with pytest.raises(ValueError, match="at least 1"):
        set_testing(True, attempts=attempts)
    assert attempts_made(attempts=3, wait=wait.none()) == 3


@pytest.mark.usefixtures("testing_off")
@pytest.mark.parametrize("attempts", [True, 1.5, "2", None])
def test_set_testing_refuses_attempts_that_are_not_whole_numbers(attempts: Any) -> None:
    """set_testing(attempts=...) refuses bools, floats, strings and None, changing nothing."""
    with pytest.raises((TypeError, ValueError), match="attempts"):
        set_testing(True, attempts=attempts)
    assert attempts_made(attempts=3, wait=wait.none()) == 3


# testing mode: attempts


@pytest.mark.parametrize(
    ("policy_attempts", "testing_attempts", "expected"),
    [(5, 1, 1), (5, 2, 2), (2, 5, 2), (3, 3, 3)],
)
def test_testing_mode_makes_the_fewer_of_both_attempts(
    policy_attempts: int, testing_attempts: int, expected: int
) -> None:
    """In testing mode a call makes min(policy attempts, testing attempts) attempts."""
    with set_testing(True, attempts=testing_attempts):
        assert attempts_made(attempts=policy_attempts) == expected
        assert async_attempts_made(attempts=policy_attempts) == expected
        assert block_attempts_made(attempts=policy_attempts) == expected
        assert async_block_attempts_made(attempts=policy_attempts) == expected


def test_testing_mode_caps_a_policy_without_an_attempt_limit() -> None:
    """A policy limited only by a deadline makes the testing attempts, then gives up."""
    with set_testing(True, attempts=3):
        assert attempts_made(attempts=None, deadline=3600) == 3
        assert async_attempts_made(attempts=None, deadline=3600) == 3


def test_testing_mode_defaults_to_one_attempt() -> None:
    """set_testing(True) without attempts= allows exactly one attempt."""
    with set_testing(True):
        assert attempts_made(attempts=5) == 1


def test_testing_mode_still_returns_a_success_after_a_failure() -> None:
    """Within its attempts, testing mode retries and returns the eventual result."""
    calls = 0

    @retry(on=ConnectionError, attempts=5, wait=wait.constant(30))
    def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 2:
            raise ConnectionError
        return "ok"

    with set_testing(True, attempts=2):
        assert flaky() == "ok"
    assert calls == 2


# testing mode: no sleeps


def test_testing_mode_never_sleeps_on_the_clock(fake_clock: FakeClock) -> None:
    """In testing mode neither driver nor retrying() sleeps, even for long waits."""
    options: dict[str, Any] = {"attempts": 4, "wait": wait.constant(30)}
    with set_testing(True, attempts=4):
        assert attempts_made(**options) == 4
        assert async_attempts_made(**options) == 4
        assert block_attempts_made(**options) == 4
        assert async_block_attempts_made(**options) == 4
    assert fake_clock.sleeps == []
    assert fake_clock.monotonic() == 0.0


@pytest.mark.usefixtures("testing_off")
def test_without_testing_mode_the_same_calls_sleep_on_the_clock(fake_clock: FakeClock) -> None:
    """Outside testing mode the same calls do sleep on the clock (the spy above would see it)."""
    options: dict[str, Any] = {"attempts": 2, "wait": wait.constant(30)}
    attempts_made(**options)
    async_attempts_made(**options)
    block_attempts_made(**options)
    async_block_attempts_made(**options)
    assert fake_clock.sleeps == [30.0, 30.0, 30.0, 30.0]


def test_testing_mode_is_quick_on_the_system_clock() -> None:
    """With the real clock and 30 s waits, testing mode still finishes at once (liveness)."""
    started = time.monotonic()
    with set_testing(True, attempts=3):
        assert attempts_made(attempts=3, wait=wait.constant(30)) == 3
        assert async_attempts_made(attempts=3, wait=wait.constant(30)) == 3
    assert time.monotonic() - started < 5.0


# capture_events()


def test_capture_events_collects_the_events_of_the_block() -> None:
    """capture_events() yields a list that fills with the events reported in the block."""
    with set_testing(True, attempts=2), capture_events() as events:
        attempts_made(attempts=2, name="pay")
    assert [type(event) for event in events] == [RetryScheduled, RetriesExhausted]
    assert all(event.policy == "pay" for event in events)


def test_capture_events_stops_capturing_after_the_block() -> None:
    """Events reported after the block are not added to the list."""
    with set_testing(True, attempts=2):
        with capture_events() as events:
            attempts_made(attempts=2)
        attempts_made(attempts=2)
    assert len(events) == 2


def test_capture_events_keeps_configured_observers_working() -> None:
    """Observers configured before the block see events during and after it."""
    seen: list[Event] = []
    configure(observers=[seen.append])
    with set_testing(True, attempts=2):
        with capture_events() as events:
            attempts_made(attempts=2)
        assert seen == events
        attempts_made(attempts=2)
    assert len(seen) == 4
    assert seen[:2] == events


def test_nested_capture_events_both_capture() -> None:
    """An inner capture_events() block captures alongside the outer one, which continues."""
    with set_testing(True, attempts=1), capture_events() as outer:
        attempts_made()
        with capture_events() as inner:
            attempts_made()
        attempts_made()
    assert len(outer) == 3
    assert len(inner) == 1
    assert inner[0] is outer[1]


def test_capture_events_stops_after_an_exception() -> None:
    """An exception leaving the block still stops the capture."""
    captures: list[list[Event]] = []

    def capture_then_fail() -> None:
        with capture_events() as events:
            captures.append(events)
            attempts_made()
            raise ConnectionError

    with set_testing(True, attempts=1):
        with pytest.raises(ConnectionError):
            capture_then_fail()
        attempts_made()
    [events] = captures
    assert len(events) == 1


# FakeClock


def test_fake_clock_starts_at_the_given_readings() -> None:
    """FakeClock(monotonic=, time=) sets the first readings of both clocks."""
    clock = FakeClock(monotonic=5.0, time=100.0)
    assert clock.monotonic() == 5.0
    assert clock.time() == 100.0
    assert clock.sleeps == []


def test_fake_clock_time_stands_still_until_moved() -> None:
    """Reading the fake clock does not move it."""
    clock = FakeClock()
    assert clock.monotonic() == clock.monotonic() == 0.0
    assert clock.time() == clock.time() == 1_700_000_000.0


def test_fake_clock_sleep_moves_both_clocks_and_is_recorded() -> None:
    """sleep() moves monotonic() and time() forward together and records the sleep."""
    clock = FakeClock(monotonic=1.0, time=1000.0)
    clock.sleep(2.5)
    clock.sleep(0.5)
    assert clock.monotonic() == 4.0
    assert clock.time() == 1003.0
    assert clock.sleeps == [2.5, 0.5]


def test_fake_clock_advance_moves_both_clocks_without_recording() -> None:
    """advance() moves both clocks forward but is not a sleep."""
    clock = FakeClock(monotonic=0.0, time=50.0)
    clock.advance(10)
    clock.advance(0)
    assert clock.monotonic() == 10.0
    assert clock.time() == 60.0
    assert clock.sleeps == []


@pytest.mark.parametrize("seconds", [-1.0, -1e-9, math.nan])
def test_fake_clock_advance_refuses_to_go_back(seconds: float) -> None:
    """advance() refuses negative and NaN durations and leaves the time as it was."""
    clock = FakeClock(monotonic=3.0)
    with pytest.raises(ValueError, match="forward"):
        clock.advance(seconds)
    assert clock.monotonic() == 3.0


@pytest.mark.parametrize("seconds", [-1.0, math.nan])
def test_fake_clock_sleep_refuses_to_go_back_without_recording(seconds: float) -> None:
    """sleep() refuses negative and NaN durations; the refused sleep is not recorded."""
    clock = FakeClock(monotonic=3.0)
    with pytest.raises(ValueError, match="forward"):
        clock.sleep(seconds)
    assert clock.monotonic() == 3.0
    assert clock.sleeps == []


def test_fake_clock_asleep_moves_time_and_yields_to_the_loop() -> None:
    """asleep() records the sleep, moves time, and lets other tasks run before it returns."""
    clock = FakeClock()
    order: list[str] = []

    async def sleeper() -> None:
        order.append("sleeper starts")
        await clock.asleep(7.0)
        order.append(f"sleeper wakes at {clock.monotonic()}")

    async def other() -> None:
        order.append("other runs")

    async def main() -> None:
        await asyncio.gather(sleeper(), other())

    asyncio.run(main())
    assert order == ["sleeper starts", "other runs", "sleeper wakes at 7.0"]
    assert clock.sleeps == [7.0]


def test_fake_clock_is_thread_safe() -> None:
    """Concurrent sleeps and advances from many threads lose no time and no record.

    With the GIL a lost update is rare even without the lock; the check bites on free-threaded
    builds, and documents the promise everywhere.
    """
    clock = FakeClock()
    threads, rounds = 8, 2000
    barrier = threading.Barrier(threads)

    def work() -> None:
        barrier.wait()
        for _ in range(rounds):
            clock.sleep(0.5)
            clock.advance(0.25)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible to expose races
    try:
        workers = [threading.Thread(target=work) for _ in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    finally:
        sys.setswitchinterval(interval)
    assert len(clock.sleeps) == threads * rounds
    assert clock.monotonic() == threads * rounds * 0.75
    assert clock.time() == 1_700_000_000.0 + threads * rounds * 0.75


@pytest.mark.usefixtures("testing_off")
def test_fake_clock_installed_with_configure_receives_the_retry_sleeps() -> None:
    """A FakeClock given to configure() records exactly the waits a retry asks for."""
    clock = FakeClock()
    configure(clock=clock)
    attempts_made(attempts=4, wait=wait.linear(start=1, step=1))
    assert clock.sleeps == [1.0, 2.0, 3.0]
    assert clock.monotonic() == 6.0
