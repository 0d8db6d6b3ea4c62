"""Stacked decorators: the recommended order works end to end; an order that cannot work warns."""

from __future__ import annotations

import asyncio
import inspect
import warnings
from collections.abc import Callable
from typing import Any

import pytest
from cache_support import run
from hypothesis import given, settings
from strategies import WaitCase, attempts, previous_waits, random_seeds, wait_cases

import resilient
from resilient import BreakerState, breaker, bulkhead, fallback, retry, timeout, wait
from resilient._core.backoff import least
from resilient.exceptions import (
    BulkheadFullError,
    CircuitOpenError,
    CompositionWarning,
)
from resilient.exceptions import TimeoutError as ResilientTimeoutError
from resilient.testing import FakeClock

ANSWERED = (CircuitOpenError, BulkheadFullError, ResilientTimeoutError)


class ProbingClock(FakeClock):
    """A fake clock that, each time something sleeps on it, first runs a probe and keeps its result.

    A retry waits by sleeping on the clock, so the probe sees the stack between two attempts.
    """

    def __init__(self) -> None:
        super().__init__()
        self.probe: Callable[[], Any] | None = None
        self.seen: list[Any] = []

    def sleep(self, seconds: float) -> None:
        if self.probe is not None:
            self.seen.append(self.probe())
        super().sleep(seconds)

    async def asleep(self, seconds: float) -> None:
        if self.probe is not None:
            outcome = self.probe()
            self.seen.append(await outcome if inspect.isawaitable(outcome) else outcome)
        FakeClock.sleep(self, seconds)  # not self.sleep: the probe ran already
        await asyncio.sleep(0)


@pytest.fixture
def probing() -> ProbingClock:
    """A probing fake clock, installed for the test."""
    clock = ProbingClock()
    resilient.configure(clock=clock)
    return clock


class Dependency:
    """A dependency that fails its first *failures* calls for the key "flaky", and records calls."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls: list[str] = []

    def __call__(self, key: str) -> str:
        self.calls.append(key)
        if key == "flaky" and self.failures > 0:
            self.failures -= 1
            raise ConnectionError("the dependency is down")
        return key


def function_of(body: Callable[[str], str], is_async: bool) -> Callable[[str], Any]:
    """Return *body* as a plain function, or as a coroutine function when *is_async*."""
    if is_async:

        async def call_async(key: str) -> str:
            await asyncio.sleep(0)
            return body(key)

        return call_async

    def call(key: str) -> str:
        return body(key)

    return call


def outcome(function: Callable[[str], Any], key: str, is_async: bool) -> Any:
    """Call *function* with *key*, on a fresh event loop when it is async."""
    return run(function(key)) if is_async else function(key)


def recommended(body: Callable[[str], str], name: str, is_async: bool) -> Callable[[str], Any]:
    """The recommended stack: fallback, timeout, retry, breaker, bulkhead, then the call."""
    return fallback(on=ANSWERED, value="fallback")(
        timeout(5)(
            retry(on=ConnectionError, attempts=3, wait=wait.constant(0.1))(
                breaker(name, consecutive_failures=3, open_for=30)(
                    bulkhead(max_concurrent=1)(function_of(body, is_async))
                )
            )
        )
    )


# the recommended order, end to end -------------------------------------------------------------


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_the_recommended_stack_retries_through_the_breaker_and_frees_the_slot(
    probing: ProbingClock, is_async: bool
) -> None:
    """Two failures then a success: three attempts, each seen by the breaker, none holding the
    bulkhead's one slot while the retry waits (a call made meanwhile runs)."""
    dependency = Dependency(failures=2)
    fetch = recommended(dependency, f"composition-{is_async}", is_async)
    probing.probe = lambda: fetch("probe")

    assert outcome(fetch, "flaky", is_async) == "flaky"

    assert dependency.calls == ["flaky", "probe", "flaky", "probe", "flaky"]
    assert probing.sleeps == [0.1, 0.1]
    assert probing.seen == ["probe", "probe"]  # the slot was free during both waits
    stats = breaker(f"composition-{is_async}").stats()
    assert (stats.calls, stats.failures) == (5, 2)  # every attempt and both probes


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_a_bulkhead_outside_the_retry_holds_its_slot_through_the_waits(
    probing: ProbingClock, is_async: bool
) -> None:
    """The wrong way round, a call made while the retry waits is refused: the slot is held."""
    dependency = Dependency(failures=2)
    fetch = fallback(on=ANSWERED, value="fallback")(
        bulkhead(max_concurrent=1)(
            retry(on=ConnectionError, attempts=3, wait=wait.constant(0.1))(
                function_of(dependency, is_async)
            )
        )
    )
    probing.probe = lambda: fetch("probe")

    assert outcome(fetch, "flaky", is_async) == "flaky"

    assert probing.seen == ["fallback", "fallback"]  # BulkheadFullError, answered
    assert "probe" not in dependency.calls


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_the_fallback_answers_an_open_breaker_without_calling(
    clock: FakeClock, is_async: bool
) -> None:
    """Retries exhausted trip the breaker; the next call is refused and answered, not run."""
    dependency = Dependency(failures=100)
    fetch = recommended(dependency, f"composition-open-{is_async}", is_async)

    with pytest.raises(ConnectionError) as raised:  # not named by the fallback: propagates
        outcome(fetch, "flaky", is_async)
    assert "3 attempts" in raised.value.__notes__[0]
    assert breaker(f"composition-open-{is_async}").stats().state is BreakerState.OPEN

    assert outcome(fetch, "flaky", is_async) == "fallback"
    assert len(dependency.calls) == 3


