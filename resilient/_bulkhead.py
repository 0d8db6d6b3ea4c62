# `@bulkhead`: at most `max_concurrent` calls of a function run at once in this process, the
# others wait in a bounded FIFO queue or are refused, around the policy in _core/bulkhead.py.
#
# Rules:
# - One `_Slots` per decorated function (per layer built), shared by every thread and event
#   loop of the process; its state (`busy`, `queue`) changes only under its threading.Lock,
#   which is never held while waiting, calling or reporting.
# - A call takes a free slot (the fast path: one short critical section, then the call), or
#   joins the queue with a Signal of its own, or is refused at once when `max_waiting` calls
#   wait already. A release hands its slot directly to the first waiter (pops it and fires
#   its Signal; `busy` stays), else frees it: a slot never goes back to the pool while
#   someone waits, so no newcomer overtakes the queue.
# - Whoever is popped from the queue owns a slot. A waiter whose wait ends without the signal
#   (timeout, deadline, cancellation, an interrupt) decides under the lock: still queued, it
#   leaves the queue; popped meanwhile, it owns the slot, and keeps it (timed out: it runs) or
#   releases it, which hands it on (cancelled: it leaves).
# - The slot is released in a `finally` around the call, so an exception, a cancellation or
#   any BaseException gives it back.
# - A call that must wait or be refused is written once, as a procedure of effects (`CALL`,
#   `Join`), which `run_sync` and `run_async` perform: threads wait on the Signal, tasks await
#   it in their own loop.
#
# Shared (`shared=True`), the slots live on the backend, a counting semaphore whose places are
# leases (`acquire_slot`, `release_slot`, `extend_slot`, `wait_slot`):
# - A call takes a slot under a fresh owner id of 128 random bits (one round trip), holds it as
#   a lease renewed by the lease renewer (`_renewal.renewed_call`, the lock's renewal through a
#   view of the backend whose `extend` extends the slot), and gives it back in a `finally`. A
#   process that dies stops renewing: its slots come free after `lease_ttl`.
# - Waiting never polls: `wait_slot` wakes on a release or when the first lease runs out. Of
#   this process's waiters only the first waits on the backend; the others wait their turn
#   in the process (the lock's `_Queue`). `max_waiting` counts this process's waiters.
# - Fail closed: a slot that cannot be asked for (or waited for) is a BackendUnavailableError,
#   and the function does not run; an acquisition whose reply was lost is given back. A
#   release that fails is reported (BackendFailed): the call's outcome stands, and the slot's
#   lease runs out on its own. A lease found gone (renewal or release) is reported lost; a
#   release that redis-py re-sent after its first run gave the slot back is not found gone
#   (the backend knows the release by its receipt: backends/_lua.py, SLOTS).
from __future__ import annotations

import contextlib
import math
import secrets
import threading
from collections import deque
from datetime import timedelta
from functools import partial
from typing import Any, TypedDict, Unpack

import attrs

from ._config import DEFAULTS
from ._core.bulkhead import SLOT_PRIMITIVES, BulkheadPolicy
from ._deadline import current as current_deadline
from ._decorate import Call, Decorator, Target, resolve_policy
from ._drive import CALL, Join, Op, Procedure, backend_failed, emit, run_async, run_sync
from ._lock import Lease, Lock, LockPolicy
from ._lock import _Queue as _Waiters
from ._renewal import renewed_call
from ._signal import Signal
from .events import BulkheadAdmitted, BulkheadRejected
from .exceptions import BackendUnavailableError, BulkheadFullError

__all__ = ["BulkheadOptions", "bulkhead"]


class BulkheadOptions(TypedDict, total=False):
    """The keyword arguments of :func:`bulkhead`: the fields of :class:`BulkheadPolicy`."""

    max_concurrent: int
    max_waiting: int
    timeout: float | timedelta | None
    name: str | None
    shared: bool
    backend: object
    lease_ttl: float | timedelta


