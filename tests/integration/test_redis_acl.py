"""The ACL lines of docs/operations.md are enough: every capability works through them.

Each test takes the lines as the page prints them, creates that user on a real server (a
Cluster, a master watched by a Sentinel), runs every capability through it, sync and async,
waits included, and then requires what an operator would check: no `backend.failed` event and
an empty `ACL LOG`. Both are needed: the cache, breakers, rate limits and single flights fail
open, so a missing permission would not fail a call. The user must also be refused what the
lines do not grant, so they are not simply too broad.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import redis
from cache_support import PATIENCE, EventLog, eventually, pause, run
from redis_fixtures import Backends
from redis_infra import RedisClusterProcesses, RedisServer, SentinelSetup

import resilient
from resilient.admin import Admin
from resilient.backends.redis import RedisBackend
from resilient.events import BackendFailed, LockRenewed, StoredValueRejected
from resilient.exceptions import IdempotencyConflictError, LockLostError, RateLimitedError

OPERATIONS = Path(__file__).resolve().parents[2] / "docs" / "operations.md"

Waiting = Callable[[str], bool]  # whether a wait on a channel of this capability has begun


def _page_lines() -> list[str]:
    """The `ACL SETUSER` lines of the operations page, in order."""
    text = OPERATIONS.read_text(encoding="utf-8")
    return [line for line in text.splitlines() if line.startswith("ACL SETUSER ")]


def _line(marker: str) -> str:
    """The page's ACL line holding *marker*."""
    found = [line for line in _page_lines() if marker in line]
    assert len(found) == 1, f"docs/operations.md should have one ACL line with {marker!r}"
    return found[0]


def _user_line(namespace: str, server: redis.Redis) -> str:
    """The application user's line, for *namespace*, as the page says to adapt it."""
    line = _line("~resilient:*")
    if namespace != "resilient":  # the page: write `~shop:* &shop:* &resilient:hub:*` instead
        line = line.replace(
            "~resilient:* &resilient:*", f"~{namespace}:* &{namespace}:* &resilient:hub:*"
        )
    version = tuple(int(part) for part in str(server.info("server")["redis_version"]).split("."))
    if version >= (7, 2):  # the page: on Redis 7.2 and later, also allow CLIENT SETINFO
        line += " +client|setinfo"
    return line


def _credentials(line: str) -> dict[str, str]:
    """The username and password an `ACL SETUSER` line creates."""
    words = line.split()
    password = next(word[1:] for word in words if word.startswith(">"))
    return {"username": words[2], "password": password}


def _apply(server: redis.Redis, line: str) -> None:
    """Run an `ACL SETUSER` line on *server*, as `redis-cli` would."""
    assert server.execute_command(*line.split()) in {b"OK", "OK"}


def _standalone_waiting(admin: redis.Redis, namespace: str) -> Waiting:
    def waiting(capability: str) -> bool:
        return bool(admin.pubsub_channels(f"{namespace}:{capability}:*"))

    return waiting


def _exercise(backend: RedisBackend, other: RedisBackend, namespace: str, waiting: Waiting) -> None:
    """Use every capability through *backend*, and *other* as a second process's backend."""
    resilient.configure(backend=backend, namespace=namespace)
    with ThreadPoolExecutor(4) as pool:
        _cache(backend, other, namespace)
        _lock(backend, other, pool, waiting)
        _breaker(backend)
        _idempotency(backend, pool, waiting)
        _dedupe(backend, other, pool, waiting)
        _rate_limit(backend)
        _bulkhead(backend, pool, waiting)
    _admin(backend, other, namespace)


