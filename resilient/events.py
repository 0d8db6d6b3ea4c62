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

__all__ = ["Event", "RetriesExhausted", "RetryScheduled", "all_event_types"]


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


def all_event_types() -> tuple[type[Event], ...]:
    """Return every concrete event class, in the order of the metric catalogue."""
    return (RetryScheduled, RetriesExhausted)
