"""@cached on the memory backend: concurrent misses on one key share one execution."""

from __future__ import annotations

import asyncio
import threading

import pytest
from cache_support import PATIENCE, run

from resilient import (
    CacheStatus,
    cache_status,
    cached,
)
from resilient.testing import FakeClock

# Real seconds given to threads to reach a call already in flight before it is let finish.
GATHER = 0.2


# --- stampedes ---------------------------------------------------------------------------------


def test_a_thousand_concurrent_async_callers_run_the_function_once(clock: FakeClock) -> None:
    """1,000 tasks missing one cold key share a single execution and all get its value."""
    gate = asyncio.Event()
    started: list[int] = []

    @cached(ttl=60)
    async def expensive(key: str) -> dict[str, str]:
        started.append(1)
        await gate.wait()
        return {"key": key}

    async def one() -> tuple[dict[str, str], CacheStatus | None]:
        return await expensive("cold"), cache_status()

    async def main() -> list[tuple[dict[str, str], CacheStatus | None]]:
        tasks = [asyncio.create_task(one()) for _ in range(1000)]
        await asyncio.sleep(0)  # every task is now inside its call, waiting
        gate.set()
        return await asyncio.gather(*tasks)

    results = run(main())
    assert len(started) == 1
    assert all(value is results[0][0] for value, _ in results)
    assert {status for _, status in results} == {CacheStatus.MISS}


def test_a_hundred_concurrent_threads_run_the_function_once(clock: FakeClock) -> None:
    """100 threads missing one cold key share a single execution and all get its value."""
    start = threading.Barrier(100)
    release = threading.Event()
    started: list[int] = []
    results: list[object] = []

    @cached(ttl=60)
    def expensive() -> object:
        started.append(1)
        assert release.wait(PATIENCE)
        return object()

    def caller() -> None:
        start.wait(PATIENCE)
        results.append(expensive())

    threads = [threading.Thread(target=caller) for _ in range(100)]
    for thread in threads:
        thread.start()
    threading.Event().wait(GATHER)  # let every thread reach the call in flight
    release.set()
    for thread in threads:
        thread.join(PATIENCE)
    assert len(started) == 1
    assert len(results) == 100
    assert all(result is results[0] for result in results)


def test_async_callers_in_several_event_loops_share_one_execution(clock: FakeClock) -> None:
    """Tasks of four event loops in four threads missing one key share a single execution."""
    release = threading.Event()
    start = threading.Barrier(4)
    started: list[int] = []
    results: list[str] = []

    @cached(ttl=60)
    async def expensive() -> str:
        started.append(1)
        assert await asyncio.to_thread(release.wait, PATIENCE)
        return "value"

    async def loop_main() -> list[str]:
        return list(await asyncio.gather(*(expensive() for _ in range(25))))

    def thread_main() -> None:
        start.wait(PATIENCE)
        results.extend(run(loop_main()))

    threads = [threading.Thread(target=thread_main) for _ in range(4)]
    for thread in threads:
        thread.start()
    threading.Event().wait(GATHER)
    release.set()
    for thread in threads:
        thread.join(PATIENCE)
    assert len(started) == 1
    assert results == ["value"] * 100


def test_the_leaders_exception_reaches_every_async_follower(clock: FakeClock) -> None:
    """When the one execution raises, every concurrent caller gets that same exception."""
    gate = asyncio.Event()
    error = TimeoutError("upstream timed out")
    started: list[int] = []

    @cached(ttl=60)
    async def expensive() -> str:
        started.append(1)
        await gate.wait()
        if len(started) == 1:
            raise error
        return "recovered"

    async def main() -> list[BaseException | str]:
        tasks = [asyncio.create_task(expensive()) for _ in range(50)]
        await asyncio.sleep(0)
        gate.set()
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        return [*outcomes, await expensive()]

    outcomes = run(main())
    assert all(outcome is error for outcome in outcomes[:50])
    assert outcomes[50] == "recovered"
    assert len(started) == 2


def test_the_leaders_exception_reaches_every_thread(clock: FakeClock) -> None:
    """Threads waiting on a failing execution each raise the leader's exception."""
    start = threading.Barrier(20)
    release = threading.Event()
    error = ConnectionError("refused")
    started: list[int] = []
    outcomes: list[BaseException] = []

    @cached(ttl=60)
    def expensive() -> str:
        started.append(1)
        assert release.wait(PATIENCE)
        raise error

    def caller() -> None:
        start.wait(PATIENCE)
        try:
            expensive()
        except ConnectionError as raised:
            outcomes.append(raised)

    threads = [threading.Thread(target=caller) for _ in range(20)]
    for thread in threads:
        thread.start()
    threading.Event().wait(GATHER)
    release.set()
    for thread in threads:
        thread.join(PATIENCE)
    assert len(started) == 1
    assert len(outcomes) == 20
    assert all(outcome is error for outcome in outcomes)


def test_a_cancelled_leader_neither_cancels_nor_hangs_its_followers(clock: FakeClock) -> None:
    """Cancelling the task computing a value wakes its followers; one of them computes it."""
    gate = asyncio.Event()
    started: list[int] = []

    @cached(ttl=60)
    async def expensive() -> str:
        started.append(1)
        await gate.wait()
        return "value"

    async def main() -> list[str]:
        leader = asyncio.create_task(expensive())
        await asyncio.sleep(0)
        followers = [asyncio.create_task(expensive()) for _ in range(10)]
        await asyncio.sleep(0)
        leader.cancel()
        with pytest.raises(asyncio.CancelledError):
            await leader
        gate.set()
        return await asyncio.wait_for(asyncio.gather(*followers), PATIENCE)

    assert run(main()) == ["value"] * 10
    assert len(started) == 2


def test_a_leader_thread_ended_by_systemexit_lets_a_follower_run(clock: FakeClock) -> None:
    """A leader leaving with a BaseException abandons the call; a follower runs it instead."""
    entered = threading.Event()
    release = threading.Event()
    started: list[int] = []
    results: list[str] = []
    exits: list[SystemExit] = []

    @cached(ttl=60)
    def expensive() -> str:
        started.append(1)
        if len(started) == 1:
            entered.set()
            assert release.wait(PATIENCE)
            raise SystemExit(1)
        return "value"

    def leader() -> None:
        try:
            expensive()
        except SystemExit as leaving:
            exits.append(leaving)

    def follower() -> None:
        results.append(expensive())

    first = threading.Thread(target=leader)
    first.start()
    assert entered.wait(PATIENCE)
    followers = [threading.Thread(target=follower) for _ in range(5)]
    for thread in followers:
        thread.start()
    threading.Event().wait(GATHER)
    release.set()
    for thread in [first, *followers]:
        thread.join(PATIENCE)
    assert len(exits) == 1
    assert results == ["value"] * 5
    assert len(started) == 2
