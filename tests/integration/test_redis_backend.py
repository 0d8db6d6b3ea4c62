"""RedisBackend against real servers: commands per primitive, script reloads, rejected values,
dead servers, restarts, ambiguous replies, and event loops that come and go."""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import statistics
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
import redis
import redis.asyncio
from cache_support import eventually
from redis.cluster import ClusterNode, RedisCluster
from redis_infra import FaultProxyFactory, RedisClusterProcesses, RedisServer, commands_sent

import resilient.backends.redis
from resilient.backends import Claim, Fetched, _lua
from resilient.backends.codec import Codec
from resilient.backends.redis import RedisBackend
from resilient.events import StoredValueRejected
from resilient.testing import capture_events

MISS = (None, None, False, None, False)
CLAIMED = (None, None, True, None, False)
REJECTED = (None, None, False, None, True)  # a value was stored, but the codec refused it
REJECTED_CLAIMED = (None, None, True, None, True)
# commands a client sends when it opens a connection, not part of any primitive
HANDSHAKE = {"HELLO", "CLIENT", "AUTH", "SELECT"}


def key(name: str = "value") -> str:
    """Return a new key with a hash tag, as the capabilities make them."""
    return f"test:{name}:{{{uuid.uuid4().hex}}}"


def token() -> str:
    """Return a new claim token."""
    return uuid.uuid4().hex


@pytest.fixture
def backend(redis_url: str) -> Iterator[RedisBackend]:
    """A RedisBackend on the shared (emptied) server, closed after the test."""
    backend = RedisBackend.from_url(redis_url)
    yield backend
    backend.close()


@pytest.fixture
def admin(redis_url: str) -> Iterator[redis.Redis]:
    """A plain client of the shared server, to look at what the backend stored."""
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


# commands per primitive ------------------------------------------------------------------------


def _prepare(backend: RedisBackend) -> dict[str, str]:
    """Store a value, claim a missing key, index a value; load every script and connect."""
    keys = {"hit": key(), "missing": key(), "indexed": key(), "index": key("index")}
    backend.put(keys["hit"], {"a": 1}, ttl=60, indexes=[keys["index"]], token=token())
    backend.put(keys["indexed"], 1, ttl=60, indexes=[keys["index"]])
    backend.get(keys["hit"], claim=Claim(token(), 10))
    backend.release(keys["missing"], token())
    return keys


SyncCall = Callable[[RedisBackend, dict[str, str]], object]
AsyncCall = Callable[[RedisBackend, dict[str, str]], Awaitable[object]]

SYNC_CALLS: dict[str, tuple[SyncCall, list[str]]] = {
    "get hit": (lambda b, k: b.get(k["hit"]), ["EVALSHA"]),
    "get miss": (lambda b, k: b.get(k["missing"]), ["EVALSHA"]),
    "get hit with a claim": (lambda b, k: b.get(k["hit"], claim=Claim(token(), 5)), ["EVALSHA"]),
    "get miss taking the claim": (
        lambda b, k: b.get(k["missing"], claim=Claim(token(), 5)),
        ["EVALSHA"],
    ),
    "put with a token and an index": (
        lambda b, k: b.put(key(), 1, ttl=5, indexes=[k["index"]], token=token()),
        ["EVALSHA"],
    ),
    "put with two indexes": (
        lambda b, k: b.put(key(), 1, ttl=5, indexes=[k["index"], key("index")]),
        ["EVALSHA"],
    ),
    "release": (lambda b, k: b.release(k["missing"], token()), ["EVALSHA"]),
    "wait with no claim held": (lambda b, k: b.wait_released(k["missing"], 5), ["PTTL"]),
    "delete": (lambda b, k: b.delete([k["hit"], k["missing"]]), ["DEL"]),
    "purge": (
        lambda b, k: b.purge([k["index"]]),
        ["ZRANGE", "MULTI", "ZREM", "DEL", "EXEC"],
    ),
}


@pytest.mark.parametrize("primitive", list(SYNC_CALLS))
def test_commands_per_sync_primitive(fresh_redis: RedisServer, primitive: str) -> None:
    """Each sync primitive sends the fewest commands: one, and a purge one read and one MULTI."""
    call, expected = SYNC_CALLS[primitive]
    backend = RedisBackend.from_url(fresh_redis.url)
    try:
        keys = _prepare(backend)
        with commands_sent(fresh_redis.url) as sent:
            call(backend, keys)
        assert sent == expected
    finally:
        backend.close()


