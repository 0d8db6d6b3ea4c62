"""`resilient.breaker`: what a decorated function, a block and the controls do, in one process."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import inspect
import itertools
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from cache_support import EventLog, run

import resilient
from resilient import Breaker, BreakerPolicy, BreakerState, breaker, retry
from resilient.events import (
    BreakerClosed,
    BreakerDisabled,
    BreakerHalfOpened,
    BreakerOpened,
    BreakerRejected,
)
from resilient.exceptions import CircuitOpenError
from resilient.testing import FakeClock, reset_breakers

_names = itertools.count()


def fresh(**options: Any) -> Breaker:
    """Return a breaker under a name no other test uses."""
    return breaker(f"test-{next(_names)}", **options)


def failing(brk: Breaker, error: type[Exception] = ConnectionError) -> Callable[[], None]:
    """Return a function guarded by *brk* that always raises *error*."""

    @brk
    def call() -> None:
        raise error("down")

    return call


def fail_times(call: Callable[[], object], times: int) -> None:
    """Call *call* that many times, swallowing the failures (or refusals) it raises."""
    for _ in range(times):
        with pytest.raises(
            (ConnectionError, TimeoutError, ValueError, RuntimeError, CircuitOpenError)
        ):
            call()


# -- decorating ----------------------------------------------------------------------------------


def test_a_closed_breaker_passes_results_and_errors_through_unchanged() -> None:
    """Calls return their value and raise their own exception, untouched."""
    brk = fresh()

    @brk
    def divide(a: int, b: int) -> float:
        return a / b

    assert divide(6, 3) == 2.0
    with pytest.raises(ZeroDivisionError):
        divide(1, 0)
    assert brk.state is BreakerState.CLOSED


def test_decorating_keeps_the_signature_and_coroutine_nature() -> None:
    """inspect sees the original signature; async functions stay coroutine functions."""
    brk = fresh()

    async def fetch(url: str, *, retries: int = 1) -> bytes:
        return url.encode()

    guarded = brk(fetch)
    assert inspect.signature(guarded) == inspect.signature(fetch)
    assert inspect.iscoroutinefunction(guarded)
    assert asyncio.run(guarded("x")) == b"x"


def test_methods_classmethods_and_staticmethods_share_the_named_breaker() -> None:
    """Every kind of method works, and all count on the one breaker of the name."""
    brk = fresh(consecutive_failures=3, failure_rate=None)

    class Client:
        @brk
        def method(self) -> None:
            raise ConnectionError

        @brk
        @classmethod
        def klass(cls) -> None:
            raise ConnectionError

        @brk
        @staticmethod
        def static() -> None:
            raise ConnectionError

    client = Client()
    fail_times(client.method, 1)
    fail_times(Client.klass, 1)
    assert brk.state is BreakerState.CLOSED
    fail_times(Client.static, 1)
    assert brk.state is BreakerState.OPEN
    with pytest.raises(CircuitOpenError):
        client.method()


def test_the_same_name_gives_the_same_breaker() -> None:
    """breaker(name) twice returns one object, so every use of the name shares its state."""
    first = breaker("shared-name", consecutive_failures=2)
    assert breaker("shared-name", consecutive_failures=2) is first
    assert breaker("shared-name", BreakerPolicy(consecutive_failures=2)) is first


def test_a_name_alone_finds_the_breaker_whatever_its_settings() -> None:
    """breaker(name) with no settings returns the existing breaker, or a default one if new."""
    made = breaker("found-by-name", consecutive_failures=2, open_for=5)
    assert breaker("found-by-name") is made
    assert breaker("new-by-name").policy == BreakerPolicy()


def test_one_name_with_other_settings_is_refused() -> None:
    """A second use of a name with different settings raises ValueError naming the breaker."""
    breaker("settled", open_for=10)
    with pytest.raises(ValueError, match="'settled' already exists with other settings"):
        breaker("settled", open_for=20)


def test_keywords_override_a_given_policy() -> None:
    """breaker(name, policy, **options) evolves the policy with the keywords."""
    brk = breaker("evolved", BreakerPolicy(open_for=5), open_for=9)
    assert brk.policy.open_for == 9.0


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: breaker(""), TypeError, "takes a name first"),
        (lambda: breaker(3), TypeError, "takes a name first"),  # type: ignore[arg-type]  # on purpose
        (lambda: breaker("x" * 201), TypeError, "takes a name first"),
        (lambda: breaker("a", retries=3), TypeError, "unknown keyword 'retries'"),  # type: ignore[call-arg]  # on purpose
        (lambda: breaker("a", 0.5), TypeError, "takes a BreakerPolicy or keyword arguments"),  # type: ignore[arg-type]  # on purpose
        (lambda: fresh(failure_rate=50), ValueError, "failure_rate=0.5 for 50%"),
        (lambda: fresh(failure_rate=0), ValueError, "not a fraction"),
        (lambda: fresh(window=60.0), TypeError, "window=60.0 is ambiguous"),
        (lambda: fresh(window=0), ValueError, "must be at least 1"),
        (lambda: fresh(window=timedelta(0)), ValueError, "more than zero seconds"),
        (lambda: fresh(window=5, minimum_calls=10), ValueError, "could never trip"),
        (lambda: fresh(slow_call_rate=0.5), ValueError, "needs slow_call_after"),
        (lambda: fresh(failure_rate=None), ValueError, "never trip"),
        (lambda: fresh(open_for=0), ValueError, "open_for=0 must be more than zero"),
        (lambda: fresh(open_for=10, max_open_for=5), ValueError, "shorter than open_for"),
        (lambda: fresh(half_open_calls=0), ValueError, "half_open_calls=0 must be at least 1"),
        (lambda: fresh(probe_timeout=-1), ValueError, "probe_timeout=-1 must be more than zero"),
        (lambda: fresh(consecutive_failures=True), TypeError, "must be a whole number"),
        (lambda: fresh(on=ConnectionError()), TypeError, "exception instance"),
        (lambda: fresh(on=asyncio.CancelledError), TypeError, "can never be counted"),
        (lambda: fresh(on=()), ValueError, "counts nothing"),
        (lambda: fresh(exclude=KeyboardInterrupt), TypeError, "can never be counted"),
        (lambda: fresh(exclude="KeyError"), TypeError, "must be exception types"),
        (lambda: fresh(on_result=3), TypeError, "on_result=3 must be a callable"),
        (lambda: fresh(fallback="cached"), TypeError, "fallback='cached' must be a callable"),
    ],
)
def test_bad_settings_fail_when_the_breaker_is_made(
    call: Callable[[], object], error: type[Exception], message: str
) -> None:
    """Nonsense settings raise TypeError or ValueError at once, saying what to write instead."""
    with pytest.raises(error, match=message):
        call()


# -- tripping ------------------------------------------------------------------------------------


def test_it_trips_at_the_failure_rate_once_the_window_holds_minimum_calls(
    clock: FakeClock,
) -> None:
    """With minimum_calls=4 and 50%, two failures in four calls open it; then calls are refused."""
    brk = fresh(failure_rate=0.5, window=10, minimum_calls=4, open_for=30)
    calls: list[bool] = []

    @brk
    def call(*, ok: bool) -> str:
        calls.append(ok)
        if not ok:
            raise ConnectionError
        return "ok"

    call(ok=True)
    fail_times(lambda: call(ok=False), 2)
    assert brk.state is BreakerState.CLOSED  # 2 of 3: below minimum_calls
    call(ok=True)
    assert brk.state is BreakerState.CLOSED  # successes never trip it
    fail_times(lambda: call(ok=False), 1)
    assert brk.state is BreakerState.OPEN  # 3 of 5
    clock.advance(12)
    with pytest.raises(CircuitOpenError) as refused:
        call(ok=True)
    assert len(calls) == 5  # the refused call never ran
    error = refused.value
    assert (error.name, error.state, error.remaining) == (brk.name, BreakerState.OPEN, 18.0)
    assert error.retry_after == 18.0
    assert "is open: calls are refused for another 18.000 s" in str(error)


def test_async_successes_count_in_the_window_and_keep_it_closed() -> None:
    """Async successes fill the window like sync ones: 6 in 10 keep it closed, 5 in 10 trip it."""
    brk = fresh(failure_rate=0.5, window=10, minimum_calls=10)

    @brk
    async def call(*, ok: bool) -> str:
        if not ok:
            raise ConnectionError
        return "ok"

    async def calls(ok: bool, times: int) -> None:
        for _ in range(times):
            with contextlib.suppress(ConnectionError):
                await call(ok=ok)

    run(calls(ok=True, times=6))
    run(calls(ok=False, times=4))
    stats = brk.stats()
    assert (stats.state, stats.calls, stats.failures) == (BreakerState.CLOSED, 10, 4)
    run(calls(ok=False, times=1))  # the oldest success leaves the window: 5 of 10
    assert brk.state is BreakerState.OPEN


def test_consecutive_failures_trip_it_and_a_success_starts_the_count_again() -> None:
    """Three failures in a row trip it; a success in between resets the run."""
    brk = fresh(failure_rate=None, consecutive_failures=3)

    @brk
    def call(*, ok: bool) -> None:
        if not ok:
            raise ConnectionError

    fail_times(lambda: call(ok=False), 2)
    call(ok=True)
    fail_times(lambda: call(ok=False), 2)
    assert brk.state is BreakerState.CLOSED
    fail_times(lambda: call(ok=False), 1)
    assert brk.state is BreakerState.OPEN


def test_slow_calls_trip_it_at_the_slow_call_rate(clock: FakeClock) -> None:
    """Calls lasting slow_call_after or more count as slow; at the rate they open the breaker."""
    brk = fresh(failure_rate=None, slow_call_after=2.0, slow_call_rate=0.5, minimum_calls=4)

    @brk
    def call(seconds: float) -> None:
        clock.advance(seconds)

    for seconds in (0.5, 2.0, 1.9):
        call(seconds)
    assert brk.stats().slow_calls == 1
    call(3.0)
    assert brk.state is BreakerState.OPEN
    assert brk.stats().slow_call_rate == 0.5


def test_a_result_predicate_counts_returned_values_as_failures() -> None:
    """on_result= makes a returned value count as a failure; the value is still returned."""
    brk = fresh(failure_rate=None, consecutive_failures=2, on_result=lambda r: r == 503)

    @brk
    def status() -> int:
        return 503

    assert status() == 503
    assert status() == 503
    assert brk.state is BreakerState.OPEN


def test_only_on_errors_fail_others_succeed_and_excluded_ones_count_nothing() -> None:
    """An error outside on= counts as a success, an excluded one as nothing at all."""
    brk = fresh(
        failure_rate=None,
        consecutive_failures=2,
        on=(ConnectionError, TimeoutError),
        exclude=ConnectionRefusedError,
    )

    def raising(error: type[Exception]) -> Callable[[], None]:
        @brk
        def call() -> None:
            raise error

        return call

    fail_times(raising(ConnectionError), 1)
    fail_times(raising(ValueError), 1)  # a success: the dependency answered
    fail_times(raising(TimeoutError), 1)
    fail_times(raising(ConnectionRefusedError), 3)  # a ConnectionError, but excluded
    stats = brk.stats()
    assert (stats.calls, stats.failures, stats.consecutive_failures) == (3, 2, 1)
    assert brk.state is BreakerState.CLOSED


def test_an_on_predicate_decides_and_a_broken_one_shows_what_it_judged() -> None:
    """on= may be a predicate; if it raises, its error propagates chained to the call's error."""
    brk = fresh(failure_rate=None, consecutive_failures=1, on=lambda exc: "fatal" in str(exc))

    @brk
    def call(message: str) -> None:
        raise RuntimeError(message)

    fail_times(lambda: call("fine"), 2)
    assert brk.state is BreakerState.CLOSED
    fail_times(lambda: call("fatal"), 1)
    assert brk.state is BreakerState.OPEN

    broken = fresh(on=lambda exc: 1 / 0 > 0)
    with pytest.raises(ZeroDivisionError) as raised:
        failing(broken)()
    assert isinstance(raised.value.__cause__, ConnectionError)


