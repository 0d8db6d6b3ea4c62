"""The block form: ``for attempt in retrying(...)`` and ``async for``, with ``with attempt:``."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest

from resilient import RetryPolicy, retrying, wait
from resilient.events import Event, RetriesExhausted, RetryScheduled
from resilient.testing import FakeClock

T = TypeVar("T")


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run *coroutine* on a fresh event loop."""
    return asyncio.run(coroutine)


def test_block_retries_until_success_and_stops(fake_clock: FakeClock) -> None:
    """The loop retries a failing block and stops right after the first success."""
    numbers: list[int] = []
    for attempt in retrying(on=ConnectionError, attempts=5, wait=wait.constant(1)):
        with attempt:
            numbers.append(attempt.number)
            if attempt.number < 3:
                raise ConnectionError
    assert numbers == [1, 2, 3]
    assert fake_clock.sleeps == [1.0, 1.0]


def test_block_succeeding_first_time_runs_once(fake_clock: FakeClock) -> None:
    """A block that succeeds at once runs once and never sleeps."""
    numbers = []
    for attempt in retrying(on=ConnectionError):
        with attempt:
            numbers.append(attempt.number)
    assert numbers == [1]
    assert fake_clock.sleeps == []


def test_block_reraises_the_original_exception_with_a_note(fake_clock: FakeClock) -> None:
    """After the last attempt the block's own exception object propagates, with a note."""
    errors = [ConnectionError(1), ConnectionError(2), ConnectionError(3)]

    def block() -> None:
        for attempt in retrying(on=ConnectionError, attempts=3, wait=wait.linear(start=1, step=1)):
            with attempt:
                raise errors[attempt.number - 1]

    with pytest.raises(ConnectionError) as info:
        block()
    assert info.value is errors[2]
    assert info.value.__notes__ == [
        "resilient.retry(retrying): gave up after 3 attempts over 3000 ms: attempts exhausted"
    ]
    assert fake_clock.sleeps == [1.0, 2.0]


def test_block_non_retryable_error_propagates_at_once(fake_clock: FakeClock) -> None:
    """An error not matching on= leaves the loop on the first attempt, without a note."""
    error = KeyError("missing")
    numbers = []

    def block() -> None:
        for attempt in retrying(on=ConnectionError, attempts=5):
            with attempt:
                numbers.append(attempt.number)
                raise error

    with pytest.raises(KeyError) as info:
        block()
    assert info.value is error
    assert numbers == [1]
    assert not hasattr(error, "__notes__")
    assert fake_clock.sleeps == []


@pytest.mark.parametrize(
    "error",
    [KeyboardInterrupt(), SystemExit(1), asyncio.CancelledError()],
    ids=lambda error: type(error).__name__,
)
def test_block_never_retries_base_exceptions(error: BaseException, fake_clock: FakeClock) -> None:
    """KeyboardInterrupt, SystemExit and cancellation leave the block form at once."""
    numbers = []

    def block() -> None:
        for attempt in retrying(on=Exception, attempts=5):
            with attempt:
                numbers.append(attempt.number)
                raise error

    with pytest.raises(type(error)) as info:
        block()
    assert info.value is error
    assert numbers == [1]


def test_block_async_for_retries_and_sleeps_on_the_clock(fake_clock: FakeClock) -> None:
    """``async for`` retries the block, numbering attempts 1, 2, 3, sleeping on the clock."""

    async def main() -> list[int]:
        numbers = []
        async for attempt in retrying(on=ConnectionError, attempts=5, wait=wait.constant(2)):
            with attempt:
                numbers.append(attempt.number)
                await asyncio.sleep(0)
                if attempt.number < 3:
                    raise ConnectionError
        return numbers

    assert run(main()) == [1, 2, 3]
    assert fake_clock.sleeps == [2.0, 2.0]


def test_block_async_reraises_the_original_exception_with_a_note(fake_clock: FakeClock) -> None:
    """``async for`` re-raises the last exception object with the note after the last attempt."""
    errors = [TimeoutError(1), TimeoutError(2)]

    async def main() -> None:
        async for attempt in retrying(on=TimeoutError, attempts=2, wait=wait.none(), name="blk"):
            with attempt:
                raise errors[attempt.number - 1]

    with pytest.raises(TimeoutError) as info:
        run(main())
    assert info.value is errors[1]
    assert info.value.__notes__ == [
        "resilient.retry(blk): gave up after 2 attempts over 0 ms: attempts exhausted"
    ]
    assert fake_clock.sleeps == []


