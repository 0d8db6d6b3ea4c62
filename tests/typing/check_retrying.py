"""Typing checks: ``retrying()`` blocks iterate typed ``Attempt`` objects, sync and async.

Checked by mypy --strict and run by ``tests/test_typing.py``; see ``check_retry.py`` for how
the ``_misuse_*`` functions prove errors.
"""

from __future__ import annotations

import asyncio
from typing import assert_type

from resilient import Attempt, Retrying, RetryPolicy, retrying, wait


def check_sync_block() -> None:
    """``for`` over retrying() yields Attempts, usable as ``with`` blocks."""
    blocks = retrying(on=ConnectionError, attempts=3, wait=wait.none())
    assert_type(blocks, Retrying)
    failures = 0
    for attempt in blocks:
        assert_type(attempt, Attempt)
        assert_type(attempt.number, int)
        with attempt as entered:
            assert_type(entered, Attempt)
            if failures < 1:
                failures += 1
                raise ConnectionError
        assert_type(attempt.delay, float | None)
    assert failures == 1


def check_async_block() -> None:
    """``async for`` over retrying() yields the same Attempts."""

    async def main() -> int:
        numbers: list[int] = []
        async for attempt in retrying(RetryPolicy(on=TimeoutError, wait=wait.none())):
            assert_type(attempt, Attempt)
            with attempt:
                numbers.append(attempt.number)
                if len(numbers) < 2:
                    raise TimeoutError
        return len(numbers)

    assert asyncio.run(main()) == 2


def _misuse() -> None:
    """retrying() takes the same typed options as @retry (never run)."""
    retrying(on=ConnectionError, attempts="3")  # type: ignore[call-overload]
    retrying(on=ConnectionError, tries=3)  # type: ignore[call-overload]
    retrying(ConnectionError)  # type: ignore[call-overload]
    retrying(attempts=3)  # type: ignore[call-overload]  # on= is required
    for attempt in retrying(on=ConnectionError):
        number: str = attempt.number  # type: ignore[assignment]
        del number
