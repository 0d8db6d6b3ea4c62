"""Deadlines and `@timeout`: one time budget, seen by every layer and wait inside it."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from cache_support import PATIENCE, run

import resilient
from resilient import deadline, deduped, idempotent, lock, remaining, retry, timeout, wait
from resilient.exceptions import (
    IdempotencyInProgressError,
    LockNotAcquiredError,
)
from resilient.exceptions import TimeoutError as ResilientTimeoutError

SLACK = 0.02  # seconds a wait may overrun on a loaded machine
CANCEL_SLACK = 0.01  # the promise: an async call under @timeout is cancelled within 10 ms


# the deadline itself -----------------------------------------------------------------------


def test_there_is_no_deadline_until_a_block_sets_one() -> None:
    """Outside any block nothing is remaining; inside, what is left; after, nothing again."""
    assert remaining() is None
    with deadline(5) as block:
        left = remaining()
        assert left is not None
        assert 4.9 < left <= 5
        assert block.at is not None
    assert remaining() is None
    assert block.at is None


def test_nested_deadlines_take_the_earliest() -> None:
    """An inner block cannot extend the deadline around it, but can shorten it."""
    with deadline(1):
        with deadline(60):
            inner = remaining()
            assert inner is not None
            assert inner <= 1
        with deadline(0.1):
            shorter = remaining()
            assert shorter is not None
            assert shorter <= 0.1
        outer = remaining()
        assert outer is not None
        assert 0.1 < outer <= 1


def test_tasks_inherit_the_deadline_and_threads_do_not_share_it() -> None:
    """A task made inside a block sees its deadline; another thread sees its own (none)."""

    async def scenario() -> tuple[float | None, float | None]:
        async with deadline(3):
            seen_by_task = await asyncio.ensure_future(_remaining_soon())
        with ThreadPoolExecutor(1) as pool, deadline(3):
            seen_by_thread = pool.submit(remaining).result(PATIENCE)
        return seen_by_task, seen_by_thread

    seen_by_task, seen_by_thread = run(scenario())
    assert seen_by_task is not None
    assert seen_by_task <= 3
    assert seen_by_thread is None


async def _remaining_soon() -> float | None:
    await asyncio.sleep(0)
    return remaining()


def test_a_deadline_block_is_entered_once() -> None:
    """Entering one block object twice is refused: each block makes its own."""
    block = deadline(1)
    with block, pytest.raises(RuntimeError, match="already entered"):
        block.__enter__()


@pytest.mark.parametrize("seconds", [0, -1, float("nan")])
def test_a_deadline_must_be_positive(seconds: float) -> None:
    """Zero, negative or NaN seconds are refused at once."""
    with pytest.raises(ValueError, match="seconds"):
        deadline(seconds)


# retry -------------------------------------------------------------------------------------


def test_retry_inside_a_deadline_starts_no_attempt_after_it() -> None:
    """10 attempts 0.1 s apart in a 0.5 s deadline: done by 0.5 s, no attempt after it."""
    starts: list[float] = []

    @retry(on=ConnectionError, attempts=10, wait=wait.constant(0.1))
    def flaky() -> None:
        starts.append(time.monotonic())
        raise ConnectionError("down")

    begin = time.monotonic()
    with deadline(0.5), pytest.raises(ConnectionError) as raised:
        flaky()
    elapsed = time.monotonic() - begin
    assert elapsed <= 0.5 + SLACK
    assert all(start - begin < 0.5 for start in starts)
    assert 3 <= len(starts) <= 5
    assert "deadline" in raised.value.__notes__[0]


def test_async_retry_inside_a_deadline_starts_no_attempt_after_it() -> None:
    """The same for a coroutine: the retry gives up rather than wait past the deadline."""
    starts: list[float] = []

    @retry(on=ConnectionError, attempts=10, wait=wait.constant(0.1))
    async def flaky() -> None:
        starts.append(time.monotonic())
        raise ConnectionError("down")

    async def scenario() -> float:
        begin = time.monotonic()
        async with deadline(0.5):
            with pytest.raises(ConnectionError):
                await flaky()
        return begin

    begin = run(scenario())
    assert time.monotonic() - begin <= 0.5 + SLACK
    assert all(start - begin < 0.5 for start in starts)


def test_the_policys_own_deadline_still_applies_when_earlier() -> None:
    """A retry's ``deadline=`` shorter than the caller's wins."""
    starts: list[float] = []

    @retry(on=ConnectionError, attempts=10, wait=wait.constant(0.1), deadline=0.25)
    def flaky() -> None:
        starts.append(time.monotonic())
        raise ConnectionError("down")

    with deadline(5), pytest.raises(ConnectionError):
        flaky()
    assert len(starts) <= 3


# waits -------------------------------------------------------------------------------------


def test_a_lock_wait_stops_at_the_deadline() -> None:
    """Waiting for a held lock with no timeout still gives up at the caller's deadline."""
    name = f"deadline-{time.monotonic_ns()}"
    held, release = threading.Event(), threading.Event()

    def holder() -> None:
        with lock(name, ttl=10):
            held.set()
            release.wait(PATIENCE)

    thread = threading.Thread(target=holder)
    thread.start()
    try:
        assert held.wait(PATIENCE)
        begin = time.monotonic()
        with deadline(0.2), pytest.raises(LockNotAcquiredError), lock(name, ttl=10):
            pass
        assert 0.2 - SLACK <= time.monotonic() - begin <= 0.2 + 5 * SLACK
    finally:
        release.set()
        thread.join()


