"""@cached(local_ttl=...): a local tier in front of real Redis, kept coherent across processes."""

from __future__ import annotations

import asyncio
import gc
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis
import redis.asyncio
from cache_support import PATIENCE, EventLog, eventually, pause, python_processes, run
from redis_fixtures import Backends
from redis_infra import FaultProxyFactory, RedisServer, commands_sent

import resilient
from resilient import CacheStatus, ainvalidate_tags, cache_status, cached, invalidate_tags
from resilient.backends import MemoryBackend
from resilient.backends.redis import RedisBackend
from resilient.events import BackendFailed, CacheHit

# Real seconds the tests give an invalidation to reach another backend's listener thread.
DELIVERY = 1.0


def data_commands(names: list[str]) -> list[str]:
    """The commands of a MONITOR list but the pub/sub listener's PINGs (one a second)."""
    return [name for name in names if name != "PING"]


class Versions:
    """A function whose result is a version a test bumps: what a stale copy would show."""

    def __init__(self) -> None:
        self.version = 0
        self.runs = 0

    def __call__(self, item: int) -> dict[str, int]:
        self.runs += 1
        return {"item": item, "version": self.version}


def warm(function: Callable[..., Any], *args: Any) -> None:
    """Call *function* until the call is answered by the local tier (its subscription live)."""

    def answered_locally() -> bool:
        function(*args)
        return cache_status() is CacheStatus.HIT and local_copies(function) > 0

    assert eventually(answered_locally), "the local tier never took a value"


def local_copies(function: Any) -> int:
    """How many values the cached *function* holds in its local tier."""
    for step in function._self_steps:
        local = getattr(getattr(step, "__self__", None), "local", None)
        if local is not None:
            return len(local.store.data)
    return 0


def on_each(backends: list[RedisBackend], **options: Any) -> tuple[Versions, list[Any]]:
    """One Versions function cached with a local tier on each backend, as in two processes."""
    versions = Versions()
    options = {"ttl": 60, "local_ttl": 60, "name": "versions", **options}
    return versions, [cached(backend=backend, **options)(versions) for backend in backends]


# --- answering from process memory ------------------------------------------------------------


def test_local_hits_send_no_command_to_redis(
    redis_url: str, backends: Backends, client: redis.Redis
) -> None:
    """Once a value is held locally, calls are hits that cost Redis not a single command."""
    log = EventLog()
    resilient.configure(observers=[log])
    versions, (versioned,) = on_each([backends(redis_url)])
    warm(versioned, 1)
    with commands_sent(redis_url) as sent:
        for _ in range(200):
            assert versioned(1) == {"item": 1, "version": 0}
            assert cache_status() is CacheStatus.HIT
    assert data_commands(sent) == []
    assert versions.runs == 1
    assert len(log.of(CacheHit)) >= 200


def test_async_functions_use_the_local_tier_too(
    redis_url: str, backends: Backends, client: redis.Redis
) -> None:
    """An async cached function is answered from the local tier without awaiting Redis."""
    runs: list[int] = []

    @cached(ttl=60, local_ttl=60, backend=backends(redis_url), name="arates")
    async def rates(currency: str) -> float:
        runs.append(1)
        return 1.1

    async def until_local() -> None:
        for _ in range(500):
            await rates("EUR")
            if cache_status() is CacheStatus.HIT and local_copies(rates):
                return
            await asyncio.sleep(0.01)
        raise AssertionError("the local tier never took a value")

    async def main() -> list[tuple[float, CacheStatus | None]]:
        await until_local()
        with commands_sent(redis_url) as sent:
            calls = [(await rates("EUR"), cache_status()) for _ in range(50)]
        assert data_commands(sent) == []
        return calls

    assert run(main()) == [(1.1, CacheStatus.HIT)] * 50
    assert runs == [1]


