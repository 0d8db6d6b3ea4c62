# Wait strategies: small immutable callables `(attempt, previous) -> seconds`.
#
# Rules: every built-in strategy returns a finite number >= 0 for any attempt >= 1, including
# attempt 10,000 and beyond (exponential growth is capped before it can overflow); arguments are
# validated at construction; the repr of a strategy is the expression that builds it. Strategies
# are combined by named functions (add, capped, chain), never by operators. Each built-in
# strategy also knows the least it can wait after an attempt (`least`), so that a stack of
# decorators can be checked when it is built (a retry whose shortest wait already outlasts the
# time limit around it); a strategy that does not say is taken to wait as little as zero.
from __future__ import annotations

import math
import random
from typing import cast

import attrs

from ..typing import Wait
from .seconds import Seconds, finite_number, non_negative_seconds

__all__ = [
    "add",
    "capped",
    "chain",
    "constant",
    "decorrelated_jitter",
    "equal_jitter",
    "exponential",
    "full_jitter",
    "least",
    "linear",
    "none",
]


def _check_wait(name: str, value: object) -> Wait:
    if not callable(value):
        raise TypeError(
            f"{name}={value!r} is not a wait strategy: use one from resilient.wait, e.g. "
            "resilient.wait.exponential(), or a callable (attempt, previous) -> seconds"
        )
    return cast("Wait", value)


class _Strategy:
    """A built-in strategy: a wait callable that also knows its least wait."""

    __slots__ = ()

    def least(self, attempt: int) -> float:
        """Return the least this strategy can wait after *attempt*, whatever came before."""
        raise NotImplementedError


def least(wait: Wait, attempt: int) -> float:
    """Return the least *wait* can wait after *attempt*: zero for a strategy that does not say."""
    return wait.least(attempt) if isinstance(wait, _Strategy) else 0.0


@attrs.frozen(repr=False)
class _Constant(_Strategy):
    seconds: float

    def __call__(self, attempt: int, previous: float) -> float:
        return self.seconds

    def least(self, attempt: int) -> float:
        return self.seconds

    def __repr__(self) -> str:
        return "none()" if self.seconds == 0 else f"constant({self.seconds!r})"


@attrs.frozen(repr=False)
class _Linear(_Strategy):
    start: float
    step: float
    max: float | None

    def __call__(self, attempt: int, previous: float) -> float:
        delay = self.start + self.step * (attempt - 1)
        return delay if self.max is None else min(delay, self.max)

    def least(self, attempt: int) -> float:
        return self(attempt, 0.0)

    def __repr__(self) -> str:
        return f"linear(start={self.start!r}, step={self.step!r}, max={self.max!r})"


@attrs.frozen(repr=False)
class _Exponential(_Strategy):
    initial: float
    multiplier: float
    max: float
    # the first exponent whose delay reaches max; beyond it the power is never computed
    _saturates_at: float = attrs.field(init=False)

    @_saturates_at.default
    def _saturation(self) -> float:
        if self.initial == 0 or self.initial >= self.max:
            return 0.0
        if self.multiplier == 1:
            return math.inf
        # in log space: max / initial overflows when initial is subnormal
        return (math.log(self.max) - math.log(self.initial)) / math.log(self.multiplier)

    def __call__(self, attempt: int, previous: float) -> float:
        exponent = attempt - 1
        if exponent >= self._saturates_at:
            return self.max if self.initial else 0.0
        try:
            return min(self.initial * self.multiplier**exponent, self.max)
        except OverflowError:  # a subnormal initial: the power alone overflows, the product not
            growth = math.log(self.initial) + exponent * math.log(self.multiplier)
            return min(math.exp(growth), self.max)

    def least(self, attempt: int) -> float:
        return self(attempt, 0.0)

    def __repr__(self) -> str:
        return (
            f"exponential(initial={self.initial!r}, multiplier={self.multiplier!r}, "
            f"max={self.max!r})"
        )


@attrs.frozen(repr=False)
class _FullJitter(_Strategy):
    wait: Wait

    def __call__(self, attempt: int, previous: float) -> float:
        return random.uniform(0.0, self.wait(attempt, previous))

    def least(self, attempt: int) -> float:
        return 0.0

    def __repr__(self) -> str:
        return f"full_jitter({self.wait!r})"


@attrs.frozen(repr=False)
class _EqualJitter(_Strategy):
    wait: Wait

    def __call__(self, attempt: int, previous: float) -> float:
        half = self.wait(attempt, previous) / 2
        return half + random.uniform(0.0, half)

    def least(self, attempt: int) -> float:
        return least(self.wait, attempt) / 2

    def __repr__(self) -> str:
        return f"equal_jitter({self.wait!r})"


