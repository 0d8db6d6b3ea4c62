"""The circuit breaker part of the benchmarks: closed-state overhead against the anchors.

Each candidate is a function that builds a fresh breaker around a function, configured alike:
trip after failures, stay open 30 s. `check_breaking` proves before timing that each one is a
real breaker (it stops calling a failing function) and answers like the bare function when
closed. The runner (benchmarks/run.py) times them. `SharedCandidates` are the breakers that
keep their state in Redis; the runner counts the commands each sends per call.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeAlias

import aiobreaker
import circuitbreaker
import purgatory
import pybreaker
import redis

import resilient
from resilient.backends.redis import RedisBackend

__all__ = [
    "ASYNC_CANDIDATES",
    "BREAKER",
    "CIRCUITBREAKER",
    "SHARED",
    "SYNC_CANDIDATES",
    "SharedCandidates",
    "check_breaking",
]

Function: TypeAlias = Callable[..., Any]
Decorate: TypeAlias = Callable[[Function], Function]

BARE = "bare call"
BREAKER = "resilient.breaker"
SHARED = "resilient.breaker, shared"
CIRCUITBREAKER = "circuitbreaker"
_names = itertools.count()


def bare(function: Function) -> Function:
    """No breaker: the function itself."""
    return function


def resilient_breaker(function: Function) -> Function:
    # the defaults: failure rate 50% over the last 100 calls, once 10 are in; open 30 s
    return resilient.breaker(f"bench-{next(_names)}", open_for=30)(function)


def circuitbreaker_circuit(function: Function) -> Function:
    return circuitbreaker.circuit(
        failure_threshold=5, recovery_timeout=30, expected_exception=ConnectionError
    )(function)


def purgatory_sync(function: Function) -> Function:
    factory = purgatory.SyncCircuitBreakerFactory(default_threshold=5, default_ttl=30)
    return factory(f"bench-{next(_names)}")(function)


def purgatory_async(function: Function) -> Function:
    factory = purgatory.AsyncCircuitBreakerFactory(default_threshold=5, default_ttl=30)
    return factory(f"bench-{next(_names)}")(function)


def pybreaker_breaker(function: Function) -> Function:
    return pybreaker.CircuitBreaker(fail_max=5, reset_timeout=30)(function)


def aiobreaker_breaker(function: Function) -> Function:
    return aiobreaker.CircuitBreaker(fail_max=5, timeout_duration=timedelta(seconds=30))(function)


SYNC_CANDIDATES: dict[str, Decorate] = {
    BARE: bare,
    BREAKER: resilient_breaker,
    CIRCUITBREAKER: circuitbreaker_circuit,
    "purgatory": purgatory_sync,
    "pybreaker": pybreaker_breaker,
}
ASYNC_CANDIDATES: dict[str, Decorate] = {
    BARE: bare,
    BREAKER: resilient_breaker,
    CIRCUITBREAKER: circuitbreaker_circuit,
    "purgatory": purgatory_async,
    "aiobreaker": aiobreaker_breaker,
}


def check_breaking(
    name: str, decorate: Decorate, function: Function, runner: asyncio.Runner
) -> None:
    """Check *decorate* answers like *function* when closed, and stops calling a failing one."""
    is_async = inspect.iscoroutinefunction(function)

    def call(target: Function, value: int) -> Any:
        if is_async:
            return runner.run(target(value))
        return target(value)

    assert call(decorate(function), 7) == 7, f"{name} changed the answer"
    if name == BARE:
        return
    calls = 0

    def broken(value: int) -> int:
        nonlocal calls
        calls += 1
        raise ConnectionError(value)

    async def abroken(value: int) -> int:
        return broken(value)

    guarded = decorate(abroken if is_async else broken)
    for _ in range(30):
        try:
            call(guarded, 1)
        except Exception:  # the failure, then each library's own refusal
            continue
    assert calls < 30, f"{name} never stopped calling a failing function"


class SharedCandidates:
    """Breakers whose state lives in the Redis at *url*, and what closes their clients."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._backends: list[RedisBackend] = []
        self._clients: list[redis.Redis] = []

    def close(self, runner: asyncio.Runner) -> None:
        """Close every client the candidates made."""

        async def aclose() -> None:
            for backend in self._backends:
                await backend.aclose()

        runner.run(aclose())
        for client in self._clients:
            client.close()

    def resilient_shared(self, function: Function) -> Function:
        # the defaults, shared: outcomes go to Redis with a sync every 0.25 s
        backend = RedisBackend.from_url(self.url)
        self._backends.append(backend)
        name = f"bench-{next(_names)}"
        return resilient.breaker(name, shared=True, backend=backend, open_for=30)(function)

    def pybreaker_redis(self, function: Function) -> Function:
        client = redis.Redis.from_url(self.url)
        self._clients.append(client)
        storage = pybreaker.CircuitRedisStorage(
            pybreaker.STATE_CLOSED, client, namespace=f"bench-{next(_names)}"
        )
        return pybreaker.CircuitBreaker(fail_max=5, reset_timeout=30, state_storage=storage)(
            function
        )

    def purgatory_redis(self, function: Function) -> Function:
        factory = purgatory.AsyncCircuitBreakerFactory(
            default_threshold=5, default_ttl=30, uow=purgatory.AsyncRedisUnitOfWork(self.url)
        )
        decorated = factory(f"bench-{next(_names)}")(function)
        initialized = False

        async def guarded(value: int) -> Any:
            nonlocal initialized
            if not initialized:  # its Redis client is made in the loop that runs it
                await factory.initialize()
                initialized = True
            return await decorated(value)

        return guarded

    def sync(self) -> dict[str, Decorate]:
        # purgatory's sync Redis mode is left out: in purgatory 3.0.1 its repository calls
        # the asyncio Redis client without awaiting it and fails on the first call
        return {BARE: bare, SHARED: self.resilient_shared, "pybreaker": self.pybreaker_redis}

    def asynchronous(self) -> dict[str, Decorate]:
        # pybreaker has no asyncio support, aiobreaker and circuitbreaker no shared state
        return {BARE: bare, SHARED: self.resilient_shared, "purgatory": self.purgatory_redis}
