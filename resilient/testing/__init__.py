"""Tools for testing code that uses `resilient`: no real sleeps, captured events, fake time.

Example:
    >>> from resilient import retry
    >>> from resilient.testing import capture_events, set_testing
    >>> calls = []
    >>> @retry(on=ConnectionError, attempts=10)
    ... def flaky() -> str:
    ...     calls.append(1)
    ...     raise ConnectionError("down")
    >>> with set_testing(True, attempts=2), capture_events() as events:
    ...     try:
    ...         flaky()
    ...     except ConnectionError:
    ...         pass
    >>> len(calls), [event.kind for event in events]
    (2, ['retry.scheduled', 'retry.exhausted'])
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType

from .._breaker import reset_breakers
from .._config import DEFAULTS
from ..events import Event

__all__ = ["FakeClock", "capture_events", "reset_breakers", "set_testing"]


class _RestoreTesting:
    """Returned by set_testing(); leaving it as a ``with`` block restores the previous mode."""

    __slots__ = ("_previous",)

    def __init__(self, previous: tuple[bool, int]) -> None:
        self._previous = previous

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        DEFAULTS.testing, DEFAULTS.testing_attempts = self._previous


def set_testing(testing: bool, *, attempts: int = 1) -> _RestoreTesting:
    """Turn testing mode on or off, for the whole process.

    In testing mode no capability sleeps for real, retries make at most *attempts* attempts,
    and an exception raised by an observer propagates instead of being logged. Call it once
    (e.g. in a fixture), or use it as a ``with`` block to restore the previous mode on exit.

    Raises:
        ValueError: If *attempts* is less than 1.
    """
    if type(attempts) is not int:
        raise TypeError(f"attempts={attempts!r} must be a whole number, e.g. attempts=2")
    if attempts < 1:
        raise ValueError(f"attempts={attempts!r} must be at least 1")
    previous = (DEFAULTS.testing, DEFAULTS.testing_attempts)
    DEFAULTS.testing = bool(testing)
    DEFAULTS.testing_attempts = attempts
    return _RestoreTesting(previous)


@contextmanager
def capture_events() -> Iterator[list[Event]]:
    """Collect every event reported inside the ``with`` block into the list it yields."""
    events: list[Event] = []
    previous = DEFAULTS.observers
    DEFAULTS.observers = (*previous, events.append)
    try:
        yield events
    finally:
        DEFAULTS.observers = previous


class FakeClock:
    """A clock for tests: time moves only when something sleeps on it or you advance it.

    Sleeping (sync or async) returns at once after moving the clock forward by the requested
    time; every requested sleep is recorded in :attr:`sleeps`. Install it with
    ``resilient.configure(clock=FakeClock())``. Thread-safe.

    Args:
        monotonic: The starting reading of :meth:`monotonic`.
        time: The starting wall-clock reading of :meth:`time`, in seconds since the epoch.

    Attributes:
        sleeps: Every sleep requested so far, in seconds, in order.
    """

    def __init__(self, monotonic: float = 0.0, time: float = 1_700_000_000.0) -> None:
        self._monotonic = float(monotonic)
        self._offset = float(time) - float(monotonic)
        self._lock = threading.Lock()
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        """Return the current fake monotonic time."""
        return self._monotonic

    def time(self) -> float:
        """Return the current fake wall-clock time (moves together with :meth:`monotonic`)."""
        return self._monotonic + self._offset

    def advance(self, seconds: float) -> None:
        """Move time forward by *seconds* without recording a sleep."""
        if not seconds >= 0:
            raise ValueError(f"time only moves forward: advance({seconds!r})")
        with self._lock:
            self._monotonic += seconds

    def sleep(self, seconds: float) -> None:
        """Record the sleep and move time forward; returns at once."""
        self.advance(seconds)
        with self._lock:
            self.sleeps.append(seconds)

    async def asleep(self, seconds: float) -> None:
        """Record the sleep, move time forward, and let other tasks run once."""
        self.sleep(seconds)
        await asyncio.sleep(0)

    def __repr__(self) -> str:
        return f"FakeClock(monotonic={self._monotonic!r})"
