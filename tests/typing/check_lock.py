"""Typing checks: ``lock`` blocks yield a typed ``Lease``, and decorated functions keep their types.

Checked by mypy --strict and run by ``tests/test_typing.py``; see ``check_retry.py`` for how
the ``_misuse_*`` functions prove errors.
"""

from __future__ import annotations

import asyncio
from typing import assert_type

from resilient import Lease, Lock, LockPolicy, lock

nightly = lock("typing-nightly", ttl=5, renew=True, on_lost=lambda lease: print(lease.token))


@nightly
def publish(body: str) -> int:
    return len(body)


@lock("typing-async", LockPolicy(ttl=5), timeout=0)
async def apublish(body: str) -> int:
    return len(body)


def check_blocks() -> None:
    """A block yields a Lease whose fields and checks are typed."""
    assert_type(nightly, Lock)
    with nightly as lease:
        assert_type(lease, Lease)
        assert_type(lease.token, int)
        assert_type(lease.lost, bool)
        assert_type(lease.remaining, float)
        lease.check()


def check_signatures() -> None:
    """Functions run under a lock keep their parameters and return types."""
    assert_type(publish("report"), int)
    assert_type(asyncio.run(apublish("report")), int)


def _misuse() -> None:
    """Wrong calls and options are type errors (never run)."""
    publish(1)  # type: ignore[arg-type]
    lock("x", renewal=True)  # type: ignore[call-arg]
    lock("x", renew="yes")  # type: ignore[arg-type]
    lock("x", on_lost=3)  # type: ignore[arg-type]
    lease: Lease = nightly  # type: ignore[assignment]
    del lease
