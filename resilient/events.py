"""The events `resilient` reports to observers: one frozen class per kind of decision.

Every event carries the name of the policy that decided and the time from the configured clock,
plus fields of its own kind. Events never carry raw arguments, keys or values. When no observer
is configured, no event object is built at all.

Each class names its ``kind`` (a stable dotted string, also the metric name after
``resilient.``), the fields that are safe as metric attributes (bounded: policy names, outcomes,
error types), and the duration fields worth a histogram. These three lists are public API: the
metric catalogue in the docs is generated from them. ``severity`` says how loud the event is in
logs (``"debug"``, ``"info"``, ``"warning"`` or ``"error"``), so that observers pick a log level
without knowing each kind.
"""

from __future__ import annotations

from typing import ClassVar

import attrs

__all__ = [
    "BackendFailed",
    "CacheHit",
    "CacheMissed",
    "CacheRefreshed",
    "CacheStaleServed",
    "Event",
    "RetriesExhausted",
    "RetryScheduled",
    "StoredValueRejected",
    "all_event_types",
]


@attrs.frozen(kw_only=True)
class Event:
    """Fields every event has.

    Attributes:
        policy: The name of the policy (by default the decorated function's module and
            qualified name, e.g. ``"app.payments.charge"``).
        time: When the decision was made, in seconds on the configured clock's monotonic scale.
    """

    kind: ClassVar[str] = "event"
    severity: ClassVar[str] = "info"
    attribute_fields: ClassVar[tuple[str, ...]] = ()
    duration_fields: ClassVar[tuple[str, ...]] = ()

    policy: str
    time: float

    def attributes(self) -> dict[str, str]:
        """Return the bounded attributes of this event, fit for metric labels."""
        attributes = {"policy": self.policy}
        for name in self.attribute_fields:
            value = getattr(self, name)
            attributes[name] = "none" if value is None else str(value)
        return attributes

    def fields(self) -> dict[str, object]:
        """Return every field of this event as a dict, for structured logs."""
        return attrs.asdict(self, recurse=False)


@attrs.frozen(kw_only=True)
class RetryScheduled(Event):
    """An attempt failed and another one will be made after *delay* seconds.

    Attributes:
        attempt: The number of the attempt that just failed (1 for the first call).
        delay: Seconds the retry waits before the next attempt.
        error_type: The failed attempt's exception type, or ``None`` when a result was retried.
    """

    kind: ClassVar[str] = "retry.scheduled"
    attribute_fields: ClassVar[tuple[str, ...]] = ("error_type",)
    duration_fields: ClassVar[tuple[str, ...]] = ("delay",)

    attempt: int
    delay: float
    error_type: str | None


@attrs.frozen(kw_only=True)
class RetriesExhausted(Event):
    """A retryable failure happened but no further attempt will be made.

    Attributes:
        attempts: How many attempts were made in all.
        elapsed: Seconds from the start of the first attempt until giving up.
        error_type: The last attempt's exception type, or ``None`` when a result was retried.
        reason: Why retrying stopped: ``"attempts"``, ``"deadline"`` or ``"budget"``.
    """

    kind: ClassVar[str] = "retry.exhausted"
    severity: ClassVar[str] = "warning"
    attribute_fields: ClassVar[tuple[str, ...]] = ("error_type", "reason")
    duration_fields: ClassVar[tuple[str, ...]] = ("elapsed",)

    attempts: int
    elapsed: float
    error_type: str | None
    reason: str


@attrs.frozen(kw_only=True)
class CacheHit(Event):
    """A cached call was answered with a fresh stored value."""

    kind: ClassVar[str] = "cache.hit"
    severity: ClassVar[str] = "debug"


@attrs.frozen(kw_only=True)
class CacheMissed(Event):
    """A cached call found no usable value and ran the function (or waited for the caller that did).

    Attributes:
        elapsed: Seconds from the start of the call until its value was ready.
    """

    kind: ClassVar[str] = "cache.missed"
    severity: ClassVar[str] = "debug"
    duration_fields: ClassVar[tuple[str, ...]] = ("elapsed",)

    elapsed: float


@attrs.frozen(kw_only=True)
class CacheStaleServed(Event):
    """A cached call was answered with a value past its ``ttl`` but within its ``stale_ttl``.

    Attributes:
        reason: ``"refreshing"`` while a refresh runs in the background, ``"refresh_failed"``
            when the last refresh raised (stale-if-error).
    """

    kind: ClassVar[str] = "cache.stale_served"
    attribute_fields: ClassVar[tuple[str, ...]] = ("reason",)

    reason: str


@attrs.frozen(kw_only=True)
class CacheRefreshed(Event):
    """A background refresh of a stale or soon-expiring value finished.

    Attributes:
        outcome: ``"success"`` or ``"failure"``.
        error_type: The exception type when the refresh failed, else ``None``.
        elapsed: Seconds the refresh took.
    """

    kind: ClassVar[str] = "cache.refreshed"
    attribute_fields: ClassVar[tuple[str, ...]] = ("outcome", "error_type")
    duration_fields: ClassVar[tuple[str, ...]] = ("elapsed",)

    outcome: str
    error_type: str | None
    elapsed: float


@attrs.frozen(kw_only=True)
class BackendFailed(Event):
    """A backend operation failed; the capability carried on as its failure policy says.

    A cache fails open: the call runs the function and returns its value. After repeated
    failures the backend is skipped for a cool-down; at most one of these events is reported
    per second per policy, with *suppressed* counting the ones left out since the last.

    Attributes:
        backend: The backend's name, e.g. ``"redis"``.
        operation: The primitive that failed, e.g. ``"get"`` or ``"put"``; ``"subscribe"``
            when a backend lost the pub/sub connection that keeps local tiers coherent (its
            *policy* is then the backend's name).
        error_type: The exception type the backend raised.
        suppressed: Failures not reported since the previous event.
    """

    kind: ClassVar[str] = "backend.failed"
    severity: ClassVar[str] = "warning"
    attribute_fields: ClassVar[tuple[str, ...]] = ("backend", "operation", "error_type")

    backend: str
    operation: str
    error_type: str
    suppressed: int = 0


@attrs.frozen(kw_only=True)
class StoredValueRejected(Event):
    """A backend read a value it would not decode, and treated it as absent.

    Its *policy* is the backend's name: the backend reports it, not the capability.

    Attributes:
        reason: One of ``"truncated"``, ``"corrupt"``, ``"version"``, ``"serializer"``,
            ``"mac"`` and ``"oversized"`` (see :class:`resilient.exceptions.CodecError`).
    """

    kind: ClassVar[str] = "backend.value_rejected"
    severity: ClassVar[str] = "warning"
    attribute_fields: ClassVar[tuple[str, ...]] = ("reason",)

    reason: str


def all_event_types() -> tuple[type[Event], ...]:
    """Return every concrete event class, in the order of the metric catalogue."""
    return (
        RetryScheduled,
        RetriesExhausted,
        CacheHit,
        CacheMissed,
        CacheStaleServed,
        CacheRefreshed,
        BackendFailed,
        StoredValueRejected,
    )
