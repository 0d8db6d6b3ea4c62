"""Resilience for service calls: retries, breakers, caches, single flight, idempotency, locks.

Every decorator works on sync and async functions and methods and reports each decision to
the observers configured with :func:`configure`.
"""

from __future__ import annotations

from . import wait
from ._breaker import Breaker, breaker
from ._bulkhead import bulkhead
from ._cache import (
    Cached,
    CachePolicy,
    CacheStatus,
    ainvalidate_tags,
    cache_status,
    cached,
    invalidate_tags,
)
from ._config import configure, reset_defaults
from ._core.breaker import BreakerPolicy, BreakerState, BreakerStats
from ._core.bulkhead import BulkheadPolicy
from ._core.dedupe import DedupePolicy
from ._core.fallback import FallbackPolicy
from ._core.idempotency import IdempotencyPolicy
from ._core.ratelimit import RateLimitPolicy
from ._deadline import Deadline, deadline, remaining
from ._dedupe import deduped
from ._fallback import fallback
from ._idempotent import idempotent
from ._lock import Lease, Lock, LockPolicy, lock
from ._pipeline import Pipeline, pipeline
from ._ratelimit import RateLimiter, rate_limited
from ._retry import Attempt, RetryBudget, Retrying, RetryPolicy, retry, retrying
from ._timeout import timeout

__all__ = [
    # configuration
    "configure",
    "reset_defaults",
    # retrying
    "retry",
    "retrying",
    "RetryPolicy",
    "RetryBudget",
    "Retrying",
    "Attempt",
    "wait",
    # deadlines and time limits
    "deadline",
    "Deadline",
    "remaining",
    "timeout",
    # circuit breaking
    "breaker",
    "Breaker",
    "BreakerPolicy",
    "BreakerState",
    "BreakerStats",
    # rate limiting
    "rate_limited",
    "RateLimiter",
    "RateLimitPolicy",
    # bulkheads
    "bulkhead",
    "BulkheadPolicy",
    # single flight
    "deduped",
    "DedupePolicy",
    # fallbacks
    "fallback",
    "FallbackPolicy",
    # idempotency
    "idempotent",
    "IdempotencyPolicy",
    # locks
    "lock",
    "Lock",
    "LockPolicy",
    "Lease",
    # caching
    "cached",
    "CachePolicy",
    "Cached",
    "CacheStatus",
    "cache_status",
    "invalidate_tags",
    "ainvalidate_tags",
    # composing
    "pipeline",
    "Pipeline",
]


def __getattr__(name: str) -> str:
    if name == "__version__":
        from importlib.metadata import version  # noqa: PLC0415 - only read when asked for

        return version("resilient")
    raise AttributeError(f"module 'resilient' has no attribute {name!r}")