def test_a_local_copy_lives_at_most_local_ttl(
    redis_url: str, backends: Backends, client: redis.Redis
) -> None:
    """After local_ttl the next call reads Redis again (one command), then is local again."""
    versions, (versioned,) = on_each([backends(redis_url)], local_ttl=0.3)
    warm(versioned, 1)
    pause(0.4)
    with commands_sent(redis_url) as sent:
        versioned(1)
        assert cache_status() is CacheStatus.HIT
        versioned(1)
    assert data_commands(sent) == ["EVALSHA"]  # the first read, kept again for the second
    assert versions.runs == 1


def test_a_local_copy_never_outlives_the_freshness_of_the_value(
    redis_url: str, backends: Backends
) -> None:
    """With ttl shorter than local_ttl, the local copy ends with ttl and the value is recomputed."""
    versions, (versioned,) = on_each([backends(redis_url)], ttl=0.4, local_ttl=60, early_refresh=0)
    warm(versioned, 1)
    versions.version = 1
    pause(0.5)
    assert versioned(1) == {"item": 1, "version": 1}
    assert cache_status() is CacheStatus.MISS


# --- invalidation reaches every process ---------------------------------------------------------


def test_invalidate_drops_the_local_copy_of_every_process(
    redis_url: str, backends: Backends
) -> None:
    """f.invalidate(x) in one process: the other's local copy of x goes, its other copies stay."""
    versions, (first, second) = on_each([backends(redis_url), backends(redis_url)])
    warm(first, 1)
    warm(first, 2)
    versions.version = 1
    second.invalidate(1)
    assert eventually(lambda: local_copies(first) == 1, DELIVERY)
    assert first(1) == {"item": 1, "version": 1}
    assert first(2) == {"item": 2, "version": 0}
    assert cache_status() is CacheStatus.HIT


def test_invalidate_in_the_same_process_is_seen_at_once(redis_url: str, backends: Backends) -> None:
    """The invalidating process never serves its own old copy, not even before the echo."""
    versions, (versioned,) = on_each([backends(redis_url)])
    warm(versioned, 1)
    versions.version = 1
    versioned.invalidate(1)
    assert versioned(1) == {"item": 1, "version": 1}
    assert cache_status() is CacheStatus.MISS


def test_invalidate_all_drops_every_local_copy_of_that_function(
    redis_url: str, backends: Backends
) -> None:
    """invalidate_all() in one process empties the other's local tier of that function only."""
    versions, (first, second) = on_each([backends(redis_url), backends(redis_url)])
    others, (other,) = on_each([first_backend_of(first)], name="others")
    warm(first, 1)
    warm(first, 2)
    warm(other, 1)
    versions.version = others.version = 1
    second.invalidate_all()
    assert eventually(lambda: local_copies(first) == 0, DELIVERY)
    assert first(2) == {"item": 2, "version": 1}
    assert other(1) == {"item": 1, "version": 0}
    assert cache_status() is CacheStatus.HIT


def first_backend_of(function: Any) -> RedisBackend:
    """The backend a cached function was decorated with."""
    for step in function._self_steps:
        owner = getattr(step, "__self__", None)
        if owner is not None:
            backend: RedisBackend = owner.policy.backend
            return backend
    raise AssertionError("not a cached function")


def test_tags_drop_local_copies_in_every_process(redis_url: str, backends: Backends) -> None:
    """invalidate_tags() through one backend drops the tagged copies held by another."""
    one, two = backends(redis_url), backends(redis_url)
    versions, (first, _) = on_each([one, two], tags=["item:{item}"])
    warm(first, 1)
    warm(first, 2)
    versions.version = 1
    assert invalidate_tags("item:1", backend=two) == 1
    assert eventually(lambda: local_copies(first) == 1, DELIVERY)
    assert first(1) == {"item": 1, "version": 1}
    assert first(2) == {"item": 2, "version": 0}


