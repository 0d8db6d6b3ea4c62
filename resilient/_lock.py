# `lock()`: a lease on a name, with a fencing token, on the configured or a given backend.
#
# Rules:
# - A lease is taken with one `lock` primitive (one round trip on Redis) under a fresh owner id
#   of 128 random bits, and given back with one token-checked `unlock`. A holder whose lease
#   expired can never release or extend someone else's.
# - The owner id also names the holding process and the lock (`random~host:pid~name`), so that
#   an operator's tool can list held locks by name (`resilient.admin`) from the keys alone:
#   the backend stores the owner as it stores any, with no write of its own. Its release by
#   force is the same token-checked `unlock`, which the holder then learns of as a loss.
# - An outcome that may be ambiguous (the command may have run, but its reply was lost) is
#   resolved by ownership, never assumed: redis-py sends a command again after a connection
#   error, and `lock` answers a request it already granted with the token it holds; an attempt
#   that still fails, or that is cancelled, releases whatever it may hold before the error
#   propagates, and the lease's TTL bounds it in any case.
# - Waiting for a held lock never polls: `wait_released` wakes when the holder releases it or
#   its lease runs out, bounded by what is left of `timeout`.
# - Each acquisition and release is written once, as a procedure of backend effects performed
#   by `run_sync` or `run_async`. A `with` block keeps its lease in a context variable, so one
#   `Lock` serves blocks in many threads and tasks at once.
# - Locks fail closed: a backend error is a BackendUnavailableError, never a lease.
from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import os
import secrets
import socket
import threading
from collections.abc import Callable
from datetime import timedelta
from types import TracebackType
from typing import Any, ClassVar, ParamSpec, Protocol, TypedDict, TypeVar, Unpack

import attrs

from ._blocks import Blocks
from ._config import DEFAULTS
from ._core.primitives import needs_primitives
from ._core.renewal import Renewal
from ._core.seconds import Seconds, non_negative_seconds, positive_seconds
from ._deadline import current as current_deadline
from ._decorate import Call, Decorator, Target, resolve_policy
from ._drive import Join, Op, Procedure, backend_failed, emit, run_async, run_sync
from ._renewal import renew, stop_renewing
from ._signal import Signal
from .backends._types import Locked
from .events import (
    Event,
    LockAcquired,
    LockContended,
    LockLost,
    LockReleased,
    LockRenewed,
)
from .exceptions import BackendUnavailableError, LockLostError, LockNotAcquiredError

__all__ = ["Lease", "Lock", "LockOptions", "LockPolicy", "lock", "lock_key", "owner_id", "owner_of"]

_logger = logging.getLogger("resilient")

P = ParamSpec("P")
R = TypeVar("R")


def _ttl(value: Seconds) -> float:
    return positive_seconds("ttl", value)


def _timeout(value: Seconds | None) -> float | None:
    return None if value is None else non_negative_seconds("timeout", value)


@attrs.frozen(kw_only=True)
class LockPolicy:
    """How a lock is taken. Every field is also a keyword argument of :func:`lock`.

    Attributes:
        ttl: Seconds (or a ``timedelta``) a lease lasts unless released first: the longest a
            crashed holder keeps others out. A holder still working after it loses the lock;
            check its fencing token where the work lands.
        timeout: The most seconds to wait for the lock; ``0`` tries once; ``None`` waits as
            long as it takes.
        renew: Keep the lease alive while the block runs: a background renewer (one thread
            for sync holders, one task per event loop for async ones) extends it every third
            of ``ttl``. When a renewal finds the lease gone, or cannot reach the backend
            before the lease runs out, the lease is lost: ``lease.lost`` turns true,
            ``on_lost`` runs, and leaving the block raises
            :class:`~resilient.exceptions.LockLostError`.
        on_lost: With ``renew``, called with the :class:`~resilient.Lease` when it is found
            lost (in the renewer's thread or task: keep it short).
        cancel_on_lost: With ``renew``, cancel the task holding an ``async with`` block when
            its lease is found lost; the block then raises
            :class:`~resilient.exceptions.LockLostError`.
        backend: Where the lock lives; by default the configured backend (Redis for a lock
            shared by processes, memory for one of this process).
    """

    ttl: float = attrs.field(default=30.0, converter=_ttl)
    timeout: float | None = attrs.field(default=None, converter=_timeout)
    renew: bool = attrs.field(default=False, validator=attrs.validators.instance_of(bool))
    on_lost: Callable[[Lease], object] | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.is_callable())
    )
    cancel_on_lost: bool = attrs.field(default=False, validator=attrs.validators.instance_of(bool))
    backend: object = attrs.field(
        default=None, validator=needs_primitives("lock", "unlock", "extend", "wait_released")
    )

    def __attrs_post_init__(self) -> None:
        if (self.on_lost is not None or self.cancel_on_lost) and not self.renew:
            raise TypeError(
                "on_lost= and cancel_on_lost= act on what the renewer finds: pass renew=True "
                "too, e.g. lock('sheets-sync', ttl=30, renew=True, on_lost=alert)"
            )


