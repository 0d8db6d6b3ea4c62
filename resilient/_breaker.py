# `breaker()` and `Breaker`: the drivers around the state machine in _core/breaker.py.
#
# Rules:
# - One `Breaker` per name in a process (the registry below); every decorated function, block
#   and thread using the name shares its state. Its lock guards the core only, for a few
#   attribute updates: it is never held while the user's function runs, nor while observers
#   are told (the transitions are reported after it is released, in the order they happened
#   under it as far as one thread sees).
# - The closed path reads one attribute (the core's `counter`) to admit a call. A quick success
#   with nothing to check (a count window, no slow-call time, no result predicate) is counted
#   with `next()` on that counter, without the lock; anything else takes the lock once, after
#   the call. Every state but closed goes through `admit`.
# - The sync and async call steps are mirror images: admit, call, classify, count. What a
#   call counts as is decided by the policy (`error_outcome`, `on_result`), what that does to
#   the state by the core; the steps only measure and report.
# - A `with` block keeps its permit in a context variable, so one breaker serves blocks in
#   many threads and tasks at once; `async with` does the same in the task's own context.
from __future__ import annotations

import inspect
import math
import os
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable
from datetime import timedelta
from types import TracebackType
from typing import Any, ParamSpec, TypedDict, TypeVar, Unpack

import attrs

from ._blocks import Blocks
from ._breaker_shared import Link
from ._config import DEFAULTS
from ._core.breaker import (
    IGNORED,
    Admission,
    BreakerCore,
    BreakerPolicy,
    BreakerState,
    BreakerStats,
    Transition,
)
from ._core.window import FAILURE, SLOW
from ._decorate import Call, Decorator, Target, call_function, resolve_policy
from ._drive import emit, run_async, run_sync
from .events import (
    BreakerClosed,
    BreakerDisabled,
    BreakerHalfOpened,
    BreakerOpened,
    BreakerRejected,
    BreakerTransitioned,
)
from .exceptions import CircuitOpenError
from .typing import Backend, ExceptionPredicate, ExceptionTypes, ResultPredicate

__all__ = [
    "Breaker",
    "BreakerOptions",
    "breaker",
    "live_breaker",
    "live_breakers",
    "report_transition",
    "reset_breakers",
]

P = ParamSpec("P")
R = TypeVar("R")

_RECENT = 1024  # names kept alive by the registry alone, most recently used first
_NAME_LIMIT = 200

_EVENTS: dict[BreakerState, type[BreakerTransitioned]] = {
    BreakerState.OPEN: BreakerOpened,
    BreakerState.FORCED_OPEN: BreakerOpened,
    BreakerState.HALF_OPEN: BreakerHalfOpened,
    BreakerState.CLOSED: BreakerClosed,
    BreakerState.DISABLED: BreakerDisabled,
}

# the permit and start time of each breaker's `with` blocks open in this thread or task
_blocks: Blocks[tuple[Admission, float]] = Blocks("breaker")


class BreakerOptions(TypedDict, total=False):
    """The keyword arguments of :func:`breaker`: the fields of :class:`BreakerPolicy`."""

    failure_rate: float | None
    window: int | timedelta
    minimum_calls: int
    consecutive_failures: int | None
    slow_call_after: float | timedelta | None
    slow_call_rate: float | None
    on: ExceptionTypes | ExceptionPredicate
    exclude: ExceptionTypes | tuple[()]
    on_result: ResultPredicate | None
    open_for: float | timedelta
    max_open_for: float | timedelta | None
    half_open_calls: int
    probe_timeout: float | timedelta | None
    shared: bool
    backend: Backend | None
    sync_interval: float | timedelta
    fallback: Callable[..., Any] | None