ASYNC_CALLS: dict[str, tuple[AsyncCall, list[str]]] = {
    "aget hit": (lambda b, k: b.aget(k["hit"]), ["EVALSHA"]),
    "aget miss taking the claim": (
        lambda b, k: b.aget(k["missing"], claim=Claim(token(), 5)),
        ["EVALSHA"],
    ),
    "aput with a token and an index": (
        lambda b, k: b.aput(key(), 1, ttl=5, indexes=[k["index"]], token=token()),
        ["EVALSHA"],
    ),
    "arelease": (lambda b, k: b.arelease(k["missing"], token()), ["EVALSHA"]),
    "await with no claim held": (lambda b, k: b.await_released(k["missing"], 5), ["PTTL"]),
    "adelete": (lambda b, k: b.adelete([k["hit"]]), ["DEL"]),
    "apurge": (lambda b, k: b.apurge([k["index"]]), ["ZRANGE", "MULTI", "ZREM", "DEL", "EXEC"]),
}


@pytest.mark.parametrize("primitive", list(ASYNC_CALLS))
def test_commands_per_async_primitive(fresh_redis: RedisServer, primitive: str) -> None:
    """Each async primitive sends the same commands as its sync twin."""
    call, expected = ASYNC_CALLS[primitive]
    backend = RedisBackend.from_url(fresh_redis.url)
    keys = _prepare(backend)
    backend.close()

    async def main() -> list[str]:
        await backend.aget(keys["hit"])  # connect this loop's client
        with commands_sent(fresh_redis.url) as sent:
            await call(backend, keys)
        return sent

    assert asyncio.run(main()) == expected


def test_a_wait_listens_instead_of_polling(fresh_redis: RedisServer) -> None:
    """A wait nobody ends subscribes and looks at the claim twice, then only listens."""
    backend = RedisBackend.from_url(fresh_redis.url)
    try:
        held = key()
        assert backend.get(held, claim=Claim(token(), 30)).claimed
        with commands_sent(fresh_redis.url) as sent:
            backend.wait_released(held, 0.5)
        sent = [name for name in sent if name not in HANDSHAKE]
        # it looks, rings the listening thread's bell, which subscribes, then looks again
        assert sent[0] == "PTTL"
        assert sorted(sent) == ["PTTL", "PTTL", "PUBLISH", "SUBSCRIBE"]
    finally:
        backend.close()


def test_a_second_wait_on_a_key_is_live_at_once(fresh_redis: RedisServer) -> None:
    """The channel lingers after a wait: the next wait on the key sends one PTTL and listens."""
    backend = RedisBackend.from_url(fresh_redis.url)
    try:
        held = key()
        assert backend.get(held, claim=Claim(token(), 30)).claimed
        backend.wait_released(held, 0.2)
        with commands_sent(fresh_redis.url) as sent:
            started = time.monotonic()
            backend.wait_released(held, 0.3)
            assert time.monotonic() - started >= 0.3  # it listened until its timeout
        assert [name for name in sent if name not in HANDSHAKE] == ["PTTL"]
    finally:
        backend.close()


