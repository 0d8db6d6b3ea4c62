# When each lease being renewed is due, free of I/O: a heap of renewals ordered by due time.
#
# A renewal due goes with those due soon after it (within its `early`): the renewer sends the
# renewals of one round together, so leases taken one after another, due a few milliseconds
# apart, share a round from their first renewal on instead of each waking the renewer.
#
# A renewal refers to its lease weakly: a lease that nobody holds any more (its holder ended
# without leaving the block) is collected and dropped from the schedule when it comes due,
# and the lock it held runs out at its TTL.
from __future__ import annotations

import heapq
import itertools
import weakref
from typing import Any

__all__ = ["Renewal", "Schedule"]


class Renewal:
    """One lease being renewed: the lock that renews it, and when it is next due.

    ``early`` is how long before it is due it takes others due by then along.
    """

    __slots__ = ("active", "due", "early", "lease", "lock", "renewer")

    def __init__(self, lock: Any, lease: object, due: float, early: float = 0.0) -> None:
        self.lock = lock
        self.lease = weakref.ref(lease)
        self.due = due
        self.early = early
        self.active = True
        self.renewer: Any = None  # what serves it


class Schedule:
    """The renewals one renewer serves, by due time; ``active`` counts those not stopped."""

    __slots__ = ("_heap", "_order", "active")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Renewal]] = []
        self._order = itertools.count()
        self.active = 0

    def add(self, renewal: Renewal) -> None:
        """Serve *renewal* from its due time on."""
        self.active += 1
        self.again(renewal)

    def again(self, renewal: Renewal) -> None:
        """Serve *renewal* once more, at its (new) due time."""
        heapq.heappush(self._heap, (renewal.due, next(self._order), renewal))

    def stop(self, renewal: Renewal) -> None:
        """Serve *renewal* no more (its lease was released, lost or collected)."""
        if renewal.active:
            renewal.active = False
            self.active -= 1

    def next_due(self) -> float | None:
        """The time the first active renewal is due, or None when none is left."""
        while self._heap and not self._heap[0][2].active:
            heapq.heappop(self._heap)
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: float) -> list[Renewal]:
        """Take out the active renewals due at *now*, and those due within the first's ``early``.

        Stop those whose lease was collected.
        """
        due: list[Renewal] = []
        until = now
        while self._heap and self._heap[0][0] <= until:
            renewal = heapq.heappop(self._heap)[2]
            if not renewal.active:
                continue
            if renewal.lease() is None:
                self.stop(renewal)
                continue
            if not due:
                until = now + renewal.early
            due.append(renewal)
        return due
