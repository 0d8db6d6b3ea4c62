"""@retry end to end: what is retried, how long it waits, how it gives up, what it reports."""

from __future__ import annotations

import asyncio
import traceback
from collections.abc import Coroutine
from datetime import timedelta
from email.utils import formatdate
from typing import Any, TypeVar

import pytest

import resilient._retry
from resilient import RetryBudget, retry, wait
from resilient._config import DEFAULTS
from resilient.events import Event, RetriesExhausted, RetryScheduled
from resilient.testing import FakeClock

T = TypeVar("T")


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run *coroutine* on a fresh event loop."""
    return asyncio.run(coroutine)


class Flaky:
    """A callable failing with the given exceptions in turn, then returning "ok"."""

    def __init__(self, *errors: BaseException, clock: FakeClock | None = None) -> None:
        self.errors = list(errors)
        self.calls = 0
        self.started: list[float] = []
        self.clock = clock

    def __call__(self) -> str:
        self.calls += 1
        if self.clock is not None:
            self.started.append(self.clock.monotonic())
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


class Throttled(Exception):
    """An error carrying a retry_after attribute, like many HTTP client errors."""

    def __init__(self, retry_after: object) -> None:
        super().__init__("throttled")
        self.retry_after = retry_after


class Response:
    """A stand-in for a requests/httpx response: only headers."""

    def __init__(self, headers: object) -> None:
        self.headers = headers


class HTTPError(Exception):
    """An error carrying a response with headers, like requests' and httpx's errors."""

    def __init__(self, headers: object) -> None:
        super().__init__("http error")
        self.response = Response(headers)


class BrokenHeaders:
    """Headers whose lookup itself fails."""

    def get(self, name: str) -> str:
        raise RuntimeError("broken")


# --- what is retried --------------------------------------------------------------------------


def test_success_first_time_makes_one_call(fake_clock: FakeClock) -> None:
    """A call that succeeds at once is made once and never sleeps."""
    flaky = Flaky()
    assert retry(on=ConnectionError)(flaky)() == "ok"
    assert flaky.calls == 1
    assert fake_clock.sleeps == []


def test_retries_matching_type_until_success(fake_clock: FakeClock) -> None:
    """Errors of the on= type are retried until the call succeeds."""
    flaky = Flaky(ConnectionError(), ConnectionError())
    assert retry(on=ConnectionError, attempts=3, wait=wait.none())(flaky)() == "ok"
    assert flaky.calls == 3


def test_retries_subclasses_of_on_type(fake_clock: FakeClock) -> None:
    """A subclass of an on= type is retried."""
    flaky = Flaky(ConnectionRefusedError(), ConnectionResetError())
    assert retry(on=ConnectionError, wait=wait.none())(flaky)() == "ok"
    assert flaky.calls == 3


def test_retries_any_type_of_a_tuple(fake_clock: FakeClock) -> None:
    """on= a tuple retries each of its types."""
    flaky = Flaky(ConnectionError(), TimeoutError())
    assert retry(on=(ConnectionError, TimeoutError), wait=wait.none())(flaky)() == "ok"
    assert flaky.calls == 3


def test_predicate_decides_what_is_retried(fake_clock: FakeClock) -> None:
    """on= a predicate retries exactly the errors it accepts."""
    flaky = Flaky(OSError(503, "busy"), OSError(404, "gone"))
    decorated = retry(on=lambda exc: getattr(exc, "errno", None) == 503, wait=wait.none())(flaky)
    with pytest.raises(OSError, match="gone"):
        decorated()
    assert flaky.calls == 2


def test_non_retryable_error_is_raised_at_once_without_note(fake_clock: FakeClock) -> None:
    """An error not matching on= propagates after one attempt, unchanged and without a note."""
    error = ValueError("bad input")
    flaky = Flaky(error)
    with pytest.raises(ValueError, match="bad input") as info:
        retry(on=ConnectionError, attempts=5)(flaky)()
    assert info.value is error
    assert flaky.calls == 1
    assert not hasattr(error, "__notes__")
    assert fake_clock.sleeps == []


def test_non_retryable_error_after_retries_gets_a_note(fake_clock: FakeClock) -> None:
    """A non-retryable error after some retries propagates at once, noting the attempts."""
    error = ValueError("bad input")
    flaky = Flaky(ConnectionError(), error)
    with pytest.raises(ValueError, match="bad input") as info:
        retry(on=ConnectionError, attempts=5, wait=wait.none(), name="f")(flaky)()
    assert info.value is error
    assert flaky.calls == 2
    assert info.value.__notes__ == [
        "resilient.retry(f): gave up after 2 attempts over 0 ms: this error is not retried"
    ]


@pytest.mark.parametrize(
    "error",
    [asyncio.CancelledError(), KeyboardInterrupt(), SystemExit(3), GeneratorExit()],
    ids=lambda error: type(error).__name__,
)
def test_base_exceptions_are_never_retried_sync(
    error: BaseException, fake_clock: FakeClock
) -> None:
    """Cancellation, KeyboardInterrupt, SystemExit, GeneratorExit pass through a sync call."""
    flaky = Flaky(error)
    with pytest.raises(type(error)) as info:
        retry(on=Exception, attempts=5)(flaky)()
    assert info.value is error
    assert flaky.calls == 1
    assert not hasattr(error, "__notes__")
    assert fake_clock.sleeps == []


@pytest.mark.parametrize(
    "error",
    [asyncio.CancelledError(), KeyboardInterrupt(), SystemExit(3), GeneratorExit()],
    ids=lambda error: type(error).__name__,
)
def test_base_exceptions_are_never_retried_async(
    error: BaseException, fake_clock: FakeClock
) -> None:
    """Cancellation, KeyboardInterrupt, SystemExit, GeneratorExit pass through an async call."""
    flaky = Flaky(error)

    @retry(on=lambda exc: True, attempts=5)
    async def call() -> str:
        return flaky()

    async def main() -> BaseException:
        try:
            await call()
        except BaseException as exc:  # the point is to catch whatever passes through
            return exc
        raise AssertionError("no exception")

    assert run(main()) is error
    assert flaky.calls == 1
    assert not hasattr(error, "__notes__")
    assert fake_clock.sleeps == []


# --- giving up --------------------------------------------------------------------------------


def test_last_attempt_reraises_the_original_exception_with_a_note(fake_clock: FakeClock) -> None:
    """After the last attempt the last exception object itself propagates, with a note."""
    errors = [ConnectionError(1), ConnectionError(2), ConnectionError(3)]
    flaky = Flaky(*errors)
    decorated = retry(on=ConnectionError, attempts=3, wait=wait.constant(1.5), name="fetch")(flaky)
    with pytest.raises(ConnectionError) as info:
        decorated()
    assert info.value is errors[2]
    assert type(info.value) is ConnectionError
    assert info.value.__notes__ == [
        "resilient.retry(fetch): gave up after 3 attempts over 3000 ms: attempts exhausted"
    ]
    assert not hasattr(errors[0], "__notes__")
    assert not hasattr(errors[1], "__notes__")


def test_async_last_attempt_reraises_the_original_exception_with_a_note(
    fake_clock: FakeClock,
) -> None:
    """The async driver re-raises the last exception object itself, with a note."""
    errors = [ConnectionError(1), ConnectionError(2)]
    flaky = Flaky(*errors)

    @retry(on=ConnectionError, attempts=2, wait=wait.constant(0.25), name="fetch")
    async def fetch() -> str:
        return flaky()

    with pytest.raises(ConnectionError) as info:
        run(fetch())
    assert info.value is errors[1]
    assert info.value.__notes__ == [
        "resilient.retry(fetch): gave up after 2 attempts over 250 ms: attempts exhausted"
    ]


def test_single_attempt_is_not_retried_and_noted(fake_clock: FakeClock) -> None:
    """attempts=1 makes one call; the error notes that the attempts are exhausted."""
    flaky = Flaky(ConnectionError())
    with pytest.raises(ConnectionError) as info:
        retry(on=ConnectionError, attempts=1, name="f")(flaky)()
    assert flaky.calls == 1
    assert info.value.__notes__ == [
        "resilient.retry(f): gave up after 1 attempt over 0 ms: attempts exhausted"
    ]


def test_traceback_points_into_the_user_function(fake_clock: FakeClock) -> None:
    """The re-raised error's traceback ends in the function that raised it."""

    @retry(on=ConnectionError, attempts=2, wait=wait.none())
    def connect() -> None:
        raise ConnectionError("refused")

    with pytest.raises(ConnectionError) as info:
        connect()
    last = traceback.extract_tb(info.value.__traceback__)[-1]
    assert last.name == "connect"
    assert last.filename == __file__
    assert last.line == 'raise ConnectionError("refused")'


