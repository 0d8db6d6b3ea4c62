"""The lease renewer renews the leases due together in one round: one call per backend.

Behind a slow link, renewing N leases one after another costs N round trips; past a short
TTL's margin the leases run out although their holders are alive. A backend that extends many
leases at once (resilient.typing.Extender: MemoryBackend, RedisBackend) gets one call a round.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
import redis
from cache_support import EventLog, eventually, pause
from redis_infra import FaultProxyFactory, RedisServer

from resilient import Lease, lock
from resilient.backends import MemoryBackend
from resilient.backends.redis import RedisBackend
from resilient.events import BackendFailed, LockLost, LockRenewed
from resilient.exceptions import LockLostError
from resilient.typing import Extender

_names = itertools.count()
HELD = 20  # leases held at once


def fresh_name() -> str:
    """Return a lock name no other test uses."""
    return f"round-{next(_names)}"


def renewer_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "resilient-renewer"]


class _Counting:
    """Records each call of a backend's extend and the size of each extend_many."""

    def __init__(self) -> None:
        self.extends = 0
        self.batches: list[int] = []
        self.counting = threading.Lock()

    def counted_extend(self) -> None:
        with self.counting:
            self.extends += 1

    def counted_batch(self, leases: Sequence[object]) -> None:
        with self.counting:
            self.batches.append(len(leases))


class CountingMemory(MemoryBackend):
    """A MemoryBackend that counts its extends (its async methods call the sync ones)."""

    def __init__(self) -> None:
        super().__init__()
        self.count = _Counting()

    def extend(self, key: str, owner: str, ttl: float) -> bool:
        self.count.counted_extend()
        return super().extend(key, owner, ttl)

    def extend_many(self, leases: Sequence[tuple[str, str, float]]) -> list[bool | Exception]:
        self.count.counted_batch(leases)
        return super().extend_many(leases)


class CountingRedis(RedisBackend):
    """A RedisBackend that counts its extends, sync and async: one count, one round trip."""

    count: _Counting

    def extend(self, key: str, owner: str, ttl: float) -> bool:
        self.count.counted_extend()
        return super().extend(key, owner, ttl)

    async def aextend(self, key: str, owner: str, ttl: float) -> bool:
        self.count.counted_extend()
        return await super().aextend(key, owner, ttl)

    def extend_many(self, leases: Sequence[tuple[str, str, float]]) -> list[bool | Exception]:
        self.count.counted_batch(leases)
        return super().extend_many(leases)

    async def aextend_many(
        self, leases: Sequence[tuple[str, str, float]]
    ) -> list[bool | Exception]:
        self.count.counted_batch(leases)
        return await super().aextend_many(leases)


class PlainBackend:
    """A backend with the lock primitives only, as a user's own may be: no extend_many."""

    def __init__(self) -> None:
        self.memory = MemoryBackend()
        self.extends = 0

    def lock(self, key: str, owner: str, ttl: float) -> Any:
        return self.memory.lock(key, owner, ttl)

    def unlock(self, key: str, owner: str) -> bool:
        return self.memory.unlock(key, owner)

    def extend(self, key: str, owner: str, ttl: float) -> bool:
        self.extends += 1  # the renewer's thread only
        return self.memory.extend(key, owner, ttl)

    def wait_released(self, key: str, timeout: float) -> None:
        self.memory.wait_released(key, timeout)


@pytest.fixture(autouse=True)
def no_renewer_left() -> Iterator[None]:
    """Every test leaves no renewer thread behind."""
    yield
    assert eventually(lambda: not renewer_threads())


def counting_redis(url: str) -> CountingRedis:
    backend = CountingRedis.from_url(url)
    assert isinstance(backend, CountingRedis)
    backend.count = _Counting()
    return backend


def hold_in_thread(
    backend: object,
    ttl: float,
    seconds: float,
    on_held: Callable[[], object] = list,
    *,
    on_taken: Callable[[], object] = list,
) -> list[Lease]:
    """Hold HELD renewed locks in this thread for *seconds*; return their leases, released.

    *on_taken* is called once every lease is taken, and *on_held* with every lease still held,
    before any is released (releases one after another leave fewer leases to the rounds that
    follow).
    """
    with contextlib.ExitStack() as stack:
        leases = [
            stack.enter_context(lock(fresh_name(), ttl=ttl, renew=True, backend=backend))
            for _ in range(HELD)
        ]
        on_taken()
        pause(seconds)
        on_held()
        assert [lease for lease in leases if lease.lost] == []
    return leases


async def hold_in_tasks(
    backend: object,
    ttl: float,
    seconds: float,
    on_held: Callable[[], object] = list,
    *,
    on_taken: Callable[[], object] = list,
) -> list[Lease]:
    """Hold HELD renewed locks in as many tasks for *seconds* (see :func:`hold_in_thread`)."""
    taken: list[Lease] = []
    all_taken = asyncio.Event()
    leave = asyncio.Event()

    async def hold() -> None:
        async with lock(fresh_name(), ttl=ttl, renew=True, backend=backend) as lease:
            taken.append(lease)
            if len(taken) == HELD:
                all_taken.set()
            await leave.wait()
            assert not lease.lost

    holders = [asyncio.create_task(hold()) for _ in range(HELD)]
    await all_taken.wait()
    on_taken()
    await asyncio.sleep(seconds)
    on_held()
    leave.set()
    await asyncio.gather(*holders)
    return taken


# one call a round ------------------------------------------------------------------------------