def test_cancellation_and_interrupts_are_never_counted_and_free_a_probe(clock: FakeClock) -> None:
    """A cancelled or interrupted call counts nothing; as a probe, it frees its place."""
    brk = fresh(failure_rate=None, consecutive_failures=1, open_for=5)

    @brk
    async def cancelled() -> None:
        raise asyncio.CancelledError

    @brk
    def interrupted() -> None:
        raise KeyboardInterrupt

    for _ in range(3):
        with pytest.raises(asyncio.CancelledError):
            asyncio.run(cancelled())
        with pytest.raises(KeyboardInterrupt):
            interrupted()
    assert brk.stats().calls == 0
    brk_fail = failing(brk)
    fail_times(brk_fail, 1)
    clock.advance(5)
    with pytest.raises(KeyboardInterrupt):
        interrupted()  # the one probe, interrupted: its place is free again
    assert brk.state is BreakerState.HALF_OPEN

    @brk
    def fine() -> str:
        return "ok"

    assert fine() == "ok"
    assert brk.state is BreakerState.CLOSED


# -- open, half-open and back --------------------------------------------------------------------


def test_the_open_time_doubles_with_each_trip_up_to_max_open_for(clock: FakeClock) -> None:
    """open_for=1, max_open_for=3: opens for 1, 2, 3, 3 s, and for 1 s again after closing."""
    brk = fresh(failure_rate=None, consecutive_failures=1, open_for=1, max_open_for=3)
    call = failing(brk)
    opened = []
    fail_times(call, 1)
    for _ in range(3):
        opened.append(brk.stats().until_half_open)
        clock.advance(brk.stats().until_half_open or 0)
        fail_times(call, 1)  # the probe fails: open again, longer
    opened.append(brk.stats().until_half_open)
    assert opened == [1.0, 2.0, 3.0, 3.0]
    brk.close()
    fail_times(call, 1)
    assert brk.stats().until_half_open == 1.0


