"""Every exception `resilient` raises, rooted at :class:`ResilientError`.

Retrying never wraps your exception: after the last attempt the original exception is raised
again, with a note (PEP 678) that says how many attempts were made over how long. The classes
here are for decisions the library itself makes.
"""

from __future__ import annotations

import builtins
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._core.breaker import BreakerState

__all__ = [
    "BackendUnavailableError",
    "BulkheadFullError",
    "CircuitOpenError",
    "CodecError",
    "CompositionWarning",
    "IdempotencyConflictError",
    "IdempotencyInProgressError",
    "IdempotencyKeyError",
    "IdempotencyRecordError",
    "IdempotentFailureError",
    "LockLostError",
    "LockNotAcquiredError",
    "NotFoundError",
    "RateLimitedError",
    "ResilientError",
    "SharedFlightError",
    "TimeoutError",
    "UncacheableArgumentError",
]


class ResilientError(Exception):
    """Base class of every exception raised by `resilient` itself."""


class BackendUnavailableError(ResilientError):
    """A backend could not be reached where the capability fails closed.

    Capabilities that fail open (a cache) never raise this: they call the function instead and
    report a :class:`resilient.events.BackendFailed` event.

    Attributes:
        backend: The backend's name, e.g. ``"redis"``.
        operation: The primitive that failed, e.g. ``"get"``.
    """

    def __init__(self, message: str, *, backend: str, operation: str) -> None:
        super().__init__(message)
        self.backend = backend
        self.operation = operation


class BulkheadFullError(ResilientError):
    """A bulkhead refused the call: every slot was taken and no place came free for it.

    Nothing was called. Either its queue was full too (or it has none), and the call was
    refused at once; or the call waited in the queue for its ``timeout``, or until the
    caller's deadline, without a slot coming free.

    Attributes:
        name: The bulkhead's name.
        max_concurrent: How many calls it lets run at once.
        waited: Seconds the call waited for a slot (0.0 when it was refused at once).
    """

    def __init__(self, name: str, max_concurrent: int, waited: float = 0.0) -> None:
        how = f"no slot came free within {waited:.3g} s" if waited else "no place to wait"
        super().__init__(f"bulkhead {name!r} is full (max_concurrent={max_concurrent}): {how}")
        self.name = name
        self.max_concurrent = max_concurrent
        self.waited = waited


class CircuitOpenError(ResilientError):
    """A circuit breaker refused the call: the dependency behind it is presumed down.

    Nothing was called. A :func:`resilient.retry` that retries this error waits for
    :attr:`retry_after` (up to its ``max_wait``), as it does for any Retry-After hint.

    Attributes:
        name: The breaker's name.
        state: Its state, a :class:`resilient.BreakerState`: open, half-open (every probe
            place taken) or forced open.
        remaining: Seconds until it lets probes through (0.0 when half-open), or ``None``
            when it was forced open and waits for a manual close.
        retry_after: The same as *remaining*.
    """

    def __init__(self, name: str, state: BreakerState, remaining: float | None) -> None:
        if remaining is None:
            wait = "until it is closed by hand"
        elif remaining > 0:
            wait = f"for another {remaining:.3f} s"
        else:
            wait = "until its probe calls report"
        super().__init__(f"circuit breaker {name!r} is {state.value}: calls are refused {wait}")
        self.name = name
        self.state = state
        self.remaining = remaining
        self.retry_after = remaining


