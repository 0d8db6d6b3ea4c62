"""The lock part of benchmarks/run.py: `resilient.lock` beside the Redis lock libraries.

Uncontended: each candidate is a decorator that runs the function of its scenario holding a
lock, taken and given back around every call, so the runner's batches time one acquire+release
per call and count the Redis commands it sends. The baseline is the floor of a correct Redis
lock written by hand on redis-py: ``SET key owner NX PX ttl`` to take it, a compare-and-delete
Lua script (``EVALSHA``) to give it back. The anchors are redis-py's own `Lock`,
python-redis-lock and pottery's Redlock, on one master and on three (`Masters` starts the two
more servers and counts the commands of all three). `check_locking` proves before timing that
every candidate really excludes: two threads (or tasks) never hold it at once.

Contended: `contend` runs four processes that hammer one lock name for a fixed time (take it,
a tiny critical section, give it back) and counts the acquisitions per process, any two
holders at once, and the commands and connections the server saw per acquisition. See
docs/benchmarks.md for what each row means.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import functools
import inspect
import itertools
import json
import multiprocessing
import multiprocessing.synchronize
import secrets
import statistics
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple, Self, TypeAlias

import cache  # benchmarks/cache.py, beside this file
import pottery
import redis
import redis.asyncio
import redis_lock  # type: ignore[import-untyped]  # python-redis-lock ships no type information

import resilient
from resilient.backends.redis import RedisBackend

Function: TypeAlias = Callable[..., Any]
Decorate: TypeAlias = Callable[[Function], Function]

# Importing pottery replaces json.dumps with a wrapper that passes its own encoder class, which
# makes every json.dumps in the process about a microsecond slower (the stdlib's cached default
# encoder is bypassed): the cache candidates serialise with it. Redlock does not use it.
_unwrapped_dumps = getattr(json.dumps, "__wrapped__", None)
if _unwrapped_dumps is not None:
    json.dumps = _unwrapped_dumps

TTL = 30  # seconds: longer than any run, as every candidate is configured
TTL_MS = TTL * 1000

# candidate names used by the runner's tables and targets
RAW = cache.RAW
LOCK = "resilient.lock"
LOCK_ONCE = "resilient.lock, made once"
REDIS_PY = "redis-py Lock"
REDIS_PY_FAST = "redis-py Lock(sleep=0.001)"
REDIS_PY_DEFAULT = "redis-py Lock (default sleep=0.1)"
PYTHON_REDIS_LOCK = "python-redis-lock"
REDLOCK_1 = "pottery Redlock, 1 master"
REDLOCK_3 = "pottery Redlock, 3 masters"
AIOREDLOCK_1 = "pottery AIORedlock, 1 master"
AIOREDLOCK_3 = "pottery AIORedlock, 3 masters"

# the compare-and-delete that gives a lock back only if it is still the caller's
RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('del', KEYS[1])
end
return 0
"""


def _pause(seconds: float) -> None:
    """Sleep the thread: the raw floor's retry when the lock is taken (never uncontended)."""
    time.sleep(seconds)  # noqa: TID251 - a polling floor under contention only


# -- the servers ---------------------------------------------------------------------------------


class Masters:
    """The runner's `redis-server` and two more, for Redlock's quorum of three.

    To the runner it is one server: `watch` counts the commands sent to all three while a
    candidate makes its calls, `snapshot` adds up their counters, so a candidate that uses one
    master shows its own commands and one that uses three shows all of them.
    """

    def __init__(self, primary: cache.RedisServer) -> None:
        self.primary = primary
        self._stack = contextlib.ExitStack()
        self.servers: list[cache.RedisServer] = [primary]

    @property
    def urls(self) -> list[str]:
        return [server.url for server in self.servers]

    def __enter__(self) -> Self:
        with self._stack:
            for _ in range(2):
                self.servers.append(self._stack.enter_context(cache.RedisServer()))
            self._stack = self._stack.pop_all()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stack.close()
        del self.servers[1:]

    def watch(self, calls: int, make_calls: Callable[[], object]) -> cache.Commands:
        """Return the commands all three servers received while *make_calls* made *calls*."""
        counted: list[cache.Commands] = []

        def watch_from(index: int) -> None:
            if index == len(self.servers):
                make_calls()
                return
            counted.append(self.servers[index].watch(calls, lambda: watch_from(index + 1)))

        watch_from(0)
        sent: collections.Counter[str] = collections.Counter()
        for commands in counted:
            sent += commands.sent
        return cache.Commands(calls, sent)

    def snapshot(self, *, before: bool) -> cache.Snapshot:
        """Return the commands the three servers have run so far, and their CPU time."""
        snapshots = [server.snapshot(before=before) for server in self.servers]
        commands: collections.Counter[str] = collections.Counter()
        for snapshot in snapshots:
            commands += snapshot.commands
        return cache.Snapshot(commands, sum(snapshot.cpu for snapshot in snapshots))

    def version(self) -> str:
        return self.primary.version()