def test_async_traceback_points_into_the_user_function(fake_clock: FakeClock) -> None:
    """The async driver's re-raised error's traceback ends in the user's coroutine."""

    @retry(on=ConnectionError, attempts=2, wait=wait.none())
    async def connect() -> None:
        raise ConnectionError("refused")

    with pytest.raises(ConnectionError) as info:
        run(connect())
    last = traceback.extract_tb(info.value.__traceback__)[-1]
    assert last.name == "connect"
    assert last.filename == __file__


def test_final_error_keeps_its_own_context_and_cause(fake_clock: FakeClock) -> None:
    """The re-raised error is not chained to earlier attempts; the user's own chain stays."""
    attempts: list[int] = []

    @retry(on=ConnectionError, attempts=3, wait=wait.none())
    def lookup() -> None:
        attempts.append(1)
        if len(attempts) < 3:
            raise ConnectionError(len(attempts))
        table: dict[str, int] = {}
        try:
            table["key"]
        except KeyError as exc:
            raise ConnectionError("last") from exc

    with pytest.raises(ConnectionError, match="last") as info:
        lookup()
    assert isinstance(info.value.__cause__, KeyError)
    assert isinstance(info.value.__context__, KeyError)


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_final_error_is_not_chained_to_earlier_attempts(
    fake_clock: FakeClock, is_async: bool
) -> None:
    """Each attempt's error has no implicit context from the attempts before it."""
    errors = [ConnectionError(1), ConnectionError(2), ConnectionError(3)]
    flaky = Flaky(*errors)
    policy = retry(on=ConnectionError, attempts=3, wait=wait.constant(1))
    if is_async:

        async def call() -> str:
            return flaky()

        with pytest.raises(ConnectionError):
            run(policy(call)())
    else:
        with pytest.raises(ConnectionError):
            policy(flaky)()
    assert [error.__context__ for error in errors] == [None, None, None]