def test_half_open_admits_exactly_half_open_calls_probes(clock: FakeClock) -> None:
    """half_open_calls=3: three probes at once, a fourth is refused; three successes close it."""
    brk = fresh(failure_rate=None, consecutive_failures=1, open_for=5, half_open_calls=3)
    fail_times(failing(brk), 1)
    clock.advance(5)
    blocks = [brk.__enter__() for _ in range(3)]
    assert len(blocks) == 3
    with pytest.raises(CircuitOpenError) as refused:
        brk.__enter__()
    assert (refused.value.state, refused.value.remaining) == (BreakerState.HALF_OPEN, 0.0)
    for _ in range(2):
        brk.__exit__(None, None, None)
    assert brk.state is BreakerState.HALF_OPEN
    brk.__exit__(None, None, None)
    assert brk.state is BreakerState.CLOSED


def test_a_failed_probe_opens_it_again(clock: FakeClock, log: EventLog) -> None:
    """A failing probe trips the breaker again, and the events tell the whole story."""
    brk = fresh(failure_rate=0.5, minimum_calls=2, window=4, open_for=5)
    call = failing(brk)
    fail_times(call, 2)
    clock.advance(5)
    fail_times(call, 1)
    assert brk.state is BreakerState.OPEN
    transitions = [
        (type(e).__name__, e.from_state, e.to_state, e.reason, e.failure_rate, e.open_for)
        for e in log.events
        if not isinstance(e, BreakerRejected)
    ]
    assert transitions == [
        ("BreakerOpened", "closed", "open", "failure_rate", 1.0, 5.0),
        ("BreakerHalfOpened", "open", "half_open", "open_for_elapsed", 1.0, None),
        ("BreakerOpened", "half_open", "open", "probe_failed", 1.0, 5.0),
    ]
    assert all(e.policy == brk.name for e in log.events)


