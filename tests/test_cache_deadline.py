"""@cached under a caller's deadline: a wait for a value being computed stops at the deadline."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
from cache_support import PATIENCE, EventLog, eventually, run, running
from redis_fixtures import Backends

from resilient import CacheStatus, cache_status, cached, deadline
from resilient.events import CacheHit, CacheMissed
from resilient.exceptions import TimeoutError as ResilientTimeoutError

# The waiter's deadline, and the load it waits for: held until the test lets it finish, at
# most PATIENCE (5 s) later, so an unbounded waiter returns no sooner than that.
DEADLINE = 0.3
# A waiter that honours its deadline returns within it plus this: room for a loaded 2-core
# machine to schedule the waking thread and make a Redis round trip or two, yet far below the
# load, so a waiter that waited for the load fails.
LATE = 1.7
# A timed wait may wake this much before its time on some platforms.
EARLY = 0.02

VALUE = {"day": "monday", "total": 42}


def gave_up_in_time(elapsed: float) -> bool:
    """Whether a waiter under `deadline(DEADLINE)` waited until its deadline, and not long after."""
    return DEADLINE - EARLY <= elapsed < DEADLINE + LATE


class HeldLoad:
    """A slow load in threads: it runs until the test releases it (PATIENCE at most)."""

    def __init__(self) -> None:
        self.entered, self.release = threading.Event(), threading.Event()
        self.runs: list[str] = []

    def load(self, day: str) -> dict[str, object]:
        self.runs.append(day)
        self.entered.set()
        self.release.wait(PATIENCE)
        return {"day": day, "total": 42}


# --- one process: waiting for another thread or task ---------------------------------------------


def test_a_thread_waiting_for_a_value_stops_at_its_deadline(log: EventLog) -> None:
    """A waiter gives up at its deadline with TimeoutError; the load goes on and is stored.

    A patient waiter of the same load still gets its value, and the next call is a hit.
    """
    held = HeldLoad()
    report = cached(ttl=60)(held.load)

    def briefly() -> dict[str, object]:
        with deadline(DEADLINE):
            return report("monday")

    with ThreadPoolExecutor(2) as pool:
        loading = pool.submit(report, "monday")
        assert held.entered.wait(PATIENCE)
        patient = pool.submit(report, "monday")
        begin = time.monotonic()
        with pytest.raises(ResilientTimeoutError) as raised:
            briefly()
        elapsed = time.monotonic() - begin
        assert not loading.done()
        held.release.set()
        assert loading.result(PATIENCE) == VALUE
        assert patient.result(PATIENCE) == VALUE
    assert gave_up_in_time(elapsed), elapsed
    assert isinstance(raised.value, TimeoutError)  # the builtin, as `@deduped` raises
    assert "its deadline" in str(raised.value)
    assert report("monday") == VALUE
    assert cache_status() is CacheStatus.HIT
    assert held.runs == ["monday"]
    # three calls answered (the loader, the patient waiter, the hit): none for the one that gave up
    assert len(log.of(CacheMissed)) + len(log.of(CacheHit)) == 3


def test_a_task_waiting_for_a_value_stops_at_its_deadline() -> None:
    """The async twin: a task gives up at its deadline; the load it waited for is stored."""
    runs: list[str] = []

    async def main() -> tuple[object, float, dict[str, object], CacheStatus | None]:
        entered, release = asyncio.Event(), asyncio.Event()

        @cached(ttl=60)
        async def report(day: str) -> dict[str, object]:
            runs.append(day)
            entered.set()
            await asyncio.wait_for(release.wait(), PATIENCE)
            return {"day": day, "total": 42}

        async def briefly() -> dict[str, object]:
            async with deadline(DEADLINE):
                return await report("monday")

        loading = asyncio.create_task(report("monday"))
        await entered.wait()
        begin = time.monotonic()
        [outcome] = await asyncio.gather(briefly(), return_exceptions=True)
        elapsed = time.monotonic() - begin
        assert not loading.done()
        release.set()
        assert await loading == VALUE
        return outcome, elapsed, await report("monday"), cache_status()

    outcome, elapsed, value, status = run(main())
    assert isinstance(outcome, ResilientTimeoutError), outcome
    assert gave_up_in_time(elapsed), elapsed
    assert (value, status) == (VALUE, CacheStatus.HIT)
    assert runs == ["monday"]


# --- Redis: waiting for another process ----------------------------------------------------------

LOADER = """
import sys

