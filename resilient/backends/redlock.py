"""Take locks by the Redlock algorithm, on a majority of independent Redis masters.

See :class:`RedlockBackend`, and the Redlock page of the documentation for when it helps, when
it does not, and the operational rules it rests on.
"""

# Rules of this module:
# - A RedlockBackend has the lock primitives only (lock, unlock, extend, wait_released and
#   their `a` versions): it is a backend for `resilient.lock`, nothing else.
# - Every verdict on the masters' answers comes from one pure function, `_decide`, given the
#   answers as values: a master that raised answered with its exception, which counts as "not
#   granted". Nothing else counts, compares or measures validity.
# - Each primitive is written once, as a generator of steps run by the drivers of _drive.py. A
#   `_Runtime` builds the steps: a step that asks every master calls them one after another
#   (sync) or concurrently with asyncio.gather (async), each call bounded by that master's
#   own socket timeout, and replies with every master's answer.
# - Fail closed: when fewer than a quorum of masters answer at all, the primitive raises
#   BackendUnavailableError, as one unreachable Redis would.
# - A lock not granted is released on every master before the refusal, those that raised too
#   (their command may have run before the reply was lost); errors there are ignored, and the
#   lease's ttl bounds whatever stays.
# - Validity is measured in real time (time.monotonic): it is compared with the expiry the
#   masters apply in real time, which no fake clock shortens. The one pause (when no master
#   answers a wait) goes through the configured clock, as every sleep does.
from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable, Generator, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, Final, NamedTuple, TypeAlias, TypeVar

import attrs

from .._config import DEFAULTS
from .._drive import run_async, run_sync
from ..exceptions import BackendUnavailableError
from ._types import Locked

if TYPE_CHECKING:
    from .redis import RedisBackend

__all__ = ["RedlockBackend"]

_T = TypeVar("_T")
# A primitive written once: a generator of steps, callables of no arguments whose reply (for an
# async step, awaited by `run_async`) is sent back in, or whose exception is thrown in.
_Steps: TypeAlias = Generator[Callable[[], Any], Any, _T]
# What one master answered: a Locked (lock), a bool (unlock, extend), or the exception it raised.
_Outcome: TypeAlias = Locked | bool | Exception

# Redis expires keys with a precision of about a millisecond: the Redlock algorithm takes 2 ms
# off every lease's validity for it, on top of the clock drift allowance.
_EXPIRY_PRECISION: Final = 0.002
# How soon to look again when no master told how long the lock stays held (they were down, or
# a quorum granted too late), and how long to pause when no master answered a wait.
_RETRY_SOON: Final = 0.05
_PRIMITIVES: Final = (
    "lock",
    "unlock",
    "extend",
    "wait_released",
    "alock",
    "aunlock",
    "aextend",
    "await_released",
)


class _Decision(NamedTuple):
    """What the masters' answers to one primitive add up to (see `_decide`).

    Attributes:
        granted: Whether a quorum took (released, extended) the lock, in time.
        answered: How many masters answered at all, rather than raising.
        token: When a lock was granted, the greatest fencing token of the masters that
            granted it; otherwise ``None``.
        ttl: When granted, the lease's validity in seconds; when a lock was refused, the
            smallest positive time a master said its holder has left (a short pause when none
            said); infinite for an unlock.
        error: The first exception a master raised, if any.
    """

    granted: bool
    answered: int
    token: int | None
    ttl: float
    error: Exception | None


def _decide(
    outcomes: Sequence[_Outcome],
    *,
    quorum: int,
    ttl: float | None,
    elapsed: float,
    drift: float,
) -> _Decision:
    """Decide whether the masters' *outcomes* grant a primitive, by the Redlock rules.

    Granted when at least *quorum* masters granted (a ``Locked`` with a token, or ``True``) and
    the validity ``ttl - elapsed - (ttl * drift + 0.002)`` is still positive. *ttl* is ``None``
    for an unlock, which no time limits.

    Args:
        outcomes: Each master's answer, or the exception it raised.
        quorum: How many masters must grant: a majority, ``len(masters) // 2 + 1``.
        ttl: The seconds asked for, or ``None``.
        elapsed: The seconds it took to ask every master.
        drift: The clock drift allowed for, as a fraction of *ttl*.
    """
    answers = [outcome for outcome in outcomes if not isinstance(outcome, Exception)]
    errors = [outcome for outcome in outcomes if isinstance(outcome, Exception)]
    grants = [answer for answer in answers if _grants(answer)]
    validity = math.inf if ttl is None else ttl - elapsed - (ttl * drift + _EXPIRY_PRECISION)
    error = errors[0] if errors else None
    if len(grants) >= quorum and validity > 0:
        tokens = [grant.token for grant in grants if isinstance(grant, Locked)]
        token = max((each for each in tokens if each is not None), default=None)
        return _Decision(
            granted=True, answered=len(answers), token=token, ttl=validity, error=error
        )
    held = [
        answer.ttl
        for answer in answers
        if isinstance(answer, Locked) and answer.token is None and answer.ttl > 0
    ]
    wait = min(held, default=_RETRY_SOON)
    return _Decision(granted=False, answered=len(answers), token=None, ttl=wait, error=error)