def test_async_invalidation_reaches_other_processes(redis_url: str, backends: Backends) -> None:
    """ainvalidate() and ainvalidate_tags() publish to the other processes as well."""
    one, two = backends(redis_url), backends(redis_url)
    versions, (first, second) = on_each([one, two], tags=["all-items"])
    warm(first, 1)
    warm(first, 2)
    versions.version = 1

    async def main() -> None:
        await second.ainvalidate(1)
        assert eventually(lambda: local_copies(first) == 1, DELIVERY)
        assert await ainvalidate_tags("all-items", backend=two) == 1
        assert eventually(lambda: local_copies(first) == 0, DELIVERY)

    run(main())
    assert [first(1), first(2)] == [{"item": 1, "version": 1}, {"item": 2, "version": 1}]


def test_an_invalidation_racing_reads_never_leaves_an_old_copy(
    redis_url: str, backends: Backends
) -> None:
    """Readers in one process and invalidations in another: no old copy survives an invalidation.

    A read that began before an invalidation may return the old value, but must not keep it:
    after the last invalidation has been delivered, every reader sees the last version at once,
    though local_ttl would let an old copy live for a minute.
    """
    versions, (reader, writer) = on_each([backends(redis_url), backends(redis_url)])
    warm(reader, 1)
    stop = threading.Event()
    errors: list[BaseException] = []

    def read() -> None:
        try:
            while not stop.is_set():
                reader(1)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=read) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        for version in range(1, 150):
            versions.version = version
            writer.invalidate(1)
            pause(0.002)
    finally:
        stop.set()
        for thread in threads:
            thread.join(PATIENCE)
    assert not errors
    final = {"item": 1, "version": 149}
    assert eventually(lambda: reader(1) == final, DELIVERY)
    assert all(reader(1) == final for _ in range(100))


PROCESS_SCRIPT = """
import json, sys, time
import redis, resilient
from resilient.backends.redis import RedisBackend

url = sys.argv[1]
plain = redis.Redis.from_url(url)
backend = RedisBackend.from_url(url)

@resilient.cached(ttl=60, local_ttl=60, backend=backend, name="shared-version")
def current(item: int) -> int:
    return int(plain.get("version") or 0)

seen = [current(1)]
plain.incr("ready")
deadline = time.monotonic() + 20
while time.monotonic() < deadline and seen[-1] != 2:
    seen.append(current(1))
    time.sleep(0.005)
print(json.dumps({"last": seen[-1], "versions": sorted(set(seen))}))
backend.close()
"""


def test_real_processes_see_an_invalidation_from_another_process(
    redis_url: str, client: redis.Redis, backends: Backends
) -> None:
    """Two reader processes holding a local copy see the new value after this one invalidates."""
    with python_processes(PROCESS_SCRIPT, redis_url, count=2) as results:
        assert eventually(lambda: int(client.get("ready") or 0) == 2, 30)
        pause(0.5)  # the readers' subscriptions go live and their copies are local
        client.set("version", 2)

        @cached(ttl=60, local_ttl=60, backend=backends(redis_url), name="shared-version")
        def current(item: int) -> int:
            return 0

        current.invalidate(1)
    assert results == [{"last": 2, "versions": [0, 2]}] * 2


def test_invalidations_reach_local_tiers_on_a_cluster(redis_cluster_url: str) -> None:
    """On a Redis Cluster, keys in many slots: one process's invalidations reach the other's."""
    one, two = RedisBackend.cluster(redis_cluster_url), RedisBackend.cluster(redis_cluster_url)
    try:
        versions, (first, second) = on_each([one, two], tags=["item:{item}"])
        for item in range(8):
            warm(first, item)
        versions.version = 1
        second.invalidate(0)
        assert invalidate_tags("item:1", backend=two) == 1
        assert eventually(lambda: local_copies(first) == 6, DELIVERY)
        assert [first(item)["version"] for item in range(8)] == [1, 1, 0, 0, 0, 0, 0, 0]
        second.invalidate_all()
        assert eventually(lambda: local_copies(first) == 0, DELIVERY)
        assert first(5) == {"item": 5, "version": 1}
    finally:
        one.close()
        two.close()