# --- on_result --------------------------------------------------------------------------------


def test_on_result_retries_while_predicate_is_true(fake_clock: FakeClock) -> None:
    """on_result= retries while it accepts the value and returns the first value it rejects."""
    values = iter([None, None, "ready", "later"])
    calls: list[object] = []

    @retry(on=ConnectionError, on_result=lambda value: value is None, attempts=5)
    def poll() -> object:
        calls.append(1)
        return next(values)

    assert poll() == "ready"
    assert len(calls) == 3


def test_on_result_returns_the_last_value_after_the_last_attempt(fake_clock: FakeClock) -> None:
    """When every attempt returns a retried value, the last one is returned, not raised."""
    values = iter(["pending-1", "pending-2", "pending-3"])

    @retry(on=ConnectionError, on_result=lambda value: True, attempts=3, wait=wait.constant(1))
    def poll() -> str:
        return next(values)

    assert poll() == "pending-3"
    assert fake_clock.sleeps == [1.0, 1.0]


def test_on_result_async(fake_clock: FakeClock) -> None:
    """on_result= works the same on an async function."""
    values = iter([0, 0, 0, 0])

    @retry(on=ConnectionError, on_result=lambda value: value == 0, attempts=4, wait=wait.none())
    async def poll() -> int:
        return next(values)

    assert run(poll()) == 0
    assert list(values) == []


def test_on_result_and_errors_share_the_attempts(fake_clock: FakeClock) -> None:
    """Retried errors and retried results count against the same attempts."""
    outcomes: list[object] = [ConnectionError(), "bad", ConnectionError()]

    @retry(on=ConnectionError, on_result=lambda value: value == "bad", attempts=3)
    def call() -> object:
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    with pytest.raises(ConnectionError) as info:
        call()
    assert outcomes == []
    assert "3 attempts" in info.value.__notes__[0]


# --- waits ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("strategy", "max_wait", "sleeps"),
    [
        (wait.constant(1), 60, [1.0, 1.0, 1.0, 1.0]),
        (wait.constant(timedelta(milliseconds=250)), 60, [0.25, 0.25, 0.25, 0.25]),
        (wait.linear(start=1, step=2), 60, [1.0, 3.0, 5.0, 7.0]),
        (wait.exponential(initial=1, multiplier=2, max=5), 60, [1.0, 2.0, 4.0, 5.0]),
        (wait.exponential(initial=1, multiplier=3, max=100), 4, [1.0, 3.0, 4.0, 4.0]),
        (wait.chain(wait.none(), wait.constant(2)), 60, [2.0, 2.0, 2.0]),
        (wait.add(wait.constant(1), wait.linear(start=0, step=1)), 2.5, [1.0, 2.0, 2.5, 2.5]),
    ],
    ids=["constant", "timedelta", "linear", "exponential", "max_wait", "chain", "add"],
)
def test_wait_strategy_gives_the_recorded_sleeps(
    fake_clock: FakeClock, strategy: Any, max_wait: float, sleeps: list[float]
) -> None:
    """The sleeps between attempts are the strategy's waits, capped by max_wait."""
    flaky = Flaky(*(ConnectionError() for _ in range(5)))
    decorated = retry(on=ConnectionError, attempts=5, wait=strategy, max_wait=max_wait)(flaky)
    with pytest.raises(ConnectionError):
        decorated()
    assert fake_clock.sleeps == sleeps
    assert fake_clock.monotonic() == sum(sleeps)


