# `@timeout`: a time limit on a call, and the deadline of everything inside it.
#
# Rules:
# - Inside the call, the deadline (`_deadline.py`) is the earlier of the limit and the one
#   already in force, so that every layer and wait below stops at it.
# - An async call is cancelled at the limit (the coroutine sees CancelledError where it
#   awaits) and the caller gets resilient.exceptions.TimeoutError, raised from the
#   cancellation. Only the limit's own expiry becomes that error: a TimeoutError the call
#   raised itself propagates as it is.
# - A sync call cannot be interrupted safely (a thread cannot be cancelled in Python): it runs
#   to its end with the deadline set, so cooperative code can check `resilient.remaining()`;
#   if it returned after the limit, its result is dropped and TimeoutError raised; if it
#   raised, its own exception propagates, with a note that it also ran past the limit.
# - Applied over a `@retry` that cannot work inside the limit, it warns (CompositionWarning):
#   one whose least wait before a second attempt is not shorter than the limit (the retry
#   never waits past a deadline, so it never retries), and one that retries TimeoutError
#   around a per-attempt `@timeout` that, with that least wait, leaves no time for a second
#   attempt. Least waits are exact (a jittered wait's least is its lower bound; an unknown
#   strategy's is zero), so a warning is never a guess.
from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import attrs

from . import exceptions
from ._config import DEFAULTS
from ._core.retry import RetryPolicy
from ._core.seconds import positive_seconds
from ._deadline import Deadline
from ._decorate import Call, Decorator, Layer, Target

__all__ = ["timeout"]


class _Limited:
    """A time limit applied to one function: its sync and async call steps."""

    __slots__ = ("inner", "name", "seconds")

    def __init__(self, seconds: float, name: str, inner: Call) -> None:
        self.seconds = seconds
        self.name = name
        self.inner = inner

    def call_sync(
        self, wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        clock = DEFAULTS.clock
        start = clock.monotonic()
        try:
            with Deadline(self.seconds):
                result = self.inner(wrapped, instance, args, kwargs)
        except Exception as error:
            if clock.monotonic() - start > self.seconds:
                error.add_note(
                    str(exceptions.TimeoutError(self.name, self.seconds, "also ran past"))
                )
            raise
        if clock.monotonic() - start > self.seconds:
            raise exceptions.TimeoutError(self.name, self.seconds)
        return result

    async def call_async(
        self, wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        limit = asyncio.timeout(self.seconds)
        try:
            async with limit, Deadline(self.seconds):
                return await self.inner(wrapped, instance, args, kwargs)
        except TimeoutError as error:
            if limit.expired():
                raise exceptions.TimeoutError(self.name, self.seconds) from error
            raise


@attrs.frozen
class _TimeoutLayer:
    seconds: float
    name: str | None

    def build(self, inner: Call, target: Target) -> Call:
        limited = _Limited(self.seconds, self.name or target.name, inner)
        return limited.call_async if target.is_async else limited.call_sync

    def check(self, inner: tuple[Layer, ...], target: Target) -> Iterator[str]:
        """Say which retries inside this limit can never make a second attempt."""
        limit = self.seconds
        between: list[tuple[str, float]] = []  # retries of TimeoutError, and their least wait
        for layer in inner:
            if isinstance(layer, _TimeoutLayer):
                # a limit per attempt; what is inside it was checked when it was applied
                for name, wait in between:
                    if layer.seconds + wait >= limit:
                        yield (
                            f"@timeout({limit:g}) around @retry({name}) around "
                            f"@timeout({layer.seconds:g}): an attempt cut off at "
                            f"{layer.seconds:g} s is never retried, as the next attempt could "
                            f"not start (after a wait of at least {wait:g} s) within "
                            f"{limit:g} s. Give the outer limit more than the per-attempt limit "
                            "plus the wait, or shorten those"
                        )
                return
            policy = getattr(layer, "policy", None)
            if not isinstance(policy, RetryPolicy):
                continue
            gap = policy.least_first_wait()
            if gap is None:
                continue
            name = policy.name or target.name
            if gap >= limit:
                yield (
                    f"@timeout({limit:g}) around @retry({name}) never retries: its shortest "
                    f"wait before a second attempt, {gap:g} s, does not fit in the "
                    f"{limit:g} s limit, and a retry never waits past its deadline. Give "
                    "the limit more time than the wait, shorten the wait, or put the "
                    "@timeout inside the @retry to limit each attempt"
                )
            elif policy.retries_every(exceptions.TimeoutError):
                between.append((name, gap))


def timeout(seconds: float | timedelta, /, *, name: str | None = None) -> Decorator:
    """Limit a call to *seconds* (or a ``timedelta``), and make that the deadline inside it.

    On an ``async def`` function the call is cancelled at the limit and
    :class:`~resilient.exceptions.TimeoutError` raised (a subclass of the builtin
    ``TimeoutError``). A sync function cannot be interrupted safely: it runs to its end with
    the deadline set (check :func:`resilient.remaining` between steps, or pass it on as a
    socket timeout), and if it finished past the limit its result is dropped and
    :class:`~resilient.exceptions.TimeoutError` raised. Inside the call, ``@retry`` waits,
    lock waits and other waits stop at the deadline. Put it outermost when stacking (only a
    ``@fallback`` goes above it), or inside ``@retry`` to limit each attempt.

    Raises:
        ValueError: At decoration time, for *seconds* that are not positive.

    Warns:
        CompositionWarning: At decoration time, over a ``@retry`` that can never make a
            second attempt within the limit (its shortest wait does not fit, or leaves no
            time after a per-attempt ``@timeout``).

    Example:
        >>> import asyncio
        >>> import resilient
        >>> @resilient.timeout(0.05)
        ... async def slow() -> str:
        ...     await asyncio.sleep(10)
        ...     return "done"
        >>> try:
        ...     asyncio.run(slow())
        ... except TimeoutError as error:
        ...     print("gave up after", error.seconds, "s")
        gave up after 0.05 s
    """
    limit = positive_seconds("seconds", seconds)
    if name is not None and not isinstance(name, str):
        raise TypeError(f"name={name!r} must be a str")
    return Decorator(_TimeoutLayer(limit, name), "@timeout")
