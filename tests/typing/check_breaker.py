"""Typing checks: a ``Breaker`` keeps the signature of what it guards, and its API is typed.

Checked by mypy --strict and run by ``tests/test_typing.py``; see ``check_retry.py`` for how
the ``_misuse_*`` functions prove errors.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from datetime import timedelta
from typing import Any, assert_type

from resilient import Breaker, BreakerPolicy, BreakerState, BreakerStats, breaker, retry
from resilient.exceptions import CircuitOpenError

inventory = breaker("typing-inventory", failure_rate=0.5, window=timedelta(seconds=30))


@inventory
def stock(sku: str, *, region: str = "eu") -> int:
    return len(sku)


@breaker("typing-async", consecutive_failures=3, failure_rate=None, open_for=timedelta(seconds=5))
async def astock(sku: str) -> int:
    return len(sku)


@retry(on=CircuitOpenError, attempts=2)
@breaker("typing-stacked", BreakerPolicy(half_open_calls=2), fallback=lambda sku: -1)
def stacked(sku: str) -> int:
    return len(sku)


class Client:
    """A class with a guarded method."""

    @breaker("typing-method")
    def get(self, path: str) -> str:
        return path


def check_signatures() -> None:
    """Guarded functions and methods keep their parameters and return types."""
    assert_type(stock("A"), int)
    assert_type(stock("A", region="us"), int)
    assert_type(asyncio.run(astock("A")), int)
    coroutine: Coroutine[Any, Any, int] = astock("B")
    coroutine.close()
    assert_type(stacked("A"), int)
    assert_type(Client().get("/"), str)


def check_the_breaker_api() -> None:
    """State, stats, controls and blocks are typed."""
    assert_type(inventory, Breaker)
    assert_type(inventory.state, BreakerState)
    stats = inventory.stats()
    assert_type(stats, BreakerStats)
    assert_type(stats.failure_rate, float | None)
    assert_type(stats.until_half_open, float | None)
    inventory.open()
    inventory.disable()
    inventory.close()
    inventory.reset()
    with inventory as block:
        assert_type(block, Breaker)

    async def guarded() -> None:
        async with inventory as entered:
            assert_type(entered, Breaker)

    asyncio.run(guarded())
    assert_type(inventory.policy.open_for, float)


def _misuse_calls() -> None:
    """Calling a guarded function wrongly is a type error (never run)."""
    stock(1)  # type: ignore[arg-type]
    stock("A", "us")  # type: ignore[call-arg]  # region is keyword-only
    name: str = stock("A")  # type: ignore[assignment]
    number: int = astock("A")  # type: ignore[assignment]
    Client().get(1)  # type: ignore[arg-type]
    del name, number


def _misuse_options() -> None:
    """Breaker options are typed: wrong types and misspelt names are errors (never run)."""
    breaker("x", failure_rate="half")  # type: ignore[arg-type]
    breaker("x", window="1m")  # type: ignore[arg-type]
    breaker("x", open_fr=5)  # type: ignore[call-arg]
    breaker("x", half_open_calls=1.5)  # type: ignore[arg-type]
    breaker(name="x")  # type: ignore[call-arg]  # the name is positional
    breaker(5)  # type: ignore[arg-type]
    inventory(42)  # type: ignore[arg-type]
