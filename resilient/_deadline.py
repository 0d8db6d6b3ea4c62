# Deadlines: how long the caller is still willing to wait, carried through every layer below.
#
# Rules:
# - A deadline is a point on the configured clock's monotonic scale, kept in a context
#   variable, so each thread and each asyncio task sees its own, and a task inherits the
#   deadline of the code that created it.
# - Deadlines nest: an inner block's deadline is the earlier of its own and the one around
#   it; leaving the block brings back the one around it.
# - Capabilities that wait read it (`current()`): retry never sleeps past it and starts no
#   attempt after it; lock, single-flight, cached-value and idempotency waits stop at it.
#   Reading it costs one context variable lookup, and only where a capability is about to wait.
from __future__ import annotations

import contextvars
from datetime import timedelta
from types import TracebackType

from ._config import DEFAULTS
from ._core.seconds import positive_seconds

__all__ = ["Deadline", "current", "deadline", "remaining"]

_at: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "resilient_deadline", default=None
)


def current() -> float | None:
    """The deadline in force here, on the configured clock's monotonic scale, or None."""
    return _at.get()


def remaining() -> float | None:
    """Return the seconds left before the deadline in force here (0.0 once past), or None.

    Long-running sync code cannot be interrupted safely from outside: check this between
    steps, and stop (or pass it on as a timeout) when it runs low.

    Example:
        >>> import resilient
        >>> resilient.remaining() is None
        True
        >>> with resilient.deadline(30):
        ...     0 < resilient.remaining() <= 30
        True
    """
    at = _at.get()
    return None if at is None else max(0.0, at - DEFAULTS.clock.monotonic())


class Deadline:
    """A ``with`` / ``async with`` block within which everything must be done by a time.

    Made by :func:`deadline`. Entering it sets the deadline seconds from now, or keeps an
    earlier one already in force; leaving it restores the one in force before.

    Attributes:
        seconds: The seconds the block was given.
    """

    __slots__ = ("_token", "seconds")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._token: contextvars.Token[float | None] | None = None

    def __repr__(self) -> str:
        return f"<Deadline {self.seconds!r} s>"

    @property
    def at(self) -> float | None:
        """The deadline in force inside the block, or None outside it."""
        return None if self._token is None else _at.get()

    def __enter__(self) -> Deadline:
        """Set the deadline: *seconds* from now, or an earlier one already in force."""
        if self._token is not None:
            raise RuntimeError(
                f"{self!r} is already entered: make a deadline() for each block, e.g. "
                "`with resilient.deadline(0.5):`"
            )
        at = DEFAULTS.clock.monotonic() + self.seconds
        outer = _at.get()
        self._token = _at.set(at if outer is None or at < outer else outer)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Restore the deadline in force before the block."""
        assert self._token is not None
        _at.reset(self._token)
        self._token = None

    async def __aenter__(self) -> Deadline:
        """Set the deadline, from async code (see :meth:`__enter__`)."""
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Restore the deadline in force before the block."""
        self.__exit__(exc_type, exc, tb)


def deadline(seconds: float | timedelta) -> Deadline:
    """Return a block within which everything must be done in *seconds* (or a ``timedelta``).

    Inside it, :func:`remaining` says how long is left; ``@retry`` never waits past it and
    starts no attempt after it; waits for a lock, a single flight, an idempotent call or a
    cached value another caller is computing stop at it. Blocks nest, and the earliest
    deadline wins. It does not interrupt anything by itself: for that, use
    :func:`resilient.timeout` on async code.

    Raises:
        ValueError: For *seconds* that are not positive.

    Example:
        >>> import resilient
        >>> with resilient.deadline(2.0):
        ...     with resilient.deadline(60):  # an inner, later deadline: the earlier one wins
        ...         resilient.remaining() <= 2.0
        True
    """
    return Deadline(positive_seconds("seconds", seconds))