def test_the_shared_connection_ends_once_its_channels_have_lingered(
    fresh_redis: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After the last wait, the listening thread stays for the linger, then ends."""
    monkeypatch.setattr(resilient.backends.redis, "_LINGER", 0.5)
    backend = RedisBackend.from_url(fresh_redis.url)

    def listening() -> bool:
        return any(thread.name.endswith("-pubsub") for thread in threading.enumerate())

    try:
        held = key()
        assert backend.get(held, claim=Claim(token(), 30)).claimed
        backend.wait_released(held, 0.2)
        assert listening()
        assert eventually(lambda: not listening())
    finally:
        backend.close()


def test_a_release_right_after_a_first_wait_began_is_heard(fresh_redis: RedisServer) -> None:
    """20 fresh keys, each released 2 ms into its first wait: every wait ends at once.

    The wait subscribes then; the subscription's becoming live must wake it to look again,
    or a release before that is missed until the claim would have run out.
    """
    backend = RedisBackend.from_url(fresh_redis.url)

    async def one() -> float:
        held, holder = key(), token()
        assert (await backend.aget(held, claim=Claim(holder, 30))).claimed
        waiter = asyncio.create_task(backend.await_released(held, 30))
        await asyncio.sleep(0.002)
        await backend.arelease(held, holder)
        started = time.monotonic()
        await asyncio.wait_for(waiter, 5)
        return time.monotonic() - started

    async def main() -> list[float]:
        return [await one() for _ in range(20)]

    try:
        waits = asyncio.run(main())
        assert max(waits) < 1.0
        # the wait rings the listening thread's bell rather than wait for its next look
        # (every 0.1 s): a first wait is live within a round trip or two
        assert statistics.median(waits) < 0.05, waits
    finally:
        backend.close()


def test_concurrent_waits_share_one_pubsub_connection(fresh_redis: RedisServer) -> None:
    """20 threads and 20 tasks waiting on 40 keys hold one pub/sub connection, and all wake."""
    backend = RedisBackend.from_url(fresh_redis.url)
    holders = {key(): token() for _ in range(40)}
    for held, holder in holders.items():
        assert backend.get(held, claim=Claim(holder, 30)).claimed
    names = list(holders)

    async def tasks() -> None:
        await asyncio.gather(*(backend.await_released(held, 10) for held in names[20:]))

    try:
        with concurrent.futures.ThreadPoolExecutor(21) as pool:
            waits = [pool.submit(backend.wait_released, held, 10) for held in names[:20]]
            waits.append(pool.submit(asyncio.run, tasks()))

            def subscribers() -> list[dict[str, str]]:
                with redis.Redis.from_url(fresh_redis.url) as admin:
                    return [c for c in admin.client_list() if "P" in c["flags"]]

            # the 40 keys' channels, and the listening thread's bell
            assert eventually(lambda: sum(int(c["sub"]) for c in subscribers()) == 40 + 1)
            assert len(subscribers()) == 1
            started = time.monotonic()
            for held, holder in holders.items():
                backend.release(held, holder)
            concurrent.futures.wait(waits, timeout=5)
            assert all(wait.done() and wait.exception() is None for wait in waits)
            assert time.monotonic() - started < 1
    finally:
        backend.close()


# scripts ---------------------------------------------------------------------------------------


def test_every_primitive_works_after_script_flush(
    backend: RedisBackend, admin: redis.Redis
) -> None:
    """After SCRIPT FLUSH each sync primitive loads its script again (pinned) and works."""
    first, index, holder = key(), key("index"), token()
    admin.script_flush()
    assert backend.get(first, claim=Claim(holder, 30)).claimed
    admin.script_flush()
    backend.put(first, "filled", ttl=60, indexes=[index], token=holder)
    admin.script_flush()
    assert backend.get(first).value == "filled"
    admin.script_flush()
    assert backend.get(first, claim=Claim(holder, 30, below=100)).claimed
    admin.script_flush()
    backend.release(first, holder)
    assert admin.exists(f"{first}:claim") == 0
    assert admin.script_exists(_sha("RELEASE"), _sha("GET")) == [True, False]
    assert backend.purge([index]) == 1


def _sha(name: str) -> str:
    source: str = getattr(_lua, name)
    return hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()


def test_every_async_primitive_works_after_script_flush(
    backend: RedisBackend, admin: redis.Redis
) -> None:
    """After SCRIPT FLUSH each async primitive loads its script again and works."""
    first, index, holder = key(), key("index"), token()

    async def main() -> None:
        admin.script_flush()
        assert (await backend.aget(first, claim=Claim(holder, 30))).claimed
        admin.script_flush()
        await backend.aput(first, "filled", ttl=60, indexes=[index], token=holder)
        admin.script_flush()
        assert (await backend.aget(first)).value == "filled"
        admin.script_flush()
        assert (await backend.aget(first, claim=Claim(holder, 30, below=100))).claimed
        admin.script_flush()
        await backend.arelease(first, holder)
        assert admin.exists(f"{first}:claim") == 0
        assert await backend.apurge([index]) == 1

    asyncio.run(main())


# indexes ---------------------------------------------------------------------------------------


def _pause(seconds: float) -> None:
    time.sleep(seconds)  # noqa: TID251 - values expire on the server in real time


def test_an_index_names_live_values_and_outlives_them(
    backend: RedisBackend, admin: redis.Redis
) -> None:
    """Index members are scored by expiry in server time, dropped once expired, and the index
    lives as long as its longest-lived value."""
    index, short, long_lived = key("index"), key(), key()
    backend.put(short, 1, ttl=0.2, indexes=[index])
    backend.put(long_lived, 2, ttl=60, indexes=[index])
    assert admin.pttl(index) > 59_000
    backend.put(key(), 3, ttl=5, indexes=[index])
    assert admin.pttl(index) > 59_000  # a shorter-lived value never shortens the index
    _pause(0.3)
    backend.put(key(), 4, ttl=5, indexes=[index])
    assert admin.zscore(index, short) is None
    assert admin.zcard(index) == 3
    seconds, microseconds = admin.time()
    now = seconds * 1000 + microseconds // 1000
    expiry = admin.zscore(index, long_lived)
    assert expiry is not None
    assert now + 58_000 < expiry <= now + 60_000


def test_purge_deletes_an_index_larger_than_a_batch(
    backend: RedisBackend, admin: redis.Redis
) -> None:
    """Purge works through an index in batches and deletes every value, and the index."""
    index, stored = key("index"), [key() for _ in range(1_201)]
    for each in stored:
        backend.put(each, 1, ttl=60, indexes=[index])
    assert backend.purge([index]) == 1_201
    assert admin.exists(*stored, index) == 0


def test_purge_on_a_cluster_deletes_an_index_larger_than_a_batch(
    redis_cluster: RedisClusterProcesses, redis_cluster_url: str
) -> None:
    """On a Cluster, purge deletes values spread over every slot, batch after batch."""
    backend = RedisBackend.cluster(redis_cluster.startup_nodes)
    index, stored = key("index"), [key() for _ in range(1_201)]

    async def main() -> int:
        for each in stored:
            await backend.aput(each, 1, ttl=60, indexes=[index])
        return await backend.apurge([index])

    try:
        assert asyncio.run(main()) == 1_201
        assert backend.delete(stored) == 0
    finally:
        backend.close()


# values the codec rejects ----------------------------------------------------------------------


def test_a_garbage_value_is_a_miss_and_one_event(backend: RedisBackend, admin: redis.Redis) -> None:
    """Bytes that are no envelope read as a miss and report one StoredValueRejected."""
    garbage = key()
    admin.set(garbage, b"not an envelope", px=60_000)
    with capture_events() as events:
        assert tuple(backend.get(garbage)) == REJECTED
    assert events == [StoredValueRejected(policy="redis", time=events[0].time, reason="corrupt")]


def test_a_rejected_value_is_claimed_as_if_absent(
    backend: RedisBackend, admin: redis.Redis
) -> None:
    """A claim asked for over a rejected fresh value is taken, as over no value at all."""
    garbage, holder = key(), token()
    admin.set(garbage, b"\xffR\x01 truncated", px=60_000)
    with capture_events() as events:
        assert tuple(backend.get(garbage, claim=Claim(holder, 30))) == REJECTED_CLAIMED
        assert tuple(backend.get(garbage, claim=Claim(token(), 30))) == (
            None,
            None,
            False,
            holder,
            True,
        )
    assert [event.reason for event in events if isinstance(event, StoredValueRejected)] == [
        "truncated",
        "truncated",
    ]
    assert admin.get(f"{garbage}:claim") == holder.encode()


def test_a_rejected_value_is_claimed_as_if_absent_async(
    backend: RedisBackend, admin: redis.Redis
) -> None:
    """The async read treats a rejected value as absent too, claim included."""
    garbage = key()
    admin.set(garbage, b"garbage", px=60_000)

    async def main() -> tuple[Fetched, Fetched]:
        return await backend.aget(garbage), await backend.aget(garbage, claim=Claim(token(), 30))

    with capture_events() as events:
        plain, claiming = asyncio.run(main())
    assert (tuple(plain), tuple(claiming)) == (REJECTED, REJECTED_CLAIMED)
    assert len(events) == 2


def test_a_value_written_under_another_secret_is_rejected(redis_url: str) -> None:
    """A pickle codec refuses a value signed with another secret: a miss and a "mac" event."""
    writer = RedisBackend.from_url(
        redis_url, codec=Codec(serializer="pickle", secret=b"the writer's secret, 32 bytes.")
    )
    reader = RedisBackend.from_url(
        redis_url, codec=Codec(serializer="pickle", secret=b"the reader's secret, 32 bytes.")
    )
    try:
        shared = key()
        writer.put(shared, {"payload": 1}, ttl=60)
        assert writer.get(shared).value == {"payload": 1}
        with capture_events() as events:
            assert tuple(reader.get(shared)) == REJECTED
        assert events == [StoredValueRejected(policy="redis", time=events[0].time, reason="mac")]
    finally:
        writer.close()
        reader.close()


def test_no_event_is_built_without_observers(backend: RedisBackend, admin: redis.Redis) -> None:
    """With no observer configured a rejected value is still a miss, silently."""
    garbage = key()
    admin.set(garbage, b"garbage", px=60_000)
    assert tuple(backend.get(garbage)) == REJECTED


# dead servers, restarts, lost replies ----------------------------------------------------------


def test_a_blackholed_server_fails_a_call_within_the_socket_timeout(
    fresh_redis: RedisServer, fault_proxy: FaultProxyFactory
) -> None:
    """With the network swallowing everything, a call raises a redis error after ~1 s."""
    proxy = fault_proxy(fresh_redis.port)
    backend = RedisBackend.from_url(proxy.url)
    try:
        backend.put(key(), 1, ttl=60)
        proxy.blackhole()
        start = time.monotonic()
        with pytest.raises(redis.exceptions.TimeoutError):
            backend.get(key(), claim=Claim(token(), 30))
        assert time.monotonic() - start < 5 * 1.0
    finally:
        backend.close()


def test_a_blackholed_server_fails_an_async_call_within_the_socket_timeout(
    fresh_redis: RedisServer, fault_proxy: FaultProxyFactory
) -> None:
    """The asyncio client gives up after about the socket timeout too."""
    proxy = fault_proxy(fresh_redis.port)
    backend = RedisBackend.from_url(proxy.url, socket_timeout=0.5)

    async def main() -> float:
        await backend.aput(key(), 1, ttl=60)
        proxy.blackhole()
        start = time.monotonic()
        with pytest.raises(redis.exceptions.TimeoutError):
            await backend.aget(key())
        return time.monotonic() - start

    assert asyncio.run(main()) < 5 * 0.5


def test_a_killed_server_fails_calls_quickly(fresh_redis: RedisServer) -> None:
    """With the server gone, sync and async calls raise ConnectionError well within 1 s."""
    backend = RedisBackend.from_url(fresh_redis.url)
    try:
        backend.put(key(), 1, ttl=60)
        fresh_redis.kill()
        start = time.monotonic()
        with pytest.raises(redis.exceptions.ConnectionError):
            backend.get(key())

        async def main() -> None:
            with pytest.raises(redis.exceptions.ConnectionError):
                await backend.aput(key(), 1, ttl=60)

        asyncio.run(main())
        assert time.monotonic() - start < 5 * 1.0
    finally:
        backend.close()


def test_the_same_backend_works_again_after_a_restart(fresh_redis: RedisServer) -> None:
    """After the server restarts empty, the next call succeeds: the stale connection is re-made
    and the scripts loaded again, with no error reaching the caller."""
    backend = RedisBackend.from_url(fresh_redis.url)
    try:
        stored = key()
        backend.put(stored, "before", ttl=60)
        fresh_redis.restart()
        assert tuple(backend.get(stored)) == MISS
        backend.put(stored, "after", ttl=60)
        assert backend.get(stored).value == "after"
    finally:
        backend.close()


def test_the_same_backend_works_again_after_a_restart_async(fresh_redis: RedisServer) -> None:
    """A loop's asyncio client recovers from a restart the same way."""
    backend = RedisBackend.from_url(fresh_redis.url)

    async def main() -> None:
        stored = key()
        await backend.aput(stored, "before", ttl=60)
        fresh_redis.restart()
        assert tuple(await backend.aget(stored)) == MISS
        assert (await backend.aget(stored, claim=Claim(token(), 30))).claimed

    asyncio.run(main())


def test_a_claim_whose_reply_was_lost_is_ours_when_sent_again(
    fresh_redis: RedisServer, fault_proxy: FaultProxyFactory
) -> None:
    """A get-with-claim whose reply is lost raises; sent again with its token, it is ours."""
    proxy = fault_proxy(fresh_redis.port)
    backend = RedisBackend.from_url(proxy.url, socket_timeout=0.5)
    try:
        contested, mine = key(), token()
        backend.get(key(), claim=Claim(token(), 30))  # connect and load the script
        proxy.drop_replies()
        with pytest.raises(redis.exceptions.TimeoutError):
            backend.get(contested, claim=Claim(mine, 30))
        proxy.heal()
        assert not backend.get(contested, claim=Claim(token(), 30)).claimed  # the first one ran
        assert backend.get(contested, claim=Claim(mine, 30)).claimed
    finally:
        backend.close()


# event loops -----------------------------------------------------------------------------------


def _clients_of(server: RedisServer) -> int:
    """Return how many connections the server has, besides the one asking.

    The backend's one pub/sub connection, which waits share whatever loop or thread they run
    in, is not counted: it belongs to the backend (closed by ``close()``), not to a loop.
    """
    with redis.Redis.from_url(server.url) as admin:
        return sum("P" not in client["flags"] for client in admin.client_list()) - 1


def test_one_backend_serves_successive_event_loops(fresh_redis: RedisServer) -> None:
    """Each asyncio.run gets a client of its own, closed when its loop ends."""
    backend = RedisBackend.from_url(fresh_redis.url)
    stored = key()
    for round_number in range(3):

        async def main(round_number: int = round_number) -> None:
            holder = token()
            fetched = await backend.aget(stored, claim=Claim(holder, 30, below=100))
            assert fetched.value == (None if round_number == 0 else round_number - 1)
            assert fetched.claimed
            waiter = asyncio.create_task(backend.await_released(stored, 10))
            await asyncio.sleep(0.05)
            await backend.aput(stored, round_number, ttl=60, token=holder)
            await asyncio.wait_for(waiter, 2)

        asyncio.run(main())
        assert _clients_of(fresh_redis) == 0


def test_aclose_closes_the_loops_client_and_the_next_call_opens_another(
    fresh_redis: RedisServer,
) -> None:
    """aclose() closes what the backend opened; the backend stays usable afterwards."""
    backend = RedisBackend.from_url(fresh_redis.url)

    async def main() -> None:
        backend.put(key(), 1, ttl=60)
        await backend.aput(key(), 1, ttl=60)
        assert _clients_of(fresh_redis) == 2
        await backend.aclose()
        assert _clients_of(fresh_redis) == 0
        await backend.aput(key(), 1, ttl=60)
        assert _clients_of(fresh_redis) == 1

    asyncio.run(main())
    assert _clients_of(fresh_redis) == 0


def test_event_loops_in_threads_each_get_their_own_client(redis_url: str) -> None:
    """Loops running at once in several threads share one backend safely."""
    backend = RedisBackend.from_url(redis_url)
    stored = key()
    backend.put(stored, "shared", ttl=60)

    def in_a_loop() -> list[object]:
        async def main() -> list[object]:
            return [(await backend.aget(stored)).value for _ in range(20)]

        return asyncio.run(main())

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: in_a_loop(), range(8)))
    backend.close()
    assert results == [["shared"] * 20] * 8