def test_the_fallback_answers_a_sync_call_past_its_limit(clock: FakeClock) -> None:
    """A sync call that returns after the limit becomes TimeoutError, which the fallback answers."""

    def slow(key: str) -> str:
        clock.advance(10)  # the call took ten seconds
        return key

    fetch = recommended(slow, "composition-slow", is_async=False)
    assert fetch("late") == "fallback"


def test_the_fallback_answers_an_async_call_cancelled_at_its_limit() -> None:
    """An async call is cancelled at the limit, and the fallback answers the TimeoutError."""
    cancelled: list[bool] = []

    @fallback(on=ANSWERED, value="fallback")
    @timeout(0.05)
    @retry(on=ConnectionError, attempts=3, wait=wait.constant(0.01))
    @breaker("composition-hang", consecutive_failures=3)
    @bulkhead(max_concurrent=1)
    async def hang(key: str) -> str:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise
        return key

    assert run(hang("x")) == "fallback"
    assert cancelled == [True]
    assert breaker("composition-hang").stats().failures == 0  # cancellation is no failure


# an order that cannot work is reported when the decorators are applied ------------------------


def composed(*decorators: Callable[[Any], Any], is_async: bool = False) -> list[str]:
    """Apply *decorators* (outermost first) to a function; return the composition warnings."""
    function = function_of(Dependency(failures=0), is_async)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for decorator in reversed(decorators):
            function = decorator(function)
    assert all(issubclass(warning.category, CompositionWarning) for warning in caught)
    return [str(warning.message) for warning in caught]


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_a_retry_whose_least_wait_outlasts_the_limit_is_reported(is_async: bool) -> None:
    """``@timeout(0.1)`` around a retry that waits 0.2 s before its second attempt warns."""
    problems = composed(
        timeout(0.1),
        retry(on=ConnectionError, wait=wait.constant(0.2), name="rates"),
        is_async=is_async,
    )
    assert len(problems) == 1
    assert "@timeout(0.1) around @retry(rates) never retries" in problems[0]
    assert "0.2 s" in problems[0]


def test_a_retry_further_inside_is_reported_too() -> None:
    """Layers between the limit and the retry do not hide the retry from the check."""
    problems = composed(
        timeout(0.1),
        breaker("composition-between", consecutive_failures=3),
        bulkhead(max_concurrent=2),
        retry(on=ConnectionError, wait=wait.constant(0.2)),
    )
    assert len(problems) == 1


def test_the_warning_points_at_the_line_that_stacks_the_decorators() -> None:
    """The warning names the user's file and the line of the outer decorator."""
    with pytest.warns(CompositionWarning) as caught:

        @timeout(0.1)
        @retry(on=ConnectionError, wait=wait.constant(1))
        def fetch() -> None:
            pass

    assert caught[0].filename == __file__


def test_the_reported_retry_indeed_never_retries(clock: FakeClock) -> None:
    """What the warning predicts happens: one attempt, given up on before the limit."""
    calls: list[int] = []
    with pytest.warns(CompositionWarning):

        @timeout(0.1)
        @retry(on=ConnectionError, attempts=5, wait=wait.constant(0.2))
        def fetch() -> None:
            calls.append(1)
            raise ConnectionError("down")

    with pytest.raises(ConnectionError) as raised:
        fetch()
    assert calls == [1]
    assert "could not start before the deadline" in raised.value.__notes__[0]


@pytest.mark.parametrize(
    ("strategy", "options"),
    [
        (wait.constant(0.2), {}),
        (wait.exponential(initial=0.1, multiplier=3), {}),
        (wait.equal_jitter(wait.constant(0.4)), {}),  # at least half of 0.4
        (wait.decorrelated_jitter(initial=0.1, max=5), {}),
        (wait.add(wait.constant(0.05), wait.constant(0.05)), {}),
        (wait.chain(wait.constant(0.1), wait.none()), {}),
        (wait.constant(5), {"max_wait": 0.1}),
    ],
    ids=repr,
)
def test_every_wait_that_cannot_fit_is_reported(strategy: Any, options: dict[str, Any]) -> None:
    """A wait whose least value reaches a 0.1 s limit is reported, whatever its expression."""
    problems = composed(timeout(0.1), retry(on=ConnectionError, wait=strategy, **options))
    assert len(problems) == 1


