"""Typing checks: ``@fallback`` keeps the signature of what it decorates.

Checked by mypy --strict and run by ``tests/test_typing.py``; see ``check_retry.py`` for how
the ``_misuse_*`` functions prove errors.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, assert_type

from resilient import FallbackPolicy, breaker, fallback, retry
from resilient.typing import ExceptionPredicate, ExceptionTypes


async def _later(exc: Exception) -> float:
    return 1.0


@fallback(on=ConnectionError, value={})
def rates(currency: str, *, day: int = 0) -> dict[str, float]:
    return {currency: 1.0 + day}


@fallback(on=(ConnectionError, TimeoutError), handler=_later)
async def arate(currency: str) -> float:
    return 1.08


@fallback(FallbackPolicy(on=KeyError, value=None), name="typing-lookup")
def lookup(key: str) -> int | None:
    return len(key)


@fallback(on=lambda exc: isinstance(exc, OSError), handler=lambda exc: [])
@retry(on=ConnectionError, attempts=2)
@breaker("typing-fallback")
def stacked(count: int) -> list[int]:
    return [count]


class Client:
    """A class with answered methods."""

    @fallback(on=ConnectionError, value=b"")
    def get(self, path: str) -> bytes:
        return path.encode()

    @classmethod
    @fallback(on=ValueError, value=None)
    def parse(cls, text: str) -> Client | None:
        return cls()


def check_signatures() -> None:
    """Answered functions and methods keep their parameters and return types."""
    assert_type(rates("USD"), dict[str, float])
    assert_type(rates("USD", day=2), dict[str, float])
    keep: Callable[[str], dict[str, float]] = rates
    assert keep("EUR") == {"EUR": 1.0}
    coroutine = arate("EUR")
    _ = assert_type(coroutine, Coroutine[Any, Any, float])
    assert asyncio.run(coroutine) == 1.08
    assert_type(lookup("k"), int | None)
    assert_type(stacked(3), list[int])
    assert_type(Client().get("/"), bytes)
    assert_type(Client.parse("x"), Client | None)


def check_policy_fields() -> None:
    """FallbackPolicy exposes its fields with precise types."""
    policy = FallbackPolicy(on=[ConnectionError], handler=repr, name="typed")
    assert_type(policy.on, ExceptionTypes | ExceptionPredicate)
    assert_type(policy.value, object)
    assert_type(policy.handler, Callable[[Exception], object] | None)
    assert_type(policy.name, str | None)
    assert_type(policy.matches(ConnectionError()), bool)
    assert policy.on == (ConnectionError,)


def _misuse() -> None:
    """Wrong calls and options are type errors (never run)."""
    rates(1)  # type: ignore[arg-type]
    rates("USD", 2)  # type: ignore[call-arg]
    number: int = asyncio.run(arate("EUR"))  # type: ignore[assignment]
    Client().get(3)  # type: ignore[arg-type]
    fallback(value=None)  # type: ignore[call-overload]  # on= is required
    fallback(on=KeyError)  # type: ignore[call-overload]  # value= or handler= is required
    fallback(on=KeyError, value=1, handler=repr)  # type: ignore[call-overload]  # not both
    fallback(on=KeyError, valu=1)  # type: ignore[call-overload]
    fallback(on=KeyError, handler="[]")  # type: ignore[call-overload]
    fallback(on="KeyError", value=None)  # type: ignore[call-overload]
    fallback(on=KeyboardInterrupt, value=None)  # type: ignore[arg-type]
    fallback(on=KeyError, value=None, name=3)  # type: ignore[call-overload]
    FallbackPolicy(on=KeyError, handler=len)  # type: ignore[arg-type]
    del number