class Breaker:
    """A named circuit breaker: a decorator, a ``with`` / ``async with`` block, and controls.

    Get one with :func:`breaker`; the same name always gives the same object. Thread-safe and
    usable from any number of threads and event loops at once. A shared breaker
    (``shared=True``) makes one round trip to its backend for :attr:`state`, :meth:`stats`
    and each control when its view is out of date.

    Attributes:
        name: The breaker's name, reported in events and errors.
        policy: Its :class:`BreakerPolicy`.
    """

    __slots__ = ("__weakref__", "_core", "_link", "_lock", "name", "policy")

    def __init__(self, name: str, policy: BreakerPolicy) -> None:
        self.name = name
        self.policy = policy
        self._core = BreakerCore(policy)
        self._lock = threading.Lock()
        self._link = Link(self) if policy.shared else None

    def __repr__(self) -> str:
        return f"<Breaker {self.name!r} {self._core.state.value}>"

    # decorating ------------------------------------------------------------------------------

    def __call__(self, function: Callable[P, R]) -> Callable[P, R]:
        """Guard *function* (sync or async, a method too) with this breaker."""
        return Decorator(_BreakerLayer(self), "breaker")(function)

    # state and controls ----------------------------------------------------------------------

    @property
    def state(self) -> BreakerState:
        """The current state (an open breaker whose open time has passed reads half-open)."""
        return self.stats().state

    def stats(self) -> BreakerStats:
        """Return a snapshot: state, window counts and rates, rejections, time to half-open."""
        link = self._link
        if link is not None:
            run_sync(link.refreshing(), link.backend())
        return self._snapshot()

    def _snapshot(self) -> BreakerStats:
        """Return a snapshot of this process's view as it is, without asking the backend."""
        now = self._now()
        with self._lock:
            transition = self._core.tick(now)
            stats = self._core.stats(self.name, now)
        self._report_own(transition)
        return stats

    def open(self) -> None:
        """Force the breaker open: refuse every call until :meth:`close` or :meth:`reset`."""
        self._manual("force_open")

    def disable(self) -> None:
        """Let every call through and count none, until :meth:`close` or :meth:`reset`."""
        self._manual("disable")

    def close(self) -> None:
        """Close the breaker, whatever its state, with an empty window and no trips behind it."""
        self._manual("close")

    def reset(self) -> None:
        """Close the breaker and forget every count, the rejections included."""
        self._manual("reset")

    def _manual(self, action: str) -> None:
        link = self._link
        if link is not None:
            run_sync(link.acting(action), link.backend())
            return
        with self._lock:
            transition = self._core.act(action, DEFAULTS.clock.monotonic())
        if transition is not None and transition.source is not transition.target:
            self._report(transition)

    # one call ----------------------------------------------------------------------------------

    def _now(self) -> float:
        """Return the time on the core's clock: the store's, for a shared breaker."""
        link = self._link
        return DEFAULTS.clock.monotonic() + (0.0 if link is None else link.offset)

    def _admit(self) -> Admission | float:
        """Ask to make a call: a permit, or the seconds left (see BreakerCore.admit)."""
        link = self._link
        if link is not None:
            decision: Admission | float = run_sync(link.admitting(), link.backend())
            return decision
        now = DEFAULTS.clock.monotonic()
        with self._lock:
            decision, transition = self._core.admit(now)
        if transition is not None:
            self._report(transition)
        return decision

    async def _aadmit(self) -> Admission | float:
        """Ask to make a call, from async code (see :meth:`_admit`)."""
        link = self._link
        if link is None:
            return self._admit()
        decision: Admission | float = await run_async(link.admitting(), link.backend())
        return decision

    def _refused(self, remaining: float, *, fallback: bool) -> CircuitOpenError:
        """Report a refused call and return the error that says so."""
        state = self._core.state
        left = None if math.isinf(remaining) else remaining
        if DEFAULTS.observers:
            emit(
                DEFAULTS,
                BreakerRejected(
                    policy=self.name,
                    time=DEFAULTS.clock.monotonic(),
                    state=state.value,
                    remaining=left,
                    fallback=fallback,
                ),
            )
        return CircuitOpenError(self.name, state, left)

    def _finish(self, permit: Admission, start: float, outcome: int) -> None:
        """Count the *outcome* of a call made under *permit* that started at *start*."""
        outcome = self._timed(outcome, start)
        link = self._link
        if link is not None:
            run_sync(link.finishing(permit, outcome), link.backend())
            return
        now = DEFAULTS.clock.monotonic()
        with self._lock:
            transition = self._core.record(permit, outcome, now)
        if transition is not None:
            self._report(transition)

    async def _afinish(self, permit: Admission, start: float, outcome: int) -> None:
        """Count the *outcome* of a call, from async code (see :meth:`_finish`)."""
        link = self._link
        if link is None:
            self._finish(permit, start, outcome)
        else:
            await run_async(link.finishing(permit, self._timed(outcome, start)), link.backend())

    def _timed(self, outcome: int, start: float) -> int:
        """Return *outcome*, marked slow if the call that started at *start* was."""
        slow_after = self.policy.slow_call_after
        if slow_after is None or outcome == IGNORED:
            return outcome
        return outcome | SLOW if DEFAULTS.clock.monotonic() - start >= slow_after else outcome

    def _error_outcome(self, exc: BaseException) -> int:
        """Return what a call that raised *exc* counts as (a broken on= raises, chained)."""
        try:
            return self.policy.error_outcome(exc)
        except Exception as predicate_error:  # from on=: show what it was judging
            raise predicate_error from exc

    def _result_outcome(self, result: object) -> int:
        """Return what a call that returned *result* counts as."""
        check = self.policy.on_result
        return FAILURE if check is not None and check(result) else 0

    def _report_own(self, transition: Transition | None) -> None:
        """Report a transition of this process's core, unless it only forecasts a shared one."""
        if transition is None:
            return
        link = self._link
        if link is None:
            self._report(transition)
        elif link.degraded:
            self._report(transition._replace(time=transition.time - link.offset))

    def _report(self, transition: Transition) -> None:
        report_transition(self.name, transition)

    # blocks ------------------------------------------------------------------------------------

    def __enter__(self) -> Breaker:
        """Admit the block, or raise :class:`CircuitOpenError`."""
        return self._entered(self._admit())

    async def __aenter__(self) -> Breaker:
        """Admit the block (see :meth:`__enter__`)."""
        return self._entered(await self._aadmit())

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Count how the block ended; never swallows its exception."""
        permit, start = _blocks.leave(self)
        self._finish(permit, start, 0 if exc is None else self._error_outcome(exc))

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Count how the block ended (see :meth:`__exit__`)."""
        permit, start = _blocks.leave(self)
        await self._afinish(permit, start, 0 if exc is None else self._error_outcome(exc))

    def _entered(self, decision: Admission | float) -> Breaker:
        if isinstance(decision, float):
            raise self._refused(decision, fallback=False)
        _blocks.enter(self, (decision, DEFAULTS.clock.monotonic()))
        return self