class LockOptions(TypedDict, total=False):
    """The keyword arguments of :func:`lock`: the fields of :class:`LockPolicy`."""

    ttl: float | timedelta
    timeout: float | timedelta | None
    renew: bool
    on_lost: Callable[[Lease], object] | None
    cancel_on_lost: bool
    backend: object


class Lease:
    """A lock held: its fencing token, and whether it may have been lost.

    Attributes:
        name: The lock's name.
        token: The fencing token: greater than every token handed out for this name before.
            Pass it along with the work the lock protects, and have the resource refuse a
            write carrying a token lower than the last one it accepted.
        ttl: Seconds the lease lasts from when it is taken or renewed, unless released first.
    """

    __slots__ = (
        "__weakref__",
        "_cancelled",
        "_found_lost",
        "_renewal",
        "_task",
        "name",
        "owner",
        "released",
        "taken_at",
        "token",
        "ttl",
        "valid_until",
    )

    def __init__(
        self, name: str, token: int, ttl: float, *, owner: str, taken_at: float, valid_until: float
    ) -> None:
        self.name = name
        self.token = token
        self.ttl = ttl
        self.owner = owner
        self.taken_at = taken_at
        self.valid_until = valid_until  # no later than the backend drops it, by our clock
        self.released = False
        self._found_lost = False
        self._renewal: Renewal | None = None
        self._task: asyncio.Task[Any] | None = None  # to cancel when found lost
        self._cancelled = False  # whether it was

    @classmethod
    def granted(
        cls, name: str, locked: Locked, ttl: float, owner: str, *, sent: float, now: float
    ) -> Lease:
        """The lease *locked* granted to *owner*, asked for at *sent*, answered at *now*."""
        assert locked.token is not None
        # its term counts from before the request: never longer than the backend's
        return cls(
            name, locked.token, ttl, owner=owner, taken_at=now, valid_until=sent + locked.ttl
        )

    def __repr__(self) -> str:
        return f"Lease(name={self.name!r}, token={self.token!r}, lost={self.lost!r})"

    @property
    def lost(self) -> bool:
        """Whether the lease may be gone: found gone, or past the end of its last confirmed term.

        Check it before a write the lock protects: a holder paused (a GC pause, a stopped
        process) past its term learns here that someone else may hold the lock now, even
        before the renewer has run again.
        """
        if self.released:  # the release told for sure
            return self._found_lost
        return self._found_lost or DEFAULTS.clock.monotonic() >= self.valid_until

    @property
    def remaining(self) -> float:
        """Seconds left of the lease's last confirmed term (0 once lost)."""
        if self._found_lost:
            return 0.0
        return max(0.0, self.valid_until - DEFAULTS.clock.monotonic())

    def check(self) -> None:
        """Raise :class:`~resilient.exceptions.LockLostError` if the lease may be gone.

        See :attr:`lost`.
        """
        if self.lost:
            raise LockLostError(self.name, self.token)


def _stem(name: str) -> str:
    """Return where the lock *name* lives, after the namespace."""
    return f":lock:{{{hashlib.blake2b(name.encode(), digest_size=16).hexdigest()}}}"


def lock_key(namespace: str, name: str) -> str:
    """Return the backend key of the lock *name* in *namespace*."""
    return namespace + _stem(name)


_HOST = socket.gethostname()


def owner_id(name: str) -> str:
    """Return a new owner id for a lease of the lock *name*: ``random~host:pid~name``."""
    return f"{secrets.token_hex(16)}~{_HOST}:{os.getpid()}~{name}"


def owner_of(owner: str) -> tuple[str, str] | None:
    """Return the holding process (``host:pid``) and the lock's name an owner id names.

    None for an owner id that names none (one the library's locks did not make).
    """
    parts = owner.split("~", 2)
    if len(parts) != 3 or not parts[2]:
        return None
    return parts[1], parts[2]