class _Slots:
    """The slots of one bulkhead: how many are taken, and the calls waiting for one, in order."""

    __slots__ = ("busy", "lock", "queue", "waiting")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.busy = 0
        self.queue: deque[Signal] = deque()
        self.waiting = 0  # shared: the calls of this process waiting for a slot on the backend

    def take(self, limit: int) -> bool:
        """Take a free slot, if fewer than *limit* are taken; return whether it did."""
        lock = self.lock
        lock.acquire()  # not `with`: the hot path of every bulkheaded call
        try:
            if self.busy < limit:
                self.busy += 1
                return True
            return False
        finally:
            lock.release()

    def release(self) -> None:
        """Hand a slot to the first waiter, or free it when nobody waits."""
        with self.lock:
            if not self.queue:
                self.busy -= 1
                return
            turn = self.queue.popleft()
        turn.fire()

    def leave(self, turn: Signal) -> bool:
        """Take *turn* out of the queue; return False if it was handed a slot meanwhile."""
        with self.lock:
            if turn in self.queue:
                self.queue.remove(turn)
                return True
        return False


class _Extending:
    """A backend as the lease of a shared slot sees it: extending the lease extends the slot.

    What lets the lock's renewal (``Lock.renewing``, run by the lease renewer) renew slots.
    """

    __slots__ = ("backend", "name")

    def __init__(self, backend: Any) -> None:
        self.backend = backend
        self.name = str(getattr(backend, "name", type(backend).__name__))

    def extend(self, key: str, owner: str, ttl: float) -> bool:
        """Extend *owner*'s slot of *key*."""
        return bool(self.backend.extend_slot(key, owner, ttl))

    async def aextend(self, key: str, owner: str, ttl: float) -> bool:
        """Extend *owner*'s slot of *key*, from async code."""
        return bool(await self.backend.aextend_slot(key, owner, ttl))


class _SlotLease(Lock):
    """The lease of a call holding a shared slot: renewed, and reported lost, as a lock's."""

    __slots__ = ("_view",)

    def __init__(self, name: str, policy: LockPolicy, stem: str, backend: Any) -> None:
        super().__init__(name, policy, stem=stem)
        self._view = _Extending(backend)

    def _backend(self) -> Any:
        return self._view