class CodecError(ResilientError):
    """A stored value could not be decoded, so it is treated as absent.

    Backends catch this and report a :class:`resilient.events.StoredValueRejected` event; it
    reaches user code only when the codec is used directly.

    Attributes:
        reason: Why, one of ``"truncated"``, ``"corrupt"``, ``"version"``, ``"serializer"``,
            ``"mac"`` and ``"oversized"``.
    """

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class RateLimitedError(ResilientError):
    """A rate limit refused the call: no token is free for it now.

    Nothing was called. A :func:`resilient.retry` that retries this error waits for
    :attr:`retry_after` (up to its ``max_wait``), as it does for any Retry-After hint.

    Attributes:
        name: The rate limit's name.
        retry_after: Seconds until a token is free (a call made then is admitted, unless
            others take the token first).
    """

    def __init__(self, name: str, retry_after: float) -> None:
        super().__init__(
            f"rate limit {name!r} reached: the next call is free in {retry_after:.3g} s"
        )
        self.name = name
        self.retry_after = retry_after


class SharedFlightError(ResilientError):
    """The call a ``@deduped(shared=True)`` call joined, in another process, raised.

    An exception object does not cross processes: the followers there get this, naming the
    leader's exception. Followers in the leader's own process get the very exception.

    Attributes:
        name: The deduplicated function's name.
        error_type: The leader's exception type, e.g. ``"ConnectionError"``.
        detail: ``str()`` of the leader's exception.
    """

    def __init__(self, name: str, error_type: str, detail: str) -> None:
        super().__init__(f"{name}: the shared call this one joined raised {error_type}: {detail}")
        self.name = name
        self.error_type = error_type
        self.detail = detail


class CompositionWarning(UserWarning):
    """Stacked decorators were put in an order in which one of them can never act.

    Issued when the decorators are applied, e.g. a ``@timeout`` around a ``@retry`` whose
    shortest wait between attempts does not fit in the limit, so that no second attempt can
    ever start. Each decorator is valid on its own; the stack still runs. See the
    composition page of the docs for the recommended order. Turn it into an error with
    ``warnings.simplefilter("error", CompositionWarning)`` (or pytest's ``filterwarnings``).
    """


class IdempotencyKeyError(ResilientError, ValueError):
    """An ``@idempotent`` call came without a usable idempotency key.

    The key is missing (``None``), not a string, empty, longer than 255 characters, or not
    printable; or the ``principal=`` callable gave nothing. Nothing was executed or stored.
    An HTTP API answers it with 400.

    Attributes:
        name: The idempotent function's name.
        problem: What is wrong with the key, in words fit for the caller (an HTTP 400's
            detail).
    """

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"{name}: {problem}")
        self.name = name
        self.problem = problem


class IdempotencyConflictError(ResilientError):
    """An idempotency key was used again with a different payload.

    The first call's record (or its running execution) has another fingerprint: the key was
    reused for a different request. Nothing was executed. An HTTP API answers it with 422.

    Attributes:
        name: The idempotent function's name.
    """

    def __init__(self, name: str) -> None:
        super().__init__(
            f"{name}: this idempotency key was already used with a different payload; use a "
            "new key for a new request"
        )
        self.name = name


class IdempotencyInProgressError(ResilientError):
    """The first call with this idempotency key is still running.

    Raised to a concurrent duplicate (with ``on_in_progress="raise"``, the default), or to one
    that waited (``on_in_progress="wait"``) for ``wait_timeout`` seconds without the first call
    ending. Nothing was executed. An HTTP API answers it with 409; the client tries again
    later and gets the stored result.

    Attributes:
        name: The idempotent function's name.
        waited: Seconds this call waited for the first one (0.0 when it did not wait).
    """

    def __init__(self, name: str, waited: float = 0.0) -> None:
        how = f" after waiting {waited:.3g} s" if waited else ""
        super().__init__(
            f"{name}: a call with this idempotency key is still running{how}; try again "
            "later to get its result"
        )
        self.name = name
        self.waited = waited


class IdempotentFailureError(ResilientError):
    """A replay of an ``@idempotent(store_errors=...)`` call whose first execution raised.

    The first call raised its own exception; the stored record keeps its type and text, and
    every replay raises this, naming them (an exception object is not stored).

    Attributes:
        name: The idempotent function's name.
        error_type: The first execution's exception type, e.g. ``"app.PaymentDeclined"``.
        detail: ``str()`` of that exception.
    """

    def __init__(self, name: str, error_type: str, detail: str) -> None:
        super().__init__(f"{name}: the first call with this key raised {error_type}: {detail}")
        self.name = name
        self.error_type = error_type
        self.detail = detail