class _Guard:
    """A breaker as applied to one decorated function: its sync and async call steps."""

    __slots__ = ("breaker", "core", "fallback", "lazy", "nested", "timed")

    def __init__(self, breaker: Breaker, inner: Call) -> None:
        policy = breaker.policy
        self.breaker = breaker
        self.core = breaker._core
        self.fallback = policy.fallback
        # None when the step inside is the function itself, which is then called directly
        self.nested = None if inner is call_function else inner
        self.timed = policy.slow_call_after is not None
        # whether a quick success can be counted on the closed epoch's counter, lock-free
        self.lazy = (
            isinstance(policy.window, int)
            and not self.timed
            and not policy.on_result
            and not policy.shared
        )

    def refuse(self, remaining: float, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """Raise CircuitOpenError for a refused call, or return what the fallback answers."""
        fallback = self.fallback
        if fallback is None:
            raise self.breaker._refused(remaining, fallback=False)
        self.breaker._refused(remaining, fallback=True)
        return fallback(*args, **kwargs)

    def call_sync(
        self, wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        breaker = self.breaker
        counter = None if breaker._link is not None else self.core.counter
        permit: Admission
        if counter is None:
            decision = breaker._admit()
            if isinstance(decision, float):
                return self.refuse(decision, args, kwargs)
            permit = decision
        else:
            permit = counter
        start = DEFAULTS.clock.monotonic() if self.timed else 0.0
        nested = self.nested
        try:
            if nested is None:
                result = wrapped(*args, **kwargs)
            else:
                result = nested(wrapped, instance, args, kwargs)
        except BaseException as exc:
            breaker._finish(permit, start, breaker._error_outcome(exc))
            raise
        if permit is counter and self.lazy:
            next(counter)
        else:
            breaker._finish(permit, start, breaker._result_outcome(result))
        return result

    async def call_async(
        self, wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        breaker = self.breaker
        counter = None if breaker._link is not None else self.core.counter
        permit: Admission
        if counter is None:
            decision = await breaker._aadmit()
            if isinstance(decision, float):
                answer = self.refuse(decision, args, kwargs)
                return (await answer) if inspect.isawaitable(answer) else answer
            permit = decision
        else:
            permit = counter
        start = DEFAULTS.clock.monotonic() if self.timed else 0.0
        nested = self.nested
        try:
            if nested is None:
                result = await wrapped(*args, **kwargs)
            else:
                result = await nested(wrapped, instance, args, kwargs)
        except BaseException as exc:
            await breaker._afinish(permit, start, breaker._error_outcome(exc))
            raise
        if permit is counter and self.lazy:
            next(counter)
        else:
            await breaker._afinish(permit, start, breaker._result_outcome(result))
        return result


@attrs.frozen
class _BreakerLayer:
    breaker: Breaker

    def build(self, inner: Call, target: Target) -> Call:
        guard = _Guard(self.breaker, inner)
        fast = guard.lazy and guard.nested is None
        if target.is_async:
            return _closed_fast_path_async(guard) if fast else guard.call_async
        return _closed_fast_path(guard) if fast else guard.call_sync


def _closed_fast_path(guard: _Guard) -> Call:
    """Return the sync step for the common case: closed, quick successes counted lock-free.

    The same steps as `_Guard.call_sync` for a closed breaker with nothing to time or check,
    in a closure (cell reads instead of attribute lookups); any other state takes the
    general step.
    """
    core = guard.core
    breaker = guard.breaker
    general = guard.call_sync

    def closed(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        counter = core.counter
        if counter is None:
            return general(wrapped, instance, args, kwargs)
        try:
            result = wrapped(*args, **kwargs)
        except BaseException as exc:
            breaker._finish(counter, 0.0, breaker._error_outcome(exc))
            raise
        next(counter)
        return result

    return closed


def _closed_fast_path_async(guard: _Guard) -> Call:
    """Return the async step for the same case as `_closed_fast_path`, its mirror image."""
    core = guard.core
    breaker = guard.breaker
    general = guard.call_async

    async def closed(
        wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        counter = core.counter
        if counter is None:
            return await general(wrapped, instance, args, kwargs)
        try:
            result = await wrapped(*args, **kwargs)
        except BaseException as exc:
            await breaker._afinish(counter, 0.0, breaker._error_outcome(exc))
            raise
        next(counter)
        return result

    return closed


def report_transition(name: str, transition: Transition) -> None:
    """Tell the observers that the breaker *name* made *transition*."""
    if not DEFAULTS.observers:
        return
    event = _EVENTS[transition.target](
        policy=name,
        time=transition.time,
        from_state=transition.source.value,
        to_state=transition.target.value,
        reason=transition.reason,
        failure_rate=transition.failure_rate,
        slow_call_rate=transition.slow_call_rate,
        open_for=transition.open_for,
    )
    emit(DEFAULTS, event)


class _Registry:
    """Every live breaker by name, and the most recently asked-for ones kept alive.

    A breaker lives as long as anything holds it (a decorated function does); the registry
    itself keeps only the last `_RECENT` names asked for, so that breakers made per host or
    per tenant and used in ``with`` blocks keep their state while in use, and memory stays
    bounded when names come and go.
    """

    __slots__ = ("_live", "_lock", "_recent")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._live: weakref.WeakValueDictionary[str, Breaker] = weakref.WeakValueDictionary()
        self._recent: OrderedDict[str, Breaker] = OrderedDict()

    def get(self, name: str, policy: BreakerPolicy | None) -> Breaker:
        """Return the breaker named *name*, made with *policy* (or the defaults) if there is none.

        With no *policy*, any settings of an existing breaker do.
        """
        with self._lock:
            found = self._live.get(name)
            if found is None:
                made = Breaker(name, BreakerPolicy() if policy is None else policy)
                found = self._live[name] = made
            elif policy is not None and found.policy != policy:
                raise ValueError(
                    f"breaker {name!r} already exists with other settings ({found.policy!r}): "
                    "one name is one breaker, so give every use of the name the same settings, "
                    "or give this one a name of its own"
                )
            recent = self._recent
            recent[name] = found
            recent.move_to_end(name)
            if len(recent) > _RECENT:
                recent.popitem(last=False)
            return found

    def find(self, name: str) -> Breaker | None:
        """Return the live breaker named *name*, if there is one (never making one)."""
        with self._lock:
            return self._live.get(name)

    def live(self) -> list[Breaker]:
        """Return every breaker alive now."""
        with self._lock:
            return list(self._live.values())


_REGISTRY = _Registry()


def _check_name(name: object) -> str:
    if not isinstance(name, str) or not name or len(name) > _NAME_LIMIT or not name.isprintable():
        raise TypeError(
            f"breaker() takes a name first: a printable string of 1 to {_NAME_LIMIT} "
            f'characters naming the dependency it guards, e.g. breaker("payments-api"), '
            f"not {name!r}"
        )
    return name


def breaker(
    name: str, policy: BreakerPolicy | None = None, /, **options: Unpack[BreakerOptions]
) -> Breaker:
    """Return the circuit breaker named *name*, making it on first use.

    With settings, they must be those the breaker was made with; with none, this returns the
    breaker of that name whatever its settings (made with the defaults if it is new). Use it
    as a decorator on sync and async functions and methods, or around a block with
    ``with`` / ``async with``. While it is open, calls raise
    :class:`resilient.exceptions.CircuitOpenError` without running (or get the *fallback*).
    Takes a :class:`BreakerPolicy`, or its fields as keyword arguments, or both (the keywords
    override the policy's fields).

    Raises:
        TypeError: For a name that is not a short printable string, an unknown keyword, or a
            setting of the wrong type (an exception instance in ``on=``, a float window).
        ValueError: For settings that cannot work (a rate above 1, ``minimum_calls`` beyond
            the window), and for a name already in use with other settings.

    Example:
        >>> from resilient import breaker
        >>> @breaker("inventory", failure_rate=0.5, minimum_calls=10, open_for=30)
        ... def stock(sku: str) -> int:
        ...     return 7
        >>> stock("A-1")
        7
        >>> breaker("inventory").state
        <BreakerState.CLOSED: 'closed'>
    """
    _check_name(name)
    resolved = None
    if policy is not None or options:
        example = 'breaker("payments-api", failure_rate=0.5)'
        resolved = resolve_policy("breaker", BreakerPolicy, policy, options, example)
    return _REGISTRY.get(name, resolved)


def live_breaker(name: str) -> Breaker | None:
    """Return this process's breaker named *name*, if it has one (never making one)."""
    return _REGISTRY.find(name)


def live_breakers() -> list[Breaker]:
    """Return every breaker alive in this process."""
    return _REGISTRY.live()


def _forked() -> None:
    """Start every breaker afresh in a forked child.

    Every lock is replaced (a parent's thread may have held one), and shared views drop the
    parent's sync in flight and the outcomes the parent will send itself.
    """
    _REGISTRY._lock = threading.Lock()
    for each in list(_REGISTRY._live.values()):
        each._lock = threading.Lock()
        if each._link is not None:
            each._link.forked()


os.register_at_fork(after_in_child=_forked)


def reset_breakers() -> None:
    """Reset every breaker alive in this process: closed, empty windows, no events.

    A shared breaker's view in this process is reset and read again at its next use; the
    state its backend keeps is left alone.
    """
    now = DEFAULTS.clock.monotonic()
    for each in _REGISTRY.live():
        with each._lock:
            each._core.reset(now)
            if each._link is not None:
                each._link.forget()
