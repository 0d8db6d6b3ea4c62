# The drivers' shared effects: the only module that sleeps (through SystemClock) and the one place
# that delivers events to observers. Capability modules hold the sync and async loops themselves,
# each a few lines that perform what their sans-I/O core decided; everything they share is here.
from __future__ import annotations

import asyncio
import logging
import time as _time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._config import Defaults
    from .events import Event

__all__ = ["SystemClock", "emit"]

_logger = logging.getLogger("resilient")


class SystemClock:
    """The real clock: :func:`time.monotonic`, :func:`time.time`, and real sleeps.

    The methods are the standard library's functions themselves, so reading the time on a hot
    path costs one C call.
    """

    __slots__ = ()

    monotonic = staticmethod(_time.monotonic)
    time = staticmethod(_time.time)
    sleep = staticmethod(_time.sleep)  # noqa: TID251 - the one place allowed to sleep
    asleep = staticmethod(asyncio.sleep)

    def __repr__(self) -> str:
        return "SystemClock()"


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
