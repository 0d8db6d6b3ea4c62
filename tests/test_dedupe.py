"""`resilient.deduped`: concurrent identical calls share one execution, in threads and tasks."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from cache_support import PATIENCE, EventLog, together

from resilient import DedupePolicy, breaker, deduped, retry
from resilient.events import DedupeBypassed, DedupeJoined, DedupeLed, DedupeTakenOver


def test_concurrent_threads_share_one_execution_and_its_value() -> None:
    """Fifty threads calling at once run the function once and all get its value."""
    runs: list[int] = []
    gate = threading.Event()

    @deduped()
    def load(user_id: int) -> dict[str, int]:
        runs.append(user_id)
        gate.wait(PATIENCE)
        return {"id": user_id}

    threading.Timer(0.2, gate.set).start()
    results = together(50, lambda: load(7))
    assert runs == [7]
    assert all(result == {"id": 7} for result in results)
    assert len({id(result) for result in results}) == 1  # the very same object


def test_followers_get_the_leaders_very_exception() -> None:
    """The leader's exception reaches every follower, the same object, re-raised."""
    runs: list[int] = []
    gate = threading.Event()

    @deduped()
    def load(user_id: int) -> None:
        runs.append(user_id)
        gate.wait(PATIENCE)
        raise ConnectionError("down")

    threading.Timer(0.2, gate.set).start()
    results = together(20, lambda: load(1))
    assert runs == [1]
    assert all(isinstance(result, ConnectionError) for result in results)
    assert len({id(result) for result in results}) == 1


def test_a_call_after_the_flight_landed_runs_again() -> None:
    """Deduplication only joins calls in flight: a later call runs the function itself."""
    runs: list[int] = []

    @deduped()
    def load(user_id: int) -> int:
        runs.append(user_id)
        return user_id

    assert (load(1), load(1)) == (1, 1)
    assert runs == [1, 1]


def test_ten_thousand_tasks_share_one_execution() -> None:
    """10,000 concurrent awaits of a 10 ms coroutine: one execution, one value for all."""
    runs = 0

    @deduped()
    async def rates(currency: str) -> dict[str, float]:
        nonlocal runs
        runs += 1
        await asyncio.sleep(0.01)
        return {currency: 1.08}

    async def main() -> list[dict[str, float]]:
        return await asyncio.gather(*(rates("USD") for _ in range(10_000)))

    results = asyncio.run(main())
    assert runs == 1
    assert all(result is results[0] for result in results)


def test_different_keys_fly_apart_and_key_says_what_is_one_call() -> None:
    """Calls with other arguments run on their own; key= can make them one flight."""
    runs: list[tuple[str, int]] = []

    @deduped()
    async def by_all(currency: str, amount: int) -> str:
        runs.append((currency, amount))
        await asyncio.sleep(0.01)
        return currency

    @deduped(key="{currency}")
    async def by_currency(currency: str, amount: int) -> str:
        runs.append((currency, -amount))
        await asyncio.sleep(0.01)
        return currency

    async def main() -> None:
        await asyncio.gather(*(by_all("EUR", amount) for amount in (1, 2, 2)))
        await asyncio.gather(*(by_currency("EUR", amount) for amount in (1, 2, 3)))

    asyncio.run(main())
    assert sorted(runs) == [("EUR", -1), ("EUR", 1), ("EUR", 2)]


def test_a_cancelled_leader_hands_the_flight_to_a_follower(log: EventLog) -> None:
    """Cancelling the leading task never cancels its followers: one of them runs instead."""
    runs = 0
    started = asyncio.Event()

    @deduped()
    async def fetch() -> str:
        nonlocal runs
        runs += 1
        started.set()
        await asyncio.sleep(0.05)
        return "fetched"

    async def main() -> tuple[Any, list[str]]:
        leader = asyncio.create_task(fetch())
        await started.wait()
        followers = [asyncio.create_task(fetch()) for _ in range(5)]
        await asyncio.sleep(0)
        leader.cancel()
        gathered = await asyncio.gather(leader, return_exceptions=True)
        return gathered[0], await asyncio.gather(*followers)

    cancelled, results = asyncio.run(main())
    assert isinstance(cancelled, asyncio.CancelledError)
    assert results == ["fetched"] * 5
    assert runs == 2
    kinds = [type(event) for event in log.events]
    assert kinds.count(DedupeTakenOver) == 1  # the follower that led next
    assert kinds.count(DedupeJoined) == 4


def test_a_cancelled_follower_leaves_the_flight_to_go_on() -> None:
    """A follower cancelled while it waits does not stop the leader or the other followers."""
    runs = 0

    @deduped()
    async def fetch() -> str:
        nonlocal runs
        runs += 1
        await asyncio.sleep(0.05)
        return "fetched"

    async def main() -> list[Any]:
        tasks = [asyncio.create_task(fetch()) for _ in range(3)]
        await asyncio.sleep(0.01)
        tasks[1].cancel()
        return await asyncio.gather(*tasks, return_exceptions=True)

    first, cancelled, third = asyncio.run(main())
    assert (first, third, runs) == ("fetched", "fetched", 1)
    assert isinstance(cancelled, asyncio.CancelledError)