MEMORY_TTL = 0.9  # real seconds: rounds every 0.3 s


def test_twenty_leases_held_in_a_thread_are_renewed_in_one_call_a_round(log: EventLog) -> None:
    """Every round renews the 20 leases with one extend_many of 20; no extend one by one."""
    backend = CountingMemory()
    batches: list[int] = []
    hold_in_thread(backend, MEMORY_TTL, 1.0, lambda: batches.extend(backend.count.batches))
    assert backend.count.extends == 0
    assert len(batches) >= 3
    assert set(batches) == {HELD}
    assert len(log.of(LockRenewed)) == sum(backend.count.batches)


def test_twenty_leases_held_by_tasks_are_renewed_in_one_call_a_round(log: EventLog) -> None:
    """The same for async holders, served by their event loop's renewer task."""
    backend = CountingMemory()
    batches: list[int] = []
    asyncio.run(
        hold_in_tasks(backend, MEMORY_TTL, 1.0, lambda: batches.extend(backend.count.batches))
    )
    assert backend.count.extends == 0
    assert len(batches) >= 3
    assert set(batches) == {HELD}


def test_a_backend_without_extend_many_still_renews_each_lease(log: EventLog) -> None:
    """A backend that is no Extender gets one extend per lease, and keeps every lease alive."""
    backend = PlainBackend()
    assert not isinstance(backend, Extender)
    hold_in_thread(backend, MEMORY_TTL, 1.0)
    rounds = len(log.of(LockRenewed)) // HELD
    assert rounds >= 3
    assert backend.extends == len(log.of(LockRenewed))


# Redis behind a slow link ----------------------------------------------------------------------

SLOW_TTL = 1.2  # seconds: renewals every 0.4 s
LATENCY = 0.05  # seconds each way: a round trip of 0.1 s or more; 20 in a row, 2 s > SLOW_TTL


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_leases_behind_a_slow_link_outlive_several_ttls_one_round_trip_a_round(
    mode: str, redis_server: RedisServer, fault_proxy: FaultProxyFactory, log: EventLog
) -> None:
    """20 leases on Redis behind 0.1 s round trips, held for 3 TTLs: none lost, and each
    round is one pipelined round trip of 20 extends; one after another, a round would take
    longer than the TTL."""
    proxy = fault_proxy(redis_server.port)
    backend = counting_redis(proxy.url)
    batches: list[int] = []

    def slowed() -> None:  # the leases were taken at full speed
        proxy.latency(LATENCY)

    def held() -> None:
        batches.extend(backend.count.batches)

    try:
        if mode == "sync":
            leases = hold_in_thread(backend, SLOW_TTL, 3 * SLOW_TTL, held, on_taken=slowed)
        else:
            leases = asyncio.run(
                hold_in_tasks(backend, SLOW_TTL, 3 * SLOW_TTL, held, on_taken=slowed)
            )
    finally:
        backend.close()
    assert [lease for lease in leases if lease.lost] == []
    assert log.of(LockLost) == []
    assert backend.count.extends == 0
    assert len(batches) >= 5
    assert set(batches) == {HELD}


# one lease failing -----------------------------------------------------------------------------

ERROR_TTL = 0.6  # seconds: renewals every 0.2 s


def test_an_error_on_one_lease_loses_only_that_lease(
    redis_url: str, client: redis.Redis, log: EventLog
) -> None:
    """A lease whose extend fails on its own (its key turned into a hash) is reported and lost
    at its term; the 19 renewed with it in the same calls stay held."""
    backend = counting_redis(redis_url)
    guards = [lock(fresh_name(), ttl=ERROR_TTL, renew=True, backend=backend) for _ in range(HELD)]
    try:
        leases = [guard.__enter__() for guard in guards]
        broken, *others = leases
        claim = guards[0]._key() + ":claim"
        client.delete(claim)
        client.hset(claim, "not", "a lock")
        assert eventually(lambda: broken.lost, 2 * ERROR_TTL)
        pause(2 * ERROR_TTL)
        assert [lease for lease in others if lease.lost] == []
        batches = list(backend.count.batches)  # before releases leave fewer leases to renew
        for guard in guards[1:]:
            guard.__exit__(None, None, None)
        with pytest.raises(LockLostError):
            guards[0].__exit__(None, None, None)
    finally:
        backend.close()
    failed = [event for event in log.of(BackendFailed) if event.operation == "extend"]
    assert failed
    assert {event.policy for event in failed} == {broken.name}
    assert [event.policy for event in log.of(LockLost)] == [broken.name]
    assert set(batches) == {HELD, HELD - 1}  # the 19 together, once it was lost


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_extend_many_after_script_flush_loads_the_script_again(
    mode: str, redis_url: str, client: redis.Redis
) -> None:
    """A server that forgot the EXTEND script (SCRIPT FLUSH, a restart) still extends."""
    backend = RedisBackend.from_url(redis_url)
    try:
        leases = [(f"flushed:{{{index}}}", "owner", 30.0) for index in range(3)]
        for key, owner, ttl in leases:
            assert backend.lock(key, owner, ttl).token is not None
        client.script_flush()
        if mode == "sync":
            outcomes = backend.extend_many([*leases, ("flushed:{none}", "owner", 30.0)])
        else:
            outcomes = asyncio.run(
                backend.aextend_many([*leases, ("flushed:{none}", "owner", 30.0)])
            )
    finally:
        backend.close()
    assert outcomes == [True, True, True, False]
