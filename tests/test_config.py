"""Process-wide configuration: configure(), reset_defaults(), and how observers are called."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from typing import Any

import pytest

from resilient import configure, reset_defaults, retry, wait
from resilient.events import Event, RetriesExhausted, RetryScheduled
from resilient.testing import FakeClock, capture_events, set_testing


class ObserverError(Exception):
    """Raised by the failing observers in these tests."""


class FailingObserver:
    """An observer that raises on every event and counts how often it was called."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, event: Event) -> None:
        self.calls += 1
        raise ObserverError(f"observer broke on {event.kind}")

    def __repr__(self) -> str:
        return "FailingObserver()"


def flaky(failures: int, **options: Any) -> Any:
    """Return a function, decorated with @retry(**options), that fails *failures* times."""
    calls = 0

    @retry(on=ConnectionError, **options)
    def call() -> str:
        nonlocal calls
        calls += 1
        if calls <= failures:
            raise ConnectionError(f"failure {calls}")
        return "ok"

    return call


def resilient_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """Return the records logged through the "resilient" logger."""
    return [record for record in caplog.records if record.name == "resilient"]


# configure(clock=...)


def _method(*args: object) -> float:
    return 0.0


def _clock_without(missing: str) -> object:
    methods = dict.fromkeys(("monotonic", "time", "sleep", "asleep"), _method)
    del methods[missing]
    return type(f"ClockWithout_{missing}", (), methods)()


@pytest.mark.parametrize("missing", ["monotonic", "time", "sleep", "asleep"])
def test_configure_refuses_a_clock_missing_a_method(missing: str) -> None:
    """configure(clock=) raises TypeError naming resilient.typing.Clock for an incomplete clock."""
    with pytest.raises(TypeError, match=r"resilient\.typing\.Clock"):
        configure(clock=_clock_without(missing))  # type: ignore[arg-type]


def test_a_refused_clock_leaves_the_configured_one(fake_clock: FakeClock) -> None:
    """After a refused clock, retries still sleep on the clock configured before."""
    with pytest.raises(TypeError):
        configure(clock=object())  # type: ignore[arg-type]
    assert flaky(1, wait=wait.constant(2))() == "ok"
    assert fake_clock.sleeps == [2.0]


def test_configure_accepts_any_object_with_the_clock_methods() -> None:
    """A user-written clock with the four methods is accepted and used."""

    class StepClock:
        def __init__(self) -> None:
            self.slept: list[float] = []

        def monotonic(self) -> float:
            return 0.0

        def time(self) -> float:
            return 0.0

        def sleep(self, seconds: float) -> None:
            self.slept.append(seconds)

        def asleep(self, seconds: float) -> Awaitable[None]:
            self.slept.append(seconds)
            return asyncio.sleep(0)

    clock = StepClock()
    configure(clock=clock)
    assert flaky(1, wait=wait.constant(3))() == "ok"
    assert clock.slept == [3.0]


# configure(observers=...)


@pytest.mark.parametrize("bad", [42, "print", None])
def test_configure_refuses_an_observer_that_is_not_callable(bad: object) -> None:
    """configure(observers=) raises TypeError for a non-callable, installing none of the list."""
    seen: list[Event] = []
    configure(observers=[seen.append])
    with pytest.raises(TypeError, match="not callable"):
        configure(observers=[print, bad])  # type: ignore[list-item]
    with set_testing(True, attempts=2):
        flaky(1)()
    assert [type(event) for event in seen] == [RetryScheduled]


@pytest.mark.usefixtures("fake_clock")
def test_configure_replaces_the_observers() -> None:
    """A second configure(observers=) replaces the first list instead of adding to it."""
    first: list[Event] = []
    second: list[Event] = []
    configure(observers=[first.append])
    configure(observers=[second.append])
    flaky(1)()
    assert first == []
    assert len(second) == 1


@pytest.mark.usefixtures("fake_clock")
def test_observers_are_called_in_order() -> None:
    """Every observer receives every event, in the order configured."""
    calls: list[tuple[str, str]] = []
    configure(
        observers=(
            lambda event: calls.append(("a", event.kind)),
            lambda event: calls.append(("b", event.kind)),
        )
    )
    flaky(1)()
    assert calls == [("a", "retry.scheduled"), ("b", "retry.scheduled")]


@pytest.mark.usefixtures("fake_clock")
def test_configure_takes_observers_from_any_iterable() -> None:
    """configure(observers=) accepts a generator, read once."""
    seen: list[Event] = []
    configure(observers=(observer for observer in [seen.append]))
    flaky(1)()
    assert len(seen) == 1


@pytest.mark.usefixtures("fake_clock")
def test_configure_with_an_empty_list_removes_every_observer() -> None:
    """configure(observers=[]) stops every observer."""
    seen: list[Event] = []
    configure(observers=[seen.append])
    configure(observers=[])
    flaky(1)()
    assert seen == []


def test_configure_without_arguments_changes_nothing(fake_clock: FakeClock) -> None:
    """configure() with no arguments keeps the clock and the observers."""
    seen: list[Event] = []
    configure(observers=[seen.append])
    configure()
    flaky(1, wait=wait.constant(1))()
    assert fake_clock.sleeps == [1.0]
    assert len(seen) == 1


# reset_defaults()


