"""@retry under concurrency and cancellation, and the parity of its sync and async drivers."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import Counter
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import resilient
from resilient import retry, wait
from resilient.events import Event
from resilient.testing import FakeClock, capture_events

ATTEMPTS = 4


def failures_for(call: int) -> int:
    """The number of times call number *call* fails: 0..ATTEMPTS (ATTEMPTS never succeeds)."""
    return call % (ATTEMPTS + 1)


# --- per-call state ---------------------------------------------------------------------------


def test_threads_each_see_their_own_attempts() -> None:
    """100 threads sharing one decorated function each get exactly their own retries."""
    seen: Counter[int] = Counter()
    lock = threading.Lock()
    barrier = threading.Barrier(100)

    @retry(on=ConnectionError, attempts=ATTEMPTS, wait=wait.constant(0.001))
    def call(number: int) -> int:
        with lock:
            seen[number] += 1
            attempt = seen[number]
        if attempt <= failures_for(number):
            raise ConnectionError(number)
        return number * 10

    results: dict[int, object] = {}

    def worker(number: int) -> None:
        barrier.wait()
        try:
            results[number] = call(number)
        except ConnectionError as exc:
            results[number] = exc

    threads = [threading.Thread(target=worker, args=(number,)) for number in range(100)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert not any(thread.is_alive() for thread in threads)

    for number in range(100):
        failures = failures_for(number)
        if failures < ATTEMPTS:
            assert results[number] == number * 10
            assert seen[number] == failures + 1
        else:
            error = results[number]
            assert isinstance(error, ConnectionError)
            assert error.args == (number,)
            assert seen[number] == ATTEMPTS
            assert f"gave up after {ATTEMPTS} attempts" in error.__notes__[0]


@pytest.mark.parametrize(
    "strategy", [wait.none(), wait.constant(0.0005)], ids=["no-wait", "tiny-wait"]
)
def test_tasks_each_see_their_own_attempts(strategy: Any) -> None:
    """1,000 interleaved tasks sharing one decorated coroutine each get exactly their retries."""
    seen: Counter[int] = Counter()

    @retry(on=ConnectionError, attempts=ATTEMPTS, wait=strategy)
    async def call(number: int) -> int:
        seen[number] += 1
        attempt = seen[number]
        await asyncio.sleep(0)  # let the other tasks run in the middle of this attempt
        if attempt <= failures_for(number):
            raise ConnectionError(number)
        return number * 10

    async def main() -> list[object]:
        tasks = [asyncio.create_task(call(number)) for number in range(1000)]
        return await asyncio.gather(*tasks, return_exceptions=True)

    results = asyncio.run(main())
    for number, result in enumerate(results):
        failures = failures_for(number)
        if failures < ATTEMPTS:
            assert result == number * 10
            assert seen[number] == failures + 1
        else:
            assert isinstance(result, ConnectionError)
            assert result.args == (number,)
            assert seen[number] == ATTEMPTS


def test_budget_holds_across_threads() -> None:
    """A budget shared by 100 concurrent callers of a failing dependency bounds their retries."""
    clock = FakeClock()
    resilient.configure(clock=clock)
    budget = resilient.RetryBudget(ratio=0.1, min_per_second=0, window=60)
    calls: list[int] = []
    barrier = threading.Barrier(100)

    @retry(on=ConnectionError, attempts=3, wait=wait.constant(0.01), budget=budget)
    def down() -> None:
        calls.append(1)  # list.append is atomic
        raise ConnectionError

    def worker() -> None:
        barrier.wait()
        with contextlib.suppress(ConnectionError):
            down()

    with capture_events() as events:
        threads = [threading.Thread(target=worker) for _ in range(100)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=10)
    assert not any(thread.is_alive() for thread in threads)
    assert len(calls) - 100 <= 10
    reasons = Counter(getattr(event, "reason", None) for event in events)
    assert reasons["budget"] + reasons["attempts"] == 100
    assert reasons["budget"] >= 90


# --- cancellation -----------------------------------------------------------------------------


async def cancel_during_backoff() -> tuple[float, bool, int]:
    """Cancel a task in a 30 s backoff; return the seconds it took to finish, and its state."""
    loop = asyncio.get_running_loop()
    calls: list[int] = []
    attempted = asyncio.Event()

    @retry(on=ConnectionError, attempts=3, wait=wait.constant(30))
    async def down() -> None:
        calls.append(1)
        attempted.set()
        raise ConnectionError

    task = asyncio.create_task(down())
    await attempted.wait()
    # the failure and the start of the backoff happen in the same step of the task, so once the
    # attempt is seen the task is asleep; a real pause makes that certain
    await asyncio.sleep(0.005)
    assert not task.done()
    started = loop.time()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    return loop.time() - started, task.cancelled(), len(calls)


def test_cancelled_task_stops_waiting_within_10ms() -> None:
    """Cancelling a task in a 30 s backoff ends it within 10 ms with CancelledError.

    This uses the real clock and a real event loop. The measurement is taken up to three times
    and the best must be within 10 ms, so that one rare garbage collection or scheduler pause
    on a busy machine cannot fail the test; a driver that kept sleeping would take 30 s every
    time.
    """
    measurements = []
    for _ in range(3):
        elapsed, cancelled, calls = asyncio.run(cancel_during_backoff())
        assert cancelled
        assert calls == 1
        measurements.append(elapsed)
        if elapsed <= 0.010:
            break
    assert min(measurements) <= 0.010, measurements


def test_cancelling_the_caller_propagates_out_of_an_attempt() -> None:
    """A task cancelled during an attempt gets CancelledError and makes no further attempt."""
    calls: list[int] = []

    async def main() -> bool:
        started = asyncio.Event()

        @retry(on=Exception, attempts=5, wait=wait.none())
        async def slow() -> None:
            calls.append(1)
            started.set()
            await asyncio.sleep(30)

        task = asyncio.create_task(slow())
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return task.cancelled()

    assert asyncio.run(main())
    assert calls == [1]


# --- parity of the sync and async drivers -----------------------------------------------------


class Fatal(Exception):
    """An error the parity policy does not retry."""


OUTCOMES = st.sampled_from(["retryable", "fatal", "bad", "good"])
STEPS = st.tuples(OUTCOMES, st.sampled_from([0.0, 0.5, 1.0, 3.0]))


def perform(step: tuple[str, float], clock: FakeClock) -> str:
    """Spend the step's time on the clock, then raise or return as the step says."""
    outcome, duration = step
    clock.advance(duration)
    if outcome == "retryable":
        raise ConnectionError("down")
    if outcome == "fatal":
        raise Fatal("broken")
    return outcome


