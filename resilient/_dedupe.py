# `@deduped`: concurrent calls with the same key share one execution (single flight).
#
# Rules:
# - One flight per key in this process (`Flights`): the first call leads and runs the
#   function; every call arriving while it runs follows and gets the leader's value, or the
#   very exception it raised. Followers are woken by the flight's Signal, never by polling.
# - A leader ended by a BaseException that is not an Exception (cancellation, an interrupt)
#   abandons the flight: its followers wake and try again, one of them leading (and reporting
#   that it took over). A follower cancelled while it waits leaves the flight, which goes on
#   for the others.
# - With `shared=True` the leader of this process's flight takes part in the fleet's flight
#   for the key, on the backend: it takes the key's lease (the lock primitives, one command)
#   and runs the function while a renewer keeps the lease alive, then stores the outcome with
#   its fencing token, which releases the lease and wakes the waiters (one command). A
#   process that finds the lease held waits for that release (no polling), reads the outcome
#   and accepts it if it is the holder's it waited for, or a later one. A leader that was
#   cancelled releases the lease without an outcome; one that died stops renewing, and its
#   lease runs out: either way a waiter takes the lease and runs the function, never while a
#   live leader holds it. Exceptions cross processes as SharedFlightError (type and text).
# - If the backend fails, a call runs the function itself (deduplicated in this process
#   only) and reports BackendFailed: single flight saves work; it does not guard it.
# - A call is written once, as a procedure of effects (`CALL`, `Join`, `Op`), which `run_sync`
#   and `run_async` perform: threads wait on the Signal, tasks await it in their own loop, and
#   no task is created.
# - At most `max_flights` keys fly at once in this process; a call beyond that runs on its own.

from __future__ import annotations

import secrets
from collections.abc import Callable, Hashable
from datetime import timedelta
from functools import partial
from typing import Any, ParamSpec, TypedDict, TypeVar, Unpack

import attrs

from . import exceptions
from ._config import DEFAULTS
from ._core.dedupe import DedupePolicy
from ._deadline import current as current_deadline
from ._decorate import Call, Decorator, Target, resolve_policy
from ._drive import CALL, Join, Op, Procedure, backend_failed, emit, run_async, run_sync, type_name
from ._flight import Flights, LateError
from ._keys import CallKeys
from ._lock import Lease, Lock, LockPolicy
from ._renewal import renewed_call
from .backends._types import Locked
from .events import DedupeBypassed, DedupeJoined, DedupeLed, DedupeTakenOver
from .exceptions import SharedFlightError

__all__ = ["DedupeOptions", "deduped"]

P = ParamSpec("P")
R = TypeVar("R")


class DedupeOptions(TypedDict, total=False):
    """The keyword arguments of :func:`deduped`: the fields of :class:`DedupePolicy`."""

    key: str | Callable[..., object] | None
    max_flights: int
    name: str | None
    shared: bool
    backend: object
    lease_ttl: float | timedelta


