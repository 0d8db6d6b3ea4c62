# The drivers: the only code that sleeps or calls the user's function again after a capability's
# first-attempt fast path, and the one place that delivers events to observers.
#
# A capability writes its decisions once (a `Repeating` object per call, whose logic lives in the
# sans-I/O core); `repeat_sync` and `repeat_async` perform them: wait, call, ask, repeat. They
# are mirror images and the only sync/async pair. A generator of effects interpreted here would
# say the same thing, but it cost retry's failing path more than the whole hand-written loop
# (generator, send, StopIteration and an outcome object per attempt), so the decisions are plain
# methods. A stopped repetition re-raises with a bare `raise` inside its own `except`, which
# keeps the user's traceback and context untouched.
from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from ._config import DEFAULTS, Defaults

if TYPE_CHECKING:
    from ._decorate import Call
    from .events import Event

__all__ = ["Repeater", "Repeating", "emit", "repeat_async", "repeat_sync"]

_logger = logging.getLogger("resilient")


class Repeating(Protocol):
    """The per-call decisions of a repeating procedure (e.g. one call of a retry policy).

    After each attempt that raised (or returned a value the policy checks) the driver asks for
    the wait before the next attempt; ``None`` means stop: re-raise, or return the value.
    """

    def failed(self, exc: Exception) -> float | None:
        """Decide after the attempt raised *exc*."""

    def returned(self, result: Any) -> float | None:
        """Decide after the attempt returned *result*."""


class Repeater(Protocol):
    """What a driver needs of a repeating policy applied to one function."""

    @property
    def nested(self) -> Call | None:
        """The step to call, or ``None`` to call the function itself."""

    @property
    def checks_results(self) -> bool:
        """Whether returned values are judged too (else the first one returned ends the call)."""

    @property
    def on_start(self) -> Callable[[float], object] | None:
        """Told the start time of every call (e.g. to count it in a budget), if set."""

    def begin(self, start: float) -> Repeating:
        """Return the decisions of one call that started at *start*, when first needed."""


def repeat_sync(
    policy: Repeater, wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """Call the function, and again after each wait the policy decides on (the sync driver).

    Bound to its policy with functools.partial, this is the call step a layer hands to wrapt.
    The per-call decisions are only built once an attempt fails (or returns a value to judge),
    so a first attempt that succeeds costs one clock read and a few checks.
    """
    start = DEFAULTS.clock.monotonic()
    if policy.on_start is not None:
        policy.on_start(start)
    nested = policy.nested
    run = None
    while True:
        try:
            if nested is None:
                result = wrapped(*args, **kwargs)
            else:
                result = nested(wrapped, instance, args, kwargs)
        except Exception as exc:
            if run is None:
                run = policy.begin(start)
            delay = run.failed(exc)
            if delay is None:
                raise
        else:
            if not policy.checks_results:
                return result
            if run is None:
                run = policy.begin(start)
            delay = run.returned(result)
            if delay is None:
                return result
        if delay and not DEFAULTS.testing:
            DEFAULTS.clock.sleep(delay)


async def repeat_async(
    policy: Repeater, wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """Await the function, and again after each wait the policy decides on (the async driver)."""
    start = DEFAULTS.clock.monotonic()
    if policy.on_start is not None:
        policy.on_start(start)
    nested = policy.nested
    run = None
    while True:
        try:
            if nested is None:
                result = await wrapped(*args, **kwargs)
            else:
                result = await nested(wrapped, instance, args, kwargs)
        except Exception as exc:
            if run is None:
                run = policy.begin(start)
            delay = run.failed(exc)
            if delay is None:
                raise
        else:
            if not policy.checks_results:
                return result
            if run is None:
                run = policy.begin(start)
            delay = run.returned(result)
            if delay is None:
                return result
        if delay and not DEFAULTS.testing:
            await DEFAULTS.clock.asleep(delay)


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
