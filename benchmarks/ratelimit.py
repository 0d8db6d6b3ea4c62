"""The rate-limit part of benchmarks/run.py: `@resilient.rate_limited` beside `limits`.

Each candidate is a decorator that puts the function of its scenario under a rate limit of
``amount`` calls per ``per`` seconds and raises when a call is over it. Two limits are timed:
`ADMITTING`, so high that every call of a run is admitted (the decision of a call that goes
ahead, the common one), and `REFUSING`, one call an hour, so that every timed call is refused
(the decision of a call that does not). In memory the anchors are the `limits` package's
fixed window, moving window and sliding window counter on its `MemoryStorage`, and a token
bucket written by hand (`TokenBucket`: a float of tokens under a `threading.Lock`); on Redis,
the same `limits` strategies on its `RedisStorage`, and the floor: a GCRA decision written by
hand as one Lua script sent with redis-py (`RAW_SCRIPT`), the fewest commands that decide a
call (one). `check_limiting` proves before timing that every candidate answers like the
function while under its limit, and that it really limits: over a limit of one call an hour,
the second call is refused without running the function. See docs/benchmarks.md.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import itertools
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple, TypeAlias

import cache  # benchmarks/cache.py, beside this file
import limits
import limits.aio.storage
import limits.aio.strategies
import limits.storage
import limits.strategies
import redis
import redis.asyncio

import resilient
from resilient.backends.redis import RedisBackend
from resilient.exceptions import RateLimitedError

Function: TypeAlias = Callable[..., Any]
Decorate: TypeAlias = Callable[[Function], Function]

# candidate names used by the runner's tables and targets
BARE = cache.BARE
RAW = cache.RAW
RATE_LIMITED = "resilient.rate_limited"
TOKEN_BUCKET = "hand-written token bucket"
LIMITS_FIXED = "limits fixed window"
LIMITS_MOVING = "limits moving window"
LIMITS_SLIDING = "limits sliding window counter"

# candidates that only pass the call through: they never refuse
PASSTHROUGH = frozenset({BARE})

_names = itertools.count()


class Limit(NamedTuple):
    """At most *amount* calls every *per* seconds, in bursts of up to *burst* (or *amount*)."""

    amount: int
    per: int
    burst: int | None = None

    def item(self) -> limits.RateLimitItem:
        """The limit as a `limits` item: a window of *per* seconds holding the burst."""
        return limits.RateLimitItemPerSecond(self.burst or self.amount, self.per)


# every call of a run admitted: a billion a second
ADMITTING = Limit(10**9, 1)
# every call of a run admitted, but from a bucket that is never full again: a thousand a
# second in bursts of a billion. `@rate_limited` has a fast path for a full bucket, which
# ADMITTING always finds; here every decision takes the general one.
DRAINING = Limit(1000, 1, 10**9)
# on Redis, a million a second: still far more than a run makes (a decision is a round trip),
# and an interval `@rate_limited`'s script can add to a clock in microseconds. At a billion,
# the interval (a thousandth of a microsecond) is lost in the float of the time, and its
# `SET ... PX 0` fails; see docs/benchmarks.md.
REDIS_ADMITTING = Limit(10**6, 1)
# every call after the first refused: one an hour
REFUSING = Limit(1, 3600)


class Refused(Exception):  # noqa: N818 - named as a hand-written limiter would name it
    """What the hand-written candidates, and the wrappers around `limits`, raise over a limit."""


# what the runner's batch loops let pass: a refusal, by resilient or by the other candidates
REFUSALS = (RateLimitedError, Refused)


# -- the functions under test --------------------------------------------------------------------


def bare(function: Function) -> Function:
    """No limit at all: the function itself."""
    return function


def _unique() -> str:
    return f"bench-ratelimit-{next(_names)}"


class TokenBucket:
    """The token bucket a user writes by hand: a float of tokens, refilled as time passes.

    Up to *amount* tokens, refilled at *amount* / *per* a second; each call takes one. The
    lock makes it safe across threads, as every other candidate is.
    """

    __slots__ = ("_lock", "_tokens", "_updated", "capacity", "rate")

    def __init__(self, limit: Limit) -> None:
        self.capacity = float(limit.burst or limit.amount)
        self.rate = limit.amount / limit.per
        self._tokens = self.capacity
        self._updated = time.monotonic()
        self._lock = threading.Lock()

    def take(self) -> bool:
        """Take a token; return False, taking none, when none is left."""
        with self._lock:
            now = time.monotonic()
            tokens = min(self.capacity, self._tokens + (now - self._updated) * self.rate)
            self._updated = now
            if tokens < 1:
                self._tokens = tokens
                return False
            self._tokens = tokens - 1
            return True


def _guarded(function: Function, admit: Callable[[], bool]) -> Function:
    """Wrap *function* so that each call asks *admit* first, and raises Refused when refused."""
    if inspect.iscoroutinefunction(function):

        @functools.wraps(function)
        async def alimited(*args: Any, **kwargs: Any) -> Any:
            if not admit():
                raise Refused
            return await function(*args, **kwargs)

        return alimited

    @functools.wraps(function)
    def limited(*args: Any, **kwargs: Any) -> Any:
        if not admit():
            raise Refused
        return function(*args, **kwargs)

    return limited


def _aguarded(function: Function, admit: Callable[[], Awaitable[bool]]) -> Function:
    """Wrap the coroutine function *function* so that each call awaits *admit* first."""

    @functools.wraps(function)
    async def alimited(*args: Any, **kwargs: Any) -> Any:
        if not await admit():
            raise Refused
        return await function(*args, **kwargs)

    return alimited


class Candidates:
    """Every candidate for one *limit*; with *url*, the Redis ones too, and what closes them.

    Every decoration gets a limit of its own: a name of its own for `@rate_limited` (which
    otherwise names a limit after the function), an identifier of its own for `limits`, a key
    of its own for the floor. The Redis candidates share one `RedisBackend`, one redis-py
    client and one `limits` storage per mode, as an application would.
    """

    def __init__(self, limit: Limit, url: str | None = None) -> None:
        self.limit = limit
        self.url = url
        self._closers: list[Callable[[], object]] = []
        self._aclosers: list[Callable[[], Awaitable[object]]] = []
        self._backend: RedisBackend | None = None
        self._client: redis.Redis | None = None
        self._script: Any = None
        self._storage: limits.storage.RedisStorage | None = None
        # asyncio clients are bound to the loop that first uses them: made on first use
        self._aclient: redis.asyncio.Redis | None = None
        self._ascript: Any = None
        self._astorage: limits.aio.storage.RedisStorage | None = None

    def close(self, runner: asyncio.Runner) -> None:
        """Close every client the candidates made, the asyncio ones inside *runner*'s loop."""

        async def aclose() -> None:
            for acloser in self._aclosers:
                await acloser()

        runner.run(aclose())
        for closer in self._closers:
            closer()

    # in memory

    def resilient_memory(self, function: Function) -> Function:
        amount, per, burst = self.limit
        limited = resilient.rate_limited(rate=amount, per=per, burst=burst, name=_unique())
        return limited(function)

    def token_bucket(self, function: Function) -> Function:
        return _guarded(function, TokenBucket(self.limit).take)

    def _limits_memory(
        self, function: Function, strategy: type[limits.strategies.RateLimiter]
    ) -> Function:
        # a storage per decoration: each one's expiry timer thread runs only while it is hit
        limiter, item, identifier = (
            strategy(limits.storage.MemoryStorage()),
            self.limit.item(),
            _unique(),
        )
        return _guarded(function, functools.partial(limiter.hit, item, identifier))

    def _limits_amemory(
        self, function: Function, strategy: type[limits.aio.strategies.RateLimiter]
    ) -> Function:
        limiter = strategy(limits.aio.storage.MemoryStorage())
        return _aguarded(function, functools.partial(limiter.hit, self.limit.item(), _unique()))

    def _limits_either(
        self,
        strategy: type[limits.strategies.RateLimiter],
        astrategy: type[limits.aio.strategies.RateLimiter],
    ) -> Decorate:
        def decorate(function: Function) -> Function:
            if inspect.iscoroutinefunction(function):
                return self._limits_amemory(function, astrategy)
            return self._limits_memory(function, strategy)

        return decorate

    def memory(self) -> dict[str, Decorate]:
        """The in-memory candidates, alike for sync and async functions."""
        return {
            BARE: bare,
            TOKEN_BUCKET: self.token_bucket,
            RATE_LIMITED: self.resilient_memory,
            LIMITS_FIXED: self._limits_either(
                limits.strategies.FixedWindowRateLimiter,
                limits.aio.strategies.FixedWindowRateLimiter,
            ),
            LIMITS_MOVING: self._limits_either(
                limits.strategies.MovingWindowRateLimiter,
                limits.aio.strategies.MovingWindowRateLimiter,
            ),
            LIMITS_SLIDING: self._limits_either(
                limits.strategies.SlidingWindowCounterRateLimiter,
                limits.aio.strategies.SlidingWindowCounterRateLimiter,
            ),
        }

    # on Redis

    def _url(self) -> str:
        assert self.url is not None, "no Redis for these candidates"
        return self.url

    def _redis_backend(self) -> RedisBackend:
        if self._backend is None:
            self._backend = RedisBackend.from_url(self._url())
            self._aclosers.append(self._backend.aclose)
        return self._backend

    def resilient_redis(self, function: Function) -> Function:
        amount, per, burst = self.limit
        backend = self._redis_backend()
        limited = resilient.rate_limited(
            rate=amount, per=per, burst=burst, backend=backend, name=_unique()
        )
        return limited(function)

    def raw(self, function: Function) -> Function:
        """The floor: the GCRA decision by hand, one EVALSHA of `RAW_SCRIPT` per call."""
        key = _unique()
        interval = repr(self.limit.per / self.limit.amount * 1e6)
        arguments = (interval, self.limit.burst or self.limit.amount)
        if inspect.iscoroutinefunction(function):

            async def decide() -> bool:
                if self._ascript is None:
                    self._aclient = redis.asyncio.Redis.from_url(self._url())
                    self._aclosers.append(self._aclient.aclose)
                    self._ascript = self._aclient.register_script(RAW_SCRIPT)
                return bool(await self._ascript(keys=(key,), args=arguments))

            return _aguarded(function, decide)
        if self._script is None:
            self._client = redis.Redis.from_url(self._url())
            self._closers.append(self._client.close)
            self._script = self._client.register_script(RAW_SCRIPT)
        script = self._script
        return _guarded(function, lambda: bool(script(keys=(key,), args=arguments)))

    def _limits_redis(self, strategy: type[limits.strategies.RateLimiter]) -> Decorate:
        def decorate(function: Function) -> Function:
            if self._storage is None:
                self._storage = limits.storage.RedisStorage(self._url())
                self._closers.append(self._storage.get_connection().close)
            limiter = strategy(self._storage)
            return _guarded(function, functools.partial(limiter.hit, self.limit.item(), _unique()))

        return decorate

    def _limits_aredis(self, strategy: type[limits.aio.strategies.RateLimiter]) -> Decorate:
        def decorate(function: Function) -> Function:
            if self._astorage is None:
                # redis-py's asyncio client (the default implementation is coredis)
                self._astorage = limits.aio.storage.RedisStorage(
                    "async+" + self._url(), implementation="redispy"
                )
                self._aclosers.append(self._astorage.bridge.storage.aclose)
            limiter = strategy(self._astorage)
            item, identifier = self.limit.item(), _unique()
            return _aguarded(function, functools.partial(limiter.hit, item, identifier))

        return decorate

    def redis_sync(self) -> dict[str, Decorate]:
        return {
            BARE: bare,
            RAW: self.raw,
            RATE_LIMITED: self.resilient_redis,
            LIMITS_FIXED: self._limits_redis(limits.strategies.FixedWindowRateLimiter),
            LIMITS_MOVING: self._limits_redis(limits.strategies.MovingWindowRateLimiter),
            LIMITS_SLIDING: self._limits_redis(limits.strategies.SlidingWindowCounterRateLimiter),
        }

    def redis_async(self) -> dict[str, Decorate]:
        aio = limits.aio.strategies
        return {
            BARE: bare,
            RAW: self.raw,
            RATE_LIMITED: self.resilient_redis,
            LIMITS_FIXED: self._limits_aredis(aio.FixedWindowRateLimiter),
            LIMITS_MOVING: self._limits_aredis(aio.MovingWindowRateLimiter),
            LIMITS_SLIDING: self._limits_aredis(aio.SlidingWindowCounterRateLimiter),
        }


