# The renewers: what keeps held leases alive while their holders work.
#
# Rules:
# - One renewer serves every lease of sync holders in the process (one daemon thread), and one
#   per event loop serves the leases of that loop's tasks (one task): never a thread or a task
#   per lease. Each starts with its first lease and ends when none is left (the thread a
#   second after it next wakes, at most a renewal interval later), so an idle process has
#   neither.
# - The serving loop is written once, as a procedure: `run_sync` performs it in the thread,
#   `run_async` in the task. It sleeps on a Signal until the next renewal is due, then renews
#   every lease due in that round (with those due within a tenth of its TTL after it). Adding
#   a lease wakes it only when the lease is due before it would wake anyway, and stopping one
#   wakes only a task left with none: holders coming and going do not switch to the renewer
#   at every call.
# - A round costs one round trip per backend, not one per lease: the `extend`s of the leases
#   of one backend go as one `extend_many` when the backend is an `Extender`
#   (resilient.typing), else one after another. Behind a slow link, N leases renewed one
#   after another would take N round trips, longer than a short TTL's margin: leases would
#   be lost while their holders are alive. Each lease's answer (renewed, gone, or an error of
#   its own) is its own, as with one `extend` each.
# - What a renewal means (what to send, when it is due next, when a lease counts as lost) is
#   the lock's (`Lock.renewal`, `Lock.renewed`); the order of renewals is the schedule's
#   (`_core/renewal.py`).
# - A forked child starts with no renewer: its parent's thread does not survive the fork, and
#   the leases it inherited are not renewed (they run out at their TTL; `lease.lost` says so).
from __future__ import annotations

import asyncio
import math
import os
import threading
import weakref
from collections.abc import Callable
from typing import Any

from ._config import DEFAULTS
from ._core.renewal import Renewal, Schedule
from ._drive import CALL, Join, Op, Procedure, run_async, run_sync
from ._signal import Signal
from .typing import Extender

__all__ = ["renew", "renewed_call", "stop_renewing"]


class _Renewer:
    """The renewals one thread or one task serves."""

    __slots__ = ("_linger", "_lock", "_schedule", "_until", "_wake", "running")

    def __init__(self, linger: float = 0.0) -> None:
        self._linger = linger  # seconds to wait for a new lease once none is left
        self._lock = threading.Lock()
        self._schedule = Schedule()
        self._wake = Signal()
        # until when the serving loop sleeps: inf while it idles (any new lease wakes it),
        # -inf while it is busy and will look at the schedule again anyway (none does)
        self._until = -math.inf
        self.running: object = None  # the thread or task serving, while one does

    def add(self, renewal: Renewal, start: Callable[[_Renewer], object]) -> None:
        """Serve *renewal*; when nothing serves this renewer, start what will (``start``)."""
        with self._lock:
            self._schedule.add(renewal)
            renewal.renewer = self
            if renewal.due < self._until:  # due before the loop would look again: wake it
                self._wake.fire()
            if self.running is None:
                self.running = start(self)

    def stop(self, renewal: Renewal) -> None:
        """Serve *renewal* no more.

        The serving loop is not woken: it finds the renewal gone when it comes due. Only a
        task's loop, which ends with its last lease, is woken when none is left.
        """
        with self._lock:
            self._schedule.stop(renewal)
            # next_due() also drops stopped renewals off the top of the schedule, so holders
            # coming and going one after another leave nothing behind while the loop sleeps
            if self._schedule.next_due() is None and not self._linger:
                self._wake.fire()

    def serving(self) -> Procedure:
        """Renew each lease when it is due, until none is left."""
        clock = DEFAULTS.clock
        lingered = False  # whether a whole linger passed with no lease to serve
        try:
            while True:
                with self._lock:
                    due = self._schedule.next_due()
                    if due is None and (lingered or not self._linger):
                        self.running = None  # in the same step as the decision: add() starts anew
                        return
                    if self._wake.fired:
                        self._wake = Signal()
                    wake = self._wake
                    now = clock.monotonic()
                    renewals = self._schedule.pop_due(now) if due is not None and due <= now else []
                    self._until = math.inf if due is None else -math.inf if renewals else due
                if due is None:  # idle: wait a while for the next lease before ending
                    lingered = not (yield Join(wake, self._linger))
                    continue
                lingered = False
                if not renewals:
                    yield Join(wake, due - now)
                else:
                    yield from self._round(renewals)
        except BaseException:
            with self._lock:  # the task was cancelled (its loop is closing)
                self.running = None
            raise

    def _round(self, renewals: list[Renewal]) -> Procedure:
        """Renew *renewals*, due together: the extends of each backend sent at once.

        The leases are referred to strongly only in this frame, for the round, so that a
        lease its holder dropped can be collected between two renewals.
        """
        clock = DEFAULTS.clock
        now = clock.monotonic()
        rounds: dict[int, list[tuple[Renewal, Any, Op]]] = {}  # by backend
        for renewal in renewals:
            lease = renewal.lease()
            extend = None if lease is None else renewal.lock.renewal(lease, now)
            if extend is None:
                self._again(renewal, None)
            else:
                rounds.setdefault(id(extend.backend), []).append((renewal, lease, extend))
        for extends in rounds.values():
            sent = clock.monotonic()
            outcomes = yield from _extending([extend for _, _, extend in extends])
            for (renewal, lease, _), outcome in zip(extends, outcomes, strict=True):
                self._again(renewal, renewal.lock.renewed(lease, sent, outcome))

    def _again(self, renewal: Renewal, due: float | None) -> None:
        """Serve *renewal* again when it is *due* next; None: no more."""
        with self._lock:
            if due is None or not renewal.active:
                self._schedule.stop(renewal)
            else:
                renewal.due = due
                self._schedule.again(renewal)


