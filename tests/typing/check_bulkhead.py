"""Typing checks: ``@bulkhead`` keeps the signature of what it decorates.

Checked by mypy --strict and run by ``tests/test_typing.py``; see ``check_retry.py`` for how
the ``_misuse_*`` functions prove errors.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import assert_type

from resilient import BulkheadPolicy, bulkhead


@bulkhead()
def render(page: str, *, zoom: int = 1) -> bytes:
    return page.encode() * zoom


@bulkhead(max_concurrent=4, max_waiting=100, timeout=timedelta(seconds=2))
async def arender(page: str) -> str:
    return page


@bulkhead(BulkheadPolicy(max_concurrent=2), name="typing-bulkhead", timeout=None)
def lookup(key: str) -> int | None:
    return len(key)


class Client:
    """A class with bounded methods."""

    @bulkhead(max_concurrent=1)
    def get(self, path: str) -> bytes:
        return path.encode()

    @bulkhead(max_concurrent=1)
    async def aget(self, path: str) -> bytes:
        return path.encode()


def check_signatures() -> None:
    """Bounded functions and methods keep their parameters and return types."""
    assert_type(render("home"), bytes)
    assert_type(render("home", zoom=2), bytes)
    assert_type(asyncio.run(arender("home")), str)
    assert_type(lookup("k"), int | None)
    assert_type(Client().get("/"), bytes)
    assert_type(asyncio.run(Client().aget("/")), bytes)


def _misuse() -> None:
    """Wrong calls and options are type errors (never run)."""
    render(1)  # type: ignore[arg-type]
    render("home", 2)  # type: ignore[call-arg]
    number: int = asyncio.run(arender("home"))  # type: ignore[assignment]
    bulkhead(max_concurent=3)  # type: ignore[call-arg]
    bulkhead(max_concurrent="3")  # type: ignore[arg-type]
    bulkhead(timeout="2s")  # type: ignore[arg-type]
    BulkheadPolicy(max_waiting="3")  # type: ignore[arg-type]
    del number