# -- the uncontended candidates ------------------------------------------------------------------


class Candidates:
    """The lock candidates, their clients, and what closes them at the end of the run.

    Every decoration gets a lock name of its own. Each lock is made per block, ``with
    library.lock(name):``, as each library's documentation shows, except the one row that says
    otherwise; a redis-py client (or `RedisBackend`) is made once per master and shared.
    """

    def __init__(self, masters: Masters) -> None:
        self.urls = masters.urls
        self._names = itertools.count()
        self._clients = [redis.Redis.from_url(url) for url in self.urls]
        self._backend = RedisBackend.from_url(self.urls[0])
        # redis.asyncio clients are bound to the loop that first uses them: made on first use
        self._aclients: list[redis.asyncio.Redis] = []
        self._arelease: Any = None  # the floor's script, on the first asyncio client

    def _name(self) -> str:
        return f"bench-lock-{next(self._names)}"

    def _async_clients(self) -> list[redis.asyncio.Redis]:
        if not self._aclients:
            self._aclients = [redis.asyncio.Redis.from_url(url) for url in self.urls]
        return self._aclients

    def close(self, runner: asyncio.Runner) -> None:
        """Close every client, the asyncio ones inside *runner*'s loop."""

        async def aclose() -> None:
            await self._backend.aclose()
            for client in self._aclients:
                await client.aclose()

        runner.run(aclose())
        for client in self._clients:
            client.close()

    # sync

    def raw_sync(self, function: Function) -> Function:
        """The floor: SET NX PX with a fresh owner, then the compare-and-delete script."""
        client, key = self._clients[0], self._name()
        release = client.register_script(RELEASE)

        @functools.wraps(function)
        def locked(value: int) -> Any:
            owner = secrets.token_hex(16)
            while not client.set(key, owner, nx=True, px=TTL_MS):
                _pause(0.001)  # only when contended, as in check_locking
            try:
                return function(value)
            finally:
                release(keys=(key,), args=(owner,))

        return locked

    def resilient_lock(self, function: Function) -> Function:
        backend, name = self._backend, self._name()
        if inspect.iscoroutinefunction(function):

            @functools.wraps(function)
            async def alocked(value: int) -> Any:
                async with resilient.lock(name, ttl=TTL, backend=backend):
                    return await function(value)

            return alocked

        @functools.wraps(function)
        def locked(value: int) -> Any:
            with resilient.lock(name, ttl=TTL, backend=backend):
                return function(value)

        return locked

    def resilient_lock_once(self, function: Function) -> Function:
        """The lock object made once and reused, as a module-level ``lock(...)`` would be."""
        guard = resilient.lock(self._name(), ttl=TTL, backend=self._backend)
        if inspect.iscoroutinefunction(function):

            @functools.wraps(function)
            async def alocked(value: int) -> Any:
                async with guard:
                    return await function(value)

            return alocked

        @functools.wraps(function)
        def locked(value: int) -> Any:
            with guard:
                return function(value)

        return locked

    def redis_py(self, function: Function) -> Function:
        client, name = self._clients[0], self._name()

        @functools.wraps(function)
        def locked(value: int) -> Any:
            with client.lock(name, timeout=TTL):
                return function(value)

        return locked

    def python_redis_lock(self, function: Function) -> Function:
        client, name = self._clients[0], self._name()

        @functools.wraps(function)
        def locked(value: int) -> Any:
            with redis_lock.Lock(client, name, expire=TTL):
                return function(value)

        return locked

    def _redlock(self, function: Function, masters: int) -> Function:
        clients, name = set(self._clients[:masters]), self._name()

        @functools.wraps(function)
        def locked(value: int) -> Any:
            with pottery.Redlock(key=name, masters=clients, auto_release_time=TTL):
                return function(value)

        return locked

    def redlock_1(self, function: Function) -> Function:
        return self._redlock(function, 1)

    def redlock_3(self, function: Function) -> Function:
        return self._redlock(function, 3)

    def sync(self) -> dict[str, Decorate]:
        return {
            RAW: self.raw_sync,
            LOCK: self.resilient_lock,
            LOCK_ONCE: self.resilient_lock_once,
            REDIS_PY: self.redis_py,
            PYTHON_REDIS_LOCK: self.python_redis_lock,
            REDLOCK_1: self.redlock_1,
            REDLOCK_3: self.redlock_3,
        }

    # async

    def raw_async(self, function: Function) -> Function:
        """The same floor on redis.asyncio."""
        key = self._name()

        @functools.wraps(function)
        async def locked(value: int) -> Any:
            client = self._async_clients()[0]
            release = self._arelease
            if release is None:
                release = self._arelease = client.register_script(RELEASE)
            owner = secrets.token_hex(16)
            while not await client.set(key, owner, nx=True, px=TTL_MS):  # noqa: ASYNC110
                await asyncio.sleep(0.001)  # a polling floor, only when contended (check_locking)
            try:
                return await function(value)
            finally:
                await release(keys=(key,), args=(owner,))

        return locked

    def redis_py_async(self, function: Function) -> Function:
        name = self._name()

        @functools.wraps(function)
        async def locked(value: int) -> Any:
            async with self._async_clients()[0].lock(name, timeout=TTL):
                return await function(value)

        return locked

    def _aioredlock(self, function: Function, masters: int) -> Function:
        name = self._name()

        @functools.wraps(function)
        async def locked(value: int) -> Any:
            clients = set(self._async_clients()[:masters])
            async with pottery.AIORedlock(key=name, masters=clients, auto_release_time=TTL):
                return await function(value)

        return locked

    def aioredlock_1(self, function: Function) -> Function:
        return self._aioredlock(function, 1)

    def aioredlock_3(self, function: Function) -> Function:
        return self._aioredlock(function, 3)

    def asynchronous(self) -> dict[str, Decorate]:
        # python-redis-lock has no asyncio support
        return {
            RAW: self.raw_async,
            LOCK: self.resilient_lock,
            LOCK_ONCE: self.resilient_lock_once,
            REDIS_PY: self.redis_py_async,
            AIOREDLOCK_1: self.aioredlock_1,
            AIOREDLOCK_3: self.aioredlock_3,
        }