# --- a lost subscription -------------------------------------------------------------------------


def test_a_killed_redis_empties_the_local_tier_and_it_fills_again_after_restart(
    fresh_redis: RedisServer, backends: Backends, log: EventLog
) -> None:
    """Messages may be missed while Redis is down: local copies go, and come back after."""
    _, (versioned,) = on_each([backends(fresh_redis.url)])
    warm(versioned, 1)
    fresh_redis.kill()
    assert eventually(lambda: local_copies(versioned) == 0, DELIVERY)
    log.wait_for(BackendFailed)
    lost = [event for event in log.of(BackendFailed) if event.operation == "subscribe"]
    assert [(event.policy, event.backend) for event in lost] == [("redis", "redis")]
    assert versioned(1) == {"item": 1, "version": 0}
    assert cache_status() is CacheStatus.BYPASS
    fresh_redis.restart()
    restarted = time.monotonic()
    warm(versioned, 1)
    assert time.monotonic() - restarted < 3.0


def test_a_blackholed_connection_is_found_dead_and_the_local_tier_emptied(
    redis_server: RedisServer, fault_proxy: FaultProxyFactory, backends: Backends
) -> None:
    """A partition raises no error by itself: unanswered pings empty the local tier in seconds."""
    proxy = fault_proxy(redis_server.port)
    backend = backends(proxy.url, socket_timeout=0.25, socket_connect_timeout=0.25)
    _, (versioned,) = on_each([backend])
    warm(versioned, 1)
    proxy.blackhole()
    blackholed = time.monotonic()
    assert eventually(lambda: local_copies(versioned) == 0, 6.0)
    assert time.monotonic() - blackholed < 4.5  # a ping a second, dead after 3 s unanswered
    proxy.heal()
    warm(versioned, 1)


# --- configuration ------------------------------------------------------------------------------


def test_local_ttl_is_refused_on_a_memory_backend_and_a_backend_that_cannot_broadcast() -> None:
    """local_ttl= with a backend that is local already, or cannot tell others, fails early."""
    with pytest.raises(ValueError, match="MemoryBackend is local already"):
        cached(ttl=60, local_ttl=5, backend=MemoryBackend())
    with pytest.raises(TypeError, match="tells every process of invalidations"):
        cached(ttl=60, local_ttl=5, backend=NotMemory())
    with pytest.raises(ValueError, match="local_ttl"):
        cached(ttl=60, local_ttl=0)


def test_local_ttl_on_the_configured_memory_backend_changes_nothing() -> None:
    """Decorated before a backend is configured: on the default memory backend it just caches."""
    runs: list[int] = []

    @cached(ttl=60, local_ttl=5)
    def double(x: int) -> int:
        runs.append(x)
        return 2 * x

    assert [double(2), double(2)] == [4, 4]
    assert cache_status() is CacheStatus.HIT
    assert runs == [2]


def test_a_configured_backend_that_cannot_broadcast_fails_the_call_clearly() -> None:
    """A shared backend without pub/sub, configured later, is refused at the first call."""

    @cached(ttl=60, local_ttl=5)
    def double(x: int) -> int:
        return 2 * x

    resilient.configure(backend=NotMemory())
    with pytest.raises(TypeError, match="cannot tell other processes of invalidations"):
        double(2)


