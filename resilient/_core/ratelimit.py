# The rate-limit policy and its one decision, free of I/O: the generic cell rate algorithm
# (GCRA), a token bucket kept as a single number per key.
#
# Rules:
# - A limit of `rate` calls per `per` seconds admits one call every `interval = per / rate`
#   seconds on average, and up to `burst` calls at once after a quiet spell.
# - The state of a key is its theoretical arrival time (TAT): when the bucket will be full
#   again. A call arriving at `now` is admitted when `max(tat, now) + interval - burst *
#   interval <= now`, which then moves the TAT on by one interval. A key whose TAT has passed
#   holds a full bucket, exactly as a key never seen: it can be forgotten.
# - A call may also reserve the next token up to `max_wait` seconds ahead: it is admitted
#   now, the TAT moves on, and it must wait that long before it runs. So waiting callers queue
#   in arrival order, and each decision is still one atomic step (one command on Redis).
# - The Redis script (backends/_lua.py, THROTTLE) is this same arithmetic, in microseconds.
from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import attrs

from .cache import call_key
from .primitives import needs_primitives
from .seconds import Seconds, finite_number, positive_seconds

__all__ = ["RateLimitPolicy", "Throttled", "throttle"]

# What a shared limit does on the backend: one decision per call.
_PRIMITIVES = ("throttle",)


class Throttled(NamedTuple):
    """One rate-limit decision.

    Attributes:
        admitted: Whether the call may go ahead (after waiting ``wait`` seconds).
        wait: Admitted: seconds the call must wait first, for the token it reserved (0.0 to
            go at once). Refused: seconds until a token is free.
    """

    admitted: bool
    wait: float


# A wait this short is rounding error in the sums above (burst * interval against interval
# added burst times), not a token still to come.
_SLACK = 1e-9

ADMITTED = Throttled(admitted=True, wait=0.0)
"""A call admitted at once: the common decision, allocated once."""


def throttle(
    tat: float, now: float, interval: float, burst: int, max_wait: float
) -> tuple[Throttled, float]:
    """Decide one call of a key whose TAT is *tat*, at *now*; return it and the new TAT.

    A refused call leaves the TAT as it was.
    """
    start = tat if tat > now else now
    wait = start + interval - burst * interval - now
    if wait <= _SLACK:
        return ADMITTED, start + interval
    if wait > max_wait:
        return Throttled(admitted=False, wait=wait), tat
    return Throttled(admitted=True, wait=wait), start + interval


def _rate(value: float) -> float:
    hint = "give calls per period as a positive number, e.g. rate=100"
    result = finite_number("rate", value, hint)
    if result <= 0:
        raise ValueError(f"rate={value!r} must be more than zero: {hint}")
    return result


def _per(value: Seconds) -> float:
    return positive_seconds("per", value)


def _burst(value: int | None) -> int | None:
    raw: object = value  # typed for callers; checked as whatever arrived
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise TypeError(f"burst={value!r} is not a whole number: give an int, e.g. burst=10")
    if raw < 1:
        raise ValueError(f"burst={value!r} is too small: give 1 or more, e.g. burst=10")
    return raw


def _max_wait(value: Seconds | None) -> float | None:
    return None if value is None else positive_seconds("max_wait", value)


@attrs.frozen(kw_only=True)
class RateLimitPolicy:
    """How often a function may be called. Every field is also a keyword of ``rate_limited``.

    Attributes:
        rate: How many calls each ``per`` seconds, on average: ``rate=100, per=1`` is 100 calls
            a second, one every 10 ms. Fractions are fine (``rate=1, per=60`` is one a minute).
        per: The period of ``rate``, in seconds or a ``timedelta``; 1 second by default.
        burst: How many calls may go at once after a quiet spell (the size of the bucket). By
            default ``rate`` rounded down (at least 1), so a quiet limit of 100 a second admits
            100 calls at once, then one every 10 ms. ``burst=1`` spaces every call evenly: no
            window of ``per`` seconds then ever sees more than ``rate`` calls.
        key: Which calls share a limit: a template over the parameters (``"{user_id}"``) or a
            callable taking the function's arguments. By default one limit for the function.
        wait: Over the limit, wait for a token instead of raising
            :class:`~resilient.exceptions.RateLimitedError`; never past ``max_wait`` or the
            caller's :func:`resilient.deadline`: a call that would have to wait longer is
            refused at once, without waiting.
        max_wait: With ``wait``, the longest a call waits for its token, in seconds; ``None``
            (the default) waits as long as it takes, up to the caller's deadline.
        fail_open: What a call does when the backend cannot decide (a shared limit whose
            Redis is down): go ahead unlimited, reporting ``backend.failed`` (the default,
            ``True``), or raise :class:`~resilient.exceptions.BackendUnavailableError`.
        backend: Where the limit lives: by default the configured backend (in this process,
            unless configured otherwise); a :class:`~resilient.backends.RedisBackend` shares
            it with every process using that Redis.
        name: The name events and errors report, and that the limit is stored under; by
            default the function's module and qualified name.
    """

    rate: float = attrs.field(converter=_rate)
    per: float = attrs.field(default=1.0, converter=_per)
    burst: int | None = attrs.field(default=None, converter=_burst)
    key: str | Callable[..., object] | None = attrs.field(default=None, converter=call_key)
    wait: bool = attrs.field(default=False, validator=attrs.validators.instance_of(bool))
    max_wait: float | None = attrs.field(default=None, converter=_max_wait)
    fail_open: bool = attrs.field(default=True, validator=attrs.validators.instance_of(bool))
    backend: object = attrs.field(default=None, validator=needs_primitives(*_PRIMITIVES))
    name: str | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.instance_of(str))
    )

    def __attrs_post_init__(self) -> None:
        if self.max_wait is not None and not self.wait:
            raise ValueError(
                f"max_wait={self.max_wait:g} bounds the wait for a token, but wait=False never "
                "waits: add wait=True, or leave max_wait= out"
            )

    @property
    def interval(self) -> float:
        """Seconds between two calls at the steady rate."""
        return self.per / self.rate

    @property
    def capacity(self) -> int:
        """The number of calls that may go at once (``burst``, or its default)."""
        return self.burst if self.burst is not None else max(1, math.floor(self.rate))