def _cache(backend: RedisBackend, other: RedisBackend, namespace: str) -> None:
    computed: list[str] = []

    @resilient.cached(ttl=60, tags=["prices"], local_ttl=30, backend=backend)
    def price(sku: str) -> int:
        computed.append(sku)
        return 1250

    @resilient.cached(ttl=60, backend=backend)
    async def aprice(sku: str) -> int:
        return 990

    assert price("A") == price("A") == price("B") == 1250
    assert run(aprice("A")) == run(aprice("A")) == 990
    assert computed == ["A", "B"]
    heard: list[str | None] = []
    subscription = backend.subscribe(f"{namespace}:cache:invalidated", heard.append)
    staying = backend.subscribe(f"{namespace}:acl-test", lambda message: None)
    assert eventually(lambda: subscription.live and staying.live)
    price.invalidate("A")  # DEL, then PUBLISH
    assert resilient.invalidate_tags("prices", backend=other) == 1  # ZRANGE, MULTI ZREM DEL EXEC
    price.invalidate_all()
    assert eventually(lambda: len([message for message in heard if message]) >= 3)
    subscription.close()  # the listener thread, kept up by the other, sends UNSUBSCRIBE
    pause(1.5)  # and a PING every second
    assert staying.live
    staying.close()


def _lock(
    backend: RedisBackend, other: RedisBackend, pool: ThreadPoolExecutor, waiting: Waiting
) -> None:
    with resilient.lock("report", ttl=5, timeout=0, backend=backend) as lease:
        first = lease.token
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with resilient.lock("report", ttl=5, backend=other):
            held.set()
            release.wait(PATIENCE)

    @resilient.lock("report", ttl=5, timeout=PATIENCE, backend=backend)
    def write() -> str:
        return "written"

    holder = pool.submit(hold)
    assert held.wait(PATIENCE)
    waiter = pool.submit(write)
    assert eventually(lambda: waiting("lock"))  # subscribed, woken by the release
    release.set()
    holder.result(PATIENCE)
    assert waiter.result(PATIENCE) == "written"
    with resilient.lock("renewed", ttl=1.5, renew=True, backend=backend) as lease:
        pause(0.7)  # the renewer extends the lease after 0.5 s
        lease.check()
        assert lease.token > first

    async def in_task() -> int:
        async with resilient.lock("report", ttl=5, timeout=1, backend=backend) as lease:
            return lease.token

    assert run(in_task()) > first


def _breaker(backend: RedisBackend) -> None:
    partner = resilient.breaker(
        f"partner-{uuid.uuid4().hex}", shared=True, backend=backend, consecutive_failures=2
    )

    @partner
    def call(*, fail: bool) -> str:
        if fail:
            raise ConnectionError("partner down")
        return "ok"

    @partner
    async def acall() -> str:
        return "ok"

    assert call(fail=False) == run(acall()) == "ok"
    for _ in range(2):
        with pytest.raises(ConnectionError):
            call(fail=True)
    assert partner.state is resilient.BreakerState.OPEN
    partner.close()
    assert call(fail=False) == "ok"


def _idempotency(backend: RedisBackend, pool: ThreadPoolExecutor, waiting: Waiting) -> None:
    runs: list[str] = []
    gate = threading.Event()

    @resilient.idempotent(key="request_id", on_in_progress="wait", backend=backend)
    def capture(request_id: str, cents: int) -> dict[str, int]:
        runs.append(request_id)
        gate.wait(PATIENCE)
        return {"captured": cents}

    @resilient.idempotent(key="request_id", backend=backend)
    async def acapture(request_id: str, cents: int) -> dict[str, int]:
        return {"captured": cents}

    first = pool.submit(capture, "req-1", 4200)
    assert eventually(lambda: runs == ["req-1"])
    duplicate = pool.submit(capture, "req-1", 4200)
    assert eventually(lambda: waiting("idempotent"))  # waits for the first call's record
    gate.set()
    assert first.result(PATIENCE) == duplicate.result(PATIENCE) == {"captured": 4200}
    assert runs == ["req-1"]
    with pytest.raises(IdempotencyConflictError):
        capture("req-1", 1)
    assert run(acapture("req-2", 5)) == run(acapture("req-2", 5)) == {"captured": 5}