def _grants(answer: Locked | bool) -> bool:
    return answer.token is not None if isinstance(answer, Locked) else answer


def _in_turn(calls: Sequence[Callable[[], Any]]) -> list[_Outcome]:
    """Call each master in turn; return what each answered, or the exception it raised."""
    outcomes: list[_Outcome] = []
    for call in calls:
        try:
            outcomes.append(call())
        except Exception as error:  # noqa: BLE001 - a master that fails counts as not granted
            outcomes.append(error)
    return outcomes


async def _together(calls: Sequence[Callable[[], Any]]) -> list[_Outcome]:
    """Await every master at once; return what each answered, or the exception it raised."""

    async def outcome(call: Callable[[], Any]) -> _Outcome:
        try:
            answer: _Outcome = await call()
        except Exception as error:  # noqa: BLE001 - a master that fails counts as not granted
            return error
        return answer

    return list(await asyncio.gather(*(outcome(call) for call in calls)))


def _pause(seconds: float) -> None:
    DEFAULTS.clock.sleep(seconds)


async def _apause(seconds: float) -> None:
    await DEFAULTS.clock.asleep(seconds)


@attrs.frozen
class _Runtime:
    """How a procedure's steps reach the masters: sync methods in turn, or async ones together."""

    prefix: str  # of the masters' methods: "" (lock, ...) or "a" (alock, ..., await_released)
    ask: Callable[[Sequence[Callable[[], Any]]], Any]
    pause: Callable[[float], Any]

    def each(self, masters: Sequence[object], name: str, *args: object) -> Callable[[], Any]:
        """Return the step that calls primitive *name* on every master; it replies the outcomes."""
        calls = [partial(getattr(master, self.prefix + name), *args) for master in masters]
        return partial(self.ask, calls)

    def one(self, master: object, name: str, *args: object) -> Callable[[], Any]:
        """Return the step that calls primitive *name* on *master*."""
        return partial(getattr(master, self.prefix + name), *args)

    def sleep(self, seconds: float) -> Callable[[], Any]:
        """Return the step that pauses for *seconds*."""
        return partial(self.pause, seconds)


_SYNC: Final = _Runtime("", _in_turn, _pause)
_ASYNC: Final = _Runtime("a", _together, _apause)


def _check_masters(masters: object) -> tuple[RedisBackend, ...]:
    if isinstance(masters, str | bytes) or not isinstance(masters, Sequence):
        raise TypeError(
            f"masters={masters!r} is not a sequence of backends: pass one RedisBackend per "
            "independent Redis master, e.g. [RedisBackend.from_url(url) for url in urls]"
        )
    if not masters:
        raise ValueError(
            "RedlockBackend needs at least one master; 3 or 5 independent Redis masters are "
            "recommended"
        )
    for master in masters:
        missing = [name for name in _PRIMITIVES if not callable(getattr(master, name, None))]
        if missing:
            raise TypeError(
                f"master {master!r} lacks the lock primitives {', '.join(missing)}: pass "
                "RedisBackend objects, one per Redis master"
            )
    if len({id(master) for master in masters}) < len(masters):
        raise ValueError(
            "the same backend is given twice in masters: each master must be a backend of its "
            "own, for an independent Redis server, or it would count twice towards the quorum"
        )
    return tuple(masters)


def _check_drift(drift: object) -> float:
    if isinstance(drift, bool) or not isinstance(drift, int | float):
        raise TypeError(f"drift={drift!r} must be a number, the clock drift as a fraction of ttl")
    if not 0 <= drift < 0.5:
        raise ValueError(
            f"drift={drift!r} must be at least 0 and below 0.5: the fraction of a lease's ttl "
            "by which the masters' clocks may drift apart (0.01 by default)"
        )
    return float(drift)


def _check_ttl(ttl: float) -> None:
    if not 0 < ttl < math.inf:
        raise ValueError(f"ttl={ttl!r} must be a positive, finite number of seconds")


