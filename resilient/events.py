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
    "BreakerClosed",
    "BreakerDisabled",
    "BreakerHalfOpened",
    "BreakerOpened",
    "BreakerRejected",
    "BreakerTransitioned",
    "BulkheadAdmitted",
    "BulkheadRejected",
    "CacheHit",
    "CacheMissed",
    "CacheRefreshed",
    "CacheStaleServed",
    "DedupeBypassed",
    "DedupeJoined",
    "DedupeLed",
    "DedupeTakenOver",
    "FallbackUsed",
    "IdempotencyBypassed",
    "IdempotencyClaimed",
    "IdempotencyConflicted",
    "IdempotencyInProgress",
    "IdempotencyLeaseLost",
    "IdempotencyNotStored",
    "IdempotencyRenewed",
    "IdempotencyReplayed",
    "IdempotencyTakenOver",
    "LockAcquired",
    "LockContended",
    "LockForceReleased",
    "LockLost",
    "LockReleased",
    "LockRenewed",
    "RateLimitAllowed",
    "RateLimitRejected",
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
class BreakerTransitioned(Event):
    """A circuit breaker changed state; the base of the four transition events below.

    Attributes:
        from_state: The state it left (a :class:`resilient.BreakerState` value, e.g.
            ``"closed"``).
        to_state: The state it entered.
        reason: Why: ``"failure_rate"``, ``"slow_call_rate"``, ``"consecutive_failures"``,
            ``"probe_failed"`` or ``"probe_lost"`` (tripped); ``"open_for_elapsed"``
            (half-opened); ``"probes_passed"`` (closed after probing); ``"forced_open"``,
            ``"disabled"``, ``"closed"`` or ``"reset"`` (by hand).
        failure_rate: The failure rate in the sliding window at that moment, or ``None``
            when the window was empty.
        slow_call_rate: Likewise for slow calls; ``None`` when they are not detected.
        open_for: Seconds the breaker stays open, when it opened; else ``None``.
    """

    kind: ClassVar[str] = "breaker.transitioned"
    attribute_fields: ClassVar[tuple[str, ...]] = ("from_state", "to_state", "reason")

    from_state: str
    to_state: str
    reason: str
    failure_rate: float | None
    slow_call_rate: float | None
    open_for: float | None


@attrs.frozen(kw_only=True)
class BreakerOpened(BreakerTransitioned):
    """A circuit breaker opened (tripped) or was forced open: calls are now refused.

    Attributes:
        open_for: Seconds the breaker stays open before probing; ``None`` when forced open.
    """

    kind: ClassVar[str] = "breaker.opened"
    severity: ClassVar[str] = "warning"
    duration_fields: ClassVar[tuple[str, ...]] = ("open_for",)


@attrs.frozen(kw_only=True)
class BreakerHalfOpened(BreakerTransitioned):
    """An open circuit breaker's open time passed: it lets probe calls through."""

    kind: ClassVar[str] = "breaker.half_opened"


@attrs.frozen(kw_only=True)
class BreakerClosed(BreakerTransitioned):
    """A circuit breaker closed: its probes succeeded, or it was closed or reset by hand."""

    kind: ClassVar[str] = "breaker.closed"


@attrs.frozen(kw_only=True)
class BreakerDisabled(BreakerTransitioned):
    """A circuit breaker was disabled by hand: calls pass and nothing is counted."""

    kind: ClassVar[str] = "breaker.disabled"
    severity: ClassVar[str] = "warning"


@attrs.frozen(kw_only=True)
class BreakerRejected(Event):
    """A circuit breaker refused a call (it raised CircuitOpenError, or its fallback ran).

    Attributes:
        state: The breaker's state: ``"open"``, ``"half_open"`` (every probe place taken) or
            ``"forced_open"``.
        remaining: Seconds until it lets probes through; ``None`` when forced open.
        fallback: Whether the breaker's fallback answered the call instead.
    """

    kind: ClassVar[str] = "breaker.rejected"
    severity: ClassVar[str] = "debug"
    attribute_fields: ClassVar[tuple[str, ...]] = ("state", "fallback")

    state: str
    remaining: float | None
    fallback: bool


@attrs.frozen(kw_only=True)
class DedupeLed(Event):
    """A deduplicated call ran the function, for itself and the calls that joined it.

    Attributes:
        elapsed: Seconds the function took.
    """

    kind: ClassVar[str] = "dedupe.led"
    severity: ClassVar[str] = "debug"
    duration_fields: ClassVar[tuple[str, ...]] = ("elapsed",)

    elapsed: float


@attrs.frozen(kw_only=True)
class DedupeJoined(Event):
    """A deduplicated call joined one already running and got its outcome, not running its own.

    Attributes:
        waited: Seconds it waited for the running call.
    """

    kind: ClassVar[str] = "dedupe.joined"
    severity: ClassVar[str] = "debug"
    duration_fields: ClassVar[tuple[str, ...]] = ("waited",)

    waited: float