def drive(script: list[tuple[str, float]], options: dict[str, Any], *, is_async: bool) -> Any:
    """Run one call over *script* on a fresh FakeClock; return everything observable."""
    clock = FakeClock()
    resilient.configure(clock=clock)
    steps = iter(script)

    @retry(**options)
    async def call_async() -> str:
        await asyncio.sleep(0)
        return perform(next(steps), clock)

    @retry(**options)
    def call_sync() -> str:
        return perform(next(steps), clock)

    with capture_events() as events:
        try:
            result: object = asyncio.run(call_async()) if is_async else call_sync()
        except Exception as exc:  # the outcome is compared, whatever it is
            result = (type(exc), exc.args, getattr(exc, "__notes__", None))
    return result, events_of(events), clock.sleeps, clock.monotonic(), len(list(steps))


def events_of(events: list[Event]) -> list[tuple[str, dict[str, object]]]:
    """Return the events as comparable (kind, fields) pairs, time included."""
    return [(event.kind, attrs.asdict(event)) for event in events]


@settings(max_examples=150, deadline=None)
@given(
    script=st.lists(STEPS, min_size=1, max_size=7),
    attempts=st.integers(min_value=1, max_value=6),
    deadline=st.none() | st.sampled_from([2.0, 4.5, 10.0]),
    strategy=st.sampled_from([wait.constant(1), wait.linear(start=0.5, step=1), wait.none()]),
)
def test_sync_and_async_drivers_agree(
    script: list[tuple[str, float]], attempts: int, deadline: float | None, strategy: Any
) -> None:
    """For any scripted outcomes, sync and async calls give the same events, sleeps and result."""
    script = script + [("good", 0.0)] * attempts  # never run out of steps
    options = {
        "on": ConnectionError,
        "on_result": lambda value: value == "bad",
        "attempts": attempts,
        "deadline": deadline,
        "wait": strategy,
        "name": "parity",
    }
    sync = drive(script, options, is_async=False)
    async_ = drive(script, options, is_async=True)
    assert sync == async_
    consumed = len(script) - sync[4]
    assert 1 <= consumed <= attempts
