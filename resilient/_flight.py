# In-process single flight: concurrent calls for one key share one execution.
#
# Rules:
# - The first caller for a key leads; every caller arriving while it runs follows and gets the
#   leader's outcome (its value, or the very exception it raised), woken by a Signal, not by
#   polling. Sync threads and asyncio tasks in any loop can follow the same flight.
# - A leader that ends with a BaseException that is not an Exception (cancellation,
#   KeyboardInterrupt) abandons the flight: its followers are woken and try again, one of them
#   leading; they never inherit a cancellation that was not theirs. So does a leader that
#   gives up for a reason of its own (`abandon`: its deadline came while it waited for
#   another process), so that its followers never inherit a deadline that was not theirs.
# - The registry holds a flight only while it runs, so it is bounded by the calls in progress.
# - A flight's Signal is made by its first follower, under the registry's lock: a flight nobody
#   follows (nearly all of them) costs no lock, event or wake-up.
from __future__ import annotations

import threading
from collections.abc import Hashable

from ._signal import Signal

__all__ = ["Flight", "Flights", "LateError"]


class LateError(Exception):
    """A leader's deadline came while it waited for another process: it abandons its flight."""


class Flight:
    """One shared execution: its outcome once done, and the signal that wakes its followers."""

    __slots__ = ("abandoned", "done", "error", "extra", "value")

    def __init__(self) -> None:
        self.done: Signal | None = None
        self.value: object = None
        self.extra: object = None
        self.error: BaseException | None = None
        self.abandoned = False

    @property
    def landing(self) -> Signal:
        """The signal a follower waits on: made by the follower's own `Flights.join`."""
        done = self.done
        if done is None:  # pragma: no cover - only a leader, which never waits, lacks it
            raise RuntimeError("only a follower of this flight may wait for it")
        return done


class Flights:
    """The flights in progress, by key; thread-safe."""

    __slots__ = ("_flights", "_lock")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flights: dict[Hashable, Flight] = {}

    def join(self, key: Hashable) -> tuple[Flight, bool]:
        """Return the flight for *key* and whether the caller leads it (it just started)."""
        with self._lock:
            flight = self._flights.get(key)
            if flight is not None:
                if flight.done is None:
                    flight.done = Signal()
                return flight, False
            flight = self._flights[key] = Flight()
            return flight, True

    def land(
        self,
        key: Hashable,
        flight: Flight,
        *,
        value: object = None,
        extra: object = None,
        error: BaseException | None = None,
    ) -> None:
        """Finish *flight* with its outcome and wake its followers.

        An *error* that is not an :class:`Exception` abandons the flight instead.
        """
        if error is not None and not isinstance(error, Exception):
            self.abandon(key, flight)
            return
        flight.value, flight.extra, flight.error = value, extra, error
        self._end(key, flight)

    def abandon(self, key: Hashable, flight: Flight) -> None:
        """Leave *flight* without an outcome: its followers wake and try again, one leading."""
        flight.abandoned = True
        self._end(key, flight)

    def _end(self, key: Hashable, flight: Flight) -> None:
        with self._lock:
            if self._flights.get(key) is flight:
                del self._flights[key]
            done = flight.done  # no follower can join once the flight is out of the registry
        if done is not None:
            done.fire()

    def __len__(self) -> int:
        return len(self._flights)