def test_probes_out_past_the_probe_timeout_are_given_up(clock: FakeClock) -> None:
    """A probe that never reports holds half-open for probe_timeout at most, then it trips again."""
    brk = fresh(failure_rate=None, consecutive_failures=1, open_for=5, probe_timeout=5)
    fail_times(failing(brk), 1)
    clock.advance(5)
    brk.__enter__()  # a probe whose caller vanished
    clock.advance(4.9)
    assert brk.state is BreakerState.HALF_OPEN
    clock.advance(0.1)
    assert brk.state is BreakerState.OPEN
    assert brk.stats().trips == 2


def test_calls_admitted_before_a_trip_do_not_count_after_it(clock: FakeClock) -> None:
    """An outcome from before a transition is ignored: it cannot close or trip the new state."""
    brk = fresh(failure_rate=None, consecutive_failures=2, open_for=5)
    brk.__enter__()  # admitted while closed, finishes much later
    call = failing(brk)
    fail_times(call, 2)
    clock.advance(5)
    brk.__enter__()  # the probe
    assert brk.state is BreakerState.HALF_OPEN
    brk.__exit__(None, None, None)  # the probe's success closes it
    assert brk.state is BreakerState.CLOSED
    brk.__exit__(ConnectionError, ConnectionError(), None)  # the old call fails: not counted
    assert brk.stats().failures == 0


