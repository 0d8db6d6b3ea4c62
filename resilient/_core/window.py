# Sliding windows of call outcomes, for the breaker's failure and slow-call rates.
#
# Rules:
# - An outcome is a small int: bit 0 set for a failure, bit 1 set for a slow call (so 0 is a
#   quick success and 3 a slow failure). Outcomes that do not count never reach a window.
# - Every update is O(1) (amortised over the buckets a time window skips), and reading the
#   counts is an attribute read: the breaker checks its thresholds after every outcome.
# - A count window holds the last `size` outcomes in a ring. A time window of `seconds` holds
#   `BUCKETS` buckets of `seconds / BUCKETS` each, aligned to multiples of that width on the
#   clock's scale; the window is the bucket now being filled and the BUCKETS - 1 before it, so
#   an outcome leaves it between `seconds * (1 - 1 / BUCKETS)` and `seconds` after it happened.
# - Time arrives as an argument; a time earlier than one already seen counts in the newest
#   bucket (a monotonic clock never does that; a window shared with another clock might).
from __future__ import annotations

import math
from typing import Final, Protocol

__all__ = ["BUCKETS", "FAILURE", "SLOW", "CountWindow", "TimeWindow", "Window"]

FAILURE: Final = 1
SLOW: Final = 2
BUCKETS: Final = 10


class Window(Protocol):
    """What the breaker reads and feeds: counts of the outcomes now in the window."""

    calls: int
    failures: int
    slow: int

    def add(self, outcome: int, now: float) -> None:
        """Count *outcome*, which happened at *now*."""

    def add_successes(self, count: int, now: float) -> None:
        """Count *count* quick successes, which happened by *now*, in order after the rest."""

    def advance(self, now: float) -> None:
        """Drop the outcomes that have left the window by *now*."""

    def clear(self) -> None:
        """Forget every outcome."""


class CountWindow:
    """The last *size* outcomes."""

    __slots__ = ("_next", "_ring", "calls", "failures", "size", "slow")

    _next: int
    calls: int
    failures: int
    slow: int

    def __init__(self, size: int) -> None:
        self.size = size
        self._ring = bytearray(size)
        self.clear()

    def add(self, outcome: int, now: float) -> None:
        """Count *outcome*; when the window is full, the oldest outcome leaves it."""
        ring = self._ring
        position = self._next
        if self.calls == self.size:
            old = ring[position]
            self.failures -= old & FAILURE
            self.slow -= old >> 1
        else:
            self.calls += 1
        ring[position] = outcome
        self.failures += outcome & FAILURE
        self.slow += outcome >> 1
        position += 1
        self._next = 0 if position == self.size else position

    def add_successes(self, count: int, now: float) -> None:
        """Count *count* quick successes at once (each a 0 written into the ring)."""
        size = self.size
        ring = self._ring
        if count >= size:
            ring[:] = bytes(size)
            self._next = 0
            self.calls = size
            self.failures = self.slow = 0
            return
        start = self._next
        end = start + count
        pieces = [(start, end)] if end <= size else [(start, size), (0, end - size)]
        for first, last in pieces:
            # slots past the outcomes held are zero, so only evicted outcomes are counted
            evicted = ring[first:last]
            both = evicted.count(FAILURE | SLOW)
            self.failures -= evicted.count(FAILURE) + both
            self.slow -= evicted.count(SLOW) + both
            ring[first:last] = bytes(last - first)
        self.calls = min(size, self.calls + count)
        self._next = end % size

    def advance(self, now: float) -> None:
        """Do nothing: outcomes leave a count window only when newer ones push them out."""

    def clear(self) -> None:
        """Forget every outcome."""
        self._ring[:] = bytes(self.size)
        self._next = 0
        self.calls = self.failures = self.slow = 0


class TimeWindow:
    """The outcomes of the last *seconds*, in `BUCKETS` buckets."""

    __slots__ = (
        "_bucket_calls",
        "_bucket_failures",
        "_bucket_slow",
        "_head",
        "_width",
        "calls",
        "failures",
        "seconds",
        "slow",
    )

    _head: int
    calls: int
    failures: int
    slow: int

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._width = seconds / BUCKETS
        self._bucket_calls = [0] * BUCKETS
        self._bucket_failures = [0] * BUCKETS
        self._bucket_slow = [0] * BUCKETS
        self.clear()

    def add(self, outcome: int, now: float) -> None:
        """Count *outcome* in the bucket of *now*."""
        self.advance(now)
        slot = self._head % BUCKETS
        failed = outcome & FAILURE
        slow = outcome >> 1
        self._bucket_calls[slot] += 1
        self._bucket_failures[slot] += failed
        self._bucket_slow[slot] += slow
        self.calls += 1
        self.failures += failed
        self.slow += slow

    def add_successes(self, count: int, now: float) -> None:
        """Count *count* quick successes in the bucket of *now*."""
        self.advance(now)
        self._bucket_calls[self._head % BUCKETS] += count
        self.calls += count

    def advance(self, now: float) -> None:
        """Empty the buckets that have left the window by *now*."""
        index = math.floor(now / self._width)
        head = self._head
        if index <= head:
            return
        if index - head >= BUCKETS:
            self.clear()
        else:
            calls, failures, slow = self._bucket_calls, self._bucket_failures, self._bucket_slow
            for passed in range(head + 1, index + 1):
                slot = passed % BUCKETS
                self.calls -= calls[slot]
                self.failures -= failures[slot]
                self.slow -= slow[slot]
                calls[slot] = failures[slot] = slow[slot] = 0
        self._head = index

    def clear(self) -> None:
        """Forget every outcome."""
        for buckets in (self._bucket_calls, self._bucket_failures, self._bucket_slow):
            buckets[:] = [0] * BUCKETS
        self._head = -(2**62)  # before any time: the first outcome starts a fresh window
        self.calls = self.failures = self.slow = 0
