# `@bulkhead`: at most `max_concurrent` calls of a function run at once in this process, the
# others wait in a bounded FIFO queue or are refused, around the policy in _core/bulkhead.py.
#
# Rules:
# - One `_Slots` per decorated function (per layer built), shared by every thread and event
#   loop of the process; its state (`busy`, `queue`) changes only under its threading.Lock,
#   which is never held while waiting, calling or reporting.
# - A call takes a free slot, or joins the queue with a Signal of its own, or is refused at
#   once when `max_waiting` calls wait already. A release hands its slot directly to the first
#   waiter (pops it and fires its Signal; `busy` stays), else frees it: a slot never goes back
#   to the pool while someone waits, so no newcomer overtakes the queue.
# - Whoever is popped from the queue owns a slot. A waiter whose wait ends without the signal
#   (timeout, deadline, cancellation, an interrupt) decides under the lock: still queued, it
#   leaves the queue; popped meanwhile, it owns the slot, and keeps it (timed out: it runs) or
#   releases it, which hands it on (cancelled: it leaves).
# - The slot is released in a `finally` around the call, so an exception, a cancellation or
#   any BaseException gives it back.
# - A call is written once, as a procedure of effects (`CALL`, `Join`), which `run_sync` and
#   `run_async` perform: threads wait on the Signal, tasks await it in their own loop.
from __future__ import annotations

import threading
from collections import deque
from datetime import timedelta
from functools import partial
from typing import Any, TypedDict, Unpack

import attrs

from ._config import DEFAULTS
from ._core.bulkhead import BulkheadPolicy
from ._deadline import current as current_deadline
from ._decorate import Call, Decorator, Target, resolve_policy
from ._drive import CALL, Join, Procedure, emit, run_async, run_sync
from ._signal import Signal
from .events import BulkheadAdmitted, BulkheadRejected
from .exceptions import BulkheadFullError

__all__ = ["BulkheadOptions", "bulkhead"]


class BulkheadOptions(TypedDict, total=False):
    """The keyword arguments of :func:`bulkhead`: the fields of :class:`BulkheadPolicy`."""

    max_concurrent: int
    max_waiting: int
    timeout: float | timedelta | None
    name: str | None


class _Slots:
    """The slots of one bulkhead: how many are taken, and the calls waiting for one, in order."""

    __slots__ = ("busy", "lock", "queue")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.busy = 0
        self.queue: deque[Signal] = deque()

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


class _Bulkhead:
    """One policy applied to one function: its slots and its sync and async call steps."""

    __slots__ = ("inner", "max_concurrent", "max_waiting", "name", "slots", "timeout")

    def __init__(self, policy: BulkheadPolicy, name: str, inner: Call) -> None:
        self.slots = _Slots()
        self.name = name
        self.inner = inner
        self.max_concurrent = policy.max_concurrent
        self.max_waiting = policy.max_waiting
        self.timeout = policy.timeout

    def call_sync(
        self, wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        return run_sync(self._admitted(), call=partial(self.inner, wrapped, instance, args, kwargs))

    async def call_async(
        self, wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        call = partial(self.inner, wrapped, instance, args, kwargs)
        return await run_async(self._admitted(), call=call)

    def _admitted(self) -> Procedure:
        """Take a slot (waiting in the queue for one if need be), run the call, release it."""
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

    Raises:
        TypeError: At decoration time, for an unknown keyword, a count that is not an int, a
            ``timeout`` that is not seconds, or a generator function.
        ValueError: At decoration time, for ``max_concurrent`` below 1, ``max_waiting`` below
            0, a ``timeout`` that is not positive, or a ``timeout`` with no queue to wait in.

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
