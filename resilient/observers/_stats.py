# The in-memory stats observer: counters and duration sums behind one lock. An update takes the
# lock once and does a few dict operations; snapshots copy into fresh plain dicts, so a reader
# never sees (or mutates) the live state.
from __future__ import annotations

import threading
from typing import TypedDict

from ..events import Event

__all__ = ["DurationStats", "PolicyStats", "StatsObserver"]


class DurationStats(TypedDict):
    """Totals for one duration field of one kind of event under one policy."""

    count: int
    """How many events had this duration (``None`` values are not counted)."""
    total: float
    """Sum of the durations, in seconds."""
    max: float
    """The longest duration seen, in seconds."""


class PolicyStats(TypedDict):
    """What one policy reported of one kind of event."""

    count: int
    """How many events."""
    durations: dict[str, DurationStats]
    """Totals per duration field (e.g. ``"delay"``)."""


class _Entry:
    __slots__ = ("count", "durations")

    def __init__(self) -> None:
        self.count = 0
        self.durations: dict[str, list[float]] = {}  # field: [count, total, max]


class StatsObserver:
    """Count events in memory, per kind and policy, with totals and maxima of their durations.

    Made for status pages, demos and tests: :meth:`snapshot` returns plain dicts and numbers,
    ready for :func:`json.dumps`. Memory grows with the number of distinct (kind, policy) pairs
    only. Thread-safe.

    Example:
        >>> import resilient
        >>> from resilient.observers import StatsObserver
        >>> stats = StatsObserver()
        >>> resilient.configure(observers=[stats])
        >>> no_wait = resilient.wait.none()
        >>> @resilient.retry(on=ConnectionError, attempts=2, wait=no_wait, name="fetch")
        ... def fetch() -> None:
        ...     raise ConnectionError("down")
        >>> try:
        ...     fetch()
        ... except ConnectionError:
        ...     pass
        >>> stats.count("retry.scheduled"), stats.count("retry.exhausted", policy="fetch")
        (1, 1)
        >>> resilient.reset_defaults()
    """

    __slots__ = ("_entries", "_lock")

    def __init__(self) -> None:
        self._entries: dict[tuple[str, str], _Entry] = {}
        self._lock = threading.Lock()

    def __call__(self, event: Event) -> None:
        """Count *event*."""
        durations = [(name, getattr(event, name)) for name in event.duration_fields]
        key = (event.kind, event.policy)
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                entry = self._entries[key] = _Entry()
            entry.count += 1
            for name, value in durations:
                if value is None:
                    continue
                totals = entry.durations.get(name)
                if totals is None:
                    entry.durations[name] = [1, value, value]
                else:
                    totals[0] += 1
                    totals[1] += value
                    totals[2] = max(totals[2], value)

    def count(self, kind: str, policy: str | None = None) -> int:
        """Return how many events of *kind* were seen, from *policy* or from every policy."""
        with self._lock:
            if policy is not None:
                entry = self._entries.get((kind, policy))
                return 0 if entry is None else entry.count
            return sum(e.count for (k, _), e in self._entries.items() if k == kind)

    def snapshot(self) -> dict[str, dict[str, PolicyStats]]:
        """Return a copy of the stats: ``{kind: {policy: PolicyStats}}``, sorted by name.

        The result is plain data, independent of the observer: later events do not change it.
        """
        with self._lock:
            items = [
                (kind, policy, entry.count, {n: tuple(t) for n, t in entry.durations.items()})
                for (kind, policy), entry in self._entries.items()
            ]
        result: dict[str, dict[str, PolicyStats]] = {}
        for kind, policy, count, durations in sorted(items, key=lambda item: item[:2]):
            result.setdefault(kind, {})[policy] = PolicyStats(
                count=count,
                durations={
                    name: DurationStats(count=int(n), total=total, max=longest)
                    for name, (n, total, longest) in sorted(durations.items())
                },
            )
        return result

    def reset(self) -> None:
        """Forget everything counted so far."""
        with self._lock:
            self._entries.clear()

    def __repr__(self) -> str:
        with self._lock:
            return f"<StatsObserver: {sum(e.count for e in self._entries.values())} events>"