def _dedupe(
    backend: RedisBackend, other: RedisBackend, pool: ThreadPoolExecutor, waiting: Waiting
) -> None:
    builds: list[str] = []
    inside, finish = threading.Event(), threading.Event()

    @resilient.deduped(shared=True, backend=backend, name="rebuild")
    def rebuild(day: str) -> str:
        builds.append(day)
        inside.set()
        finish.wait(PATIENCE)
        return "built"

    @resilient.deduped(shared=True, backend=other, name="rebuild")
    def rebuild_elsewhere(day: str) -> str:
        builds.append(day)
        return "built"

    @resilient.deduped(shared=True, backend=backend)
    async def arebuild(day: str) -> str:
        return "built"

    leader = pool.submit(rebuild, "monday")
    assert inside.wait(PATIENCE)
    follower = pool.submit(rebuild_elsewhere, "monday")
    assert eventually(lambda: waiting("dedupe"))  # waits for the leader's outcome
    finish.set()
    assert leader.result(PATIENCE) == follower.result(PATIENCE) == "built"
    assert builds == ["monday"]
    assert run(arebuild("tuesday")) == "built"


def _rate_limit(backend: RedisBackend) -> None:
    @resilient.rate_limited(rate=2, per=60.0, key="{tenant}", backend=backend)
    def send(tenant: str) -> str:
        return tenant

    @resilient.rate_limited(rate=2, per=60.0, backend=backend)
    async def asend() -> str:
        return "sent"

    assert [send("acme"), send("acme"), send("globex")] == ["acme", "acme", "globex"]
    with pytest.raises(RateLimitedError):
        send("acme")
    assert run(asend()) == "sent"


def _bulkhead(backend: RedisBackend, pool: ThreadPoolExecutor, waiting: Waiting) -> None:
    inside, finish = threading.Event(), threading.Event()
    policy = resilient.BulkheadPolicy(
        max_concurrent=1, max_waiting=1, shared=True, backend=backend, name="renderer"
    )

    @resilient.bulkhead(policy)
    def render(*, wait: bool) -> str:
        if wait:
            inside.set()
            finish.wait(PATIENCE)
        return "rendered"

    @resilient.bulkhead(policy)
    async def arender() -> str:
        return "rendered"

    running = pool.submit(render, wait=True)
    assert inside.wait(PATIENCE)
    queued = pool.submit(render, wait=False)
    assert eventually(lambda: waiting("bulkhead"))  # waits for the slot's release
    finish.set()
    assert running.result(PATIENCE) == queued.result(PATIENCE) == "rendered"
    assert run(arender()) == "rendered"


def _admin(backend: RedisBackend, other: RedisBackend, namespace: str) -> None:
    """The admin API's listings and actions (they add SCAN), on what the steps above left."""
    admin = Admin(backend, namespace)
    assert any(info.shared for info in admin.breakers())
    assert run(admin.aidempotency_records("completed"))

    def released_while_held() -> None:
        with resilient.lock("audited", ttl=5, backend=other) as lease:
            (held,) = [info for info in admin.locks() if info.name == "audited"]
            assert held.token == lease.token
            admin.release_lock("audited", held.token)

    with pytest.raises(LockLostError):
        released_while_held()
    assert admin.purge_idempotency("completed") > 0


def _assert_clean(log: EventLog, admins: list[redis.Redis]) -> None:
    """No backend failure reported, none refused by Redis, and the renewer ran."""
    assert log.of(BackendFailed) == []
    assert log.of(StoredValueRejected) == []
    assert log.of(LockRenewed)
    for admin in admins:
        assert admin.acl_log() == []


def _assert_refused_beyond(user: redis.Redis, namespace: str) -> None:
    """The user may scan (for the admin tools), but not touch other keys or run admin commands."""
    assert list(user.scan_iter(match=f"{namespace}:*", count=1000))
    for refused in (
        lambda: user.get("elsewhere:secret"),
        lambda: user.set(f"{namespace}x:key", 1),
        lambda: user.keys("*"),
        user.flushall,
        lambda: user.config_get("maxmemory"),
        lambda: user.publish("elsewhere", "hello"),
    ):
        with pytest.raises(redis.exceptions.NoPermissionError):
            refused()