class _HeldEvent(Protocol):
    """An event class about a lease held for *held* seconds (a renewal, a loss)."""

    def __call__(self, *, policy: str, time: float, held: float) -> Event: ...


_held: Blocks[Lease] = Blocks("lock")  # the leases of the blocks open in this thread or task


class Lock:
    """A named lock: a ``with`` / ``async with`` block yielding a :class:`Lease`, or a decorator.

    Made by :func:`lock`. One object serves any number of threads and tasks; each block takes a
    lease of its own.

    Attributes:
        name: The lock's name.
        policy: Its :class:`LockPolicy`.
    """

    __slots__ = ("_stem", "name", "policy")

    # what a renewal and a loss are reported as: a capability holding a lease of its own (an
    # idempotent call's) reports them as its own events
    renewed_event: ClassVar[_HeldEvent] = LockRenewed
    lost_event: ClassVar[_HeldEvent] = LockLost

    def __init__(self, name: str, policy: LockPolicy, *, stem: str | None = None) -> None:
        self.name = name
        self.policy = policy
        if stem is None:  # where the lock lives, after the namespace
            stem = _stem(name)
        self._stem = stem

    def __repr__(self) -> str:
        return f"<Lock {self.name!r} ttl={self.policy.ttl!r}>"

    def _backend(self) -> Any:
        return self.policy.backend or DEFAULTS.backend

    def _key(self) -> str:
        return DEFAULTS.namespace + self._stem

    # blocks ----------------------------------------------------------------------------------

    def __enter__(self) -> Lease:
        """Wait for the lock and take it; raise LockNotAcquiredError after ``timeout``."""
        lease: Lease = run_sync(self._acquiring(), self._backend())
        if self.policy.renew:
            lease._renewal = renew(self, lease, self._next_renewal(lease.taken_at), in_loop=False)
        _held.enter(self, lease)
        return lease

    async def __aenter__(self) -> Lease:
        """Wait for the lock and take it, from async code (see :meth:`__enter__`)."""
        lease: Lease = await run_async(self._acquiring(), self._backend())
        if self.policy.renew:
            if self.policy.cancel_on_lost:
                lease._task = asyncio.current_task()
            lease._renewal = renew(self, lease, self._next_renewal(lease.taken_at), in_loop=True)
        _held.enter(self, lease)
        return lease

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Release the lease; raise LockLostError if it was found lost and nothing else is."""
        lease = self._leave()
        run_sync(self._releasing(lease), self._backend())
        self._check(lease, exc)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Release the lease (see :meth:`__exit__`); a cancelled release still releases.

        A task cancelled because its lease was found lost (``cancel_on_lost``) is uncancelled
        here, and LockLostError raised in place of the cancellation.
        """
        lease = self._leave()
        await asyncio.shield(run_async(self._releasing(lease), self._backend()))
        if lease._cancelled and isinstance(exc, asyncio.CancelledError):
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            raise LockLostError(self.name, lease.token) from exc
        self._check(lease, exc)

    def _leave(self) -> Lease:
        """Forget the innermost lease of this thread or task, and stop renewing it."""
        lease = _held.leave(self)
        lease.released = True
        if lease._renewal is not None:
            stop_renewing(lease._renewal)
        return lease

    def _check(self, lease: Lease, exc: BaseException | None) -> None:
        if not lease._found_lost:
            return
        lost = LockLostError(self.name, lease.token)
        if exc is None:
            raise lost
        exc.add_note(str(lost))

    # decorating ------------------------------------------------------------------------------

    def __call__(self, function: Callable[P, R]) -> Callable[P, R]:
        """Run every call of *function* (sync or async) under this lock."""
        return Decorator(_LockLayer(self), "lock")(function)

    # procedures ------------------------------------------------------------------------------

    def _acquiring(self) -> Procedure:
        key, ttl, owner = self._key(), self.policy.ttl, owner_id(self.name)
        clock = DEFAULTS.clock
        start = clock.monotonic()
        timeout = self.policy.timeout
        deadline = math.inf if timeout is None else start + timeout
        ambient = current_deadline()  # the caller's (`resilient.deadline`), if earlier
        if ambient is not None and ambient < deadline:
            deadline, timeout = ambient, max(0.0, ambient - start)
        queue: _Queue | None = None  # this process's callers waiting for the lock, once held
        try:
            while True:
                sent = clock.monotonic()
                locked = yield from self._asking(key, owner, ttl)
                now = clock.monotonic()
                if locked.token is not None:
                    if DEFAULTS.observers:
                        emit(DEFAULTS, LockAcquired(policy=self.name, time=now, waited=now - start))
                    return Lease.granted(self.name, locked, ttl, owner, sent=sent, now=now)
                if queue is None:
                    if DEFAULTS.observers:
                        emit(DEFAULTS, LockContended(policy=self.name, time=now))
                    queue = _Queue.join((id(self._backend()), key))
                # one caller of this process waits on the backend; the others, for their turn
                while (turn := queue.first(owner)) is not None:
                    if (left := deadline - clock.monotonic()) <= 0:
                        raise LockNotAcquiredError(self.name, timeout)
                    yield Join(turn, None if left == math.inf else left)
                if (left := deadline - clock.monotonic()) <= 0:
                    raise LockNotAcquiredError(self.name, timeout)
                try:
                    yield Op("wait_released", (key, min(left, max(locked.ttl, 0.001))), {})
                except Exception as error:
                    raise self._unavailable("wait_released", error) from error
        finally:
            if queue is not None:
                queue.leave(owner)

    def _asking(self, key: str, owner: str, ttl: float) -> Procedure:
        """Ask for the lock once; return the backend's answer, a :class:`Locked`."""
        try:
            return (yield Op("lock", (key, owner, ttl), {}))
        except BaseException as error:
            # the lock may have been taken before the reply was lost: give it back
            yield from self.let_go(owner)
            if isinstance(error, Exception):
                raise self._unavailable("lock", error) from error
            raise

    def let_go(self, owner: str) -> Procedure:
        """Release what *owner* may hold, if the backend answers: its TTL bounds it otherwise."""
        with contextlib.suppress(Exception):
            yield Op("unlock", (self._key(), owner), {}, self._backend())

    def _releasing(self, lease: Lease) -> Procedure:
        try:
            released = yield Op("unlock", (self._key(), lease.owner), {})
        except Exception as error:
            now = DEFAULTS.clock.monotonic()
            if not (lease._found_lost or now >= lease.valid_until):
                raise self._unavailable("unlock", error) from error
            # the lease is over whatever the backend would say: the holder must hear that
            # (LockLostError), not that the release of nothing could not be sent
            backend_failed(self.name, self._backend(), "unlock", error)
            self._lose(lease, now)
            return
        now = DEFAULTS.clock.monotonic()
        if not released:
            self._lose(lease, now)
        elif DEFAULTS.observers:
            emit(DEFAULTS, LockReleased(policy=self.name, time=now, held=now - lease.taken_at))

    def _next_renewal(self, now: float) -> float:
        return now + self.policy.ttl / 3

    def renewal(self, lease: Lease, now: float) -> Op | None:
        """Return the ``extend`` that renews *lease* at *now*, or None to renew it no more.

        Run by the renewer (``_renewal.py``), which sends the extends of a round together
        and hands each answer to :meth:`renewed`. A lease past its term is lost here.
        """
        if lease.released or lease._found_lost:
            return None
        if now >= lease.valid_until:  # the process was paused, or renewals failed, too long
            self._lose(lease, now, cancel=True)
            return None
        return Op("extend", (self._key(), lease.owner, self.policy.ttl), {}, self._backend())

    def renewed(self, lease: Lease, sent: float, outcome: object) -> float | None:
        """Take the answer to *lease*'s extend sent at *sent*; return when it is due next.

        *outcome* is the extend's reply, or the exception it failed with. None: renew it no
        more. A lease the backend no longer holds for its owner is lost; one the backend
        could not be asked about is tried again within a second, until its term ends.
        """
        clock = DEFAULTS.clock
        ttl = self.policy.ttl
        if isinstance(outcome, Exception):  # a lease is lost only when its term ends
            backend_failed(self.name, self._backend(), "extend", outcome)
            return min(clock.monotonic() + min(ttl / 3, 1.0), lease.valid_until)
        now = clock.monotonic()
        if not outcome:
            if not lease.released:  # else it was released while the renewal was on its way
                self._lose(lease, now, cancel=True)
            return None
        lease.valid_until = sent + ttl
        if DEFAULTS.observers:
            emit(
                DEFAULTS, self.renewed_event(policy=self.name, time=now, held=now - lease.taken_at)
            )
        return self._next_renewal(now)

    def _lose(self, lease: Lease, now: float, *, cancel: bool = False) -> None:
        """Record that *lease* was found lost, and tell whoever asked to be told."""
        if lease._found_lost:
            return
        lease._found_lost = True
        if DEFAULTS.observers:
            emit(DEFAULTS, self.lost_event(policy=self.name, time=now, held=now - lease.taken_at))
        on_lost = self.policy.on_lost
        if on_lost is not None:
            try:
                on_lost(lease)
            except Exception:
                _logger.exception("resilient: on_lost of lock %r raised", self.name)
        task = lease._task
        if cancel and task is not None and not task.done():
            lease._cancelled = True
            task.cancel(f"lock {self.name!r} was lost")

    def _unavailable(self, operation: str, error: Exception) -> BackendUnavailableError:
        backend = self._backend()
        name = str(getattr(backend, "name", type(backend).__name__))
        return BackendUnavailableError(
            f"lock {self.name!r}: the backend failed to {operation}: {error!r}",
            backend=name,
            operation=operation,
        )


