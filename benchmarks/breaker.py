"""The circuit breaker half of the benchmarks: closed-state overhead against the anchors.

Each candidate is a function that builds a fresh breaker around a function, configured alike:
trip after failures, stay open 30 s. `check_breaking` proves before timing that each one is a
real breaker (it stops calling a failing function) and answers like the bare function when
closed. The runner (benchmarks/run.py) times them.
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

import resilient

__all__ = ["ASYNC_CANDIDATES", "BREAKER", "CIRCUITBREAKER", "SYNC_CANDIDATES", "check_breaking"]

Function: TypeAlias = Callable[..., Any]
Decorate: TypeAlias = Callable[[Function], Function]

BARE = "bare call"
BREAKER = "resilient.breaker"
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