class IdempotencyRecordError(ResilientError):
    """The stored record of an idempotency key could not be read: corrupt, tampered or foreign.

    The codec refused it (see :class:`~resilient.backends.Codec`), or it is not a record
    ``@idempotent`` wrote. It is never returned, and the call is not executed again either,
    since the first execution may have happened: an operator decides (delete the record to
    allow a new execution).

    Attributes:
        name: The idempotent function's name.
    """

    def __init__(self, name: str) -> None:
        super().__init__(
            f"{name}: the stored record of this idempotency key is unreadable (corrupt, "
            "tampered with, or written with another codec secret); not replayed and not "
            "executed again"
        )
        self.name = name


class LockNotAcquiredError(ResilientError):
    """A lock stayed held by someone else for the whole ``timeout``.

    Attributes:
        name: The lock's name.
        timeout: The seconds waited (``0.0`` for a single try).
    """

    def __init__(self, name: str, timeout: float | None) -> None:
        waited = "at once" if not timeout else f"within {timeout:g} s"
        super().__init__(f"lock {name!r} is held by someone else and was not free {waited}")
        self.name = name
        self.timeout = timeout


class LockLostError(ResilientError):
    """A lease was lost while it was held: someone else may have held the lock meanwhile.

    Raised when leaving the lock's block; the work done under the lease may have overlapped
    another holder's, which is what fencing tokens are for. A lease is lost when it runs out
    before it is released, or when an operator releases it by force
    (:meth:`resilient.admin.Admin.release_lock`).

    Attributes:
        name: The lock's name.
        token: The fencing token of the lease that was lost.
    """

    def __init__(self, name: str, token: int) -> None:
        super().__init__(
            f"lock {name!r} was lost while held (fencing token {token}): its lease ran out "
            "or an operator released it before this holder did; if it ran out, use a longer "
            "ttl, and check fencing tokens where the work lands"
        )
        self.name = name
        self.token = token


class NotFoundError(ResilientError, LookupError):
    """An operator's control (:mod:`resilient.admin`) found nothing to act on by that name.

    A subclass of :class:`LookupError` too. Nothing was changed.

    Attributes:
        kind: What was looked for: ``"breaker"`` or ``"lock"``.
        name: The name it was looked for by.
    """

    def __init__(self, kind: str, name: str, detail: str) -> None:
        super().__init__(f"{kind} {name!r} {detail}")
        self.kind = kind
        self.name = name


class TimeoutError(ResilientError, builtins.TimeoutError):
    """A call ran past its time: a ``@timeout`` limit, or the deadline in force.

    A subclass of the builtin :class:`TimeoutError`, so ``except TimeoutError`` catches it
    too. An async call under ``@timeout`` was cancelled at the limit; a sync one ran to its
    end (Python cannot interrupt it safely) and its result was dropped.

    Attributes:
        name: The function or wait that ran out of time.
        seconds: The time it was given, when a ``@timeout`` set it (else None: a deadline).
    """

    def __init__(self, name: str, seconds: float | None, what: str = "ran past") -> None:
        limit = "its deadline" if seconds is None else f"its {seconds:g} s timeout"
        super().__init__(f"{name} {what} {limit}")
        self.name = name
        self.seconds = seconds


class UncacheableArgumentError(ResilientError, TypeError):
    """A cached function was called with an argument that cannot be part of a cache key.

    Its only representation is the default ``<object at 0x...>`` repr (a request, a session,
    a connection), which would give every call a key of its own. Pass ``key=`` to
    :func:`resilient.cached` to say what identifies a call.
    """