class _Queue:
    """The callers of this process waiting for one lock: only the first waits on the backend.

    A release wakes every process waiting for the lock, and each then asks for it again:
    with every thread or task waiting on its own, a release cost a request per waiting
    caller of the fleet. Here the callers of one process take turns: the first waits on the
    backend and asks again, the others wait for their turn in the process (a Signal, no
    I/O), which comes when the first got the lock or gave up.
    """

    __slots__ = ("callers", "first_caller", "key", "turn")

    _queues: ClassVar[dict[tuple[int, str], _Queue]] = {}
    _lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, key: tuple[int, str]) -> None:
        self.key = key
        self.callers = 0
        self.first_caller: str | None = None
        self.turn = Signal()  # fired when the first caller leaves

    @classmethod
    def join(cls, key: tuple[int, str]) -> _Queue:
        """The queue of the lock *key* (a backend's id and the lock's key), joined."""
        with cls._lock:
            queue = cls._queues.get(key)
            if queue is None:
                queue = cls._queues[key] = _Queue(key)
            queue.callers += 1
            return queue

    def first(self, caller: str) -> Signal | None:
        """None if *caller* is first (becoming it if nobody is); else the turn to wait for."""
        with self._lock:
            if self.first_caller is None:
                self.first_caller = caller
            return None if self.first_caller == caller else self.turn

    def leave(self, caller: str) -> None:
        """*caller* got the lock or gave up: the next caller's turn comes."""
        with self._lock:
            self.callers -= 1
            if not self.callers:
                del self._queues[self.key]
            if self.first_caller != caller:
                return
            self.first_caller = None
            turn, self.turn = self.turn, Signal()
        turn.fire()

    @classmethod
    def forget(cls) -> None:
        """Start afresh (in a forked child: the parent's waiters are not here)."""
        cls._queues = {}
        cls._lock = threading.Lock()


