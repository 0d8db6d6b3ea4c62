"""Typing checks: ``@deduped`` keeps the signature of what it decorates.

Checked by mypy --strict and run by ``tests/test_typing.py``; see ``check_retry.py`` for how
the ``_misuse_*`` functions prove errors.
"""

from __future__ import annotations

import asyncio
from typing import assert_type

from resilient import DedupePolicy, deduped


@deduped()
def rates(currency: str, *, day: int = 0) -> dict[str, float]:
    return {currency: 1.0 + day}


@deduped(DedupePolicy(max_flights=10), key="{currency}")
async def arates(currency: str) -> float:
    return 1.08


@deduped(shared=True, lease_ttl=10, name="typing-shared")
async def ashared(day: str) -> dict[str, str]:
    return {"day": day}


class Client:
    """A class with a deduplicated method."""

    @deduped()
    def get(self, path: str) -> bytes:
        return path.encode()


def check_signatures() -> None:
    """Deduplicated functions and methods keep their parameters and return types."""
    assert_type(rates("USD"), dict[str, float])
    assert_type(rates("USD", day=2), dict[str, float])
    assert_type(asyncio.run(arates("EUR")), float)
    assert_type(Client().get("/"), bytes)
    assert_type(asyncio.run(ashared("2026-12-07")), dict[str, str])


def _misuse() -> None:
    """Wrong calls and options are type errors (never run)."""
    rates(1)  # type: ignore[arg-type]
    rates("USD", 2)  # type: ignore[call-arg]
    number: int = asyncio.run(arates("EUR"))  # type: ignore[assignment]
    deduped(max_flight=3)  # type: ignore[call-arg]
    deduped(max_flights="3")  # type: ignore[arg-type]
    deduped(shared="yes")  # type: ignore[arg-type]
    deduped(shared=True, lease_ttl="10")  # type: ignore[arg-type]
    del number