# -- manual control ------------------------------------------------------------------------------


def test_forced_open_refuses_until_closed_by_hand(clock: FakeClock, log: EventLog) -> None:
    """open() refuses every call with no end time; close() lets calls through again."""
    brk = fresh(open_for=1)

    @brk
    def call() -> str:
        return "ok"

    brk.open()
    clock.advance(3600)
    with pytest.raises(CircuitOpenError) as refused:
        call()
    assert (refused.value.state, refused.value.remaining) == (BreakerState.FORCED_OPEN, None)
    assert "until it is closed by hand" in str(refused.value)
    brk.close()
    assert call() == "ok"
    assert [type(e) for e in log.events] == [BreakerOpened, BreakerRejected, BreakerClosed]
    assert [e.reason for e in log.of(BreakerOpened)] == ["forced_open"]


def test_disabled_lets_every_call_through_and_counts_none(log: EventLog) -> None:
    """disable() admits failing calls without counting them; close() brings it back."""
    brk = fresh(failure_rate=None, consecutive_failures=1)
    brk.disable()
    call = failing(brk)
    fail_times(call, 5)
    assert brk.state is BreakerState.DISABLED
    assert brk.stats().calls == 0
    brk.close()
    fail_times(call, 1)
    assert brk.state is BreakerState.OPEN
    assert [type(e) for e in log.events] == [BreakerDisabled, BreakerClosed, BreakerOpened]


def test_reset_closes_and_forgets_every_count() -> None:
    """reset() closes the breaker with an empty window, no trips and no rejections."""
    brk = fresh(failure_rate=None, consecutive_failures=1)
    call = failing(brk)
    fail_times(call, 3)
    assert brk.stats().rejected == 2
    brk.reset()
    stats = brk.stats()
    assert (stats.state, stats.calls, stats.rejected, stats.trips) == (
        BreakerState.CLOSED,
        0,
        0,
        0,
    )


def test_reset_breakers_resets_every_live_breaker() -> None:
    """resilient.testing.reset_breakers() closes every breaker in the process."""
    first, second = fresh(consecutive_failures=1), fresh(consecutive_failures=1)
    fail_times(failing(first), 1)
    second.open()
    reset_breakers()
    assert (first.state, second.state) == (BreakerState.CLOSED, BreakerState.CLOSED)


# -- fallback, blocks, stacking ------------------------------------------------------------------


def test_a_fallback_answers_refused_calls_with_the_same_arguments(log: EventLog) -> None:
    """While open, the fallback gets the call's arguments and its value is returned."""
    brk = fresh(consecutive_failures=1, fallback=lambda sku, *, region: f"cached {sku} {region}")

    @brk
    def stock(sku: str, *, region: str) -> str:
        raise ConnectionError

    fail_times(lambda: stock("A-1", region="eu"), 1)
    assert stock("A-1", region="eu") == "cached A-1 eu"
    assert [e.fallback for e in log.of(BreakerRejected)] == [True]