def test_jittered_waits_stay_within_bounds(fake_clock: FakeClock) -> None:
    """Full-jitter exponential waits stay between zero and the exponential bound."""
    flaky = Flaky(*(ConnectionError() for _ in range(6)))
    strategy = wait.full_jitter(wait.exponential(initial=1, multiplier=2, max=8))
    with pytest.raises(ConnectionError):
        retry(on=ConnectionError, attempts=6, wait=strategy)(flaky)()
    assert len(fake_clock.sleeps) <= 5
    for sleep, bound in zip(fake_clock.sleeps, [1, 2, 4, 8, 8], strict=False):
        assert 0 < sleep <= bound


def test_garbage_from_a_custom_wait_means_no_wait(fake_clock: FakeClock) -> None:
    """A custom strategy returning a negative or NaN wait retries without sleeping."""
    waits = iter([-1.0, float("nan"), 2.0])
    flaky = Flaky(ConnectionError(), ConnectionError(), ConnectionError())
    decorated = retry(on=ConnectionError, attempts=4, wait=lambda attempt, prev: next(waits))
    assert decorated(flaky)() == "ok"
    assert fake_clock.sleeps == [2.0]


def test_wait_strategy_sees_attempt_and_previous_wait(fake_clock: FakeClock) -> None:
    """The strategy is called with the failed attempt's number and the previous wait."""
    seen: list[tuple[int, float]] = []

    def strategy(attempt: int, previous: float) -> float:
        seen.append((attempt, previous))
        return attempt * 10.0

    flaky = Flaky(*(ConnectionError() for _ in range(3)))
    assert retry(on=ConnectionError, attempts=4, wait=strategy)(flaky)() == "ok"
    assert seen == [(1, 0.0), (2, 10.0), (3, 20.0)]


def test_async_sleeps_go_through_the_clock(fake_clock: FakeClock) -> None:
    """The async driver sleeps on the configured clock, with the strategy's waits."""
    flaky = Flaky(ConnectionError(), ConnectionError())

    @retry(on=ConnectionError, attempts=3, wait=wait.linear(start=1, step=1))
    async def call() -> str:
        return flaky()

    assert run(call()) == "ok"
    assert fake_clock.sleeps == [1.0, 2.0]


# --- zero waits -------------------------------------------------------------------------------


def test_zero_wait_never_sleeps_sync(fake_clock: FakeClock) -> None:
    """With wait.none() the sync driver records no sleep at all, not even sleep(0)."""
    flaky = Flaky(*(ConnectionError() for _ in range(4)))
    assert retry(on=ConnectionError, attempts=5, wait=wait.none())(flaky)() == "ok"
    assert flaky.calls == 5
    assert fake_clock.sleeps == []


def test_zero_wait_never_sleeps_async(fake_clock: FakeClock) -> None:
    """With wait.none() the async driver records no sleep at all, not even asleep(0)."""
    flaky = Flaky(*(ConnectionError() for _ in range(4)))

    @retry(on=ConnectionError, attempts=5, wait=wait.none())
    async def call() -> str:
        return flaky()

    assert run(call()) == "ok"
    assert flaky.calls == 5
    assert fake_clock.sleeps == []


def test_zero_retry_after_hint_never_sleeps(fake_clock: FakeClock) -> None:
    """A Retry-After of 0 with no strategy wait records no sleep."""
    flaky = Flaky(Throttled(0), HTTPError({"Retry-After": "0"}))
    assert retry(on=Exception, wait=wait.none())(flaky)() == "ok"
    assert fake_clock.sleeps == []


