"""The bulkhead part of benchmarks/run.py: what `@resilient.bulkhead` costs a call it admits.

Each candidate is a decorator that lets at most `MAX_CONCURRENT` calls of the function of its
scenario run at once and refuses the others at once (no queue: `@bulkhead`'s default
``max_waiting=0``). The runner calls one at a time, so every timed call finds a free slot:
what is timed is taking a slot and giving it back around the call. In one process the anchors
are written by hand: a counter under a `threading.Lock` (what `@bulkhead` keeps), a
`threading.BoundedSemaphore` taken without blocking, and for async functions an
`asyncio.Semaphore`. Shared (``shared=True``), the slots live on the runner's `redis-server`,
and the floor is a counting semaphore by hand on redis-py: ``INCR`` to take a slot (and
``DECR`` to give it back at once when over the bound), ``DECR`` to give it back, two round trips
and no leases. `check_bounding` proves before timing that every candidate answers like the
function and really bounds: with one slot, a call made from inside a running call is refused.
See docs/benchmarks.md.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import itertools
import threading
from collections.abc import Callable
from typing import Any, TypeAlias

import cache  # benchmarks/cache.py, beside this file
import redis
import redis.asyncio

import resilient
from resilient.backends.redis import RedisBackend
from resilient.exceptions import BulkheadFullError

Function: TypeAlias = Callable[..., Any]
Decorate: TypeAlias = Callable[[Function], Function]

MAX_CONCURRENT = 10

# candidate names used by the runner's tables
BARE = cache.BARE
RAW = cache.RAW
BULKHEAD = "resilient.bulkhead"
SHARED = "resilient.bulkhead(shared=True)"
COUNTER = "hand-written counter + Lock"
BOUNDED = "threading.BoundedSemaphore"
ASYNCIO = "asyncio.Semaphore"

PASSTHROUGH = frozenset({BARE})

_names = itertools.count()


class Full(Exception):  # noqa: N818 - named as a hand-written bulkhead would name it
    """What the hand-written candidates raise when every slot is taken."""


REFUSALS = (BulkheadFullError, Full)


def _unique() -> str:
    return f"bench-bulkhead-{next(_names)}"


def bare(function: Function) -> Function:
    """No bulkhead: the function itself."""
    return function


class Candidates:
    """Every candidate with *max_concurrent* slots; with *url*, the shared ones, and closing.

    Every decoration gets slots of its own: a name of its own for `@bulkhead` (which otherwise
    names its slots after the function) and a key of its own for the floor.
    """

    def __init__(self, max_concurrent: int = MAX_CONCURRENT, url: str | None = None) -> None:
        self.max_concurrent = max_concurrent
        self.url = url
        self._backend: RedisBackend | None = None
        self._client: redis.Redis | None = None
        self._aclient: redis.asyncio.Redis | None = None  # bound to the loop that first uses it

    def close(self, runner: asyncio.Runner) -> None:
        """Close every client the candidates made, the asyncio ones inside *runner*'s loop."""

        async def aclose() -> None:
            if self._backend is not None:
                await self._backend.aclose()
            if self._aclient is not None:
                await self._aclient.aclose()

        runner.run(aclose())
        if self._client is not None:
            self._client.close()

    # in one process

    def resilient_bulkhead(self, function: Function) -> Function:
        return resilient.bulkhead(max_concurrent=self.max_concurrent, name=_unique())(function)

    def counter(self, function: Function) -> Function:
        """A count of running calls under a threading.Lock, which `@bulkhead` keeps too."""
        lock, bound = threading.Lock(), self.max_concurrent
        running = 0

        def take() -> None:
            nonlocal running
            with lock:
                if running >= bound:
                    raise Full
                running += 1

        def give_back() -> None:
            nonlocal running
            with lock:
                running -= 1

        if inspect.iscoroutinefunction(function):

            @functools.wraps(function)
            async def abounded(*args: Any, **kwargs: Any) -> Any:
                take()
                try:
                    return await function(*args, **kwargs)
                finally:
                    give_back()

            return abounded

        @functools.wraps(function)
        def bounded(*args: Any, **kwargs: Any) -> Any:
            take()
            try:
                return function(*args, **kwargs)
            finally:
                give_back()

        return bounded

    def bounded_semaphore(self, function: Function) -> Function:
        """A threading.BoundedSemaphore, taken without blocking."""
        semaphore = threading.BoundedSemaphore(self.max_concurrent)

        @functools.wraps(function)
        def bounded(*args: Any, **kwargs: Any) -> Any:
            if not semaphore.acquire(blocking=False):
                raise Full
            try:
                return function(*args, **kwargs)
            finally:
                semaphore.release()

        return bounded

    def asyncio_semaphore(self, function: Function) -> Function:
        """An asyncio.Semaphore, refusing at once when it would have to wait."""
        semaphore = asyncio.Semaphore(self.max_concurrent)

        @functools.wraps(function)
        async def abounded(*args: Any, **kwargs: Any) -> Any:
            if semaphore.locked():
                raise Full
            async with semaphore:
                return await function(*args, **kwargs)

        return abounded

    def sync(self) -> dict[str, Decorate]:
        return {
            BARE: bare,
            COUNTER: self.counter,
            BOUNDED: self.bounded_semaphore,
            BULKHEAD: self.resilient_bulkhead,
        }

    def asynchronous(self) -> dict[str, Decorate]:
        return {
            BARE: bare,
            COUNTER: self.counter,
            ASYNCIO: self.asyncio_semaphore,
            BULKHEAD: self.resilient_bulkhead,
        }

    # shared, on Redis

    def _url(self) -> str:
        assert self.url is not None, "no Redis for these candidates"
        return self.url

    def resilient_shared(self, function: Function) -> Function:
        if self._backend is None:
            self._backend = RedisBackend.from_url(self._url())
        return resilient.bulkhead(
            max_concurrent=self.max_concurrent, shared=True, backend=self._backend, name=_unique()
        )(function)

    def raw(self, function: Function) -> Function:
        """The floor: ``INCR`` to take a slot, ``DECR`` to give it back; no leases."""
        key, bound = _unique(), self.max_concurrent
        if inspect.iscoroutinefunction(function):

            @functools.wraps(function)
            async def abounded(*args: Any, **kwargs: Any) -> Any:
                if self._aclient is None:
                    self._aclient = redis.asyncio.Redis.from_url(self._url())
                client = self._aclient
                if await client.incr(key) > bound:
                    await client.decr(key)
                    raise Full
                try:
                    return await function(*args, **kwargs)
                finally:
                    await client.decr(key)

            return abounded
        if self._client is None:
            self._client = redis.Redis.from_url(self._url())
        client = self._client

        @functools.wraps(function)
        def bounded(*args: Any, **kwargs: Any) -> Any:
            if client.incr(key) > bound:
                client.decr(key)
                raise Full
            try:
                return function(*args, **kwargs)
            finally:
                client.decr(key)

        return bounded

    def shared(self) -> dict[str, Decorate]:
        """The shared candidates, alike for sync and async functions."""
        return {BARE: bare, RAW: self.raw, SHARED: self.resilient_shared}


