"""Typing checks: configuration, the testing kit, wait strategies and the public protocols.

Checked by mypy --strict and run by ``tests/test_typing.py``; see ``check_retry.py`` for how
the ``_misuse_*`` functions prove errors.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Coroutine
from typing import Any, assert_type

import resilient
from resilient import configure, reset_defaults, retry, wait
from resilient.events import Event, RetriesExhausted, RetryScheduled
from resilient.exceptions import ResilientError
from resilient.testing import FakeClock, capture_events, set_testing
from resilient.typing import Clock, Observer, Wait


class TickingClock:
    """A user-written clock: satisfies resilient.typing.Clock structurally."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return 1_700_000_000.0 + self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds

    async def asleep(self, seconds: float) -> None:
        self.now += seconds
        await asyncio.sleep(0)


def log_kind(event: Event) -> None:
    """A user-written observer."""
    assert_type(event.kind, str)
    assert_type(event.policy, str)
    assert_type(event.time, float)


def check_configure() -> None:
    """configure() accepts any Clock and any observer callables; reset_defaults() takes none."""
    try:
        fake = FakeClock(monotonic=10.0, time=1_000.0)
        configure(clock=fake)
        configure(clock=TickingClock())
        configure(observers=[log_kind, print])
        configure(observers=(log_kind,), clock=fake)
        configure()
        clock: Clock = fake
        observer: Observer = log_kind
        assert_type(configure(clock=clock, observers=[observer]), None)
    finally:
        reset_defaults()


def check_fake_clock() -> None:
    """FakeClock's readings, sleeps and records are typed."""
    clock = FakeClock()
    assert_type(clock.monotonic(), float)
    assert_type(clock.time(), float)
    assert_type(clock.sleep(1.0), None)
    assert_type(clock.advance(0.5), None)
    assert_type(clock.sleeps, list[float])
    pending = clock.asleep(1.0)
    _ = assert_type(pending, Coroutine[Any, Any, None])
    asyncio.run(clock.asleep(2.0))
    assert clock.sleeps == [1.0, 2.0]
    asyncio.run(_consume(pending))


async def _consume(pending: Awaitable[None]) -> None:  # a Clock's asleep() is an Awaitable
    await pending


def check_testing_kit() -> None:
    """set_testing() works as a call and a with block; capture_events() yields the events."""
    restore = set_testing(True, attempts=2)
    with restore:
        pass
    with set_testing(True), capture_events() as events:
        assert_type(events, list[Event])

        @retry(on=ConnectionError, attempts=2)
        def down() -> None:
            raise ConnectionError

        with contextlib.suppress(ConnectionError):
            down()
    kinds = [type(event) for event in events]
    assert kinds == [RetriesExhausted], kinds
    assert RetryScheduled.kind == "retry.scheduled"


def check_wait_strategies() -> None:
    """Every built-in wait strategy is a resilient.typing.Wait, and so is a user function."""
    assert_type(wait.none(), Wait)
    assert_type(wait.constant(1), Wait)
    assert_type(wait.linear(start=0.1, step=0.2, max=1), Wait)
    assert_type(wait.exponential(initial=0.1, multiplier=2, max=5), Wait)
    assert_type(wait.full_jitter(wait.exponential()), Wait)
    assert_type(wait.equal_jitter(wait.exponential()), Wait)
    assert_type(wait.decorrelated_jitter(initial=0.1, max=3), Wait)
    assert_type(wait.add(wait.constant(1), wait.full_jitter(wait.constant(1))), Wait)
    assert_type(wait.capped(wait.linear(), max=2), Wait)
    assert_type(wait.chain(wait.none(), wait.constant(1)), Wait)
    assert_type(wait.constant(1)(1, 0.0), float)

    def fixed(attempt: int, previous: float) -> float:
        return 0.0

    strategy: Wait = fixed
    retry(on=ConnectionError, wait=fixed)
    retry(on=ConnectionError, wait=lambda attempt, previous: previous * 2)
    assert strategy(1, 0.0) == 0.0
    assert resilient.wait is wait


def check_exceptions() -> None:
    """ResilientError is an Exception."""
    error: Exception = ResilientError("boom")
    assert isinstance(error, ResilientError)


class _NoSleepClock:
    def monotonic(self) -> float:
        return 0.0

    def time(self) -> float:
        return 0.0

    def sleep(self, seconds: float) -> None:
        pass


def _no_arguments() -> None:
    pass


def _misuse() -> None:
    """Wrong clocks, observers, waits and testing switches are type errors (never run)."""
    configure(clock=object())  # type: ignore[arg-type]
    configure(clock=_NoSleepClock())  # type: ignore[arg-type]
    configure(clock=FakeClock)  # type: ignore[arg-type]
    configure(observers=[42])  # type: ignore[list-item]
    configure(observers=log_kind)  # type: ignore[arg-type]
    configure(observers=[_no_arguments])  # type: ignore[list-item]
    configure(FakeClock())  # type: ignore[call-arg]
    set_testing(True, attempts="2")  # type: ignore[arg-type]
    FakeClock(monotonic="0")  # type: ignore[arg-type]
    wait.constant("1s")  # type: ignore[arg-type]
    wait.full_jitter(1.0)  # type: ignore[arg-type]
    wait.chain(1, 2)  # type: ignore[arg-type]

    def bad_wait(attempt: str) -> float:
        return 0.0

    retry(on=ConnectionError, wait=bad_wait)  # type: ignore[call-overload]
    strategy: Wait = wait.constant  # type: ignore[assignment]
    with capture_events() as events:
        first: RetryScheduled = events[0]  # type: ignore[assignment]
        del first
    del strategy
