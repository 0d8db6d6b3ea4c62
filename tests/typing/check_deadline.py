"""Typing checks: ``deadline`` blocks and ``@timeout`` keep what they wrap typed.

Checked by mypy --strict and run by ``tests/test_typing.py``; see ``check_retry.py`` for how
the ``_misuse_*`` functions prove errors.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import assert_type

from resilient import Deadline, deadline, remaining, timeout


@timeout(5)
def export(rows: list[int], *, dry_run: bool = False) -> int:
    return len(rows)


@timeout(timedelta(seconds=2), name="quotes")
async def quote(symbol: str) -> float:
    return 1.08


def check_blocks() -> None:
    """A deadline block yields a Deadline; remaining() is a float or None."""
    assert_type(remaining(), float | None)
    with deadline(1.5) as block:
        assert_type(block, Deadline)
        assert_type(block.at, float | None)


def check_signatures() -> None:
    """Functions under @timeout keep their parameters and return types."""
    assert_type(export([1, 2]), int)
    assert_type(export([1], dry_run=True), int)
    assert_type(asyncio.run(quote("EURUSD")), float)


def _misuse() -> None:
    """Wrong calls and options are type errors (never run)."""
    export("rows")  # type: ignore[arg-type]
    number: int = asyncio.run(quote("EURUSD"))  # type: ignore[assignment]
    deadline("1s")  # type: ignore[arg-type]
    timeout(1, "quotes")  # type: ignore[call-arg]
    del number