# -- checking that a candidate bounds ------------------------------------------------------------


def check_bounding(
    name: str, decorate: Decorate, strict: Decorate, function: Function, runner: asyncio.Runner
) -> None:
    """Check that *decorate* answers like *function*, and that *strict* (one slot) bounds.

    Three calls in a row must each run the function. Under *strict*, the same candidate with
    one slot, a call made from inside a running call must be refused without running the
    function, and the outer call must still answer; a call after it must find its slot free.
    """
    counted = cache.Counted(function)
    is_async = counted.is_async

    def call(target: Function) -> Any:
        return counted.call(target, 7, runner)

    bounded = decorate(counted.function)
    outcomes = [call(bounded) for _ in range(3)]
    assert outcomes == [7, 7, 7], f"{name} gave {outcomes!r}"
    assert counted.calls == 3, f"{name} made {counted.calls} calls, not 3"
    if name in PASSTHROUGH:
        return
    inner: list[object] = []

    def nest(value: int) -> Any:
        if not inner:
            try:
                inner.append(once(value))
            except REFUSALS as refusal:
                inner.append(refusal)
        return function(value)

    async def anest(value: int) -> Any:
        if not inner:
            try:
                inner.append(await once(value))
            except REFUSALS as refusal:
                inner.append(refusal)
        return await function(value)

    once = strict(anest if is_async else nest)
    assert call(once) == 7, f"{name} changed the answer"
    assert len(inner) == 1, f"{name}: the nested call did not run"
    assert isinstance(inner[0], REFUSALS), f"{name} let two calls run in one slot: {inner!r}"
    inner.clear()
    inner.append("not again")
    assert call(once) == 7, f"{name} did not give its slot back"
