"""Typing checks: ``@idempotent`` keeps the signature of what it decorates.

Checked by mypy --strict and run by ``tests/test_typing.py``; see ``check_retry.py`` for how
the ``_misuse_*`` functions prove errors.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import assert_type

from resilient import IdempotencyPolicy, idempotent


@idempotent(key="request_id", ttl=timedelta(days=1))
def create_order(request_id: str, cents: int, *, note: str = "") -> dict[str, int]:
    return {"cents": cents}


@idempotent(
    IdempotencyPolicy(key="request_id"),
    principal=lambda tenant, request_id: tenant,
    on_in_progress="wait",
    store_errors=(ValueError,),
)
async def acharge(tenant: str, request_id: str) -> float:
    return 1.5


class Payments:
    """A class with an idempotent method."""

    @idempotent(key=lambda request_id, cents: request_id, payload=["cents"], local_ttl=60)
    def refund(self, request_id: str, cents: int) -> bool:
        return cents > 0


def check_signatures() -> None:
    """Idempotent functions and methods keep their parameters and return types."""
    key = str(uuid.uuid4())
    assert_type(create_order(key, 5), dict[str, int])
    assert_type(create_order(key, 5, note=""), dict[str, int])
    assert_type(asyncio.run(acharge("acme", key)), float)
    assert_type(Payments().refund(key, 3), bool)


def _misuse() -> None:
    """Wrong calls and options are type errors (never run)."""
    create_order(1, 5)  # type: ignore[arg-type]
    create_order("k", 5, "note")  # type: ignore[call-arg]
    number: int = asyncio.run(acharge("acme", "k"))  # type: ignore[assignment]
    idempotent(keys="request_id")  # type: ignore[call-arg]
    idempotent(key="request_id", ttl="1d")  # type: ignore[arg-type]
    idempotent(key="request_id", on_in_progress="block")  # type: ignore[arg-type]
    idempotent(key="request_id", fail_open="yes")  # type: ignore[arg-type]
    del number