@pytest.mark.parametrize("namespace", ["resilient", "shop"])
def test_the_documented_user_runs_every_capability(
    namespace: str, fresh_redis: RedisServer, backends: Backends, log: EventLog
) -> None:
    """Through the page's ACL user, on a server of its own, every capability works."""
    admin = redis.Redis.from_url(fresh_redis.url)
    try:
        line = _user_line(namespace, admin)
        _apply(admin, line)
        user = _credentials(line)
        url = f"redis://127.0.0.1:{fresh_redis.port}/1"  # a database other than 0: SELECT
        backend, other = backends(url, **user), backends(url, **user)
        _exercise(backend, other, namespace, _standalone_waiting(admin, namespace))
        _assert_clean(log, [admin])
        with redis.Redis.from_url(url, **user) as plain:
            _assert_refused_beyond(plain, namespace)
    finally:
        admin.close()


@pytest.fixture
def cluster_admins(redis_cluster: RedisClusterProcesses) -> Iterator[list[redis.Redis]]:
    """A plain client per master of the shared Cluster; the test's ACL user is gone after it."""
    admins = [redis.Redis(host=host, port=port) for host, port in redis_cluster.startup_nodes]
    for admin in admins:
        admin.acl_log_reset()
    try:
        yield admins
    finally:
        for admin in admins:
            admin.acl_deluser("resilient")
            admin.acl_log_reset()
            admin.close()


def test_the_documented_cluster_user_runs_every_capability(
    redis_cluster_url: str,
    redis_cluster: RedisClusterProcesses,
    cluster_admins: list[redis.Redis],
    log: EventLog,
) -> None:
    """On every node of a Cluster, the user's line and the Cluster's addition are enough."""
    line = _user_line("resilient", cluster_admins[0])
    for admin in cluster_admins:
        _apply(admin, line)
        _apply(admin, _line("+cluster|slots"))
    user = _credentials(line)

    def waiting(capability: str) -> bool:
        pattern = f"resilient:{capability}:*"
        return any(
            admin.execute_command("PUBSUB", "SHARDCHANNELS", pattern) for admin in cluster_admins
        )

    backend = RedisBackend.cluster(redis_cluster.startup_nodes, **user)
    other = RedisBackend.cluster(redis_cluster.startup_nodes, **user)
    try:
        _exercise(backend, other, "resilient", waiting)
    finally:
        backend.close()
        other.close()
    _assert_clean(log, cluster_admins)


@pytest.fixture
def sentinel_admins(redis_sentinel: SentinelSetup) -> Iterator[tuple[redis.Redis, redis.Redis]]:
    """Plain clients of the shared master and its Sentinel; the test's users and keys go after."""
    master = redis.Redis(host=redis_sentinel.master.host, port=redis_sentinel.master.port)
    sentinel = redis.Redis(host=redis_sentinel.sentinel.host, port=redis_sentinel.sentinel.port)
    master.acl_log_reset()
    sentinel.acl_log_reset()
    try:
        yield master, sentinel
    finally:
        master.acl_deluser("resilient")
        sentinel.acl_deluser(_credentials(_line("+sentinel|masters"))["username"])
        for key in master.scan_iter(match="acl-sentinel:*", count=1000):
            master.delete(key)
        master.close()
        sentinel.close()


def test_the_documented_sentinel_users_run_every_capability(
    redis_sentinel: SentinelSetup,
    sentinel_admins: tuple[redis.Redis, redis.Redis],
    log: EventLog,
) -> None:
    """Through Sentinels that require a password, the two documented users are enough."""
    master, sentinel = sentinel_admins
    namespace = "acl-sentinel"  # the shared master's other keys are none of this test's
    line = _user_line(namespace, master)
    _apply(master, line)
    watcher_line = _line("+sentinel|masters")
    _apply(sentinel, watcher_line)
    user, watcher = _credentials(line), _credentials(watcher_line)

    def build() -> RedisBackend:
        return RedisBackend.sentinel(
            redis_sentinel.sentinels, redis_sentinel.service_name, sentinel_options=watcher, **user
        )

    backend, other = build(), build()
    try:
        _exercise(backend, other, namespace, _standalone_waiting(master, namespace))
    finally:
        backend.close()
        other.close()
    _assert_clean(log, [master, sentinel])
