"""A release re-sent after a connection error is not a lease lost.

redis-py sends a command again when its connection breaks while it waits for the reply. When
the first run released the lock (or gave the slot back), the second finds nothing: without the
release's receipt the holder was told it lost a lease that it gave back itself. A FaultProxy
between the backend and a real Redis drops the release's reply, then the server closes the
connection, so that redis-py re-sends it.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import redis
from cache_support import PATIENCE, EventLog, eventually, pause
from redis_fixtures import Backends
from redis_infra import FaultProxy

import resilient
from resilient import Lock
from resilient.backends.redis import RedisBackend
from resilient.events import LockLost, LockReleased
from resilient.exceptions import LockLostError

SOCKET_TIMEOUT = 2.0  # seconds the client waits for the dropped reply: the kill comes first
REPLY_DROPPED = 0.1  # seconds the proxy goes on dropping replies after the release ran
IN_LOOP = pytest.mark.parametrize("in_loop", [False, True], ids=["sync", "async"])

_names = itertools.count()


def fresh_name(prefix: str) -> str:
    """Return a lock or bulkhead name no other test uses."""
    return f"{prefix}-{next(_names)}"


@pytest.fixture
def server(redis_url: str) -> redis.Redis:
    """A plain client of the shared server, to look behind the backend's back."""
    return redis.Redis.from_url(redis_url)


@pytest.fixture
def proxied(proxy: FaultProxy, backends: Backends) -> RedisBackend:
    """A backend reaching the shared server through the proxy."""
    return backends(proxy.url, socket_timeout=SOCKET_TIMEOUT)


def release_resent(
    proxy: FaultProxy,
    server: redis.Redis,
    hold: Callable[[threading.Event, threading.Event], Any],
    released: Callable[[], bool],
    meanwhile: Callable[[], object] = list,
) -> Any:
    """Run *hold* in a thread: it takes its lease, sets its first event and releases once the
    second is set. Its release's reply is dropped; once the server shows it *released* (and
    *meanwhile* ran), the server closes every connection, and redis-py re-sends the release.
    Return what *hold* did.
    """
    ready, go = threading.Event(), threading.Event()
    with ThreadPoolExecutor(1) as pool:
        outcome = pool.submit(hold, ready, go)
        assert ready.wait(PATIENCE)
        proxy.drop_replies()
        go.set()
        assert eventually(released), server.keys("*")  # the release ran; its reply is dropped
        pause(REPLY_DROPPED)  # for the proxy's thread to read the reply and drop it
        meanwhile()
        proxy.heal()
        server.client_kill_filter(_type="normal", skipme=True)
        return outcome.result(timeout=PATIENCE)


def hold_lock(guard: Lock, ready: threading.Event, go: threading.Event) -> bool:
    """Hold *guard* from this thread for `release_resent`; return whether its lease was lost."""
    with guard:  # connect and load the scripts through the healthy proxy
        pass
    with guard as lease:
        ready.set()
        go.wait(PATIENCE)
    return lease.lost


@IN_LOOP
def test_a_lock_release_re_sent_after_it_ran_is_not_a_lost_lease(
    in_loop: bool, proxy: FaultProxy, proxied: RedisBackend, server: redis.Redis, log: EventLog
) -> None:
    """UNLOCK ran, its reply and connection were lost: leaving the block releases, no loss."""
    guard = resilient.lock(fresh_name("resent"), ttl=30, backend=proxied)
    claim = guard._key() + ":claim"

    async def hold_async(ready: threading.Event, go: threading.Event) -> bool:
        async with guard:
            pass
        async with guard as lease:
            ready.set()
            await asyncio.to_thread(go.wait, PATIENCE)
        return lease.lost

    def hold(ready: threading.Event, go: threading.Event) -> bool:
        return asyncio.run(hold_async(ready, go)) if in_loop else hold_lock(guard, ready, go)

    lost = release_resent(proxy, server, hold, lambda: server.get(claim) is None)
    assert lost is False  # and leaving did not raise LockLostError
    assert log.of(LockLost) == []
    assert len(log.of(LockReleased)) == 2  # the block that loaded the scripts, and this one


def test_a_re_sent_release_is_known_after_another_holder_came_and_went(
    proxy: FaultProxy,
    proxied: RedisBackend,
    server: redis.Redis,
    backends: Backends,
    redis_url: str,
    log: EventLog,
) -> None:
    """Another process takes the lock and releases it before the re-send: still no loss."""
    name = fresh_name("between")
    guard = resilient.lock(name, ttl=30, backend=proxied)
    other = resilient.lock(name, ttl=30, backend=backends(redis_url))
    claim = guard._key() + ":claim"

    def another_holder() -> None:
        with other:  # its release keeps a receipt of its own
            pass

    hold = functools.partial(hold_lock, guard)
    lost = release_resent(proxy, server, hold, lambda: server.get(claim) is None, another_holder)
    assert lost is False
    assert log.of(LockLost) == []
    assert len(log.of(LockReleased)) == 3  # ours twice, and the other holder's


def test_a_lock_released_by_another_is_still_lost(
    proxied: RedisBackend, server: redis.Redis, log: EventLog
) -> None:
    """An operator's release (the same token-checked unlock) is a loss the holder hears of."""
    guard = resilient.lock(fresh_name("forced"), ttl=30, backend=proxied)
    lease = guard.__enter__()
    assert proxied.unlock(guard._key(), lease.owner)  # what Admin.release_lock sends
    with pytest.raises(LockLostError):
        guard.__exit__(None, None, None)
    assert len(log.of(LockLost)) == 1


@IN_LOOP
def test_a_slot_release_re_sent_after_it_ran_is_not_a_lost_lease(
    in_loop: bool, proxy: FaultProxy, proxied: RedisBackend, server: redis.Redis, log: EventLog
) -> None:
    """The slot's release ran, its reply and connection were lost: the call returns, no loss."""
    name = fresh_name("resent-slots")
    holders = f"resilient:bulkhead:{{{name}}}:slots"
    shared = resilient.bulkhead(max_concurrent=1, shared=True, backend=proxied, name=name)

    def hold(ready: threading.Event, go: threading.Event) -> str:
        @shared
        def call() -> str:
            ready.set()
            go.wait(PATIENCE)
            return "done"

        @shared
        async def acall() -> str:
            ready.set()
            await asyncio.to_thread(go.wait, PATIENCE)
            return "done"

        return asyncio.run(acall()) if in_loop else call()

    # every lease scores its expiry (positive), a release's receipt minus its own
    outcome = release_resent(proxy, server, hold, lambda: server.zcount(holders, 0, "+inf") == 0)
    assert outcome == "done"
    assert log.of(LockLost) == []
    assert proxied.acquire_slot(f"resilient:bulkhead:{{{name}}}", "next", 1, 30)  # it is free
