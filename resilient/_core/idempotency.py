# The idempotency policy and its decisions, free of I/O: what a key may be, how a call's
# payload is fingerprinted into its claim token, and what a stored record says.
#
# Rules:
# - A record is the tuple (fingerprint, ok, payload): the fingerprint of the call that made
#   it, whether it returned, and its value, or (error type, text) when it raised. Anything
#   else read back is not a record this library wrote, and is never returned.
# - What a key holds says where its call is (`record_state`): a record says it completed or
#   failed, a claim without one that it runs, anything else that its record is unreadable.
# - A claim token is 128 random bits, a "~", and the call's fingerprint, so that a duplicate
#   that finds the key in progress can tell a reuse with another payload (a conflict) from a
#   true duplicate, in the same round trip.
from __future__ import annotations

import enum
import secrets
from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import attrs

from .cache import positive_size
from .matching import Handling, exception_types
from .primitives import needs_primitives
from .seconds import Seconds, positive_seconds

__all__ = [
    "IdempotencyPolicy",
    "Record",
    "RecordState",
    "claim_token",
    "fingerprint_of",
    "key_problem",
    "read_record",
    "record_state",
]

# What an idempotent call does on the backend: claim and read (one get), renew, store (which
# releases the claim), release after a failure, and wait for a running call.
_PRIMITIVES = ("get", "put", "release", "extend", "wait_released")

MAX_KEY_LENGTH = 255


def _ttl(value: Seconds) -> float:
    return positive_seconds("ttl", value)


def _lease_ttl(value: Seconds) -> float:
    return positive_seconds("lease_ttl", value)


def _wait_timeout(value: Seconds) -> float:
    return positive_seconds("wait_timeout", value)


def _local_ttl(value: Seconds | None) -> float | None:
    return None if value is None else positive_seconds("local_ttl", value)


def _key(value: str | Callable[..., object]) -> str | Callable[..., object]:
    raw: object = value  # typed for callers; checked as whatever arrived
    if (isinstance(raw, str) and raw.isidentifier()) or callable(raw):
        return value
    raise TypeError(
        f"key={value!r} must name the parameter that carries the idempotency key, e.g. "
        "@idempotent(key='request_id'), or be a callable taking the function's arguments"
    )


def _payload(
    value: tuple[str, ...] | list[str] | Callable[..., object] | None,
) -> tuple[str, ...] | Callable[..., object] | None:
    if value is None or callable(value):
        return value
    raw: object = value  # typed for callers; checked as whatever arrived
    if isinstance(raw, list | tuple) and raw and all(isinstance(name, str) for name in raw):
        return tuple(raw)
    raise TypeError(
        f"payload={value!r} must list the parameters that make up the request, e.g. "
        "payload=['amount', 'currency'], or be a callable taking the function's arguments, "
        "or None for every argument but the key"
    )


def _principal(value: Callable[..., object] | None) -> Callable[..., object] | None:
    raw: object = value  # typed for callers; checked as whatever arrived
    if raw is None or callable(raw):
        return value
    raise TypeError(
        f"principal={value!r} must be a callable taking the function's arguments and "
        "returning the tenant or user the key belongs to, e.g. "
        "principal=lambda request, **_: request.user_id"
    )


_STORED = Handling("stores", "stored", "to store")


def _store_errors(
    value: bool | type[Exception] | tuple[type[Exception], ...] | list[type[Exception]],
) -> bool | tuple[type[Exception], ...]:
    if isinstance(value, bool):
        return value
    return exception_types("store_errors", value, _STORED)


