"""Public protocols and type aliases: the extension points of `resilient`.

Everything here is stable API. Implement these protocols to plug your own clock or observer
into the library; annotate with the aliases to keep your own code strictly typed.
"""

from collections.abc import Awaitable, Callable
from typing import Protocol, TypeAlias, runtime_checkable

from .events import Event

__all__ = ["Clock", "ExceptionPredicate", "ExceptionTypes", "Observer", "ResultPredicate", "Wait"]


@runtime_checkable
class Clock(Protocol):
    """Where every capability reads time and the drivers sleep.

    The library never calls :func:`time.monotonic` or :func:`time.sleep` directly; it asks the
    configured clock, so tests can swap in :class:`resilient.testing.FakeClock`.
    """

    def monotonic(self) -> float:
        """Return seconds on a monotonic clock, for measuring intervals and deadlines."""

    def time(self) -> float:
        """Return wall-clock seconds since the epoch, for absolute dates such as HTTP-dates."""

    def sleep(self, seconds: float) -> None:
        """Block the calling thread for *seconds* (never called with zero)."""

    def asleep(self, seconds: float) -> Awaitable[None]:
        """Suspend the calling task for *seconds*; cancellation must interrupt it at once."""


Observer: TypeAlias = Callable[[Event], object]
"""Anything callable with one :class:`resilient.events.Event`; the return value is ignored.

An observer must be quick and must not block: it runs inline, in the thread or task that made
the decision. An exception it raises is logged once and swallowed (raised in testing mode).
"""

ExceptionTypes: TypeAlias = type[Exception] | tuple[type[Exception], ...]
"""One exception class, or a tuple of them, as given to ``on=``."""

ExceptionPredicate: TypeAlias = Callable[[Exception], bool]
"""A function deciding from the exception whether it should be handled, as given to ``on=``."""

ResultPredicate: TypeAlias = Callable[[object], bool]
"""A function deciding from a returned value whether the call should be retried."""


@runtime_checkable
class Wait(Protocol):
    """A wait strategy: how long to wait before the next attempt.

    The built-in strategies live in :mod:`resilient.wait`; any object with this call signature
    works too.
    """

    def __call__(self, attempt: int, previous: float, /) -> float:
        """Return the seconds to wait after failed attempt number *attempt* (1-based).

        *previous* is the wait chosen after the attempt before it (0.0 after the first).
        """