class RedlockBackend:
    """Take locks on a majority of independent Redis masters (the Redlock algorithm).

    A lock is taken when a quorum (``len(masters) // 2 + 1``) of masters grant it within its
    ttl; the lease is then valid for ``ttl - elapsed - (ttl * drift + 0.002)`` seconds, the
    ``ttl`` of the :class:`~resilient.backends.Locked` returned. It serves
    :func:`resilient.lock` only (sync and asyncio): pass it as ``backend=``. It is opt-in:
    one Redis master (a :class:`~resilient.backends.RedisBackend`) is simpler, and gives strict
    fencing tokens.

    Each master is asked in turn by sync code, and concurrently by asyncio code; each call is
    bounded by that master's own socket timeout, which should be far below the locks' ttl
    (e.g. ``RedisBackend.from_url(url, socket_timeout=0.1, socket_connect_timeout=0.1)``). A
    master that raises counts as not granting. A lock not granted is released on every master
    before the refusal is returned. When fewer than a quorum of masters answer at all, every
    primitive raises :class:`~resilient.exceptions.BackendUnavailableError`, so a lock fails
    closed as it does on one Redis.

    The fencing token is the greatest of the tokens the granting masters handed out. Each
    master's tokens only go up, but two quorums share as little as one master, so tokens of
    successive holders increase only as far as the masters' counters agree: where fencing must
    be strict, use a single Redis master (see the Redlock page of the documentation).

    Args:
        masters: One :class:`~resilient.backends.RedisBackend` per Redis master. The masters
            must be independent servers (no replication between them). Three or five are
            recommended, and an odd count: an even one needs as large a quorum as the next odd
            one and tolerates no more failures. One master works (for benchmarks, say).
        drift: The clock drift allowed for, as a fraction of the ttl; at least 0, below 0.5.
        name: The backend's name in events and errors.

    Attributes:
        name: The backend's name.
        drift: The clock drift allowed for, as a fraction of the ttl.
        quorum: How many masters must grant a lock: ``len(masters) // 2 + 1``.

    Raises:
        TypeError: If *masters* is not a sequence of backends with the lock primitives,
            *drift* is not a number, or *name* is not a non-empty string.
        ValueError: If *masters* is empty or names one backend twice, or *drift* is out of
            range.

    Example:
        >>> from resilient.backends.redis import RedisBackend
        >>> from resilient.backends.redlock import RedlockBackend
        >>> redlock = RedlockBackend(
        ...     [RedisBackend.from_url(f"redis://redis-{host}:6379") for host in "abc"]
        ... )
        >>> redlock
        RedlockBackend(name='redlock', masters=3, quorum=2, drift=0.01)
        >>> redlock.close()  # nothing was connected: no call was made
    """

    __slots__ = ("_masters", "drift", "name", "quorum")

    def __init__(
        self, masters: Sequence[RedisBackend], *, drift: float = 0.01, name: str = "redlock"
    ) -> None:
        self._masters = _check_masters(masters)
        self.drift = _check_drift(drift)
        given: object = name  # typed for callers; checked as whatever arrived
        if not isinstance(given, str) or not name:
            raise TypeError(f"name={name!r} must be a non-empty string")
        self.name = name
        self.quorum = len(self._masters) // 2 + 1

    def __repr__(self) -> str:
        return (
            f"RedlockBackend(name={self.name!r}, masters={len(self._masters)}, "
            f"quorum={self.quorum}, drift={self.drift!r})"
        )

    @property
    def masters(self) -> tuple[RedisBackend, ...]:
        """The masters, in the order sync code asks them."""
        return self._masters

    def close(self) -> None:
        """Close every master (:meth:`resilient.backends.RedisBackend.close`), even if one fails."""
        with contextlib.ExitStack() as stack:
            for master in self._masters:
                stack.callback(master.close)

    async def aclose(self) -> None:
        """Close every master's clients (:meth:`~resilient.backends.RedisBackend.aclose`)."""
        async with contextlib.AsyncExitStack() as stack:
            for master in self._masters:
                stack.push_async_callback(master.aclose)

    # primitives: each is written once, as steps, and run by a sync and an async method ------

    def lock(self, key: str, owner: str, ttl: float) -> Locked:
        """Take the lock *key* for *owner* on a quorum of masters, within *ttl*.

        Returns the greatest token of the granting masters and the lease's validity; or, when
        refused, ``token=None`` and the smallest time a master said its holder has left.
        See :meth:`resilient.typing.Backend.lock`.

        Raises:
            BackendUnavailableError: If fewer than a quorum of masters answered.
        """
        return run_sync(self._locking(_SYNC, key, owner, ttl))

    async def alock(self, key: str, owner: str, ttl: float) -> Locked:
        """Take a lock, asking every master at once (see :meth:`lock`)."""
        return await run_async(self._locking(_ASYNC, key, owner, ttl))

    def unlock(self, key: str, owner: str) -> bool:
        """Release *owner*'s lock on every master; return whether a quorum released it.

        Raises:
            BackendUnavailableError: If fewer than a quorum of masters answered.
        """
        return run_sync(self._unlocking(_SYNC, key, owner))

    async def aunlock(self, key: str, owner: str) -> bool:
        """Release a lock (see :meth:`unlock`)."""
        return await run_async(self._unlocking(_ASYNC, key, owner))

    def extend(self, key: str, owner: str, ttl: float) -> bool:
        """Make *owner*'s lock last *ttl* seconds more on every master that holds it for it.

        True when a quorum extended it, in time for a positive validity (as for :meth:`lock`).

        Raises:
            BackendUnavailableError: If fewer than a quorum of masters answered.
        """
        return run_sync(self._extending(_SYNC, key, owner, ttl))

    async def aextend(self, key: str, owner: str, ttl: float) -> bool:
        """Extend a lock (see :meth:`extend`)."""
        return await run_async(self._extending(_ASYNC, key, owner, ttl))

    def wait_released(self, key: str, timeout: float) -> None:
        """Block until the lock *key* is released or expires on the masters, or *timeout* passes.

        Waits on each master in turn within one deadline, woken by the release's message
        (every master publishes one), never polling; a master that fails is skipped. When none
        answers, pauses briefly instead, so that callers back off.
        """
        run_sync(self._waiting(_SYNC, key, timeout))

    async def await_released(self, key: str, timeout: float) -> None:  # noqa: ASYNC109 - protocol
        """Wait until the lock *key* is released (see :meth:`wait_released`)."""
        await run_async(self._waiting(_ASYNC, key, timeout))

    def _locking(self, run: _Runtime, key: str, owner: str, ttl: float) -> _Steps[Locked]:
        _check_ttl(ttl)
        start = time.monotonic()
        outcomes = yield run.each(self._masters, "lock", key, owner, ttl)
        decision = self._verdict(outcomes, ttl, time.monotonic() - start)
        if decision.granted:
            return Locked(decision.token, decision.ttl)
        # a minority holds it for us, and a master that raised may have run the command too
        yield run.each(self._masters, "unlock", key, owner)
        self._check_answered(decision, "lock")
        return Locked(None, decision.ttl)

    def _unlocking(self, run: _Runtime, key: str, owner: str) -> _Steps[bool]:
        outcomes = yield run.each(self._masters, "unlock", key, owner)
        decision = self._verdict(outcomes, None, 0.0)
        self._check_answered(decision, "unlock")
        return decision.granted

    def _extending(self, run: _Runtime, key: str, owner: str, ttl: float) -> _Steps[bool]:
        _check_ttl(ttl)
        start = time.monotonic()
        outcomes = yield run.each(self._masters, "extend", key, owner, ttl)
        decision = self._verdict(outcomes, ttl, time.monotonic() - start)
        self._check_answered(decision, "extend")
        return decision.granted

    def _waiting(self, run: _Runtime, key: str, timeout: float) -> _Steps[None]:
        # Each master in turn, not only the first that answers: a holder's quorum need not
        # include that one, whose wait would then return at once, and the caller would spin
        # (try, be refused, wait no time) until the holder let go. A master found free costs
        # one round trip; the holder's release wakes the wait on every master it held.
        deadline = time.monotonic() + timeout
        failed = 0
        for master in self._masters:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            try:
                yield run.one(master, "wait_released", key, left)
            except Exception:  # noqa: BLE001 - a master that fails is skipped
                failed += 1
        left = deadline - time.monotonic()
        if failed == len(self._masters) and left > 0:
            yield run.sleep(min(left, _RETRY_SOON))

    def _verdict(
        self, outcomes: Sequence[_Outcome], ttl: float | None, elapsed: float
    ) -> _Decision:
        return _decide(outcomes, quorum=self.quorum, ttl=ttl, elapsed=elapsed, drift=self.drift)

    def _check_answered(self, decision: _Decision, operation: str) -> None:
        """Raise BackendUnavailableError if fewer than a quorum of masters answered."""
        if decision.answered >= self.quorum:
            return
        raise BackendUnavailableError(
            f"{self.name}: {decision.answered} of {len(self._masters)} Redis masters answered "
            f"{operation}, fewer than the quorum of {self.quorum}; the first error: "
            f"{decision.error!r}",
            backend=self.name,
            operation=operation,
        ) from decision.error