@attrs.frozen(kw_only=True)
class DedupeTakenOver(Event):
    """A deduplicated call whose flight's leader was cancelled or died led a new flight.

    Attributes:
        waited: Seconds it waited for the leader that left.
    """

    kind: ClassVar[str] = "dedupe.taken_over"
    severity: ClassVar[str] = "warning"
    duration_fields: ClassVar[tuple[str, ...]] = ("waited",)

    waited: float


@attrs.frozen(kw_only=True)
class DedupeBypassed(Event):
    """A deduplicated call ran on its own: ``max_flights`` keys were in flight already.

    Attributes:
        in_flight: How many keys were in flight.
    """

    kind: ClassVar[str] = "dedupe.bypassed"
    severity: ClassVar[str] = "warning"

    in_flight: int


@attrs.frozen(kw_only=True)
class LockAcquired(Event):
    """A lock was taken.

    Attributes:
        waited: Seconds from asking for it until it was taken.
    """

    kind: ClassVar[str] = "lock.acquired"
    severity: ClassVar[str] = "debug"
    duration_fields: ClassVar[tuple[str, ...]] = ("waited",)

    waited: float


@attrs.frozen(kw_only=True)
class LockContended(Event):
    """A lock asked for was held by someone else: the caller waits (or gives up at once)."""

    kind: ClassVar[str] = "lock.contended"
    severity: ClassVar[str] = "debug"


@attrs.frozen(kw_only=True)
class LockReleased(Event):
    """A lock was released by its holder.

    Attributes:
        held: Seconds it was held.
    """

    kind: ClassVar[str] = "lock.released"
    severity: ClassVar[str] = "debug"
    duration_fields: ClassVar[tuple[str, ...]] = ("held",)

    held: float


@attrs.frozen(kw_only=True)
class LockRenewed(Event):
    """A held lease was made to last its TTL again (``renew=True``).

    Attributes:
        held: Seconds since the lease was taken.
    """

    kind: ClassVar[str] = "lock.renewed"
    severity: ClassVar[str] = "debug"
    duration_fields: ClassVar[tuple[str, ...]] = ("held",)

    held: float


@attrs.frozen(kw_only=True)
class LockLost(Event):
    """A lease was found gone while held: it ran out, or renewing it failed until it ran out.

    Reported once per lease: by the renewer, or on release.

    Attributes:
        held: Seconds from taking the lease until it was found gone.
    """

    kind: ClassVar[str] = "lock.lost"
    severity: ClassVar[str] = "error"
    duration_fields: ClassVar[tuple[str, ...]] = ("held",)

    held: float


@attrs.frozen(kw_only=True)
class LockForceReleased(Event):
    """An operator released a lease held by someone else (``resilient.admin``).

    Reported by the process that released it. Its holder learns of it as a loss: at its next
    renewal, or when it releases the lease itself.

    Attributes:
        token: The fencing token of the lease released.
        holder: The process that held it, as ``host:pid``, if its owner id tells.
    """

    kind: ClassVar[str] = "lock.force_released"
    severity: ClassVar[str] = "warning"

    token: int
    holder: str | None


@attrs.frozen(kw_only=True)
class IdempotencyClaimed(Event):
    """An idempotent call claimed its key (the first call with it) and runs the function."""

    kind: ClassVar[str] = "idempotency.claimed"
    severity: ClassVar[str] = "debug"


@attrs.frozen(kw_only=True)
class IdempotencyReplayed(Event):
    """An idempotent call found its key's record and returned (or raised) the stored outcome.

    Attributes:
        outcome: ``"value"``, or ``"error"`` for a stored failure (``store_errors``).
        local: Whether the record came from this process's replay cache (``local_ttl``),
            with no backend round trip.
    """

    kind: ClassVar[str] = "idempotency.replayed"
    severity: ClassVar[str] = "debug"
    attribute_fields: ClassVar[tuple[str, ...]] = ("outcome", "local")

    outcome: str
    local: bool


@attrs.frozen(kw_only=True)
class IdempotencyConflicted(Event):
    """An idempotency key came again with a different payload; nothing was executed."""

    kind: ClassVar[str] = "idempotency.conflicted"
    severity: ClassVar[str] = "warning"


@attrs.frozen(kw_only=True)
class IdempotencyInProgress(Event):
    """An idempotent call found its key's first call still running.

    Attributes:
        waiting: Whether it waits for the outcome (``on_in_progress="wait"``) rather than
            raising :class:`~resilient.exceptions.IdempotencyInProgressError`.
    """

    kind: ClassVar[str] = "idempotency.in_progress"
    severity: ClassVar[str] = "info"
    attribute_fields: ClassVar[tuple[str, ...]] = ("waiting",)

    waiting: bool


@attrs.frozen(kw_only=True)
class IdempotencyRenewed(Event):
    """The in-progress lease of a running idempotent call was made to last ``lease_ttl`` again.

    Attributes:
        held: Seconds since the key was claimed.
    """

    kind: ClassVar[str] = "idempotency.renewed"
    severity: ClassVar[str] = "debug"
    duration_fields: ClassVar[tuple[str, ...]] = ("held",)

    held: float