def test_an_interrupted_leader_thread_releases_its_followers() -> None:
    """A leader ended by KeyboardInterrupt abandons the flight; a follower runs it instead."""
    calls = 0
    gate = threading.Event()

    @deduped()
    def work() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            gate.wait(PATIENCE)
            raise KeyboardInterrupt
        return "done"

    outcome: list[object] = []

    def lead() -> None:
        try:
            work()
        except KeyboardInterrupt as interrupt:
            outcome.append(interrupt)

    leader = threading.Thread(target=lead)
    leader.start()
    time.sleep(0.05)  # noqa: TID251 - let the leader take the flight
    follower = ThreadPoolExecutor(1).submit(work)
    time.sleep(0.05)  # noqa: TID251 - let the follower join it
    gate.set()
    leader.join(PATIENCE)
    assert follower.result(PATIENCE) == "done"
    assert isinstance(outcome[0], KeyboardInterrupt)
    assert calls == 2


def test_beyond_max_flights_calls_run_on_their_own(log: EventLog) -> None:
    """With max_flights keys in flight, a call with a new key runs directly, with an event."""
    gate = threading.Event()

    @deduped(max_flights=2)
    def work(number: int) -> int:
        gate.wait(PATIENCE)
        return number

    with ThreadPoolExecutor(3) as pool:
        running = [pool.submit(work, number) for number in (1, 2)]
        time.sleep(0.05)  # noqa: TID251 - both keys in flight
        third = pool.submit(work, 3)
        time.sleep(0.05)  # noqa: TID251
        gate.set()
        assert [future.result(PATIENCE) for future in (*running, third)] == [1, 2, 3]
    assert [event.in_flight for event in log.of(DedupeBypassed)] == [2]


def test_the_leader_and_its_followers_are_reported(log: EventLog) -> None:
    """A flight reports one dedupe.led and a dedupe.joined per follower."""

    @deduped(name="rates")
    async def rates() -> int:
        await asyncio.sleep(0.02)
        return 1

    async def main() -> None:
        await asyncio.gather(*(rates() for _ in range(4)))

    asyncio.run(main())
    assert len(log.of(DedupeLed)) == 1
    assert len(log.of(DedupeJoined)) == 3
    assert {event.policy for event in log.events} == {"rates"}


def test_methods_share_flights_across_instances_unless_the_key_says_otherwise() -> None:
    """As for @cached, self is not part of the key: instances share a flight."""
    runs: list[str] = []

    class Client:
        def __init__(self, name: str) -> None:
            self.name = name

        @deduped()
        async def get(self, path: str) -> str:
            runs.append(self.name)
            await asyncio.sleep(0.01)
            return path

    async def main() -> list[str]:
        return await asyncio.gather(Client("a").get("/x"), Client("b").get("/x"))

    assert asyncio.run(main()) == ["/x", "/x"]
    assert runs == ["a"]


def test_stacked_with_retry_and_a_breaker_it_is_one_wrapper() -> None:
    """@retry, a breaker and @deduped fuse into one wrapper around the function itself."""
    attempts = 0

    @retry(on=ConnectionError, attempts=3, wait=lambda attempt, previous: 0.0)
    @breaker("dedupe-stack")
    @deduped()
    def fetch() -> str:
        nonlocal attempts
        attempts += 1
        if attempts < 2:
            raise ConnectionError
        return "ok"

    assert fetch() == "ok"
    assert attempts == 2
    assert fetch.__wrapped__.__name__ == "fetch"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        (lambda: deduped(keys="x"), TypeError, "unknown keyword 'keys'"),  # type: ignore[call-arg]
        (lambda: deduped(key=3), TypeError, "key=3 must be a template"),  # type: ignore[arg-type]
        (lambda: deduped(max_flights=0), ValueError, "positive int"),
        (lambda: deduped("x"), TypeError, "takes a DedupePolicy"),  # type: ignore[arg-type]
        (lambda: deduped(key="{nope}")(lambda currency: currency), ValueError, "not a template"),
    ],
)
def test_bad_settings_fail_at_decoration(make: Any, error: type[Exception], message: str) -> None:
    """Nonsense settings raise at once, saying what to write instead."""
    with pytest.raises(error, match=message):
        make()


def test_a_policy_can_be_given_and_evolved() -> None:
    """deduped(policy, **options) evolves the policy with the keywords."""
    decorated = deduped(DedupePolicy(max_flights=5), name="evolved")(lambda: 1)
    assert decorated() == 1