def test_system_clock_is_never_asked_to_sleep_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    """On the real clock only non-zero waits reach time.sleep and asyncio.sleep (spied)."""
    slept: list[tuple[str, float]] = []
    real_asleep = asyncio.sleep

    def spy_sleep(seconds: float) -> None:
        slept.append(("sleep", seconds))

    async def spy_asleep(seconds: float) -> None:
        slept.append(("asleep", seconds))
        await real_asleep(seconds)

    system_clock = type(DEFAULTS.clock)  # the default clock, whatever module defines it
    assert system_clock.__name__ == "SystemClock"
    monkeypatch.setattr(system_clock, "sleep", staticmethod(spy_sleep))
    monkeypatch.setattr(system_clock, "asleep", staticmethod(spy_asleep))
    strategy = wait.chain(wait.none(), wait.constant(0.001), wait.none())

    flaky = Flaky(*(ConnectionError() for _ in range(4)))
    assert retry(on=ConnectionError, attempts=5, wait=strategy)(flaky)() == "ok"
    assert slept == [("sleep", 0.001)]

    slept.clear()
    flaky = Flaky(*(ConnectionError() for _ in range(4)))

    @retry(on=ConnectionError, attempts=5, wait=strategy)
    async def call() -> str:
        return flaky()

    assert run(call()) == "ok"
    assert slept == [("asleep", 0.001)]


# --- deadline ---------------------------------------------------------------------------------


def test_deadline_stops_before_a_wait_would_cross_it(fake_clock: FakeClock) -> None:
    """No sleep crosses the deadline; retrying stops with reason "deadline"."""
    flaky = Flaky(*(ConnectionError() for _ in range(10)), clock=fake_clock)
    with pytest.raises(ConnectionError) as info:
        retry(on=ConnectionError, attempts=None, deadline=5, wait=wait.constant(2))(flaky)()
    assert fake_clock.sleeps == [2.0, 2.0]
    assert flaky.started == [0.0, 2.0, 4.0]
    assert "the next attempt could not start before the deadline" in info.value.__notes__[0]


def test_deadline_counts_time_spent_in_attempts(fake_clock: FakeClock) -> None:
    """Slow attempts use up the deadline too; no attempt starts at or after it."""
    calls: list[float] = []

    @retry(on=ConnectionError, attempts=10, deadline=timedelta(seconds=5), wait=wait.constant(1))
    def slow() -> None:
        calls.append(fake_clock.monotonic())
        fake_clock.advance(1.5)
        raise ConnectionError

    with pytest.raises(ConnectionError) as info:
        slow()
    assert calls == [0.0, 2.5]
    assert all(start < 5 for start in calls)
    assert fake_clock.monotonic() + 1 >= 5
    assert "2 attempts over 4000 ms" in info.value.__notes__[0]


def test_attempt_exactly_at_the_deadline_is_not_started(fake_clock: FakeClock) -> None:
    """An attempt that could only start exactly at the deadline is not started."""
    flaky = Flaky(*(ConnectionError() for _ in range(10)), clock=fake_clock)
    with pytest.raises(ConnectionError):
        retry(on=ConnectionError, attempts=None, deadline=4, wait=wait.constant(2))(flaky)()
    assert flaky.started == [0.0, 2.0]
    assert fake_clock.sleeps == [2.0]


def test_deadline_async(fake_clock: FakeClock) -> None:
    """The async driver honours the deadline the same way."""
    flaky = Flaky(*(ConnectionError() for _ in range(10)), clock=fake_clock)

    @retry(on=ConnectionError, attempts=None, deadline=5, wait=wait.constant(2))
    async def call() -> str:
        return flaky()

    with pytest.raises(ConnectionError):
        run(call())
    assert flaky.started == [0.0, 2.0, 4.0]
    assert fake_clock.sleeps == [2.0, 2.0]


def test_attempts_limit_applies_before_deadline(fake_clock: FakeClock) -> None:
    """With both limits, whichever comes first stops the retries."""
    flaky = Flaky(*(ConnectionError() for _ in range(10)))
    with pytest.raises(ConnectionError) as info:
        retry(on=ConnectionError, attempts=2, deadline=100, wait=wait.constant(1))(flaky)()
    assert flaky.calls == 2
    assert "attempts exhausted" in info.value.__notes__[0]


# --- Retry-After ------------------------------------------------------------------------------


def test_retry_after_attribute_raises_the_wait(fake_clock: FakeClock) -> None:
    """An exception's retry_after=2.5 makes the next wait at least 2.5 s."""
    flaky = Flaky(Throttled(2.5), Throttled(timedelta(seconds=4)), Throttled(0.5))
    assert retry(on=Throttled, attempts=4, wait=wait.constant(1))(flaky)() == "ok"
    assert fake_clock.sleeps == [2.5, 4.0, 1.0]