import redis

import resilient
from resilient.backends.redis import RedisBackend

url = sys.argv[1]
backend = RedisBackend.from_url(url)
plain = redis.Redis.from_url(url)


@resilient.cached(ttl=60, name="report", backend=backend)
def report(day: str) -> dict:
    plain.incr("executions")  # counted in Redis, where the test reads it
    plain.rpush("entered", "1")
    plain.blpop(["go"], timeout=5)  # a slow load: 5 s, unless the test lets it end sooner
    return {"day": day, "total": 42}


report("monday")
backend.close()
plain.close()
"""


def test_a_caller_waiting_for_another_process_stops_at_its_deadline(
    redis_url: str, backends: Backends, client: redis.Redis
) -> None:
    """Waiting for another process's claim ends at the deadline; its value is stored after."""
    runs: list[str] = []

    @cached(ttl=60, name="report", backend=backends(redis_url))
    def report(day: str) -> dict[str, object]:
        runs.append(day)
        return {"day": day, "total": 0}

    def briefly() -> dict[str, object]:
        with deadline(DEADLINE):
            return report("monday")

    with running(LOADER, redis_url) as loader:
        assert client.blpop(["entered"], timeout=30) is not None  # it holds the claim
        begin = time.monotonic()
        with pytest.raises(ResilientTimeoutError):
            briefly()
        elapsed = time.monotonic() - begin
        assert loader.poll() is None  # still loading
        client.rpush("go", "go")
        assert loader.wait(30) == 0
    assert gave_up_in_time(elapsed), elapsed
    assert report("monday") == VALUE
    assert cache_status() is CacheStatus.HIT
    assert runs == []
    assert int(client.get("executions") or 0) == 1


def test_a_task_waiting_for_another_process_stops_at_its_deadline(
    redis_url: str, backends: Backends
) -> None:
    """The async twin, the value computed through another backend in another thread."""
    held = HeldLoad()

    async def never(day: str) -> dict[str, object]:
        held.runs.append(f"{day} again")
        return {"day": day, "total": 0}

    loader = cached(ttl=60, name="report", backend=backends(redis_url))(held.load)
    report = cached(ttl=60, name="report", backend=backends(redis_url))(never)

    async def briefly() -> dict[str, object]:
        async with deadline(DEADLINE):
            return await report("monday")

    async def afterwards() -> tuple[dict[str, object], CacheStatus | None]:
        return await report("monday"), cache_status()

    with ThreadPoolExecutor(1) as pool:
        loading = pool.submit(loader, "monday")
        assert held.entered.wait(PATIENCE)
        begin = time.monotonic()
        with pytest.raises(ResilientTimeoutError):
            run(briefly())
        elapsed = time.monotonic() - begin
        assert not loading.done()
        held.release.set()
        assert loading.result(PATIENCE) == VALUE
    assert gave_up_in_time(elapsed), elapsed
    assert run(afterwards()) == (VALUE, CacheStatus.HIT)
    assert held.runs == ["monday"]


def test_followers_of_a_leader_whose_deadline_came_wait_on(
    redis_url: str, backends: Backends, client: redis.Redis
) -> None:
    """A caller without a deadline, waiting behind one that gave up, never gets its timeout."""
    held = HeldLoad()

    def never(day: str) -> dict[str, object]:
        held.runs.append(f"{day} again")
        return {"day": day, "total": 0}

    loader = cached(ttl=60, name="report", backend=backends(redis_url))(held.load)
    report = cached(ttl=60, name="report", backend=backends(redis_url))(never)

    def impatient() -> dict[str, object]:
        with deadline(1.0):  # time for the patient caller to follow it
            return report("monday")

    with ThreadPoolExecutor(3) as pool:
        loading = pool.submit(loader, "monday")
        assert held.entered.wait(PATIENCE)
        leading = pool.submit(impatient)
        # it waits for the claim's release once it listens on the claim's channel
        assert eventually(lambda: bool(client.pubsub_channels("*report*")))
        patient = pool.submit(report, "monday")
        with pytest.raises(ResilientTimeoutError):
            leading.result(PATIENCE)
        assert not patient.done()  # it waits on, for the load
        held.release.set()
        assert loading.result(PATIENCE) == VALUE
        assert patient.result(PATIENCE) == VALUE
    assert held.runs == ["monday"]