def test_reset_defaults_restores_every_default(caplog: pytest.LogCaptureFixture) -> None:
    """reset_defaults() brings back the system clock, no observers, testing off, fresh logging."""
    seen: list[Event] = []
    failing = FailingObserver()
    fake = FakeClock(monotonic=1e9)  # far from any real monotonic reading
    configure(clock=fake, observers=[seen.append, failing])
    flaky(1, wait=wait.constant(1))()
    set_testing(True, attempts=2)

    reset_defaults()

    calls = 0

    @retry(on=ConnectionError, attempts=4, wait=wait.constant(0.001))
    def down() -> None:
        nonlocal calls
        calls += 1
        raise ConnectionError

    with pytest.raises(ConnectionError):
        down()
    assert calls == 4  # testing mode, and its cap of 2, are gone
    assert fake.sleeps == [1.0]  # the real clock slept the three 1 ms waits
    assert len(seen) == 1  # no observer any more
    # events are timed by the system clock again
    with capture_events() as events:
        flaky(1, wait=wait.none())()
    assert abs(events[0].time - time.monotonic()) < 1.0
    # the failing observer is forgotten: installed again, it is reported again
    configure(clock=FakeClock(), observers=[failing])
    flaky(1, wait=wait.constant(1))()
    assert len(resilient_records(caplog)) == 2


# configure() after decoration


def test_a_clock_configured_after_decoration_gets_the_next_sleeps() -> None:
    """Functions decorated before configure(clock=) sleep on the newly configured clock."""
    first_call = flaky(1, wait=wait.constant(5))
    second_call = flaky(1, wait=wait.constant(5))
    first, second = FakeClock(), FakeClock()
    configure(clock=first)
    first_call()
    configure(clock=second)
    second_call()
    assert first.sleeps == [5.0]
    assert second.sleeps == [5.0]


def test_a_clock_configured_after_decoration_gets_the_next_async_sleeps() -> None:
    """Async functions decorated before configure(clock=) sleep on the newly configured clock."""
    calls = 0

    @retry(on=ConnectionError, wait=wait.constant(4))
    async def call() -> str:
        nonlocal calls
        calls += 1
        if calls % 2:
            raise ConnectionError
        return "ok"

    first, second = FakeClock(), FakeClock()
    configure(clock=first)
    assert asyncio.run(call()) == "ok"
    configure(clock=second)
    assert asyncio.run(call()) == "ok"
    assert first.sleeps == [4.0]
    assert second.sleeps == [4.0]


@pytest.mark.usefixtures("fake_clock")
def test_observers_configured_after_decoration_see_the_next_calls() -> None:
    """Observers configured after decoration receive the events of the following calls."""
    call = flaky(3, attempts=2)
    seen: list[Event] = []
    configure(observers=[seen.append])
    with pytest.raises(ConnectionError):
        call()
    assert [type(event) for event in seen] == [RetryScheduled, RetriesExhausted]


# failing observers


@pytest.mark.usefixtures("fake_clock")
def test_a_failing_observer_never_breaks_a_call() -> None:
    """An observer that raises changes neither the result nor the exception of a call."""
    failing = FailingObserver()
    configure(observers=[failing])
    assert flaky(2)() == "ok"
    with pytest.raises(ConnectionError, match="failure 3"):
        flaky(5, attempts=3)()
    assert failing.calls == 5


@pytest.mark.usefixtures("fake_clock")
def test_a_failing_observer_never_breaks_an_async_call() -> None:
    """An observer that raises does not break an async call either."""
    configure(observers=[FailingObserver()])
    calls = 0

    @retry(on=ConnectionError, attempts=3)
    async def call() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise ConnectionError
        return "ok"

    assert asyncio.run(call()) == "ok"


@pytest.mark.usefixtures("fake_clock")
def test_a_failing_observer_does_not_stop_the_observers_after_it() -> None:
    """Observers after a failing one still receive every event."""
    seen: list[Event] = []
    configure(observers=[FailingObserver(), seen.append])
    flaky(2)()
    assert len(seen) == 2


@pytest.mark.usefixtures("fake_clock")
def test_a_failing_observer_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    """However often an observer fails, the "resilient" logger reports it once, with traceback."""
    failing = FailingObserver()
    configure(observers=[failing])
    for _ in range(10):
        flaky(2)()
    assert failing.calls == 20
    [record] = resilient_records(caplog)
    assert record.levelno == logging.ERROR
    assert record.exc_info is not None
    assert record.exc_info[0] is ObserverError
    assert "FailingObserver()" in record.getMessage()
    assert "retry.scheduled" in record.getMessage()


@pytest.mark.usefixtures("fake_clock")
def test_each_failing_observer_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    """Two failing observers are reported once each."""
    first, second = FailingObserver(), FailingObserver()
    configure(observers=[first, second])
    for _ in range(3):
        flaky(2)()
    records = resilient_records(caplog)
    assert len(records) == 2


def test_a_failing_observer_raises_in_testing_mode() -> None:
    """In testing mode an observer's exception propagates out of the call."""
    configure(observers=[FailingObserver()])
    with set_testing(True, attempts=3), pytest.raises(ObserverError):
        flaky(1)()


def test_a_failing_observer_raises_in_testing_mode_every_time(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """In testing mode a failing observer raises on each call and nothing is logged."""
    configure(observers=[FailingObserver()])
    with set_testing(True, attempts=3):
        for _ in range(3):
            with pytest.raises(ObserverError):
                flaky(1)()
    assert resilient_records(caplog) == []