# -- checking that a candidate locks -------------------------------------------------------------

HOLD = 0.002  # seconds each checking call holds the lock
# well below TTL: a waiter that is woken only when the holder's lease runs out fails the check
CHECK_TIMEOUT = 10.0


def check_locking(
    name: str, decorate: Decorate, function: Function, runner: asyncio.Runner
) -> None:
    """Check *decorate* answers like *function*, and that two callers never hold it at once.

    Two threads (tasks, for an async function) make two calls each through one decorated
    function, each call holding the lock a moment; then one more call must get the lock,
    which shows that every call gave it back.
    """
    is_async = inspect.iscoroutinefunction(function)
    guard = threading.Lock()
    inside = most = calls = 0

    def enter() -> None:
        nonlocal inside, most, calls
        with guard:
            inside += 1
            calls += 1
            most = max(most, inside)

    def leave() -> None:
        nonlocal inside
        with guard:
            inside -= 1

    def probe(value: int) -> Any:
        enter()
        try:
            threading.Event().wait(HOLD)
            return function(value)
        finally:
            leave()

    async def aprobe(value: int) -> Any:
        enter()
        try:
            await asyncio.sleep(HOLD)
            return await function(value)
        finally:
            leave()

    decorated = decorate(aprobe if is_async else probe)
    if is_async:

        async def twice() -> list[Any]:
            return [await decorated(7), await decorated(7)]

        async def contend() -> list[list[Any]]:
            async with asyncio.timeout(CHECK_TIMEOUT):
                return list(await asyncio.gather(twice(), twice()))

        async def once() -> Any:
            async with asyncio.timeout(CHECK_TIMEOUT):
                return await decorated(7)

        outcomes = runner.run(contend())
        last = runner.run(once())
    else:
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            futures = [pool.submit(lambda: [decorated(7), decorated(7)]) for _ in range(2)]
            outcomes = [future.result(timeout=CHECK_TIMEOUT) for future in futures]
            last = pool.submit(decorated, 7).result(timeout=CHECK_TIMEOUT)
    assert outcomes == [[7, 7], [7, 7]], f"{name} changed the answer: {outcomes!r}"
    assert last == 7, f"{name} changed the answer: {last!r}"
    assert calls == 5, f"{name} made {calls} calls, not 5"
    assert most == 1, f"{name} let {most} callers hold the lock at once"


# -- contended throughput ------------------------------------------------------------------------

PROCESSES = 4

CONTENDED = (LOCK, REDIS_PY_FAST, REDIS_PY_DEFAULT, PYTHON_REDIS_LOCK)

# set in each worker process by _start_worker
_barrier: multiprocessing.synchronize.Barrier | None = None
_inside: Any = None  # a shared int: 1 while some process is in the critical section
_clients: dict[str, redis.Redis] = {}
_backends: dict[str, RedisBackend] = {}