def test_retry_after_header_seconds(fake_clock: FakeClock) -> None:
    """A Retry-After: 3 header on exc.response.headers makes the wait at least 3 s."""
    flaky = Flaky(HTTPError({"Retry-After": "3"}), HTTPError({"retry-after": b"4"}))
    assert retry(on=HTTPError, wait=wait.constant(0.5))(flaky)() == "ok"
    assert fake_clock.sleeps == [3.0, 4.0]


def test_retry_after_http_date(fake_clock: FakeClock) -> None:
    """A Retry-After HTTP-date is read against the clock's wall time."""
    date = formatdate(fake_clock.time() + 7, usegmt=True)
    flaky = Flaky(HTTPError({"Retry-After": date}), Throttled(date))
    assert retry(on=Exception, wait=wait.constant(0.5))(flaky)() == "ok"
    # the second error carries the same date, now 7 s closer
    assert fake_clock.sleeps == [7.0, 0.5]


def test_retry_after_date_in_the_past_means_the_strategy_wait(fake_clock: FakeClock) -> None:
    """A Retry-After date in the past asks for no extra wait."""
    date = formatdate(fake_clock.time() - 60, usegmt=True)
    flaky = Flaky(HTTPError({"Retry-After": date}))
    assert retry(on=HTTPError, wait=wait.constant(0.5))(flaky)() == "ok"
    assert fake_clock.sleeps == [0.5]


def test_retry_after_is_capped_by_max_wait(fake_clock: FakeClock) -> None:
    """A Retry-After longer than max_wait waits max_wait."""
    date = formatdate(fake_clock.time() + 3600, usegmt=True)
    flaky = Flaky(Throttled(120), HTTPError({"Retry-After": date}))
    assert retry(on=Exception, wait=wait.constant(1), max_wait=10)(flaky)() == "ok"
    assert fake_clock.sleeps == [10.0, 10.0]


def test_retry_after_beyond_the_deadline_gives_up(fake_clock: FakeClock) -> None:
    """A Retry-After that would cross the deadline stops retrying instead of sleeping."""
    flaky = Flaky(Throttled(2), Throttled(30))
    with pytest.raises(Throttled) as info:
        retry(on=Throttled, attempts=5, deadline=10, wait=wait.constant(1))(flaky)()
    assert fake_clock.sleeps == [2.0]
    assert flaky.calls == 2
    assert "deadline" in info.value.__notes__[0]


def test_retry_after_can_be_turned_off(fake_clock: FakeClock) -> None:
    """retry_after=False ignores the hint and uses the strategy's wait."""
    flaky = Flaky(Throttled(30), HTTPError({"Retry-After": "30"}))
    assert retry(on=Exception, wait=wait.constant(1), retry_after=False)(flaky)() == "ok"
    assert fake_clock.sleeps == [1.0, 1.0]


@pytest.mark.parametrize(
    "error",
    [
        Throttled("soon"),
        Throttled(-3),
        Throttled(float("nan")),
        Throttled(float("inf")),
        Throttled(retry_after=True),
        Throttled(object()),
        Throttled("Tue, 15 Nov 1994 08:12:31"),
        HTTPError({"Retry-After": "garbage"}),
        HTTPError({"Retry-After": "-5"}),
        HTTPError({"Retry-After": ""}),
        HTTPError({"Other": "3"}),
        HTTPError(None),
        HTTPError(BrokenHeaders()),
    ],
    ids=[
        "word",
        "negative",
        "nan",
        "inf",
        "bool",
        "object",
        "date-without-zone",
        "header-word",
        "header-negative",
        "header-empty",
        "no-header",
        "no-headers",
        "broken-headers",
    ],
)
def test_garbage_retry_after_is_ignored(error: Exception, fake_clock: FakeClock) -> None:
    """An unreadable Retry-After hint is ignored: the strategy's wait is used."""
    flaky = Flaky(error)
    assert retry(on=Exception, wait=wait.constant(1))(flaky)() == "ok"
    assert fake_clock.sleeps == [1.0]


# --- retry budget -----------------------------------------------------------------------------


def test_budget_bounds_retries_over_many_calls(
    fake_clock: FakeClock, captured_events: list[Event]
) -> None:
    """With a failing dependency, retries stay within ratio x calls; the rest give up on budget."""
    budget = RetryBudget(ratio=0.1, min_per_second=0, window=60)
    calls: list[int] = []

    @retry(on=ConnectionError, attempts=3, wait=wait.none(), budget=budget, name="dep")
    def down() -> None:
        calls.append(1)
        raise ConnectionError

    outcomes = []
    for _ in range(200):
        with pytest.raises(ConnectionError) as info:
            down()
        outcomes.append(info.value.__notes__[0])
        fake_clock.advance(0.1)

    retries = len(calls) - 200
    assert 0 < retries <= 0.1 * 200
    exhausted = [event for event in captured_events if isinstance(event, RetriesExhausted)]
    assert len(exhausted) == 200
    by_budget = [event for event in exhausted if event.reason == "budget"]
    assert len(by_budget) >= 200 - retries
    assert all(event.policy == "dep" for event in exhausted)
    assert sum("the retry budget is spent" in note for note in outcomes) == len(by_budget)