class _Deduping:
    """One policy applied to one function: its flights and its sync and async call steps."""

    __slots__ = ("_lease", "_stem", "flights", "inner", "keys", "max_flights", "name")

    def __init__(self, policy: DedupePolicy, keys: CallKeys, name: str, inner: Call) -> None:
        self.flights = Flights()
        self.keys = keys
        self.name = name
        self.inner = inner
        self.max_flights = policy.max_flights
        # with `shared`, the lease a leader takes (renewed while it runs), and where it lives
        self._lease: LockPolicy | None = None
        if policy.shared:
            self._lease = LockPolicy(ttl=policy.lease_ttl, renew=True, backend=policy.backend)
        self._stem = f":dedupe:{name.replace('{', '(').replace('}', ')')}:"

    def call_sync(
        self, wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        call = partial(self.inner, wrapped, instance, args, kwargs)
        if len(self.flights) >= self.max_flights:
            self._bypassed()
            return call()
        key = self.keys.local(instance, args, kwargs)
        if self._lease is None:
            return run_sync(self._flight(key, None), call=call)
        across = partial(self._across, instance, args, kwargs, in_loop=False)
        return run_sync(self._flight(key, across), call=call)

    async def call_async(
        self, wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        call = partial(self.inner, wrapped, instance, args, kwargs)
        if len(self.flights) >= self.max_flights:
            self._bypassed()
            return await call()
        key = self.keys.local(instance, args, kwargs)
        if self._lease is None:
            return await run_async(self._flight(key, None), call=call)
        across = partial(self._across, instance, args, kwargs, in_loop=True)
        return await run_async(self._flight(key, across), call=call)

    def _flight(self, key: Hashable, across: Callable[[], Procedure] | None) -> Procedure:
        """Lead the flight of *key* in this process, or follow it and take its outcome.

        A leader runs the function, or with *across* takes part in the fleet's flight.
        """
        clock = DEFAULTS.clock
        left: float | None = None  # when this call began waiting for a leader that left
        while True:
            flight, leads = self.flights.join(key)
            if leads:
                start = clock.monotonic()
                if left is not None:
                    self._emit(DedupeTakenOver, waited=start - left)
                try:
                    value = (yield CALL) if across is None else (yield from across())
                except LateError:  # its deadline came: its followers wait on, one leading
                    self.flights.abandon(key, flight)
                    raise self._late() from None
                except BaseException as error:
                    self.flights.land(key, flight, error=error)
                    raise
                self.flights.land(key, flight, value=value)
                if across is None:
                    self._emit(DedupeLed, elapsed=clock.monotonic() - start)
                return value
            start = clock.monotonic()
            ambient = current_deadline()  # the caller's (`resilient.deadline`)
            if ambient is None:
                yield Join(flight.landing)
            elif not (yield Join(flight.landing, ambient - start)):
                raise self._late()
            if flight.abandoned:  # the leader was cancelled or interrupted: try again
                left = start if left is None else left
                continue
            self._emit(DedupeJoined, waited=clock.monotonic() - start)
            if flight.error is not None:
                raise flight.error
            return flight.value

    def _late(self) -> exceptions.TimeoutError:
        return exceptions.TimeoutError(self.name, None, "waited for a shared call past")

    # across processes --------------------------------------------------------------------------

    def _across(
        self, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any], *, in_loop: bool
    ) -> Procedure:
        """Lead the fleet's flight of this call's key, or follow it; return its value."""
        assert self._lease is not None
        stem = f"{self._stem}{{{self.keys.shared(instance, args, kwargs)}}}"
        guard = Lock(self.name, self._lease, stem=stem)
        key, owner, ttl = guard._key(), secrets.token_hex(16), self._lease.ttl
        backend = guard._backend()
        clock = DEFAULTS.clock
        start = clock.monotonic()
        followed = False
        while True:
            sent = clock.monotonic()
            try:
                locked: Locked = yield Op("lock", (key, owner, ttl), {}, backend)
            except Exception as error:  # noqa: BLE001 - run alone, reported
                return (yield from self._alone(guard, owner, "lock", error))
            if locked.token is not None:
                if followed:
                    self._emit(DedupeTakenOver, waited=sent - start)
                lease = Lease.granted(self.name, locked, ttl, owner, sent=sent, now=sent)
                return (yield from self._lead(guard, lease, in_loop=in_loop))
            followed = True
            wait = max(locked.ttl, 0.001)
            ambient = current_deadline()  # the caller's (`resilient.deadline`)
            if ambient is not None:
                if (left := ambient - clock.monotonic()) <= 0:
                    raise LateError
                wait = min(wait, left)
            try:
                yield Op("wait_released", (key, wait), {}, backend)
                outcome = (yield Op("get", (key,), {}, backend)).value
            except Exception as error:  # noqa: BLE001 - run alone, reported
                return (yield from self._alone(guard, owner, "get", error))
            if _landed(outcome, locked.holder):
                self._emit(DedupeJoined, waited=clock.monotonic() - start)
                _, ok, payload = outcome
                if ok:
                    return payload
                raise SharedFlightError(self.name, *payload)
            # no outcome for the flight waited for: it still runs, or its leader left; look again

    def _lead(self, guard: Lock, lease: Lease, *, in_loop: bool) -> Procedure:
        """Run the function under *lease*, renewed meanwhile; store its outcome; return it."""
        try:
            value = yield from renewed_call(guard, lease, in_loop=in_loop)
        except BaseException as error:
            if isinstance(error, Exception):
                failure = (type_name(error), str(error))
                yield from self._land(guard, lease, (lease.token, False, failure))
            else:  # cancelled or interrupted: release the lease with no outcome, for a waiter
                yield from guard.let_go(lease.owner)
            raise
        yield from self._land(guard, lease, (lease.token, True, value))
        self._emit(DedupeLed, elapsed=DEFAULTS.clock.monotonic() - lease.taken_at)
        return value

    def _land(self, guard: Lock, lease: Lease, outcome: tuple[int, bool, object]) -> Procedure:
        """Store *outcome* for the waiters; storing it releases the lease and wakes them."""
        backend = guard._backend()
        put = Op("put", (guard._key(), outcome), {"ttl": guard.policy.ttl, "token": lease.owner})
        try:
            yield put._replace(backend=backend)
        except (TypeError, ValueError) as error:  # the codec refused the value: say so instead
            refused = (type_name(error), f"the outcome could not be stored: {error}")
            yield from self._land(guard, lease, (lease.token, False, refused))
        except Exception as error:  # noqa: BLE001 - the waiters take over once it is released
            backend_failed(self.name, backend, "put", error)
            yield from guard.let_go(lease.owner)

    def _alone(self, guard: Lock, owner: str, operation: str, error: Exception) -> Procedure:
        """The backend failed: report it, give back what may have been taken, and run here."""
        backend_failed(self.name, guard._backend(), operation, error)
        yield from guard.let_go(owner)
        return (yield CALL)

    def _emit(
        self, kind: type[DedupeLed | DedupeJoined | DedupeTakenOver], **fields: float
    ) -> None:
        if DEFAULTS.observers:
            emit(DEFAULTS, kind(policy=self.name, time=DEFAULTS.clock.monotonic(), **fields))

    def _bypassed(self) -> None:
        if DEFAULTS.observers:
            emit(
                DEFAULTS,
                DedupeBypassed(
                    policy=self.name, time=DEFAULTS.clock.monotonic(), in_flight=len(self.flights)
                ),
            )


def _landed(outcome: object, holder: int | None) -> bool:
    """Whether *outcome* was stored by the flight of *holder* or a later one."""
    return (
        type(outcome) is tuple
        and len(outcome) == 3
        and type(outcome[0]) is int
        and (holder is None or outcome[0] >= holder)
    )


@attrs.frozen
class _DedupeLayer:
    policy: DedupePolicy

    def build(self, inner: Call, target: Target) -> Call:
        keys = CallKeys(target.function, target.name, self.policy.key)
        deduping = _Deduping(self.policy, keys, self.policy.name or target.name, inner)
        return deduping.call_async if target.is_async else deduping.call_sync


def deduped(policy: DedupePolicy | None = None, /, **options: Unpack[DedupeOptions]) -> Decorator:
    """Make concurrent calls with the same arguments share one execution of the function.

    The first call runs the function; calls with the same key that arrive while it runs wait
    for it and get its value, or the very exception it raised. Works on sync and async
    functions and methods, with threads and event loops; in this process.

    Raises:
        TypeError: At decoration time, for an unknown keyword, a ``key=`` that is neither a
            template nor a callable, or a generator function.
        ValueError: For ``max_flights`` below 1, or a ``key=`` template naming no parameter.

    Example:
        >>> from resilient import deduped
        >>> @deduped()
        ... def rates(currency: str) -> dict[str, float]:
        ...     return {currency: 1.08}
        >>> rates("USD")
        {'USD': 1.08}
    """
    resolved = resolve_policy(
        "deduped", DedupePolicy, policy, options, "@deduped(key='{currency}')"
    )
    return Decorator(_DedupeLayer(resolved), "@deduped")