# construction ----------------------------------------------------------------------------------


def test_construction_never_connects() -> None:
    """Every constructor returns without I/O, even with nothing listening."""
    nowhere = [("127.0.0.1", 1)]
    for backend in (
        RedisBackend.from_url("redis://127.0.0.1:1/0"),
        RedisBackend.cluster(nowhere),
        RedisBackend.cluster("redis://127.0.0.1:1/0"),
        RedisBackend.sentinel(nowhere, "service"),
    ):
        backend.close()
    unreachable = RedisBackend.from_url("redis://127.0.0.1:1/0")
    with pytest.raises(redis.exceptions.ConnectionError):
        unreachable.get(key())
    unreachable.close()


def test_a_backend_from_clients_uses_them_and_never_closes_them(redis_url: str) -> None:
    """Clients passed in serve the calls, and stay open after close()."""
    client = redis.Redis.from_url(redis_url)
    backend = RedisBackend(client)
    stored = key()
    backend.put(stored, [1, 2], ttl=60)
    backend.close()
    assert backend.get(stored).value == [1, 2]
    assert client.ping()
    client.close()


def test_a_missing_side_raises_type_error(redis_url: str) -> None:
    """A backend without a sync (or an asyncio) client says so when that side is called."""
    sync_only = RedisBackend(redis.Redis.from_url(redis_url))
    with pytest.raises(TypeError, match="no asyncio client"):
        asyncio.run(sync_only.aget(key()))
    async_client = redis.asyncio.Redis.from_url(redis_url)
    async_only = RedisBackend(async_client=async_client)
    with pytest.raises(TypeError, match="no sync client"):
        async_only.get(key())

    async def main() -> object:
        try:
            return (await async_only.aget(key())).value
        finally:
            await async_client.aclose()

    assert asyncio.run(main()) is None


