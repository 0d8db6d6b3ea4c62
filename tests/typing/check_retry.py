"""Typing checks: ``@retry`` keeps the signature of what it decorates.

mypy --strict checks this file (``[tool.mypy] files`` includes ``tests/typing``). Every
``assert_type`` must hold, and every line in a ``_misuse_*`` function must be a type error: its
``# type: ignore[code]`` is then used. Should the decorator ever erase a signature, the error
disappears, mypy reports the ignore as unused (``warn_unused_ignores`` under ``--strict``) and
the typing run fails. The ``check_*`` functions also run for real, from ``tests/test_typing.py``;
the ``_misuse_*`` functions are only ever type-checked.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from datetime import timedelta
from typing import Any, assert_type

import resilient
from resilient import RetryBudget, RetryPolicy, retry
from resilient.typing import Wait


@retry(on=ConnectionError, attempts=3)
def fetch(url: str, *, timeout: float = 1.0) -> bytes:
    return url.encode()


@retry(on=(ConnectionError, TimeoutError), wait=resilient.wait.none())
async def fetch_async(url: str, retries: int = 0) -> bytes:
    return url.encode()


@retry(RetryPolicy(on=ConnectionError), attempts=2)
def from_policy(count: int) -> list[int]:
    return [count]


@retry(on=lambda exc: isinstance(exc, OSError), on_result=lambda result: result is None)
def maybe(key: str) -> int | None:
    return len(key)


class Client:
    """A class with every kind of decorated method."""

    def __init__(self, base: str) -> None:
        self.base = base

    @retry(on=ConnectionError)
    def get(self, path: str) -> str:
        return self.base + path

    @retry(on=ConnectionError)
    async def aget(self, path: str) -> str:
        return self.base + path

    @classmethod
    @retry(on=ConnectionError)
    def make(cls, base: str) -> Client:
        return cls(base)

    @staticmethod
    @retry(on=ConnectionError)
    def join(left: str, right: str) -> str:
        return left + right


def check_sync_function() -> None:
    """A decorated def keeps its parameters and its return type."""
    assert_type(fetch("a"), bytes)
    assert_type(fetch("a", timeout=2.0), bytes)
    keep: Callable[[str], bytes] = fetch
    assert keep("b") == b"b"
    assert_type(from_policy(3), list[int])
    assert_type(maybe("k"), int | None)


def check_async_function() -> None:
    """A decorated async def stays a coroutine function returning its own type."""
    coroutine = fetch_async("a")
    _ = assert_type(coroutine, Coroutine[Any, Any, bytes])
    coroutine.close()  # never awaited on purpose: only its type matters here

    async def main() -> bytes:
        result = await fetch_async("b", retries=1)
        assert_type(result, bytes)
        return result

    assert asyncio.run(main()) == b"b"


def check_methods() -> None:
    """Methods, classmethods and staticmethods keep their types on instances and classes."""
    client = Client("https://x/")
    assert_type(client.get("y"), str)
    assert_type(Client.make("https://z/"), Client)
    assert_type(client.make("https://z/"), Client)
    assert_type(Client.join("a", "b"), str)
    assert_type(client.join("a", "b"), str)
    coroutine = client.aget("y")
    _ = assert_type(coroutine, Coroutine[Any, Any, str])
    assert asyncio.run(coroutine) == "https://x/y"


def check_policy_fields() -> None:
    """RetryPolicy exposes its normalised fields with precise types."""
    policy = RetryPolicy(
        on=ConnectionError,
        attempts=None,
        deadline=timedelta(seconds=5),
        max_wait=2,
        budget=RetryBudget(ratio=0.1),
        name="payments",
    )
    # quoted: the aliases are strings at runtime (see test_typing.py)
    assert_type(policy.on, "resilient.typing.ExceptionTypes | resilient.typing.ExceptionPredicate")
    assert_type(policy.on_result, "resilient.typing.ResultPredicate | None")
    assert_type(policy.attempts, int | None)
    assert_type(policy.deadline, float | None)
    assert_type(policy.wait, Wait)
    assert_type(policy.max_wait, float)
    assert_type(policy.retry_after, bool)
    assert_type(policy.name, str | None)
    assert_type(policy.matches(ConnectionError()), bool)
    assert policy.deadline == 5.0
    assert policy.max_wait == 2.0


def _misuse_calls() -> None:
    """Calling a decorated function wrongly is a type error (never run)."""
    fetch(1)  # type: ignore[arg-type]
    fetch()  # type: ignore[call-arg]
    fetch("a", 2.0)  # type: ignore[call-arg]  # timeout is keyword-only
    fetch("a", timeout="slow")  # type: ignore[arg-type]
    fetch("a", retries=2)  # type: ignore[call-arg]
    _: str = fetch("a")  # type: ignore[assignment]
    __: Callable[[int], bytes] = fetch  # type: ignore[assignment]
    fetch_async(b"a")  # type: ignore[arg-type,unused-coroutine]
    from_policy("3")  # type: ignore[arg-type]


async def _misuse_async() -> None:
    """An awaited result keeps its type; the coroutine is not the result (never run)."""
    text: str = await fetch_async("a")  # type: ignore[assignment]
    data: bytes = fetch_async("a")  # type: ignore[assignment]
    del text, data


def _misuse_methods(client: Client) -> None:
    """Bound methods check their arguments, self excluded (never run)."""
    client.get(1)  # type: ignore[arg-type]
    client.get()  # type: ignore[call-arg]
    Client.make(1)  # type: ignore[arg-type]
    Client.join("a")  # type: ignore[call-arg]
    number: int = client.get("a")  # type: ignore[assignment]
    del number


def _misuse_options() -> None:
    """Decorator options are typed: wrong types and misspelt names are errors (never run).

    retry() is overloaded (a policy, or keyword arguments with a required on=), so mypy reports
    a bad option as call-overload.
    """
    retry(attempts=3)  # type: ignore[call-overload]  # on= is required
    retry(on="ConnectionError")  # type: ignore[call-overload]
    retry(on=ConnectionError())  # type: ignore[call-overload]
    retry(on=KeyboardInterrupt)  # type: ignore[arg-type]
    retry(on=ConnectionError, attemps=3)  # type: ignore[call-overload]
    retry(on=ConnectionError, attempts="3")  # type: ignore[call-overload]
    retry(on=ConnectionError, deadline="5s")  # type: ignore[call-overload]
    retry(on=ConnectionError, wait=5)  # type: ignore[call-overload]
    retry(on=ConnectionError, budget=0.2)  # type: ignore[call-overload]
    retry("policy")  # type: ignore[call-overload]
    retry(on=ConnectionError)(42)  # type: ignore[arg-type]
    RetryPolicy(attempts=3)  # type: ignore[call-arg]
    RetryPolicy(on=ConnectionError, attempts=2.5)  # type: ignore[arg-type]
    RetryPolicy(on=ConnectionError, name=7)  # type: ignore[arg-type]
