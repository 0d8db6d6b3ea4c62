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
from typing import TYPE_CHECKING, Any, Protocol

from ._config import DEFAULTS, Defaults

if TYPE_CHECKING:
    from ._decorate import Call
    from .events import Event

__all__ = ["Repeating", "emit", "repeat_async", "repeat_sync"]

_logger = logging.getLogger("resilient")


class Repeating(Protocol):
    """The per-call decisions of a repeating procedure (e.g. one call of a retry policy).

    After each further attempt the driver asks for the wait before the next one; ``None``
    means stop: re-raise the exception, or return the result.
    """

    def failed(self, exc: Exception) -> float | None:
        """Decide after the attempt raised *exc*."""

    def returned(self, result: Any) -> float | None:
        """Decide after the attempt returned *result*."""


def repeat_sync(  # noqa: PLR0917 - the arguments are wrapt's call shape, passed through
    run: Repeating,
    delay: float,
    nested: Call | None,
    wrapped: Any,
    instance: Any,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Any:
    """Wait *delay*, call again, and repeat as *run* decides (the sync driver).

    *nested* is the step to call, or ``None`` to call *wrapped* itself. Call this outside any
    ``except`` block, so that a re-raised exception keeps its own context.
    """
    defaults = DEFAULTS
    while True:
        if delay and not defaults.testing:
            defaults.clock.sleep(delay)
        try:
            if nested is None:
                result = wrapped(*args, **kwargs)
            else:
                result = nested(wrapped, instance, args, kwargs)
        except Exception as exc:
            next_delay = run.failed(exc)
            if next_delay is None:
                raise
        else:
            next_delay = run.returned(result)
            if next_delay is None:
                return result
        delay = next_delay


async def repeat_async(  # noqa: PLR0917 - the arguments are wrapt's call shape, passed through
    run: Repeating,
    delay: float,
    nested: Call | None,
    wrapped: Any,
    instance: Any,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Any:
    """Wait *delay*, await again, and repeat as *run* decides (the async driver)."""
    defaults = DEFAULTS
    while True:
        if delay and not defaults.testing:
            await defaults.clock.asleep(delay)
        try:
            if nested is None:
                result = await wrapped(*args, **kwargs)
            else:
                result = await nested(wrapped, instance, args, kwargs)
        except Exception as exc:
            next_delay = run.failed(exc)
            if next_delay is None:
                raise
        else:
            next_delay = run.returned(result)
            if next_delay is None:
                return result
        delay = next_delay


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