def _extending(extends: list[Op]) -> Procedure:
    """Send *extends*, all to one backend; return each one's reply, or the error it raised.

    Several go as one ``extend_many`` to an :class:`~resilient.typing.Extender`; an error
    raised by it is each one's, as is a reply that does not answer each one.
    """
    backend = extends[0].backend
    if len(extends) > 1 and isinstance(backend, Extender):
        batch = Op("extend_many", ([extend.args for extend in extends],), {}, backend)
        try:
            outcomes = list((yield batch))
            if len(outcomes) != len(extends):
                raise TypeError(  # noqa: TRY301 - handed to every lease below
                    f"{backend!r}.extend_many answered {len(outcomes)} outcomes for "
                    f"{len(extends)} leases"
                )
        except Exception as error:  # noqa: BLE001 - each lease's renewal decides
            return [error] * len(extends)
        return outcomes
    outcomes = []
    for extend in extends:
        try:
            outcomes.append((yield extend))
        except Exception as error:  # noqa: BLE001 - its lease's renewal decides
            outcomes.append(error)
    return outcomes


# A renewal goes up to a tenth of its lease's TTL before it is due (of the third it is due
# after the last), with others due then: one round, one round trip, for leases taken at about
# the same time.
_EARLY = 0.1

# The renewer of sync holders. Its thread waits a second for a new lease before it ends, so
# that calls holding leases one after another (an idempotent call's claim, say) do not each
# start a thread: starting one cost about as much as a Redis round trip.
_THREAD_LINGER = 1.0
_threads = _Renewer(_THREAD_LINGER)
_loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Renewer] = weakref.WeakKeyDictionary()
_loops_lock = threading.Lock()


def _forget() -> None:
    global _threads  # noqa: PLW0603 - the child's renewers start anew
    _threads = _Renewer(_THREAD_LINGER)
    _loops.clear()


os.register_at_fork(after_in_child=_forget)


def _start_task(renewer: _Renewer) -> object:
    return asyncio.get_running_loop().create_task(run_async(renewer.serving()))


def _start_thread(renewer: _Renewer) -> object:
    thread = threading.Thread(
        target=run_sync, args=(renewer.serving(),), name="resilient-renewer", daemon=True
    )
    thread.start()
    return thread


def renew(lock: Any, lease: object, due: float, *, in_loop: bool) -> Renewal:
    """Keep *lease* renewed by *lock* from *due* on: by this loop's task, or the thread."""
    renewal = Renewal(lock, lease, due, early=lock.policy.ttl * _EARLY)
    if in_loop:
        with _loops_lock:
            renewer = _loops.setdefault(asyncio.get_running_loop(), _Renewer())
        renewer.add(renewal, _start_task)
    else:
        _threads.add(renewal, _start_thread)
    return renewal


def stop_renewing(renewal: Renewal) -> None:
    """Renew *renewal*'s lease no more."""
    renewal.renewer.stop(renewal)


def renewed_call(lock: Any, lease: Any, *, in_loop: bool) -> Procedure:
    """Call the function while *lock* renews *lease*; the lease is released when it returns.

    For a capability that holds a lease for the length of a call (a shared flight's leader,
    an idempotent call's claim): renewals start a third of the lease's TTL after it was
    taken, and stop when the call returns or raises, before the caller stores its outcome.
    """
    renewal = renew(lock, lease, lease.taken_at + lock.policy.ttl / 3, in_loop=in_loop)
    try:
        return (yield CALL)
    finally:
        lease.released = True
        stop_renewing(renewal)