# The floor's decision, the generic cell rate algorithm as `@rate_limited` decides it: the key
# holds when its bucket is full again (the theoretical arrival time, TAT), in microseconds of
# the server's clock. A call is admitted when the TAT is less than `burst` intervals ahead, and
# moves it one interval on. ARGV: the interval in microseconds, the burst.
RAW_SCRIPT = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local interval = tonumber(ARGV[1])
local tat = math.max(tonumber(redis.call('GET', KEYS[1])) or now, now)
if tat + interval - tonumber(ARGV[2]) * interval > now then
  return 0
end
local full = tat + interval
redis.call('SET', KEYS[1], string.format('%.3f', full), 'PX', math.ceil((full - now) / 1000))
return 1
"""


# -- checking that a candidate limits ------------------------------------------------------------


def check_limiting(
    name: str,
    decorate: Decorate,
    strict: Decorate,
    function: Function,
    runner: asyncio.Runner,
    *,
    admitting: bool,
) -> None:
    """Check that *decorate* answers like *function* under its limit, and that it limits.

    Under the admitting limit five calls must all run the function; under the refusing one
    the first call runs it and the next two are refused without running it. *strict* is the
    same candidate under a limit of one call an hour: its second call must be refused. The
    bare call runs the function every time.
    """
    counted = cache.Counted(function)

    def call(target: Function) -> object:
        try:
            return counted.call(target, 7, runner)
        except REFUSALS as refusal:
            return refusal

    limited = decorate(counted.function)
    outcomes = [call(limited) for _ in range(5 if admitting else 3)]
    passthrough = name in PASSTHROUGH
    if admitting or passthrough:
        assert outcomes == [7] * len(outcomes), f"{name} gave {outcomes!r}, not 7 every time"
        calls = counted.calls
        assert calls == len(outcomes), f"{name} made {calls} calls, not {len(outcomes)}"
    else:
        assert outcomes[0] == 7, f"{name} refused its first call: {outcomes[0]!r}"
        assert all(isinstance(outcome, REFUSALS) for outcome in outcomes[1:]), (
            f"{name} did not refuse calls over one an hour: {outcomes!r}"
        )
        calls = counted.calls
        assert calls == 1, f"{name} ran the function {calls} times over the limit"
    if passthrough:
        return
    counted.calls = 0
    once = strict(counted.function)
    first, second = call(once), call(once)
    assert first == 7, f"{name} refused its first call: {first!r}"
    assert isinstance(second, REFUSALS), f"{name} let a second call an hour go: {second!r}"
    assert counted.calls == 1, f"{name} ran the function over the limit"
