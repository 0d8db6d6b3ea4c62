# The cache's policy and its decisions, free of I/O.
#
# Rules:
# - A stored entry lives `ttl + stale_ttl` seconds in the backend. While more than `stale_ttl`
#   of that is left it is fresh; after, it is stale: served while one refresh runs.
# - Probabilistic early refresh (XFetch, Vattani et al., "Optimal Probabilistic Cache Stampede
#   Prevention", VLDB 2015): a fresh entry is refreshed early when
#   `delta * beta * -ln(u) >= fresh time left`, where delta is how long the value took to
#   compute and u is uniform in (0, 1]. The chance grows as expiry nears and with the cost of
#   recomputing, so a hot key is refreshed once, shortly before it would expire.
# - `early_horizon` bounds where that draw can matter: -ln(u) exceeds 12 with probability
#   e**-12 (about 6 in a million), so until `delta * beta * 12` before the end of freshness
#   the entry is plainly fresh and the hot path draws no random number.
from __future__ import annotations

import enum
import math
from collections.abc import Callable, Iterable
from typing import Any

import attrs

from .seconds import Seconds, non_negative_number, non_negative_seconds, positive_seconds

__all__ = ["CachePolicy", "Freshness", "call_key", "judge", "positive_size"]

_HORIZON = 12.0


class Freshness(enum.Enum):
    """How a stored entry should be used."""

    FRESH = "fresh"
    EARLY = "early"  # fresh, but this call should start a refresh
    STALE = "stale"


def _ttl(value: Seconds) -> float:
    return positive_seconds("ttl", value)


def _stale_ttl(value: Seconds) -> float:
    return non_negative_seconds("stale_ttl", value)


def _lease_ttl(value: Seconds) -> float:
    return positive_seconds("lease_ttl", value)


def _local_ttl(value: Seconds | None) -> float | None:
    return None if value is None else positive_seconds("local_ttl", value)


def _early_refresh(value: float) -> float:
    return non_negative_number("early_refresh", value)


def positive_size(value: int) -> int:
    """Return *value* if it is a whole number above zero, else raise ValueError."""
    raw: object = value  # typed for callers; checked as whatever arrived
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < 1:
        raise ValueError(f"maxsize must be a positive int, e.g. maxsize=1024, not {value!r}")
    return value


def _condition(value: Callable[[Any], object] | None) -> Callable[[Any], object] | None:
    raw: object = value  # typed for callers; checked as whatever arrived
    if raw is not None and not callable(raw):
        raise TypeError(f"condition={value!r} must be a callable taking the result, or None")
    return value


def _tags(value: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    raw: object = value  # typed for callers; checked as whatever arrived
    tags = tuple(raw) if isinstance(raw, Iterable) and not isinstance(raw, str) else None
    if tags is None or not all(isinstance(tag, str) for tag in tags):
        raise TypeError(
            f"tags={value!r} must be a list of strings, e.g. tags=['users'] or "
            "tags=['user:{user_id}'] (templates are filled in with the call's arguments)"
        )
    return tags


def call_key(value: str | Callable[..., object] | None) -> str | Callable[..., object] | None:
    """Return *value* if it can be a ``key=`` option (a template, a callable, None)."""
    raw: object = value  # typed for callers; checked as whatever arrived
    if raw is not None and not isinstance(raw, str) and not callable(raw):
        raise TypeError(
            f"key={value!r} must be a template string such as '{{user_id}}' or a callable "
            "taking the function's arguments"
        )
    return value


@attrs.frozen(kw_only=True)
class CachePolicy:
    """What a cached function keeps, for how long, and how it refreshes.

    Args:
        ttl: Seconds (or a ``timedelta``) a value stays fresh.
        maxsize: How many values the function keeps in process memory (least recently used
            evicted first).
        stale_ttl: Seconds after ``ttl`` during which a stale value is still served while one
            background refresh runs (and, when that refresh fails, until it ends).
        early_refresh: How eagerly fresh values are refreshed before they expire (XFetch's
            beta); ``0`` turns early refresh off.
        key: What identifies a call: a template over the parameters (``"{user_id}"``) or a
            callable taking the function's arguments; by default all of them.
        condition: Only results for which this returns true are stored.
        cache_none: Whether a ``None`` result is stored.
        tags: Names to invalidate entries by (:func:`resilient.invalidate_tags`); templates
            such as ``"user:{user_id}"`` are filled in per call.
        lease_ttl: Seconds another process waits for the one computing a missing value before
            computing it too (so a crashed process frees the key); a caller's
            :func:`resilient.deadline` cuts the wait short.
        backend: Where entries live; by default the configured backend.
        local_ttl: With a shared backend, also keep each value read from it in this
            process's memory for up to this many seconds (never past its freshness), so that
            repeated calls cost no round trip; invalidations reach every process's copy.
            ``None`` (the default) keeps no local copy.
        name: The cache's name in keys and events; by default the function's qualified name.
    """

    ttl: float = attrs.field(converter=_ttl)
    maxsize: int = attrs.field(default=1024, converter=positive_size)
    stale_ttl: float = attrs.field(default=0.0, converter=_stale_ttl)
    early_refresh: float = attrs.field(default=1.0, converter=_early_refresh)
    key: str | Callable[..., object] | None = attrs.field(default=None, converter=call_key)
    condition: Callable[[Any], object] | None = attrs.field(default=None, converter=_condition)
    cache_none: bool = attrs.field(default=True, validator=attrs.validators.instance_of(bool))
    tags: tuple[str, ...] = attrs.field(default=(), converter=_tags)
    lease_ttl: float = attrs.field(default=10.0, converter=_lease_ttl)
    backend: object = None
    local_ttl: float | None = attrs.field(default=None, converter=_local_ttl)
    name: str | None = None

    @property
    def stored_ttl(self) -> float:
        """Return the seconds the backend keeps an entry, fresh and then stale."""
        return self.ttl + self.stale_ttl

    def early_horizon(self, delta: float) -> float:
        """Seconds before the end of freshness from which an early refresh may start."""
        return delta * self.early_refresh * _HORIZON

    def local_life(self, fresh_left: float, delta: float) -> float:
        """Seconds a value with *fresh_left* seconds of freshness may live in the local tier.

        Never past the point where an early refresh may start, so that the local tier only
        ever answers what the shared backend would answer as plainly fresh.
        """
        assert self.local_ttl is not None
        return min(self.local_ttl, fresh_left - self.early_horizon(delta))

    def stores(self, value: object) -> bool:
        """Whether *value*, just returned by the function, should be stored."""
        if value is None and not self.cache_none:
            return False
        return self.condition is None or bool(self.condition(value))


def judge(policy: CachePolicy, left: float, delta: float, draw: float) -> Freshness:
    """Decide how to use an entry with *left* seconds to live, computed in *delta* seconds.

    *draw* is uniform in (0, 1]; it decides a probabilistic early refresh.
    """
    fresh_left = left - policy.stale_ttl
    if fresh_left <= 0:
        return Freshness.STALE
    if delta * policy.early_refresh * -math.log(draw) >= fresh_left:
        return Freshness.EARLY
    return Freshness.FRESH