def test_budget_reserve_allows_retries_at_low_traffic(fake_clock: FakeClock) -> None:
    """min_per_second lets a few calls retry even with no ratio allowance."""
    budget = RetryBudget(ratio=0.0, min_per_second=0.5, window=4)  # a reserve of 2 retries
    calls: list[int] = []

    @retry(on=ConnectionError, attempts=5, wait=wait.none(), budget=budget)
    def down() -> None:
        calls.append(1)
        raise ConnectionError

    with pytest.raises(ConnectionError) as info:
        down()
    assert len(calls) == 3
    assert "the retry budget is spent" in info.value.__notes__[0]


def test_budget_recovers_after_its_window(fake_clock: FakeClock) -> None:
    """Retries refused by the budget are allowed again once the window has moved on."""
    budget = RetryBudget(ratio=0.0, min_per_second=0.1, window=10)  # a reserve of 1 retry
    calls: list[int] = []

    @retry(on=ConnectionError, attempts=2, wait=wait.none(), budget=budget)
    def down() -> None:
        calls.append(1)
        raise ConnectionError

    for expected in (2, 3, 5):
        with pytest.raises(ConnectionError):
            down()
        assert len(calls) == expected
        if expected == 3:
            fake_clock.advance(11)


def test_budget_is_shared_by_policies_holding_it(fake_clock: FakeClock) -> None:
    """Two functions given one budget draw from the same allowance."""
    budget = RetryBudget(ratio=0.0, min_per_second=0.1, window=10)  # a reserve of 1 retry
    calls: list[str] = []

    @retry(on=ConnectionError, attempts=3, wait=wait.none(), budget=budget)
    def first() -> None:
        calls.append("first")
        raise ConnectionError

    @retry(on=ConnectionError, attempts=3, wait=wait.none(), budget=budget)
    def second() -> None:
        calls.append("second")
        raise ConnectionError

    for function in (first, second):
        with pytest.raises(ConnectionError):
            function()
    assert calls == ["first", "first", "second"]


def test_budget_async(fake_clock: FakeClock, captured_events: list[Event]) -> None:
    """The async driver spends the same budget and reports reason "budget"."""
    budget = RetryBudget(ratio=0.1, min_per_second=0, window=60)
    calls: list[int] = []

    @retry(on=ConnectionError, attempts=3, wait=wait.none(), budget=budget)
    async def down() -> None:
        calls.append(1)
        raise ConnectionError

    async def main() -> None:
        for _ in range(100):
            with pytest.raises(ConnectionError):
                await down()

    run(main())
    assert len(calls) - 100 <= 10
    reasons = [event.reason for event in captured_events if isinstance(event, RetriesExhausted)]
    assert reasons.count("budget") >= 90


# --- events -----------------------------------------------------------------------------------


class AppError(Exception):
    """An application error, reported with its module-qualified name."""


def test_events_report_each_retry_and_the_exhaustion(
    fake_clock: FakeClock, captured_events: list[Event]
) -> None:
    """RetryScheduled per retry, then RetriesExhausted, with the documented fields in order."""
    flaky = Flaky(ConnectionError(), AppError(), ConnectionError())
    decorated = retry(
        on=(ConnectionError, AppError), attempts=3, wait=wait.linear(start=1, step=1), name="api"
    )(flaky)
    with pytest.raises(ConnectionError):
        decorated()
    app_error = f"{__name__}.AppError"
    assert captured_events == [
        RetryScheduled(policy="api", time=0.0, attempt=1, delay=1.0, error_type="ConnectionError"),
        RetryScheduled(policy="api", time=1.0, attempt=2, delay=2.0, error_type=app_error),
        RetriesExhausted(
            policy="api",
            time=3.0,
            attempts=3,
            elapsed=3.0,
            error_type="ConnectionError",
            reason="attempts",
        ),
    ]


