# The retry policy and the decisions of one retrying call, without any I/O.
#
# Rules:
# - A policy is validated when it is built, which is when the decorator is applied.
# - Only `Exception` subclasses are ever retried; cancellation, KeyboardInterrupt, SystemExit and
#   GeneratorExit are BaseExceptions and pass straight through the drivers.
# - After a failed attempt the run answers either "wait N seconds, then attempt again" or "give
#   up" with a reason. It gives up when the error does not match `on=`, when the attempts are
#   used up, when the next attempt could not start before the deadline (no wait crosses it), or
#   when the retry budget is spent, checked in that order so that a budget token is only spent
#   on a retry that will happen.
# - The wait is the strategy's, raised to at least a valid Retry-After hint, then capped by
#   `max_wait`. A strategy returning garbage (negative, NaN) means no wait.
# - State is per call: a RetryRun belongs to one call of the decorated function.
from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import timedelta
from email.utils import parsedate_to_datetime
from typing import Any, Protocol, runtime_checkable

import attrs

from ..typing import ExceptionPredicate, ExceptionTypes, ResultPredicate, Wait
from .backoff import exponential, full_jitter, least
from .matching import Handling, Matching, convert_on, matching_field
from .seconds import Seconds, non_negative_seconds, positive_seconds

__all__ = ["Budget", "RetryPolicy", "RetryRun", "parse_retry_after", "retry_after_hint"]


@runtime_checkable
class Budget(Protocol):
    """What a retry policy needs from a retry budget (see resilient.RetryBudget)."""

    def record_call(self, now: float) -> None:
        """Count one call."""

    def try_retry(self, now: float) -> bool:
        """Spend one retry if allowed."""


_RETRYING = Handling(does="retries", done="retried", purpose="to retry")


def _convert_on(
    given: ExceptionTypes | ExceptionPredicate | list[type[Exception]],
) -> ExceptionTypes | ExceptionPredicate:
    return convert_on(given, _RETRYING)


def _check_attempts(instance: object, attribute: object, value: object) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"attempts={value!r} must be a whole number, e.g. attempts=3")
    if value < 1:
        raise ValueError(
            f"attempts={value!r} counts every call including the first, so it must be at least "
            "1 (attempts=1 means no retry)"
        )


def _check_wait(instance: object, attribute: object, value: object) -> None:
    if not callable(value):
        raise TypeError(
            f"wait={value!r} is not a wait strategy: use resilient.wait.exponential() or any "
            "callable (attempt, previous) -> seconds"
        )


def _check_optional_callable(
    instance: object, attribute: attrs.Attribute[Any], value: object
) -> None:
    if value is not None and not callable(value):
        raise TypeError(f"{attribute.name}={value!r} must be a callable or None")


def _check_budget(
    instance: object, attribute: attrs.Attribute[Budget | None], value: Budget | None
) -> None:
    if value is not None and not isinstance(value, Budget):
        raise TypeError(f"budget={value!r} must be a resilient.RetryBudget or None")


def _default_wait() -> Wait:
    return full_jitter(exponential(initial=0.1, multiplier=2.0, max=10.0))


def _deadline(value: Seconds | None) -> float | None:
    return None if value is None else positive_seconds("deadline", value)


def _max_wait(value: Seconds) -> float:
    return non_negative_seconds("max_wait", value)


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """How to retry a call. Every field is also a keyword argument of :func:`resilient.retry`.

    Attributes:
        on: The exception types to retry, or a predicate taking the exception. Required:
            retrying every exception hides bugs.
        on_result: A predicate taking the returned value; when it returns true, the call is
            retried as if it had failed. After the last attempt the last value is returned.
        attempts: The most attempts in all, the first call included; ``None`` for no limit
            (then a *deadline* is required).
        deadline: The most seconds (or a timedelta) from the first attempt until giving up. No
            wait crosses it and no attempt starts after it.
        wait: The wait strategy between attempts (see :mod:`resilient.wait`). The default is
            exponential backoff from 0.1 s doubling up to 10 s, with full jitter.
        max_wait: The longest single wait in seconds, Retry-After hints included.
        retry_after: Whether to honour a Retry-After hint carried by the exception.
        budget: A :class:`resilient.RetryBudget` limiting retries across all calls sharing it.
        name: The name reported in events; by default the decorated function's module and
            qualified name, e.g. ``"app.payments.charge"``.
    """

    on: ExceptionTypes | ExceptionPredicate = attrs.field(converter=_convert_on)
    on_result: ResultPredicate | None = attrs.field(
        default=None, validator=_check_optional_callable
    )
    attempts: int | None = attrs.field(default=3, validator=_check_attempts)
    deadline: float | None = attrs.field(default=None, converter=_deadline)
    wait: Wait = attrs.field(factory=_default_wait, validator=_check_wait)
    max_wait: float = attrs.field(default=60.0, converter=_max_wait)
    retry_after: bool = attrs.field(default=True, validator=attrs.validators.instance_of(bool))
    budget: Budget | None = attrs.field(default=None, validator=_check_budget)
    name: str | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.instance_of(str))
    )

    _matching: Matching = matching_field()

    def __attrs_post_init__(self) -> None:
        if self.attempts is None and self.deadline is None:
            raise ValueError(
                "attempts=None with no deadline would retry forever: give attempts=N or "
                "deadline=seconds"
            )

    def matches(self, exc: Exception) -> bool:
        """Return whether *exc* is one this policy retries."""
        return self._matching.matches(exc)

    def retries_every(self, kind: type[Exception]) -> bool:
        """Return whether every exception of type *kind* is retried (unknown for a predicate)."""
        types = self._matching.types
        return types is not None and issubclass(kind, types)

    def least_first_wait(self) -> float | None:
        """Return the least the policy waits before a second attempt, or None if it makes none.

        A Retry-After hint only lengthens the wait, and ``max_wait`` caps both; a wait strategy
        that does not know its least (a custom callable) counts as zero.
        """
        if self.attempts == 1:
            return None
        return min(least(self.wait, 1), self.max_wait)