def test_unfit_clients_and_options_are_refused(redis_url: str) -> None:
    """Wrong clients, decoded responses and retry settings fail at construction, saying why."""
    with pytest.raises(TypeError, match="needs a redis-py client"):
        RedisBackend()
    with pytest.raises(TypeError, match="async_client="):
        RedisBackend(redis.asyncio.Redis.from_url(redis_url))  # type: ignore[arg-type]  # on purpose
    with pytest.raises(TypeError, match="decode_responses=False"):
        RedisBackend(redis.Redis.from_url(redis_url, decode_responses=True))
    with pytest.raises(TypeError, match="decode_responses=False"):
        RedisBackend.from_url(redis_url, decode_responses=True)
    with pytest.raises(TypeError, match="retries=N"):
        RedisBackend.from_url(redis_url, retry_on_timeout=True)
    with pytest.raises(ValueError, match="retries=-1"):
        RedisBackend.from_url(redis_url, retries=-1)


def test_none_and_bad_ttls_are_refused(backend: RedisBackend) -> None:
    """None cannot be stored (it means absent), and a ttl must be a positive number."""
    with pytest.raises(ValueError, match="None means absent"):
        backend.put(key(), None, ttl=60)
    for ttl in (0.0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="ttl"):
            backend.put(key(), 1, ttl=ttl)


