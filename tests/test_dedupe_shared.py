"""`@deduped(shared=True)` on a backend: one execution across what share it, on memory and Redis.

Two functions decorated with the same `name=` and backend are two participants of one shared
flight, as two processes would be (each has its own in-process flights); the tests with real
processes are in tests/integration/test_dedupe_redis.py.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from cache_support import PATIENCE, EventLog, eventually, pause
from redis_fixtures import Backends
from redis_infra import FaultProxyFactory, RedisServer, commands_sent

import resilient
from resilient import deduped
from resilient.backends import Locked, MemoryBackend
from resilient.backends.redis import RedisBackend
from resilient.events import BackendFailed, DedupeJoined, DedupeLed, DedupeTakenOver
from resilient.exceptions import SharedFlightError
from resilient.exceptions import TimeoutError as ResilientTimeoutError

Participants = Callable[..., tuple[Any, Any]]


@pytest.fixture(params=["memory", "redis"])
def backend(request: pytest.FixtureRequest, backends: Backends) -> Iterator[Any]:
    """The backend the flights live on: a MemoryBackend, or a real Redis."""
    if request.param == "memory":
        yield MemoryBackend()
    else:
        yield backends(request.getfixturevalue("redis_url"))


def two(function: Callable[..., Any], backend: Any, **options: Any) -> tuple[Any, Any]:
    """Decorate *function* twice, as two processes would: two participants of one flight."""
    options = {"shared": True, "backend": backend, "name": "rates", **options}
    return deduped(**options)(function), deduped(**options)(function)


def test_two_participants_share_one_execution(backend: Any, log: EventLog) -> None:
    """Threads calling either participant at once: one execution, one value for all."""
    runs: list[str] = []
    entered = threading.Event()

    def rates(currency: str) -> dict[str, float]:
        runs.append(currency)
        entered.set()
        pause(0.3)
        return {currency: 1.08}

    first, second = two(rates, backend)
    results: list[object] = []
    leader = threading.Thread(target=lambda: results.append(first("EUR")))
    leader.start()
    assert entered.wait(PATIENCE)
    others = [threading.Thread(target=lambda: results.append(second("EUR"))) for _ in range(8)]
    for thread in others:
        thread.start()
    for thread in [leader, *others]:
        thread.join()
    assert runs == ["EUR"]
    assert results == [{"EUR": 1.08}] * 9
    kinds = [type(event) for event in log.events]
    assert kinds.count(DedupeLed) == 1
    assert kinds.count(DedupeJoined) == 8  # the second's leader across, 7 behind it in-process


def test_an_exception_reaches_the_other_participant_typed(backend: Any) -> None:
    """The leader's own followers get its exception; the other participant a SharedFlightError."""
    entered = threading.Event()

    def rates(currency: str) -> float:
        entered.set()
        pause(0.2)
        raise LookupError(f"no rate for {currency}")

    first, second = two(rates, backend)
    caught: list[BaseException] = []

    def call(participant: Any) -> None:
        try:
            participant("XXX")
        except Exception as error:
            caught.append(error)

    leader = threading.Thread(target=call, args=(first,))
    leader.start()
    assert entered.wait(PATIENCE)
    call(second)
    leader.join()
    leader_error, follower_error = caught  # the leader's ends first
    assert isinstance(leader_error, LookupError)
    assert isinstance(follower_error, SharedFlightError)
    assert (follower_error.error_type, follower_error.detail) == ("LookupError", "no rate for XXX")


def test_a_cancelled_leader_leaves_the_flight_to_the_other_participant(
    backend: Any, log: EventLog
) -> None:
    """Cancelling the leading task releases its lease at once: a waiter takes over and runs."""
    runs: list[str] = []
    started: list[asyncio.Event] = []

    async def rates(currency: str) -> str:
        runs.append(currency)
        started[0].set()
        await asyncio.sleep(0.3 if len(runs) == 1 else 0)
        return f"{currency}:{len(runs)}"

    first, second = two(rates, backend, lease_ttl=PATIENCE * 2)

    async def main() -> Any:
        started.append(asyncio.Event())
        leader = asyncio.create_task(first("EUR"))
        await started[0].wait()
        follower = asyncio.create_task(second("EUR"))
        await asyncio.sleep(0.1)
        leader.cancel()
        return await asyncio.wait_for(follower, PATIENCE)  # well before the lease runs out

    assert asyncio.run(main()) == "EUR:2"
    assert [type(event) for event in log.events].count(DedupeTakenOver) == 1


class LockAttempts(RedisBackend):
    """A RedisBackend that lists the threads whose lock attempts it had answered."""

    answered: tuple[str, ...] = ()

    def lock(self, key: str, owner: str, ttl: float) -> Locked:
        locked = super().lock(key, owner, ttl)
        self.answered += (threading.current_thread().name,)
        return locked