def test_block_async_non_retryable_error_propagates_at_once(fake_clock: FakeClock) -> None:
    """``async for`` lets a non-retryable error out on the first attempt."""
    numbers = []

    async def main() -> None:
        async for attempt in retrying(on=ConnectionError, attempts=5):
            with attempt:
                numbers.append(attempt.number)
                raise ValueError("bad")

    with pytest.raises(ValueError, match="bad"):
        run(main())
    assert numbers == [1]


def test_block_refuses_on_result() -> None:
    """retrying(on_result=...) is a TypeError: a block has no result to check."""
    with pytest.raises(TypeError, match="on_result"):
        retrying(on=ConnectionError, on_result=lambda value: value is None)
    with pytest.raises(TypeError, match="on_result"):
        retrying(RetryPolicy(on=ConnectionError, on_result=bool))


def test_block_needs_on() -> None:
    """retrying() without on= is a TypeError asking for it."""
    with pytest.raises(TypeError, match=r"retrying\(\) needs on="):
        retrying()


def test_block_takes_a_policy(fake_clock: FakeClock) -> None:
    """retrying(policy, attempts=2) evolves the policy, like @retry."""
    policy = RetryPolicy(on=ConnectionError, attempts=5, wait=wait.none())
    numbers = []

    def block() -> None:
        for attempt in retrying(policy, attempts=2):
            with attempt:
                numbers.append(attempt.number)
                raise ConnectionError

    with pytest.raises(ConnectionError):
        block()
    assert numbers == [1, 2]


def test_block_honours_the_deadline(fake_clock: FakeClock) -> None:
    """The block form never sleeps across the deadline."""
    starts = []

    def block() -> None:
        for attempt in retrying(
            on=ConnectionError, attempts=None, deadline=5, wait=wait.constant(2)
        ):
            with attempt:
                starts.append(fake_clock.monotonic())
                raise ConnectionError

    with pytest.raises(ConnectionError) as info:
        block()
    assert starts == [0.0, 2.0, 4.0]
    assert "deadline" in info.value.__notes__[0]


def test_block_zero_wait_never_sleeps(fake_clock: FakeClock) -> None:
    """With wait.none() neither loop form records any sleep."""
    for attempt in retrying(on=ConnectionError, attempts=4, wait=wait.none()):
        with attempt:
            if attempt.number < 4:
                raise ConnectionError

    async def main() -> None:
        async for attempt in retrying(on=ConnectionError, attempts=4, wait=wait.none()):
            with attempt:
                if attempt.number < 4:
                    raise ConnectionError

    run(main())
    assert fake_clock.sleeps == []


def test_block_retry_after_hint(fake_clock: FakeClock) -> None:
    """A Retry-After hint on the block's exception raises the wait."""

    class Throttled(Exception):
        retry_after = 4

    for attempt in retrying(on=Throttled, wait=wait.constant(1)):
        with attempt:
            if attempt.number == 1:
                raise Throttled
    assert fake_clock.sleeps == [4.0]


def test_block_events(fake_clock: FakeClock, captured_events: list[Event]) -> None:
    """The block form reports RetryScheduled per retry and RetriesExhausted at the end."""

    def block() -> None:
        for attempt in retrying(on=ConnectionError, attempts=2, wait=wait.constant(1)):
            with attempt:
                raise ConnectionError

    with pytest.raises(ConnectionError):
        block()
    assert captured_events == [
        RetryScheduled(
            policy="retrying", time=0.0, attempt=1, delay=1.0, error_type="ConnectionError"
        ),
        RetriesExhausted(
            policy="retrying",
            time=1.0,
            attempts=2,
            elapsed=1.0,
            error_type="ConnectionError",
            reason="attempts",
        ),
    ]


def test_retrying_object_can_be_iterated_again(fake_clock: FakeClock) -> None:
    """Each iteration of one Retrying object is a fresh run with its own attempts."""
    block = retrying(on=ConnectionError, attempts=2, wait=wait.none())
    for _ in range(2):
        numbers = []
        for attempt in block:
            with attempt:
                numbers.append(attempt.number)
                if attempt.number == 1:
                    raise ConnectionError
        assert numbers == [1, 2]


def test_attempt_repr_names_number_and_policy() -> None:
    """An attempt's repr shows its number and the policy name."""
    for attempt in retrying(on=ConnectionError, name="sync-sheets"):
        with attempt:
            assert repr(attempt) == "<Attempt 1 of sync-sheets>"