def test_unix_socket_urls_work(tmp_path: Path) -> None:
    """from_url accepts unix:// URLs."""
    socket_path = tmp_path / "redis.sock"
    with RedisServer(extra_args=("--unixsocket", str(socket_path))) as server:
        backend = RedisBackend.from_url(f"unix://{socket_path}")
        try:
            stored = key()
            backend.put(stored, "over a socket", ttl=60)
            assert backend.get(stored).value == "over a socket"
        finally:
            backend.close()
        assert server.running


def test_a_cluster_backend_from_a_url_serves_sync_and_async(
    redis_cluster: RedisClusterProcesses, redis_cluster_url: str
) -> None:
    """RedisBackend.cluster(url) discovers the nodes; values, claims and wake-ups work."""
    backend = RedisBackend.cluster(redis_cluster_url)
    try:
        stored, holder = key(), token()
        assert backend.get(stored, claim=Claim(holder, 30)).claimed

        async def main() -> object:
            waiter = asyncio.create_task(backend.await_released(stored, 10))
            await asyncio.sleep(0.05)
            backend.put(stored, "from sync", ttl=60, token=holder)
            await asyncio.wait_for(waiter, 2)
            return (await backend.aget(stored)).value

        assert asyncio.run(main()) == "from sync"
    finally:
        backend.close()


def test_cluster_scripts_reload_on_every_node(
    redis_cluster: RedisClusterProcesses, redis_cluster_url: str
) -> None:
    """After SCRIPT FLUSH on every master, a Cluster put with indexes in other slots works."""
    backend = RedisBackend.cluster(redis_cluster.startup_nodes)
    nodes = [
        ClusterNode(host, port)  # type: ignore[no-untyped-call]  # redis-py's own
        for host, port in redis_cluster.startup_nodes
    ]
    admin = RedisCluster(startup_nodes=nodes)
    try:
        stored, indexes = key(), [key("index") for _ in range(3)]
        backend.put(stored, 1, ttl=60)
        admin.script_flush()
        assert admin.script_exists(_sha("PUT")) == [False]
        backend.put(stored, 2, ttl=60, indexes=indexes, token=token())
        assert backend.get(stored).value == 2
        assert backend.purge(indexes) == 1
    finally:
        admin.close()
        backend.close()
