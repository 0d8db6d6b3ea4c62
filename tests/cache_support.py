"""Test helpers shared by the cache tests: an observer that threads and tasks can wait on."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from resilient.events import Event

T = TypeVar("T")

# Real seconds a test waits, at most, for another thread, a background refresh or a server:
# a bound that only a hang reaches.
PATIENCE = 5.0


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run *coroutine* on a fresh event loop (which closes its Redis clients at the end)."""
    return asyncio.run(coroutine)


class EventLog:
    """An observer recording events from any thread, which a test can wait on."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._changed = threading.Condition()

    def __call__(self, event: Event) -> None:
        with self._changed:
            self.events.append(event)
            self._changed.notify_all()

    def of(self, kind: type[Event]) -> list[Any]:
        """The events of one class, in order."""
        with self._changed:
            return [event for event in self.events if type(event) is kind]

    def wait_for(self, kind: type[Event], count: int = 1) -> None:
        """Block until *count* events of *kind* were reported (fail after PATIENCE seconds)."""
        with self._changed:
            arrived = self._changed.wait_for(
                lambda: sum(type(event) is kind for event in self.events) >= count, PATIENCE
            )
        assert arrived, f"waited {PATIENCE} s for {count} {kind.__name__}: {self.events}"

    async def settle(self, kind: type[Event], count: int = 1) -> None:
        """Let the event loop run until *count* events of *kind* were reported."""
        for _ in range(1000):
            if len(self.of(kind)) >= count:
                return
            await asyncio.sleep(0)
        raise AssertionError(f"no {count} {kind.__name__} after 1000 loop turns: {self.events}")