def _finite_non_negative(seconds: float) -> float | None:
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


_DELTA_SECONDS = re.compile(r"\d+(?:\.\d+)?", re.ASCII)


def parse_retry_after(value: object, now: Callable[[], float]) -> float | None:
    """Return the seconds a Retry-After *value* asks to wait, or ``None`` for garbage.

    *value* is seconds (a number or timedelta) or an HTTP header value: delta-seconds or an
    HTTP-date, read against the wall clock *now* (a date in the past means no wait).
    """
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    if isinstance(value, bool):
        return None
    if isinstance(value, timedelta):
        return _finite_non_negative(value.total_seconds())
    if isinstance(value, (int, float)):
        return _finite_non_negative(float(value))
    if not isinstance(value, str):
        return None
    text = value.strip()
    if _DELTA_SECONDS.fullmatch(text):
        return _finite_non_negative(float(text))
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT; anything without a zone is not one
        return None
    return max(0.0, when.timestamp() - now())


def retry_after_hint(exc: BaseException, now: Callable[[], float]) -> float | None:
    """Return the Retry-After hint *exc* carries, in seconds, or ``None``.

    The hint is read from ``exc.retry_after`` (seconds, a timedelta, or a header value), else
    from a ``Retry-After`` header in ``exc.response.headers`` (as requests and httpx errors have).
    Anything unreadable is ignored.
    """
    try:
        value = getattr(exc, "retry_after", None)
        if value is None:
            headers = getattr(getattr(exc, "response", None), "headers", None)
            if headers is None:
                return None
            value = headers.get("Retry-After")
            if value is None:
                value = headers.get("retry-after")
        return parse_retry_after(value, now)
    except Exception:  # noqa: BLE001 - a hint is advisory; a broken one is no hint
        return None


_WHY_GIVEN_UP = {
    "attempts": "attempts exhausted",
    "deadline": "the next attempt could not start before the deadline",
    "budget": "the retry budget is spent",
    None: "this error is not retried",
}


class RetryRun:
    """The state of one retrying call: which attempt it is on and why it stopped.

    *name* is the policy's name, for the note; *timed* says whether decisions read the time
    (a deadline or a budget), so that callers can skip reading the clock when they do not.
    *ambient* is the caller's deadline on the same clock, if one is in force.
    """

    __slots__ = (
        "_limit",
        "attempt",
        "deadline_at",
        "max_attempts",
        "name",
        "policy",
        "previous",
        "reason",
        "start",
        "timed",
    )

    def __init__(
        self,
        policy: RetryPolicy,
        start: float,
        max_attempts: int | None,
        name: str = "retry",
        ambient: float | None = None,
    ) -> None:
        self.policy = policy
        self.start = start
        self.max_attempts = max_attempts
        self._limit = math.inf if max_attempts is None else max_attempts
        self.name = name
        # the earlier of the policy's deadline and the caller's (`resilient.deadline`)
        own = None if policy.deadline is None else start + policy.deadline
        self.deadline_at = (
            ambient if own is None or (ambient is not None and ambient < own) else own
        )
        self.timed = self.deadline_at is not None or policy.budget is not None
        self.attempt = 1
        self.previous = 0.0
        self.reason: str | None = None

    def after_error(self, exc: Exception, now: float, wall: Callable[[], float]) -> float | None:
        """Return the wait before the next attempt after *exc*, or ``None`` to give up.

        *now* is only read when the run is ``timed``.
        """
        policy = self.policy
        types = policy._matching.types  # the common case, checked here without matches()
        if not (isinstance(exc, types) if types is not None else policy.matches(exc)):
            self.reason = None
            return None
        return self._schedule(now, exc, wall)

    def after_result(self, result: object, now: float) -> float | None:
        """Return the wait before the next attempt after *result*, or ``None`` to accept it."""
        check = self.policy.on_result
        if check is None or not check(result):
            self.reason = None
            return None
        return self._schedule(now, None, None)

    def _schedule(
        self, now: float, exc: Exception | None, wall: Callable[[], float] | None
    ) -> float | None:
        policy = self.policy
        attempt = self.attempt
        if attempt >= self._limit:
            self.reason = "attempts"
            return None
        delay = policy.wait(attempt, self.previous)
        if not (delay >= 0):  # NaN or negative from a custom strategy: no wait
            delay = 0.0
        if exc is not None and wall is not None and policy.retry_after:
            hint = retry_after_hint(exc, wall)
            if hint is not None and hint > delay:
                delay = hint
        if delay > policy.max_wait:  # noqa: PLR1730 - spares min()'s call on the failure path
            delay = policy.max_wait
        if self.timed:
            if self.deadline_at is not None and now + delay >= self.deadline_at:
                self.reason = "deadline"
                return None
            if policy.budget is not None and not policy.budget.try_retry(now):
                self.reason = "budget"
                return None
        self.attempt = attempt + 1
        self.previous = delay
        return delay

    def note(self, now: float) -> str:
        """Describe, for a PEP 678 note, how the run ended."""
        plural = "" if self.attempt == 1 else "s"
        return (
            f"resilient.retry({self.name}): gave up after {self.attempt} attempt{plural} over "
            f"{int((now - self.start) * 1000)} ms: {_WHY_GIVEN_UP[self.reason]}"
        )
