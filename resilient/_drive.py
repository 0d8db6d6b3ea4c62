# The drivers: the only code that sleeps or calls the user's function again after a capability's
# first-attempt fast path, and the one place that delivers events to observers.
#
# A capability writes its procedure once, as a generator of effects (`Steps`): it yields CALL to
# have the function called (and receives the Outcome), or Sleep(seconds) to wait, and finally
# returns the Outcome to hand to the caller. `drive_sync` and `drive_async` are the two
# interpreters of that little language; they are mirror images and the only sync/async pair.
# Outcomes travel as values and are raised only at the edge, outside any `except` block, so the
# user's exception keeps its own context and traceback.
from __future__ import annotations

import logging
from collections.abc import Generator
from typing import TYPE_CHECKING, Any, Final

from ._config import DEFAULTS, Defaults

if TYPE_CHECKING:
    from ._decorate import Call
    from .events import Event

__all__ = ["CALL", "Outcome", "Sleep", "Steps", "drive_async", "drive_sync", "emit"]

_logger = logging.getLogger("resilient")


class Outcome:
    """What one call of the function gave: a value, or the exception it raised."""

    __slots__ = ("error", "value")

    def __init__(self, value: Any = None, error: Exception | None = None) -> None:
        self.value = value
        self.error = error

    def unwrap(self) -> Any:
        """Return the value, or raise the exception (the original object, not a wrapper)."""
        if self.error is not None:
            raise self.error
        return self.value


class Sleep:
    """Effect: wait this many seconds (never zero: a procedure skips zero waits)."""

    __slots__ = ("seconds",)

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds


CALL: Final = "call"
"""Effect: call the function once more and send back its Outcome."""

Steps = Generator["Sleep | str", "Outcome | None", Outcome]


def drive_sync(  # noqa: PLR0917 - the arguments are wrapt's call shape, passed through
    steps: Steps, call: Call, wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: Any
) -> Any:
    """Run a procedure in this thread: call the function, sleep on the clock, then unwrap."""
    defaults = DEFAULTS
    sent: Outcome | None = None
    while True:
        try:
            effect = steps.send(sent)
        except StopIteration as stop:
            final: Outcome = stop.value
            break
        if isinstance(effect, Sleep):
            sent = None
            if not defaults.testing:
                defaults.clock.sleep(effect.seconds)
        else:
            try:
                sent = Outcome(call(wrapped, instance, args, kwargs))
            except Exception as exc:  # noqa: BLE001 - the procedure decides what to do with it
                sent = Outcome(error=exc)
    return final.unwrap()


async def drive_async(  # noqa: PLR0917 - the arguments are wrapt's call shape, passed through
    steps: Steps, call: Call, wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: Any
) -> Any:
    """Run a procedure in this task: await the function, sleep on the clock, then unwrap."""
    defaults = DEFAULTS
    sent: Outcome | None = None
    while True:
        try:
            effect = steps.send(sent)
        except StopIteration as stop:
            final: Outcome = stop.value
            break
        if isinstance(effect, Sleep):
            sent = None
            if not defaults.testing:
                await defaults.clock.asleep(effect.seconds)
        else:
            try:
                sent = Outcome(await call(wrapped, instance, args, kwargs))
            except Exception as exc:  # noqa: BLE001 - the procedure decides what to do with it
                sent = Outcome(error=exc)
    return final.unwrap()


def emit(defaults: Defaults, event: Event) -> None:
    """Deliver *event* to every configured observer; an observer never breaks the call.

    A failing observer is logged once (per observer) and otherwise ignored; in testing mode its
    exception propagates so that tests see it.
    """
    for observer in defaults.observers:
        try:
            observer(event)
        except Exception:
            if defaults.testing:
                raise
            if id(observer) not in defaults.failed_observers:
                defaults.failed_observers[id(observer)] = observer
                _logger.exception(
                    "resilient observer %r raised on %s; it stays installed and further "
                    "errors from it are not logged",
                    observer,
                    event.kind,
                )