@attrs.frozen(repr=False)
class _DecorrelatedJitter(_Strategy):
    initial: float
    max: float

    def __call__(self, attempt: int, previous: float) -> float:
        upper = max(self.initial, min(previous * 3, self.max))
        return min(random.uniform(self.initial, upper), self.max)

    def least(self, attempt: int) -> float:
        return self.initial

    def __repr__(self) -> str:
        return f"decorrelated_jitter(initial={self.initial!r}, max={self.max!r})"


@attrs.frozen(repr=False)
class _Add(_Strategy):
    waits: tuple[Wait, ...]

    def __call__(self, attempt: int, previous: float) -> float:
        return sum(wait(attempt, previous) for wait in self.waits)

    def least(self, attempt: int) -> float:
        return sum(least(wait, attempt) for wait in self.waits)

    def __repr__(self) -> str:
        return f"add({', '.join(map(repr, self.waits))})"


@attrs.frozen(repr=False)
class _Capped(_Strategy):
    wait: Wait
    max: float

    def __call__(self, attempt: int, previous: float) -> float:
        return min(self.wait(attempt, previous), self.max)

    def least(self, attempt: int) -> float:
        return min(least(self.wait, attempt), self.max)

    def __repr__(self) -> str:
        return f"capped({self.wait!r}, max={self.max!r})"


@attrs.frozen(repr=False)
class _Chain(_Strategy):
    waits: tuple[Wait, ...]

    def __call__(self, attempt: int, previous: float) -> float:
        return self.waits[min(attempt, len(self.waits)) - 1](attempt, previous)

    def least(self, attempt: int) -> float:
        return least(self.waits[min(attempt, len(self.waits)) - 1], attempt)

    def __repr__(self) -> str:
        return f"chain({', '.join(map(repr, self.waits))})"


def none() -> Wait:
    """Retry at once: no wait between attempts (and no ``sleep(0)`` either)."""
    return _Constant(0.0)


def constant(seconds: Seconds) -> Wait:
    """Wait the same *seconds* (a number or :class:`~datetime.timedelta`) before every retry."""
    return _Constant(non_negative_seconds("seconds", seconds))


def linear(start: Seconds = 0.1, step: Seconds = 0.1, max: Seconds | None = None) -> Wait:
    """Wait *start* seconds, then *step* more before each further retry, up to *max*."""
    return _Linear(
        non_negative_seconds("start", start),
        non_negative_seconds("step", step),
        None if max is None else non_negative_seconds("max", max),
    )


def exponential(initial: Seconds = 0.1, multiplier: float = 2.0, max: Seconds = 30.0) -> Wait:
    """Wait ``initial * multiplier ** (attempt - 1)`` seconds, never more than *max*.

    Raises:
        ValueError: If *multiplier* is below 1 or any duration is negative, NaN or infinite.
    """
    hint = "give a number of at least 1, e.g. multiplier=2"
    growth = finite_number("multiplier", multiplier, hint)
    if growth < 1:
        raise ValueError(f"multiplier={multiplier!r} is below 1: {hint}")
    first = non_negative_seconds("initial", initial)
    return _Exponential(first, growth, non_negative_seconds("max", max))


def full_jitter(wait: Wait) -> Wait:
    """Wait a uniformly random time between zero and what *wait* says (AWS "full jitter")."""
    return _FullJitter(_check_wait("wait", wait))


def equal_jitter(wait: Wait) -> Wait:
    """Wait half of what *wait* says, plus a random time up to the other half."""
    return _EqualJitter(_check_wait("wait", wait))


def decorrelated_jitter(initial: Seconds = 0.1, max: Seconds = 30.0) -> Wait:
    """Wait a random time between *initial* and three times the previous wait, up to *max*."""
    first = non_negative_seconds("initial", initial)
    cap = non_negative_seconds("max", max)
    if first > cap:
        raise ValueError(f"initial={initial!r} is more than max={max!r}: lower initial")
    return _DecorrelatedJitter(first, cap)


def add(*waits: Wait) -> Wait:
    """Wait the sum of what every one of *waits* says, e.g. a constant plus a jitter."""
    if not waits:
        raise TypeError("add() needs at least one wait strategy")
    return _Add(tuple(_check_wait("wait", wait) for wait in waits))


def capped(wait: Wait, max: Seconds) -> Wait:
    """Wait what *wait* says, but never more than *max* seconds."""
    return _Capped(_check_wait("wait", wait), non_negative_seconds("max", max))


def chain(*waits: Wait) -> Wait:
    """Use the first strategy after attempt 1, the second after attempt 2, ..., the last after."""
    if not waits:
        raise TypeError("chain() needs at least one wait strategy")
    return _Chain(tuple(_check_wait("wait", wait) for wait in waits))