@pytest.mark.parametrize(
    ("strategy", "options"),
    [
        (wait.full_jitter(wait.constant(10)), {}),  # may wait zero
        (wait.equal_jitter(wait.constant(0.19)), {}),  # at least 0.095
        (wait.constant(0.09), {}),
        (wait.constant(10), {"max_wait": 0.05}),  # capped below the limit
        (wait.chain(wait.none(), wait.constant(10)), {}),  # only the first wait decides
        (lambda attempt, previous: 10.0, {}),  # a custom strategy: its least is unknown
        (wait.constant(10), {"attempts": 1}),  # no second attempt was ever planned
    ],
    ids=repr,
)
def test_a_wait_that_can_fit_is_not_reported(strategy: Any, options: dict[str, Any]) -> None:
    """No warning where a second attempt can start within the limit, or nothing is known."""
    assert composed(timeout(0.1), retry(on=ConnectionError, wait=strategy, **options)) == []


def test_the_recommended_order_is_not_reported() -> None:
    """Fallback, timeout, retry, breaker and bulkhead in the recommended order raise nothing."""
    problems = composed(
        fallback(on=ANSWERED, value=None),
        timeout(2),
        retry(on=(ConnectionError, TimeoutError), wait=wait.constant(0.1)),
        timeout(0.5),
        breaker("composition-quiet", consecutive_failures=3),
        bulkhead(max_concurrent=2),
    )
    assert problems == []


def test_a_per_attempt_limit_leaving_no_time_to_retry_is_reported() -> None:
    """An attempt cut off at the inner limit can never be retried within the outer one."""
    problems = composed(
        timeout(1),
        retry(on=TimeoutError, wait=wait.constant(0.5), name="quotes"),
        timeout(0.6),
    )
    assert len(problems) == 1
    assert "@timeout(1) around @retry(quotes) around @timeout(0.6)" in problems[0]
    assert composed(timeout(1), retry(on=TimeoutError, wait=wait.none()), timeout(1)) != []


def test_a_per_attempt_limit_with_time_to_retry_is_not_reported() -> None:
    """Room for a retry, or a retry that does not retry timeouts, raises no warning."""
    assert composed(timeout(2), retry(on=TimeoutError, wait=wait.constant(0.1)), timeout(0.5)) == []
    assert composed(timeout(1), retry(on=ConnectionError, wait=wait.none()), timeout(1)) == []
    assert composed(timeout(1), retry(on=lambda exc: True, wait=wait.none()), timeout(1)) == []


def test_the_per_attempt_limit_behaves_as_reported(clock: FakeClock) -> None:
    """Each attempt takes 0.25 s and times out: a 0.28 s total allows one attempt, 1 s three."""

    def attempts_within(total: float) -> int:
        calls: list[int] = []

        def hung() -> None:
            calls.append(1)
            clock.advance(0.25)  # the attempt hangs past its own limit

        guarded = timeout(total)(
            retry(on=TimeoutError, attempts=3, wait=wait.constant(0.1))(timeout(0.2)(hung))
        )
        with pytest.raises(ResilientTimeoutError):
            guarded()
        return len(calls)

    with pytest.warns(CompositionWarning):
        assert attempts_within(0.28) == 1
    assert attempts_within(1) == 3


def test_a_fallback_inside_a_retry_is_reported() -> None:
    """A fallback under the retry answers what the retry would retry, so it never retries."""
    problems = composed(
        retry(on=(ConnectionError, KeyError), name="prices"),
        fallback(on=OSError, value=None),
    )
    assert len(problems) == 1
    assert "@retry(prices) around @fallback never retries ConnectionError" in problems[0]
    assert "KeyError" not in problems[0]


def test_a_fallback_that_leaves_some_errors_to_the_retry_is_not_reported() -> None:
    """Outside the retry, answering only a narrower type, or a predicate: no warning."""
    assert composed(fallback(on=ConnectionError, value=None), retry(on=ConnectionError)) == []
    assert composed(retry(on=OSError), fallback(on=ConnectionError, value=None)) == []
    assert composed(retry(on=OSError), fallback(on=lambda exc: True, value=None)) == []


# the least wait every built-in strategy can make ----------------------------------------------


@settings(deadline=None)
@given(case=wait_cases(), attempt=attempts(), previous=previous_waits(), seed=random_seeds())
def test_the_least_wait_is_the_lower_bound_of_every_draw(
    case: WaitCase, attempt: int, previous: float, seed: object
) -> None:
    """A strategy's least wait is the bound its expression implies, and no draw goes below it."""
    floor = least(case.wait, attempt)
    assert floor == pytest.approx(case.low(attempt))
    assert floor <= case.wait(attempt, previous)
