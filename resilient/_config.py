# Process-wide defaults. Capabilities read `DEFAULTS` at call time (so `configure()` after
# decoration takes effect) through plain attribute access, which keeps the hot path cheap.
# Nothing here connects, spawns or registers anything.
from __future__ import annotations

from collections.abc import Iterable

import attrs

from ._clock import SystemClock
from .typing import Clock, Observer

__all__ = ["DEFAULTS", "Defaults", "configure", "reset_defaults"]


@attrs.define(slots=True, kw_only=True)
class Defaults:
    """The mutable process-wide settings; one instance, `DEFAULTS`."""

    clock: Clock = attrs.field(factory=SystemClock)
    observers: tuple[Observer, ...] = ()
    testing: bool = False
    testing_attempts: int = 1
    # observers that already raised once, by id (kept alive here so ids are not reused)
    failed_observers: dict[int, Observer] = attrs.field(factory=dict)


DEFAULTS = Defaults()


def configure(
    *,
    clock: Clock | None = None,
    observers: Iterable[Observer] | None = None,
) -> None:
    """Set process-wide defaults; arguments left as ``None`` keep their current value.

    Args:
        clock: Where every capability reads time and sleeps; see :class:`resilient.typing.Clock`.
        observers: Callables that receive every :mod:`resilient.events` event, in order. This
            replaces the observers configured before.

    Raises:
        TypeError: If *clock* lacks a method of the clock protocol, or an observer is not
            callable.

    Example:
        >>> import logging, resilient
        >>> from resilient.observers import LoggingObserver
        >>> resilient.configure(observers=[LoggingObserver(logging.getLogger("app"))])
        >>> resilient.reset_defaults()
    """
    if clock is not None:
        if not isinstance(clock, Clock):
            raise TypeError(
                f"clock={clock!r} is not a clock: it needs monotonic(), time(), sleep() and "
                "asleep(); see resilient.typing.Clock, or use resilient.testing.FakeClock()"
            )
        DEFAULTS.clock = clock
    if observers is not None:
        installed = tuple(observers)
        for observer in installed:
            if not callable(observer):
                raise TypeError(
                    f"observer {observer!r} is not callable: an observer is any callable taking "
                    "one event, e.g. resilient.observers.LoggingObserver()"
                )
        DEFAULTS.observers = installed


def reset_defaults() -> None:
    """Restore every default: the system clock, no observers, testing mode off."""
    fresh = Defaults()
    for field in attrs.fields(Defaults):
        setattr(DEFAULTS, field.name, getattr(fresh, field.name))