def _start_worker(barrier: multiprocessing.synchronize.Barrier, inside: Any) -> None:
    global _barrier, _inside
    _barrier, _inside = barrier, inside


Hold: TypeAlias = Callable[[], contextlib.AbstractContextManager[Any]]


def _holder(candidate: str, url: str, name: str) -> Hold:
    """Return what takes *candidate*'s lock *name* for one ``with`` block, made per block."""
    if url not in _clients:
        _clients[url] = redis.Redis.from_url(url)
        _backends[url] = RedisBackend.from_url(url)
    client, backend = _clients[url], _backends[url]
    if candidate == LOCK:
        return lambda: resilient.lock(name, ttl=TTL, backend=backend)
    if candidate == REDIS_PY_FAST:
        return lambda: client.lock(name, timeout=TTL, sleep=0.001)
    if candidate == REDIS_PY_DEFAULT:
        return lambda: client.lock(name, timeout=TTL)
    if candidate == PYTHON_REDIS_LOCK:
        return lambda: redis_lock.Lock(client, name, expire=TTL)
    raise ValueError(f"no contended candidate {candidate!r}")


def _hammer(candidate: str, url: str, name: str, seconds: float) -> tuple[int, int]:
    """Take and give back the lock for *seconds* once every worker is ready.

    Return the acquisitions made in that time, and how many times the critical section found
    another process inside it.
    """
    assert _barrier is not None
    hold = _holder(candidate, url, name)
    with hold():  # connect, load the scripts
        pass
    _barrier.wait(timeout=120)
    deadline = time.monotonic() + seconds
    acquisitions = overlaps = 0
    while True:
        with hold():
            overlaps += _inside.value
            _inside.value = 1
            now = time.monotonic()  # the critical section
            _inside.value = 0
        if now >= deadline:
            return acquisitions, overlaps
        acquisitions += 1


class Round(NamedTuple):
    """One contended run of one candidate."""

    acquisitions: tuple[int, ...]  # per process
    overlaps: int
    seconds: float
    commands: int  # that Redis ran, in scripts too, from the start to the last release
    connections: int  # that Redis accepted in that time

    def rate(self) -> float:
        return sum(self.acquisitions) / self.seconds

    def per_acquisition(self, count: int) -> float:
        return count / max(sum(self.acquisitions), 1)


class Contended(NamedTuple):
    """Every round of every contended candidate."""

    seconds: float
    rounds: Mapping[str, Sequence[Round]]

    def best(self, name: str) -> float:
        return max(round_.rate() for round_ in self.rounds[name])

    def median(self, name: str) -> float:
        return statistics.median(round_.rate() for round_ in self.rounds[name])


@contextlib.contextmanager
def _workers() -> Iterator[tuple[concurrent.futures.ProcessPoolExecutor, Any]]:
    """Start the worker processes; yield them and the barrier that starts each round.

    The barrier has a party more than the workers: this process, which reads the server's
    counters the moment the workers start.
    """
    context = multiprocessing.get_context("spawn")  # no fork of a process with threads
    barrier = context.Barrier(PROCESSES + 1)
    inside = context.RawValue("i", 0)
    with concurrent.futures.ProcessPoolExecutor(
        PROCESSES, mp_context=context, initializer=_start_worker, initargs=(barrier, inside)
    ) as pool:
        yield pool, barrier


def _connections(server: cache.RedisServer) -> int:
    assert server.admin is not None
    return int(server.admin.info("stats")["total_connections_received"])


def contend(server: cache.RedisServer, *, seconds: float, rounds: int) -> Contended:
    """Run every contended candidate *rounds* times, interleaved, for *seconds* each."""
    results: dict[str, list[Round]] = {name: [] for name in CONTENDED}
    names = itertools.count()
    with _workers() as (pool, barrier):
        for index in range(rounds):
            shift = index % len(CONTENDED)
            for candidate in CONTENDED[shift:] + CONTENDED[:shift]:
                name = f"bench-contended-{next(names)}"
                futures = [
                    pool.submit(_hammer, candidate, server.url, name, seconds)
                    for _ in range(PROCESSES)
                ]
                barrier.wait(timeout=120)  # every worker connected and ready: go
                before, connected = server.snapshot(before=True), _connections(server)
                outcomes = [future.result(timeout=seconds + 120) for future in futures]
                after = server.snapshot(before=False)
                results[candidate].append(
                    Round(
                        tuple(acquisitions for acquisitions, _ in outcomes),
                        sum(overlaps for _, overlaps in outcomes),
                        seconds,
                        after.commands_since(before),
                        _connections(server) - connected,
                    )
                )
    return Contended(seconds, results)