def test_an_async_fallback_is_awaited() -> None:
    """For an async function, a coroutine fallback is awaited and a plain one is returned."""

    async def later(sku: str) -> str:
        return f"later {sku}"

    for fallback, expected in ((later, "later A"), (lambda sku: f"now {sku}", "now A")):
        brk = fresh(consecutive_failures=1, fallback=fallback)

        @brk
        async def stock(sku: str) -> str:
            raise ConnectionError

        with pytest.raises(ConnectionError):
            asyncio.run(stock("A"))
        assert asyncio.run(stock("A")) == expected


def test_blocks_count_like_calls_and_are_refused_like_them() -> None:
    """``with`` and ``async with`` count how the block ended, and raise when open."""
    brk = fresh(failure_rate=None, consecutive_failures=2)
    with brk:
        pass
    with pytest.raises(ConnectionError), brk:
        raise ConnectionError

    async def block() -> None:
        async with brk:
            raise ConnectionError

    with pytest.raises(ConnectionError):
        asyncio.run(block())
    assert brk.state is BreakerState.OPEN
    with pytest.raises(CircuitOpenError), brk:
        pytest.fail("an open breaker ran the block")
    with pytest.raises(CircuitOpenError):
        asyncio.run(block())


def test_leaving_a_block_in_another_context_is_refused() -> None:
    """A block left where it was not entered raises RuntimeError instead of miscounting."""
    brk = fresh()
    with pytest.raises(RuntimeError, match="not entered in"):
        brk.__exit__(None, None, None)


def test_retry_around_a_breaker_waits_for_the_open_time(clock: FakeClock) -> None:
    """@retry on CircuitOpenError waits out the open time (a Retry-After hint), then probes."""
    brk = fresh(failure_rate=None, consecutive_failures=1, open_for=7)
    answers = iter([ConnectionError("down"), "up"])

    @retry(on=CircuitOpenError, attempts=2, wait=resilient.wait.none())
    @brk
    def call() -> str:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    fail_times(call, 1)
    assert call() == "up"
    assert clock.sleeps == [7.0]
    assert brk.state is BreakerState.CLOSED


def test_the_state_reads_half_open_once_the_open_time_passed(
    clock: FakeClock, log: EventLog
) -> None:
    """Reading .state after open_for moves an open breaker to half-open, and reports it."""
    brk = fresh(consecutive_failures=1, open_for=2)
    fail_times(failing(brk), 1)
    clock.advance(2)
    assert brk.state is BreakerState.HALF_OPEN
    assert len(log.of(BreakerHalfOpened)) == 1


def test_a_time_window_forgets_old_failures(clock: FakeClock) -> None:
    """Failures older than the window no longer count toward its rate."""
    brk = fresh(failure_rate=0.5, window=timedelta(seconds=10), minimum_calls=3)
    call = failing(brk)
    fail_times(call, 2)
    clock.advance(10)
    assert brk.stats().calls == 0

    @brk
    def fine() -> None:
        return None

    fine()
    fine()
    fail_times(call, 1)  # 1 of 3 in the window
    assert brk.state is BreakerState.CLOSED


# -- the registry --------------------------------------------------------------------------------


def test_dropping_and_making_a_named_breaker_again_keeps_its_state(clock: FakeClock) -> None:
    """100 handles made and dropped while open: it stays open with the same remaining time."""
    name = f"reopened-{next(_names)}"
    fail_times(failing(breaker(name, consecutive_failures=1, open_for=60)), 1)
    clock.advance(15)
    for _ in range(100):
        handle = breaker(name, consecutive_failures=1, open_for=60)
        assert handle.state is BreakerState.OPEN
        del handle
        gc.collect()
    assert breaker(name, consecutive_failures=1, open_for=60).stats().until_half_open == 45.0


def test_the_registry_stays_bounded_when_names_come_and_go() -> None:
    """Breakers made per key and dropped do not accumulate beyond the 1,024 most recent."""
    from resilient._breaker import _REGISTRY  # noqa: PLC0415 - the registry's size, to check

    gc.collect()
    before = len(_REGISTRY.live())
    for number in range(5000):
        with breaker(f"per-host-{number}"):
            pass
    gc.collect()
    assert len(_REGISTRY.live()) <= before + 1024