def test_an_idempotent_wait_stops_at_the_deadline() -> None:
    """A duplicate waiting for the first call gives up at the deadline, not at wait_timeout."""
    started, release = threading.Event(), threading.Event()

    @idempotent(key="request_id", on_in_progress="wait", wait_timeout=30)
    def pay(request_id: str) -> int:
        started.set()
        release.wait(PATIENCE)
        return 1

    key = f"deadline-{time.monotonic_ns()}"
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(pay, key)
        assert started.wait(PATIENCE)
        begin = time.monotonic()
        with deadline(0.2), pytest.raises(IdempotencyInProgressError):
            pay(key)
        assert time.monotonic() - begin <= 0.2 + 5 * SLACK
        release.set()
        assert first.result(PATIENCE) == 1


def test_a_single_flight_follower_stops_at_the_deadline() -> None:
    """A follower stops waiting for the leader at its deadline; the flight goes on."""
    started, release = threading.Event(), threading.Event()

    @deduped()
    def report(day: str) -> str:
        started.set()
        release.wait(PATIENCE)
        return day

    with ThreadPoolExecutor(1) as pool:
        leader = pool.submit(report, "monday")
        assert started.wait(PATIENCE)
        with deadline(0.1), pytest.raises(ResilientTimeoutError) as raised:
            report("monday")
        assert isinstance(raised.value, TimeoutError)
        release.set()
        assert leader.result(PATIENCE) == "monday"


# @timeout ----------------------------------------------------------------------------------


def test_an_async_call_is_cancelled_at_its_limit() -> None:
    """The coroutine sees CancelledError, and the caller TimeoutError, within 10 ms of the limit."""
    limit = 0.2
    cancelled_at: list[float] = []

    @timeout(limit)
    async def slow() -> str:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled_at.append(time.monotonic())
            raise
        return "done"

    async def scenario() -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        # a bare asyncio timer due at the limit: how late the loop itself woke, for a failure
        loop.call_at(loop.time() + limit, lambda: woken_at.append(time.monotonic()))
        begin = time.monotonic()
        with pytest.raises(ResilientTimeoutError) as raised:
            await slow()
        raised_at = time.monotonic()
        assert isinstance(raised.value, TimeoutError)
        assert raised.value.seconds == limit
        return begin, raised_at

    woken_at: list[float] = []
    begin, raised_at = run(scenario())
    assert len(cancelled_at) == 1
    # The bound is on what the library adds: on a shared virtual machine the loop itself now
    # and then wakes tens of milliseconds late (host steal time), for a bare timer as for ours
    loop_late = max(0.0, woken_at[0] - begin - limit)
    late = f"a bare asyncio timer due then ran {loop_late:.4f} s late"
    bound = limit + CANCEL_SLACK + loop_late
    assert limit <= cancelled_at[0] - begin <= bound, late
    assert cancelled_at[0] <= raised_at <= begin + bound, late


def test_an_async_call_sees_the_limit_as_its_deadline() -> None:
    """Inside a ``@timeout`` call, ``remaining()`` counts down from the limit."""

    @timeout(2)
    async def measure() -> float | None:
        return remaining()

    left = run(measure())
    assert left is not None
    assert 1.9 < left <= 2


def test_a_timeout_error_the_call_raises_itself_is_left_alone() -> None:
    """Only the limit's own expiry becomes resilient's TimeoutError."""

    @timeout(5)
    async def own() -> None:
        raise TimeoutError("the socket timed out")

    with pytest.raises(TimeoutError, match="socket") as raised:
        run(own())
    assert not isinstance(raised.value, ResilientTimeoutError)


def test_a_sync_call_past_its_limit_raises_after_it_returns() -> None:
    """A sync call is not interrupted; its late result is dropped for TimeoutError."""
    seen: list[float | None] = []

    @timeout(0.05)
    def slow() -> str:
        seen.append(remaining())
        threading.Event().wait(0.1)
        return "late"

    with pytest.raises(ResilientTimeoutError):
        slow()
    assert seen[0] is not None
    assert seen[0] <= 0.05


def test_a_sync_call_within_its_limit_returns() -> None:
    """A call that finishes in time returns its value; the deadline is gone after."""

    @timeout(5)
    def quick() -> int:
        return 7

    assert quick() == 7
    assert remaining() is None


def test_a_sync_call_that_raises_late_keeps_its_own_exception() -> None:
    """An exception from a call that also overran propagates, noted as having overrun."""

    @timeout(0.05)
    def broken() -> None:
        threading.Event().wait(0.1)
        raise KeyError("missing")

    with pytest.raises(KeyError) as raised:
        broken()
    assert "also ran past" in raised.value.__notes__[0]


def test_retry_under_a_timeout_stops_at_the_limit() -> None:
    """``@timeout`` outermost makes the limit the deadline of the retry inside it."""
    starts: list[float] = []

    @timeout(0.3)
    @retry(on=ConnectionError, attempts=100, wait=wait.constant(0.05))
    async def flaky() -> None:
        starts.append(time.monotonic())
        raise ConnectionError("down")

    async def scenario() -> float:
        begin = time.monotonic()
        with pytest.raises(ConnectionError):
            await flaky()
        return begin

    begin = run(scenario())
    assert time.monotonic() - begin <= 0.3 + SLACK
    assert len(starts) < 100


def test_bad_limits_are_refused_at_decoration() -> None:
    """A limit that is not positive, or a name that is not a string, raises at once."""
    with pytest.raises(ValueError, match="seconds"):
        timeout(0)
    with pytest.raises(TypeError, match="name"):
        timeout(1, name=3)  # type: ignore[arg-type]


def test_resilient_exports_the_deadline_api() -> None:
    """The names the docs use are public."""
    assert resilient.deadline is deadline
    assert resilient.timeout is timeout