def test_events_for_retried_results_have_no_error_type(
    fake_clock: FakeClock, captured_events: list[Event]
) -> None:
    """Retried results are reported with error_type None."""

    @retry(on=ConnectionError, on_result=lambda value: True, attempts=2, wait=wait.constant(1))
    def poll() -> int:
        return 0

    assert poll() == 0
    assert [(event.kind, event.error_type) for event in captured_events] == [  # type: ignore[attr-defined]
        ("retry.scheduled", None),
        ("retry.exhausted", None),
    ]


def test_event_policy_defaults_to_the_function_qualified_name(
    fake_clock: FakeClock, captured_events: list[Event]
) -> None:
    """Without name=, events carry the decorated function's module-qualified name."""

    @retry(on=ConnectionError, attempts=2, wait=wait.none())
    def fetch() -> None:
        raise ConnectionError

    with pytest.raises(ConnectionError) as info:
        fetch()
    expected = f"{__name__}.{fetch.__qualname__}"
    assert {event.policy for event in captured_events} == {expected}
    assert info.value.__notes__[0].startswith(f"resilient.retry({expected}):")


def test_deadline_exhaustion_event(fake_clock: FakeClock, captured_events: list[Event]) -> None:
    """Giving up on the deadline reports reason "deadline" and the elapsed time."""
    flaky = Flaky(*(ConnectionError() for _ in range(10)))
    with pytest.raises(ConnectionError):
        retry(on=ConnectionError, attempts=None, deadline=5, wait=wait.constant(2), name="d")(
            flaky
        )()
    last = captured_events[-1]
    assert last == RetriesExhausted(
        policy="d",
        time=4.0,
        attempts=3,
        elapsed=4.0,
        error_type="ConnectionError",
        reason="deadline",
    )


def test_non_retryable_error_reports_no_exhaustion(
    fake_clock: FakeClock, captured_events: list[Event]
) -> None:
    """An error that is not retried is not a retry exhaustion: no event for it."""
    flaky = Flaky(ConnectionError(), ValueError())
    with pytest.raises(ValueError):  # noqa: PT011 - the type is the point
        retry(on=ConnectionError, wait=wait.none())(flaky)()
    assert [event.kind for event in captured_events] == ["retry.scheduled"]


def test_success_reports_no_event(fake_clock: FakeClock, captured_events: list[Event]) -> None:
    """A call that succeeds first time reports nothing."""
    assert retry(on=ConnectionError)(Flaky())() == "ok"
    assert captured_events == []


def test_no_event_is_built_without_observers(
    fake_clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no observer configured, no event object is constructed at all (spied)."""
    built: list[str] = []

    def spy(cls: type[Event]) -> Any:
        def build(**fields: Any) -> Event:
            built.append(cls.kind)
            return cls(**fields)

        return build

    monkeypatch.setattr(resilient._retry, "RetryScheduled", spy(RetryScheduled))
    monkeypatch.setattr(resilient._retry, "RetriesExhausted", spy(RetriesExhausted))

    def make() -> Any:
        return retry(on=ConnectionError, attempts=3, wait=wait.none())(
            Flaky(*(ConnectionError() for _ in range(5)))
        )

    with pytest.raises(ConnectionError):
        make()()
    assert built == []

    seen: list[Event] = []
    resilient.configure(observers=[seen.append])
    with pytest.raises(ConnectionError):
        make()()
    assert built == ["retry.scheduled", "retry.scheduled", "retry.exhausted"]
    assert len(seen) == 3


def test_failing_observer_does_not_break_the_call(fake_clock: FakeClock) -> None:
    """An observer that raises does not change the call's outcome outside testing mode."""

    def broken(event: Event) -> None:
        raise RuntimeError("observer bug")

    resilient.configure(observers=[broken])
    flaky = Flaky(ConnectionError())
    assert retry(on=ConnectionError, wait=wait.none())(flaky)() == "ok"
    assert flaky.calls == 2


def test_a_raising_on_predicate_keeps_the_error_it_was_judging_as_its_cause() -> None:
    """If on= raises, its error propagates with the function's exception as __cause__."""
    original = ConnectionError("down")

    def broken(exc: Exception) -> bool:
        raise RuntimeError("predicate bug")

    @retry(on=broken, attempts=3, wait=wait.none())
    def fetch() -> None:
        raise original

    with pytest.raises(RuntimeError, match="predicate bug") as caught:
        fetch()
    assert caught.value.__cause__ is original


def test_retry_after_must_be_a_bool() -> None:
    """retry_after= takes True or False; anything else is a TypeError at decoration time."""
    with pytest.raises(TypeError, match="retry_after"):
        retry(on=ConnectionError, retry_after="no")  # type: ignore[arg-type]