os.register_at_fork(after_in_child=_Queue.forget)


class _Locked:
    """A lock as applied to one decorated function: its sync and async call steps."""

    __slots__ = ("inner", "lock")

    def __init__(self, lock: Lock, inner: Call) -> None:
        self.lock = lock
        self.inner = inner

    def call_sync(
        self, wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        with self.lock:
            return self.inner(wrapped, instance, args, kwargs)

    async def call_async(
        self, wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        async with self.lock:
            return await self.inner(wrapped, instance, args, kwargs)


@attrs.frozen
class _LockLayer:
    lock: Lock

    def build(self, inner: Call, target: Target) -> Call:
        locked = _Locked(self.lock, inner)
        return locked.call_async if target.is_async else locked.call_sync


def lock(name: str, policy: LockPolicy | None = None, /, **options: Unpack[LockOptions]) -> Lock:
    """Return the lock named *name*: a lease on it per ``with`` block, or per decorated call.

    On a Redis backend the lock is shared by every process using the name; on the default
    MemoryBackend, by the threads and tasks of this process. Each lease carries a fencing
    token, greater than every one handed out for the name before.

    Raises:
        TypeError: For a name that is not a short printable string, an unknown keyword, or a
            backend without the lock primitives.
        ValueError: For a ``ttl`` that is not positive or a negative ``timeout``.

    Example:
        >>> from resilient import lock
        >>> with lock("nightly-report", ttl=60, timeout=0) as lease:
        ...     lease.token > 0
        True
    """
    given: object = name  # typed for callers; checked as whatever arrived
    if not isinstance(given, str) or not name or len(name) > 200 or not name.isprintable():
        raise TypeError(
            "lock() takes a name first: a printable string of 1 to 200 characters, e.g. "
            f"lock('sheets-sync'), not {name!r}"
        )
    resolved = resolve_policy("lock", LockPolicy, policy, options, "lock('sheets-sync', ttl=30)")
    return Lock(name, resolved)
