# The real clock. Kept apart from _drive so that _config can build its default without a cycle.
from __future__ import annotations

import asyncio
import time as _time

__all__ = ["SystemClock"]


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