class NotMemory:
    """A backend of the protocol that is not a MemoryBackend and has no pub/sub."""

    def __init__(self) -> None:
        self._memory = MemoryBackend()

    def get(self, key: str, *, claim: Any = None) -> Any:
        return self._memory.get(key, claim=claim)

    def put(self, key: str, value: object, **options: Any) -> None:
        self._memory.put(key, value, **options)

    def release(self, key: str, token: str) -> None:
        self._memory.release(key, token)

    def wait_released(self, key: str, timeout: float) -> None:
        self._memory.wait_released(key, timeout)

    def delete(self, keys: Any) -> int:
        return self._memory.delete(keys)

    def purge(self, indexes: Any) -> int:
        return self._memory.purge(indexes)

    def get_versioned(self, key: str) -> Any:
        return self._memory.get_versioned(key)

    def set_versioned(self, key: str, value: object, **options: Any) -> Any:
        return self._memory.set_versioned(key, value, **options)

    def lock(self, key: str, owner: str, ttl: float) -> Any:
        return self._memory.lock(key, owner, ttl)

    def unlock(self, key: str, owner: str) -> bool:
        return self._memory.unlock(key, owner)

    def extend(self, key: str, owner: str, ttl: float) -> bool:
        return self._memory.extend(key, owner, ttl)

    def throttle(self, key: str, interval: float, burst: int, max_wait: float = 0.0) -> Any:
        return self._memory.throttle(key, interval, burst, max_wait)

    def acquire_slot(self, key: str, owner: str, limit: int, ttl: float) -> bool:
        return self._memory.acquire_slot(key, owner, limit, ttl)

    def release_slot(self, key: str, owner: str) -> bool:
        return self._memory.release_slot(key, owner)

    def extend_slot(self, key: str, owner: str, ttl: float) -> bool:
        return self._memory.extend_slot(key, owner, ttl)

    def wait_slot(self, key: str, limit: int, timeout: float) -> None:
        self._memory.wait_slot(key, limit, timeout)


FORK_SCRIPT = """
import json, os, sys, time
import resilient
from resilient.backends.redis import RedisBackend

backend = RedisBackend.from_url(sys.argv[1])

@resilient.cached(ttl=60, local_ttl=60, backend=backend, name="forked")
def double(x: int) -> int:
    return 2 * x

def copies() -> int:
    return len(double._self_steps[0].__self__.local.store.data)

def until_local() -> bool:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        double(1)
        if double._self_steps[0].__self__.local is not None and copies():
            return True
        time.sleep(0.01)
    return False

assert until_local()
child = os.fork()
if child == 0:
    # exit 0 only if the parent's copies are gone and the child keeps copies of its own
    dropped = double._self_steps[0].__self__.local is None
    os._exit(0 if dropped and until_local() and copies() == 1 else 3)
_, status = os.waitpid(child, 0)
print(json.dumps({"child": os.waitstatus_to_exitcode(status), "parent": copies()}))
backend.close()
"""


def test_a_forked_child_drops_the_parents_copies_and_subscribes_on_its_own(
    redis_url: str,
) -> None:
    """A child has no listener of the parent's: it starts with no copies, then keeps its own."""
    with python_processes(FORK_SCRIPT, redis_url, count=1) as results:
        pass
    assert results == [{"child": 0, "parent": 1}]


def test_a_backend_with_only_an_asyncio_client_cannot_keep_a_local_tier(redis_url: str) -> None:
    """The listener thread needs the sync client: without one, the first call says so."""
    backend = RedisBackend(async_client=redis.asyncio.Redis.from_url(redis_url))

    @cached(ttl=60, local_ttl=5, backend=backend)
    async def rates(currency: str) -> float:
        return 1.1

    with pytest.raises(TypeError, match="no sync client"):
        run(rates("EUR"))


def test_a_collected_cached_function_ends_its_subscription_and_the_thread(
    redis_url: str, backends: Backends
) -> None:
    """Functions decorated and dropped at run time leave no subscription and no thread behind."""
    backend = backends(redis_url)

    def pubsub_threads() -> list[str]:
        return [thread.name for thread in threading.enumerate() if thread.name.endswith("pubsub")]

    def use_once() -> None:
        _, (versioned,) = on_each([backend], name="short-lived")
        warm(versioned, 1)
        assert pubsub_threads()

    use_once()
    gc.collect()
    assert eventually(lambda: not pubsub_threads(), DELIVERY)