@attrs.frozen(kw_only=True)
class IdempotencyPolicy:
    """How calls with one idempotency key share one execution and its stored outcome.

    Every field is also a keyword argument of :func:`resilient.idempotent`.

    Attributes:
        key: The parameter that carries the idempotency key (``"request_id"``), or a callable
            taking the function's arguments and returning it. The key must be a printable
            string of 1 to 255 characters.
        ttl: Seconds (or a ``timedelta``) the outcome is kept and replayed, counted by the
            backend's own clock (Redis expires it). A call after that executes again.
        lease_ttl: Seconds the first call's claim lasts unless renewed. It is renewed every
            third of this while the call runs, so a live call is never taken over; a call
            whose process died frees its key after at most this long.
        principal: A callable taking the function's arguments and returning who the key
            belongs to (a tenant, a user): the same key from two principals makes two
            independent records.
        payload: What must match for a call to be a duplicate and not a reuse of its key:
            by default every argument but the key; or the names of some parameters; or a
            callable taking the function's arguments. A key used again with another payload
            raises :class:`~resilient.exceptions.IdempotencyConflictError`.
        on_in_progress: What a duplicate does while the first call runs: ``"raise"``
            :class:`~resilient.exceptions.IdempotencyInProgressError`, or ``"wait"`` for
            its outcome (woken when it is stored, never by polling).
        wait_timeout: With ``"wait"``, the most seconds to wait before raising
            :class:`~resilient.exceptions.IdempotencyInProgressError`.
        store_errors: Which exceptions are stored and replayed, as Stripe does: ``False``
            (none: an exception releases the key, so the request may be tried again, as AWS
            Powertools does), ``True`` (every ``Exception``), or exception types. A replay
            raises :class:`~resilient.exceptions.IdempotentFailureError`. Cancellation and
            other ``BaseException`` are never stored.
        fail_open: When the backend cannot be reached to claim a key, run the call anyway
            (unguarded, reported) instead of raising
            :class:`~resilient.exceptions.BackendUnavailableError`.
        local_ttl: Also keep each record in this process for up to this many seconds, so
            that replays cost no round trip. A record deleted from the backend is still
            replayed here until then.
        local_maxsize: With ``local_ttl``, how many records this process keeps.
        name: The name events report and keys are stored under; by default the function's
            module and qualified name (so renaming the function starts new records).
        backend: Where records live; by default the configured backend.
    """

    key: str | Callable[..., object] = attrs.field(converter=_key)
    ttl: float = attrs.field(default=86_400.0, converter=_ttl)
    lease_ttl: float = attrs.field(default=30.0, converter=_lease_ttl)
    principal: Callable[..., object] | None = attrs.field(default=None, converter=_principal)
    payload: tuple[str, ...] | Callable[..., object] | None = attrs.field(
        default=None, converter=_payload
    )
    on_in_progress: Literal["raise", "wait"] = attrs.field(
        default="raise", validator=attrs.validators.in_(("raise", "wait"))
    )
    wait_timeout: float = attrs.field(default=30.0, converter=_wait_timeout)
    store_errors: bool | tuple[type[Exception], ...] = attrs.field(
        default=False, converter=_store_errors
    )
    fail_open: bool = attrs.field(default=False, validator=attrs.validators.instance_of(bool))
    local_ttl: float | None = attrs.field(default=None, converter=_local_ttl)
    local_maxsize: int = attrs.field(default=1024, converter=positive_size)
    name: str | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.instance_of(str))
    )
    backend: object = attrs.field(default=None, validator=needs_primitives(*_PRIMITIVES))

    def stores(self, error: Exception) -> bool:
        """Whether the outcome *error* is stored and replayed, rather than releasing the key."""
        if isinstance(self.store_errors, bool):
            return self.store_errors
        return isinstance(error, self.store_errors)


def key_problem(key: object) -> str | None:
    """Return what is wrong with *key* as an idempotency key, or None if nothing is."""
    if key is None:
        return "the call has no idempotency key (it is None)"
    if not isinstance(key, str):
        return f"an idempotency key must be a string, not {type(key).__name__}"
    if not key:
        return "the idempotency key is empty"
    if len(key) > MAX_KEY_LENGTH:
        return f"the idempotency key is {len(key)} characters long; at most {MAX_KEY_LENGTH}"
    if not key.isprintable():
        return "the idempotency key holds characters that are not printable"
    return None


def claim_token(fingerprint: str) -> str:
    """Return a new claim token for a call whose payload has *fingerprint*."""
    return f"{secrets.token_hex(16)}~{fingerprint}"


def fingerprint_of(token: str | None) -> str | None:
    """Return the fingerprint a claim token carries, or None if it carries none."""
    if token is None:
        return None
    _, sep, fingerprint = token.partition("~")
    return fingerprint if sep else None


class Record(NamedTuple):
    """An outcome as stored: the fingerprint of its call, and what the call returned or raised."""

    fingerprint: str
    ok: bool
    payload: Any


def read_record(stored: object) -> Record | None:
    """Return *stored* as a :class:`Record`, or None if it is not one this library wrote."""
    if type(stored) is not tuple and not isinstance(stored, list):
        return None
    if len(stored) != 3 or type(stored[0]) is not str or type(stored[1]) is not bool:
        return None
    fingerprint, ok, payload = stored
    if not ok and not (
        isinstance(payload, tuple | list)
        and len(payload) == 2
        and all(type(part) is str for part in payload)
    ):
        return None
    return Record(fingerprint, ok=ok, payload=payload)


class RecordState(enum.Enum):
    """Where the call of one idempotency key is, as its stored record says."""

    COMPLETED = "completed"
    """It returned; its value is replayed."""
    FAILED = "failed"
    """It raised an exception that is stored (``store_errors=``); the failure is replayed."""
    IN_PROGRESS = "in_progress"
    """It runs and holds its claim (renewed while it runs); no record is stored yet."""
    UNREADABLE = "unreadable"
    """Its record cannot be read (corrupt, tampered with, another codec secret); every call
    with the key raises IdempotencyRecordError until it expires or is purged."""


def record_state(value: object | None, *, rejected: bool, claimed: bool) -> RecordState | None:
    """Return the state of a key that stores *value* (None: nothing) and whose claim is held.

    *rejected* says that a value was stored but would not decode. None for a key that holds
    neither record nor claim.
    """
    if rejected:
        return RecordState.UNREADABLE
    if value is not None:
        record = read_record(value)
        if record is None:
            return RecordState.UNREADABLE
        return RecordState.COMPLETED if record.ok else RecordState.FAILED
    return RecordState.IN_PROGRESS if claimed else None