class _Bulkhead:
    """One policy applied to one function: its slots and its sync and async call steps."""

    __slots__ = (
        "backend",
        "inner",
        "lease",
        "max_concurrent",
        "max_waiting",
        "name",
        "slots",
        "stem",
        "timeout",
    )

    def __init__(self, policy: BulkheadPolicy, name: str, inner: Call) -> None:
        self.slots = _Slots()
        self.name = name
        self.inner = inner
        self.max_concurrent = policy.max_concurrent
        self.max_waiting = policy.max_waiting
        self.timeout = policy.timeout
        # shared: where the slots live (None: the configured backend), and their leases
        self.backend = policy.backend
        self.lease = LockPolicy(ttl=policy.lease_ttl, renew=True)
        self.stem = f":bulkhead:{{{name.replace('{', '(').replace('}', ')')}}}"

    def call_sync(
        self, wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        if not self.slots.take(self.max_concurrent):  # every slot taken: queue, or refuse
            call = partial(self.inner, wrapped, instance, args, kwargs)
            return run_sync(self._admitted(), call=call)
        try:
            return self.inner(wrapped, instance, args, kwargs)
        finally:
            self.slots.release()

    async def call_async(
        self, wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        if not self.slots.take(self.max_concurrent):  # every slot taken: queue, or refuse
            call = partial(self.inner, wrapped, instance, args, kwargs)
            return await run_async(self._admitted(), call=call)
        try:
            return await self.inner(wrapped, instance, args, kwargs)
        finally:
            self.slots.release()

    def call_shared_sync(
        self, wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        call = partial(self.inner, wrapped, instance, args, kwargs)
        return run_sync(self._shared(in_loop=False), call=call)

    async def call_shared_async(
        self, wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        call = partial(self.inner, wrapped, instance, args, kwargs)
        return await run_async(self._shared(in_loop=True), call=call)

    def _admitted(self) -> Procedure:
        """Take a slot (waiting in the queue for one if need be), run the call, release it.

        For a call that found every slot taken (one may have come free since).
        """
        slots = self.slots
        start = DEFAULTS.clock.monotonic()
        left = self._patience(start)
        turn: Signal | None = None
        refused = False
        with slots.lock:
            if slots.busy < self.max_concurrent:
                slots.busy += 1
            elif len(slots.queue) < self.max_waiting and (left is None or left > 0):
                turn = Signal()
                slots.queue.append(turn)
            else:
                refused = True
        if refused:
            raise self._refused(0.0)
        if turn is not None:
            yield from self._wait(turn, start, left)
        try:
            return (yield CALL)
        finally:
            slots.release()

    def _wait(self, turn: Signal, start: float, left: float | None) -> Procedure:
        """Wait in the queue until *turn* is handed a slot; raise if *left* seconds pass first."""
        try:
            handed = yield Join(turn, left)
        except BaseException:  # cancelled or interrupted: leave, passing on a slot handed over
            if not self.slots.leave(turn):
                self.slots.release()
            raise
        waited = DEFAULTS.clock.monotonic() - start
        if not handed and self.slots.leave(turn):
            raise self._refused(waited)
        # handed a slot, if only as the wait ran out: it is this call's now
        if DEFAULTS.observers:
            emit(DEFAULTS, BulkheadAdmitted(policy=self.name, time=start + waited, waited=waited))

    # shared -----------------------------------------------------------------------------------

    def _shared(self, *, in_loop: bool) -> Procedure:
        """Take a slot on the backend (waiting for one if need be), run the call, give it back."""
        backend = self.backend or DEFAULTS.backend
        missing = [name for name in SLOT_PRIMITIVES if not hasattr(backend, name)]
        if missing:
            raise TypeError(
                f"bulkhead {self.name!r} is shared, but the configured backend {backend!r} "
                f"lacks {', '.join(missing)}: pass backend= a RedisBackend or a MemoryBackend"
            )
        guard = _SlotLease(self.name, self.lease, self.stem, backend)
        key, owner, ttl = guard._key(), secrets.token_hex(16), self.lease.ttl
        start = DEFAULTS.clock.monotonic()
        sent = start
        if not (yield from self._asking(backend, key, owner)):
            sent = yield from self._waiting(backend, key, owner, start)
        lease = Lease(self.name, 0, ttl, owner=owner, taken_at=sent, valid_until=sent + ttl)
        try:
            return (yield from renewed_call(guard, lease, in_loop=in_loop))
        finally:
            yield from self._giving_back(guard, backend, lease)

    def _waiting(self, backend: Any, key: str, owner: str, start: float) -> Procedure:
        """Wait for a slot on the backend and take it; return when it was asked for.

        Raises BulkheadFullError when this process has ``max_waiting`` waiters already, or
        when the wait runs out first.
        """
        clock = DEFAULTS.clock
        left = self._patience(start)
        slots = self.slots
        with slots.lock:
            waits = slots.waiting < self.max_waiting and (left is None or left > 0)
            if waits:
                slots.waiting += 1
        if not waits:
            raise self._refused(0.0)
        deadline = math.inf if left is None else start + left
        waiters = _Waiters.join((id(backend), key))
        try:
            while True:
                # one caller of this process waits on the backend; the others, for their turn
                while (turn := waiters.first(owner)) is not None:
                    if (remaining := deadline - clock.monotonic()) <= 0:
                        raise self._refused(clock.monotonic() - start)
                    yield Join(turn, None if remaining == math.inf else remaining)
                if (remaining := deadline - clock.monotonic()) <= 0:
                    raise self._refused(clock.monotonic() - start)
                wait = (key, self.max_concurrent, min(remaining, self.lease.ttl))
                try:
                    yield Op("wait_slot", wait, {}, backend)
                except Exception as error:
                    raise self._unavailable(backend, "wait_slot", error) from error
                sent = clock.monotonic()
                if (yield from self._asking(backend, key, owner)):
                    break
        finally:
            waiters.leave(owner)
            with slots.lock:
                slots.waiting -= 1
        if DEFAULTS.observers:
            emit(DEFAULTS, BulkheadAdmitted(policy=self.name, time=sent, waited=sent - start))
        return sent

    def _asking(self, backend: Any, key: str, owner: str) -> Procedure:
        """Ask the backend for a slot once; return whether it was given."""
        ask = Op("acquire_slot", (key, owner, self.max_concurrent, self.lease.ttl), {}, backend)
        try:
            return bool((yield ask))
        except BaseException as error:
            # the slot may have been given before the reply was lost: give it back
            with contextlib.suppress(Exception):
                yield Op("release_slot", (key, owner), {}, backend)
            if isinstance(error, Exception):
                raise self._unavailable(backend, "acquire_slot", error) from error
            raise

    def _giving_back(self, guard: _SlotLease, backend: Any, lease: Lease) -> Procedure:
        """Give the slot back, or report why not (its lease runs out on its own)."""
        try:
            released = yield Op("release_slot", (guard._key(), lease.owner), {}, backend)
        except Exception as error:  # noqa: BLE001 - the call's outcome stands; reported
            backend_failed(self.name, backend, "release_slot", error)
            return
        if not released:  # it ran out (or was found gone) while the call ran
            guard._lose(lease, DEFAULTS.clock.monotonic())

    def _unavailable(self, backend: Any, operation: str, error: Exception) -> Exception:
        name = str(getattr(backend, "name", type(backend).__name__))
        return BackendUnavailableError(
            f"bulkhead {self.name!r}: the backend failed to {operation}: {error!r}; the call "
            "did not run",
            backend=name,
            operation=operation,
        )

    def _patience(self, now: float) -> float | None:
        """Seconds a call starting *now* may wait: the timeout, cut to the caller's deadline."""
        ambient = current_deadline()  # the caller's (`resilient.deadline`)
        if ambient is None:
            return self.timeout
        left = ambient - now
        return left if self.timeout is None else min(self.timeout, left)

    def _refused(self, waited: float) -> BulkheadFullError:
        if DEFAULTS.observers:
            now = DEFAULTS.clock.monotonic()
            emit(DEFAULTS, BulkheadRejected(policy=self.name, time=now, waited=waited))
        return BulkheadFullError(self.name, self.max_concurrent, waited)


@attrs.frozen
class _BulkheadLayer:
    policy: BulkheadPolicy

    def build(self, inner: Call, target: Target) -> Call:
        step = _Bulkhead(self.policy, self.policy.name or target.name, inner)
        if self.policy.shared:
            return step.call_shared_async if target.is_async else step.call_shared_sync
        return step.call_async if target.is_async else step.call_sync


def bulkhead(
    policy: BulkheadPolicy | None = None, /, **options: Unpack[BulkheadOptions]
) -> Decorator:
    """Let at most ``max_concurrent`` calls of the decorated function run at once.

    The bound holds across every thread and event loop of the process. A call finding every
    slot taken waits for one in a first-come-first-served queue of ``max_waiting`` places, for
    up to ``timeout`` seconds and never past the caller's :func:`resilient.deadline`; a call
    finding the queue full, or whose wait runs out, raises
    :class:`~resilient.exceptions.BulkheadFullError` without running. Works on sync and async
    functions and methods.

    With ``shared=True`` the bound holds across every process using the backend (Redis, say):
    each running call holds a slot there as a lease of ``lease_ttl`` seconds, renewed while it
    runs, so the slots of a process that dies come free after ``lease_ttl``. A shared bulkhead
    fails closed: when the backend cannot be reached, a call raises
    :class:`~resilient.exceptions.BackendUnavailableError` without running.

    Raises:
        TypeError: At decoration time, for an unknown keyword, a count that is not an int, a
            ``timeout`` or ``lease_ttl`` that is not seconds, a ``backend`` without the slot
            primitives, or a generator function.
        ValueError: At decoration time, for ``max_concurrent`` below 1, ``max_waiting`` below
            0, a ``timeout`` or ``lease_ttl`` that is not positive, a ``timeout`` with no
            queue to wait in, or a ``backend`` without ``shared=True``.

    Example:
        >>> from resilient import bulkhead
        >>> @bulkhead(max_concurrent=4, max_waiting=100, timeout=2.0)
        ... def render(page: str) -> str:
        ...     return page.upper()
        >>> render("home")
        'HOME'
    """
    resolved = resolve_policy(
        "bulkhead", BulkheadPolicy, policy, options, "@bulkhead(max_concurrent=10)"
    )
    return Decorator(_BulkheadLayer(resolved), "@bulkhead")