@attrs.frozen(kw_only=True)
class IdempotencyLeaseLost(Event):
    """A running idempotent call's lease ran out: another call may execute the key meanwhile.

    The process was paused, or the backend unreachable, for longer than the lease's term.

    Attributes:
        held: Seconds from the claim until the lease was found gone.
    """

    kind: ClassVar[str] = "idempotency.lease_lost"
    severity: ClassVar[str] = "error"
    duration_fields: ClassVar[tuple[str, ...]] = ("held",)

    held: float


@attrs.frozen(kw_only=True)
class IdempotencyTakenOver(Event):
    """A waiting duplicate claimed the key itself: the call it waited for left no record.

    That call raised (and its claim was released so that the key may be tried again), or
    its process died and its lease ran out.

    Attributes:
        waited: Seconds it waited.
    """

    kind: ClassVar[str] = "idempotency.taken_over"
    severity: ClassVar[str] = "warning"
    duration_fields: ClassVar[tuple[str, ...]] = ("waited",)

    waited: float


@attrs.frozen(kw_only=True)
class IdempotencyNotStored(Event):
    """An idempotent call ran but its outcome could not be stored; the key stays claimed.

    The claim is kept (made to last ``ttl`` when the backend still answers), so the call is
    not executed again silently: duplicates find it in progress until it runs out.

    Attributes:
        reason: ``"unencodable"`` (the codec refused the value) or ``"backend"`` (the backend
            failed).
    """

    kind: ClassVar[str] = "idempotency.not_stored"
    severity: ClassVar[str] = "error"
    attribute_fields: ClassVar[tuple[str, ...]] = ("reason",)

    reason: str


@attrs.frozen(kw_only=True)
class IdempotencyBypassed(Event):
    """The backend failed to claim a key and ``fail_open=True``: the call ran without a claim."""

    kind: ClassVar[str] = "idempotency.bypassed"
    severity: ClassVar[str] = "warning"


@attrs.frozen(kw_only=True)
class RateLimitAllowed(Event):
    """A rate limit let a call go, at once or after waiting for its token (``wait=True``).

    Attributes:
        waited: Seconds the call waited for its token (0.0 when it went at once).
    """

    kind: ClassVar[str] = "rate_limit.allowed"
    severity: ClassVar[str] = "debug"
    duration_fields: ClassVar[tuple[str, ...]] = ("waited",)

    waited: float


@attrs.frozen(kw_only=True)
class RateLimitRejected(Event):
    """A rate limit refused a call with RateLimitedError: no token was free soon enough.

    Attributes:
        retry_after: Seconds until a token is free.
    """

    kind: ClassVar[str] = "rate_limit.rejected"
    severity: ClassVar[str] = "warning"
    duration_fields: ClassVar[tuple[str, ...]] = ("retry_after",)

    retry_after: float


@attrs.frozen(kw_only=True)
class FallbackUsed(Event):
    """A call raised an exception its fallback answers: the fallback's value is returned instead.

    Reported before a ``handler=`` runs, so a handler that raises is reported too.

    Attributes:
        error_type: The exception type the call raised.
    """

    kind: ClassVar[str] = "fallback.used"
    severity: ClassVar[str] = "warning"
    attribute_fields: ClassVar[tuple[str, ...]] = ("error_type",)

    error_type: str


@attrs.frozen(kw_only=True)
class BulkheadAdmitted(Event):
    """A call that waited in a bulkhead's queue was given a slot.

    Calls that find a slot free at once report nothing.

    Attributes:
        waited: Seconds it waited for the slot.
    """

    kind: ClassVar[str] = "bulkhead.admitted"
    severity: ClassVar[str] = "debug"
    duration_fields: ClassVar[tuple[str, ...]] = ("waited",)

    waited: float


@attrs.frozen(kw_only=True)
class BulkheadRejected(Event):
    """A bulkhead refused a call with BulkheadFullError: no slot was, or came, free for it.

    Attributes:
        waited: Seconds it waited in the queue first (0.0 when refused at once).
    """

    kind: ClassVar[str] = "bulkhead.rejected"
    severity: ClassVar[str] = "warning"
    duration_fields: ClassVar[tuple[str, ...]] = ("waited",)

    waited: float


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
        BreakerOpened,
        BreakerHalfOpened,
        BreakerClosed,
        BreakerDisabled,
        BreakerRejected,
        DedupeLed,
        DedupeJoined,
        DedupeTakenOver,
        DedupeBypassed,
        LockAcquired,
        LockContended,
        LockReleased,
        LockRenewed,
        LockLost,
        LockForceReleased,
        IdempotencyClaimed,
        IdempotencyReplayed,
        IdempotencyConflicted,
        IdempotencyInProgress,
        IdempotencyRenewed,
        IdempotencyLeaseLost,
        IdempotencyTakenOver,
        IdempotencyNotStored,
        IdempotencyBypassed,
        RateLimitAllowed,
        RateLimitRejected,
        FallbackUsed,
        BulkheadAdmitted,
        BulkheadRejected,
        BackendFailed,
        StoredValueRejected,
    )