def test_followers_of_a_leader_whose_deadline_came_wait_on(
    backends: Backends, redis_url: str
) -> None:
    """A caller without a deadline, behind one that gave up waiting for another process, waits on.

    The leader of this process's flight waits for another participant's execution until its
    deadline; the caller following it has none, so it must not get that timeout: it takes the
    lead and gets the other participant's value.
    """
    runs: list[str] = []
    entered, release = threading.Event(), threading.Event()

    def rates(currency: str) -> dict[str, float]:
        runs.append(currency)
        entered.set()
        release.wait(PATIENCE)
        return {currency: 1.08}

    counted = LockAttempts.from_url(redis_url)
    assert isinstance(counted, LockAttempts)
    options: dict[str, Any] = {"shared": True, "name": "rates", "lease_ttl": PATIENCE * 2}
    first = deduped(backend=backends(redis_url), **options)(rates)
    second = deduped(backend=counted, **options)(rates)
    impatient_thread: list[str] = []

    def impatient() -> Any:
        impatient_thread.append(threading.current_thread().name)
        with resilient.deadline(1.0):  # time for the patient caller to follow it
            return second("EUR")

    def patient_refused() -> bool:
        return any(name not in impatient_thread for name in counted.answered)

    with ThreadPoolExecutor(3) as pool:
        running = pool.submit(first, "EUR")
        assert entered.wait(PATIENCE)
        leading = pool.submit(impatient)
        assert eventually(lambda: bool(counted.answered))  # refused: it waits for the other
        patient = pool.submit(second, "EUR")
        with pytest.raises(ResilientTimeoutError):
            leading.result(PATIENCE)
        # it takes the lead, is refused in turn, and waits on for the other's execution
        assert eventually(patient_refused)
        assert not patient.done()
        release.set()
        assert running.result(PATIENCE) == {"EUR": 1.08}
        assert patient.result(PATIENCE) == {"EUR": 1.08}
    counted.close()
    assert runs == ["EUR"]


def test_a_leader_that_outlives_its_lease_ttl_is_renewed_and_not_taken_over(
    backend: Any,
) -> None:
    """A call running for 4 x lease_ttl keeps its lease: the waiter joins, never runs it too."""
    runs: list[str] = []
    entered = threading.Event()

    def rates(currency: str) -> int:
        runs.append(currency)
        entered.set()
        pause(1.2)
        return len(runs)

    first, second = two(rates, backend, lease_ttl=0.3)
    results: list[int] = []
    leader = threading.Thread(target=lambda: results.append(first("EUR")))
    leader.start()
    assert entered.wait(PATIENCE)
    results.append(second("EUR"))
    leader.join()
    assert results == [1, 1]
    assert runs == ["EUR"]


def test_a_value_the_codec_refuses_is_a_typed_error_for_the_other_participant(
    backends: Backends, redis_url: str
) -> None:
    """The leader returns its value; a participant elsewhere learns it could not be stored."""
    entered = threading.Event()

    def handle() -> object:
        entered.set()
        pause(0.2)
        return threading.Lock()  # no codec stores a lock

    first, second = two(handle, backends(redis_url))
    returned: list[object] = []
    leader = threading.Thread(target=lambda: returned.append(first()))
    leader.start()
    assert entered.wait(PATIENCE)
    with pytest.raises(SharedFlightError, match="could not be stored"):
        second()
    leader.join()
    assert len(returned) == 1


def test_a_lone_call_costs_two_commands(backends: Backends, fresh_redis: RedisServer) -> None:
    """Leading a flight nobody joins: one command takes the lease, one stores the outcome."""
    rates = deduped(shared=True, backend=backends(fresh_redis.url), name="lone")(lambda: 1.08)
    assert rates() == 1.08  # connected, and the scripts loaded
    with commands_sent(fresh_redis.url) as sent:
        assert rates() == 1.08
    assert sent == ["EVALSHA", "EVALSHA"]


def test_an_unreachable_backend_runs_the_call_alone_and_says_so(
    backends: Backends, redis_url: str, fault_proxy: FaultProxyFactory, log: EventLog
) -> None:
    """Single flight saves work but never blocks it: a failing backend means run it here."""
    proxy = fault_proxy(int(redis_url.rsplit(":", 1)[1].split("/", maxsplit=1)[0]))
    rates = deduped(shared=True, backend=backends(proxy.url), name="down")(lambda: 1.08)
    proxy.reset()
    assert rates() == 1.08
    failed = [event for event in log.events if isinstance(event, BackendFailed)]
    assert [event.operation for event in failed] == ["lock"]


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"backend": MemoryBackend()}, ValueError, "add shared=True"),
        ({"shared": True, "backend": object()}, TypeError, "lacks lock, unlock"),
        ({"shared": True, "lease_ttl": 0}, ValueError, "lease_ttl=0 must be more than zero"),
        ({"shared": "yes"}, TypeError, "'shared' must be <class 'bool'>"),
    ],
)
def test_bad_shared_settings_fail_at_decoration(
    options: dict[str, Any], error: type[Exception], message: str
) -> None:
    """Nonsense shared settings raise when decorating, saying what is wrong."""
    with pytest.raises(error, match=message):
        deduped(**options)


def test_the_configured_backend_is_used_by_default(log: EventLog) -> None:
    """shared=True without backend= uses the configured backend (memory by default)."""
    resilient.configure(backend=MemoryBackend())
    rates = deduped(shared=True)(lambda currency: {currency: 1.08})
    assert rates("EUR") == {"EUR": 1.08}
    assert [type(event) for event in log.events] == [DedupeLed]
